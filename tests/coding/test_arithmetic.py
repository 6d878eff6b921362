"""Range coding of bitplanes: lossless, honest about its rate, strict about its input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtaic.coding.arithmetic import decode_planes, encode_planes, probabilities, single_thread
from rtaic.coding.bitplanes import to_bitplanes
from rtaic.coding.bitstream import BitstreamError
from rtaic.coding.context import BitContextModel, code_length_bits
from rtaic.coding.scan import PlaneScan


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


def _sparse_planes(shape, bits, seed=0) -> torch.Tensor:
    """Levels with empty slices: channel 1 all zero, small values elsewhere (empty MSBs)."""
    g = torch.Generator().manual_seed(seed)
    levels = (torch.randn(shape, generator=g) * 2.0).round().clamp(-7, 7).int()
    levels[:, 1] = 0
    return to_bitplanes(levels, bits)


SHAPES = [(1, 3, 1, 1), (1, 3, 1, 7), (1, 3, 5, 1), (1, 3, 9, 14), (2, 3, 6, 5)]


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_is_exact(shape, version):
    model = _model()
    table = model.probability_table()
    for planes in (_planes(shape, 5, seed=sum(shape)), _sparse_planes(shape, 5, seed=sum(shape))):
        payload, _ = encode_planes(planes, model, table, version)
        decoded = decode_planes(payload, model, table, planes.shape, version)
        assert decoded.dtype == torch.uint8
        assert torch.equal(decoded, planes)


def test_all_zero_latent_codes_only_the_slice_flags():
    model = _model()
    planes = to_bitplanes(torch.zeros(1, 3, 8, 8, dtype=torch.int32), 5)
    table = model.probability_table()
    payload, ideal = encode_planes(planes, model, table)
    assert torch.equal(decode_planes(payload, model, table, planes.shape), planes)
    assert ideal == 4 * 3  # one flag per (magnitude plane, channel), nothing else
    assert ideal == pytest.approx(code_length_bits(table, model, planes, skip_empty=True))
    payload1, ideal1 = encode_planes(planes, model, table, version=1)
    assert ideal1 == pytest.approx(code_length_bits(table, model, planes))  # no sign bits either
    assert torch.equal(decode_planes(payload1, model, table, planes.shape, version=1), planes)


@pytest.mark.parametrize("version", [1, 2])
def test_estimate_matches_the_models_code_length_and_the_real_size(version):
    model = _model()
    table = model.probability_table()
    for planes in (_planes((1, 3, 24, 32), 5, scale=6.0), _sparse_planes((2, 3, 24, 32), 5)):
        payload, ideal = encode_planes(planes, model, table, version)
        expected = code_length_bits(table, model, planes, skip_empty=version == 2)
        assert ideal == pytest.approx(expected, rel=1e-9)
        assert ideal > 1000  # a meaningful amount of data
        # real bits within 1 % (+ a word of flush) of the ideal code length
        assert 8 * len(payload) <= ideal * 1.01 + 64
        assert 8 * len(payload) >= ideal * 0.99


def test_version_2_skips_the_empty_slices():
    model = _model()
    table = model.probability_table()
    planes = _sparse_planes((1, 3, 32, 32), 5)
    v1, _ = encode_planes(planes, model, table, version=1)
    v2, _ = encode_planes(planes, model, table, version=2)
    assert len(v2) < len(v1)


def _recorded_scan(model, planes, version):
    """(bits, contexts) in the order the scan codes them."""
    out = []

    def code(bits, contexts):
        out.append((bits.astype(np.int64), contexts.astype(np.int64)))
        return bits

    scan = PlaneScan(model, planes.shape, planes.numpy(), version)
    everything = np.ones((planes.shape[1] - 1, planes.shape[0] * planes.shape[2]), np.uint8)
    scan.run(code, scan.flags() if version == 2 else everything)
    return np.concatenate([b for b, _ in out]), np.concatenate([c for _, c in out])


def _documented_order(model, planes, version):
    """The same, from BitContextModel.plane_contexts and docs/bitstream.md's order."""
    n, b, c, h, w = planes.shape
    bits, ctxs = [], []
    for p in range(b):
        ctx = model.plane_contexts(planes, p).reshape(n * c, h, w)
        bit = planes[:, p].reshape(n * c, h, w)
        coded = model.coded_mask(planes, p)
        coded = torch.ones_like(bit, dtype=torch.bool) if coded is None else coded.reshape(n * c, h, w)
        if version == 2 and p < b - 1:
            coded = coded & bit.flatten(1).bool().any(1)[:, None, None]
        for parity in (0, 1):
            if version == 1:
                odd = ((torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2).bool()
                where = (odd if parity else ~odd).expand_as(bit)
                keep = coded & where
                bits.append(bit[keep]), ctxs.append(ctx[keep])
                continue
            for rows, cols in ((0, parity), (1, 1 - parity)):
                sub = (slice(None), slice(rows, None, 2), slice(cols, None, 2))
                keep = coded[sub]
                bits.append(bit[sub][keep]), ctxs.append(ctx[sub][keep])
    return torch.cat(bits).long().numpy(), torch.cat(ctxs).numpy()


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("shape", [(2, 3, 7, 10), (1, 3, 1, 5), (1, 3, 12, 9)])
def test_scan_codes_the_models_contexts_in_the_documented_order(shape, version):
    """The coder's incremental numpy contexts are BitContextModel.plane_contexts exactly."""
    model = _model()
    planes = _sparse_planes(shape, 5, seed=shape[-1])
    bits, ctxs = _recorded_scan(model, planes, version)
    want_bits, want_ctxs = _documented_order(model, planes, version)
    assert np.array_equal(bits, want_bits)
    assert np.array_equal(ctxs, want_ctxs)


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_decoding_with_another_table_is_refused_as_corrupt(version, seed):
    """Another model's table never yields planes silently: the coder rejects the stream, or
    the decoder finds data left over (v1, v2) or a stream that is not the re-encoding of
    what it decoded (v3)."""
    model = _model()
    planes = _planes((1, 3, 16, 16), 5, scale=6.0)
    payload, _ = encode_planes(planes, model, model.probability_table(), version)
    other = _model(seed=seed).probability_table()
    assert not np.array_equal(other, model.probability_table())
    with pytest.raises(BitstreamError, match="corrupt payload"):
        decode_planes(payload, model, other, planes.shape, version)
    assert torch.equal(decode_planes(payload, model, model.probability_table(), planes.shape, version), planes)


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
    try:
        torch.set_num_threads(2)  # a known count other than 1, whatever torch started with
        with pytest.raises(RuntimeError, match="boom"), single_thread():
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
        with single_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        with single_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
