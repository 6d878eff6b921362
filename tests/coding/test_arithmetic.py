"""Range coding of bitplanes: lossless, honest about its rate, strict about its input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtaic.coding.arithmetic import decode_planes, encode_planes, probabilities, single_thread
from rtaic.coding.bitplanes import to_bitplanes
from rtaic.coding.bitstream import BitstreamError
from rtaic.coding.context import BitContextModel, code_length_bits


def _model(channels=3, bits=5, seed=0) -> BitContextModel:
    torch.manual_seed(seed)
    m = BitContextModel(channels, bits)
    with torch.no_grad():
        m.logits.copy_(torch.randn_like(m.logits) * 2.0)
    return m


def _planes(shape, bits, scale=4.0, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = 2 ** (bits - 1) - 1
    levels = (torch.randn(shape, generator=g) * scale).round().clamp(-m, m).int()
    return to_bitplanes(levels, bits)


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 3, 1, 7), (1, 3, 5, 1), (1, 3, 9, 14), (2, 3, 6, 5)])
def test_round_trip_is_exact(shape):
    model = _model()
    planes = _planes(shape, 5, seed=sum(shape))
    table = model.probability_table()
    payload, _ = encode_planes(planes, model, table)
    decoded = decode_planes(payload, model, table, planes.shape)
    assert decoded.dtype == torch.uint8
    assert torch.equal(decoded, planes)


def test_all_zero_latent_codes_no_sign_bits():
    model = _model()
    planes = to_bitplanes(torch.zeros(1, 3, 8, 8, dtype=torch.int32), 5)
    table = model.probability_table()
    payload, ideal = encode_planes(planes, model, table)
    assert torch.equal(decode_planes(payload, model, table, planes.shape), planes)
    assert ideal == pytest.approx(code_length_bits(table, model, planes))


def test_estimate_matches_the_models_code_length_and_the_real_size():
    model = _model()
    planes = _planes((1, 3, 24, 32), 5, scale=6.0)
    table = model.probability_table()
    payload, ideal = encode_planes(planes, model, table)
    assert ideal == pytest.approx(code_length_bits(table, model, planes), rel=1e-9)
    assert ideal > 1000  # a meaningful amount of data
    # real bits within 1 % (+ a word of flush) of the ideal code length
    assert 8 * len(payload) <= ideal * 1.01 + 64
    assert 8 * len(payload) >= ideal * 0.99


def test_decoding_with_another_table_does_not_reproduce_the_planes():
    model = _model()
    planes = _planes((1, 3, 16, 16), 5, scale=6.0)
    payload, _ = encode_planes(planes, model, model.probability_table())
    other = _model(seed=1).probability_table()
    try:
        decoded = decode_planes(payload, model, other, planes.shape)
    except BitstreamError:
        return
    assert not torch.equal(decoded, planes)


def test_payload_must_be_whole_words():
    model = _model()
    with pytest.raises(BitstreamError):
        decode_planes(b"\x00\x01\x02", model, model.probability_table(), (1, 5, 3, 4, 4))


def test_leftover_data_is_refused():
    model = _model()
    planes = _planes((1, 3, 8, 8), 5)
    table = model.probability_table()
    payload, _ = encode_planes(planes, model, table)
    with pytest.raises(BitstreamError):
        decode_planes(payload + b"\xff\xff\xff\xff" * 4, model, table, planes.shape)


def test_probabilities_are_exact_powers_of_two_fractions():
    table = np.array([1, 32768, 65535], dtype=np.int64)
    p = probabilities(table)
    assert p.dtype == np.float64
    assert list(p) == [1 / 65536, 0.5, 65535 / 65536]
    with pytest.raises(TypeError):
        probabilities(np.array([0.5]))


def test_single_thread_restores_the_thread_count_even_on_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), single_thread():
        assert torch.get_num_threads() == 1
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
