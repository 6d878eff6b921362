"""RDOQ (rtaic.coding.rdoq): an encoder choice that the unchanged decoder reads.

The rate model must be the coder's own ideal length; the greedy search must take exactly
the per-value decisions a brute-force evaluation takes; lambda 0 must be the plain encoder;
every level stays in the quantizer's range and J = D + lambda R never rises.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rtaic.coding.arithmetic import decode_embedded, encode_embedded
from rtaic.coding.bitplanes import from_bitplanes, to_bitplanes
from rtaic.coding.bitstream import unpack
from rtaic.coding.context import BitContextModel
from rtaic.coding.quantize import max_level, quantize_levels
from rtaic.coding.rdoq import RateModel, _box3, channel_weights, rdoq_levels


def _model(channels: int, bits: int, seed: int = 0) -> tuple[BitContextModel, np.ndarray]:
    torch.manual_seed(seed)
    m = BitContextModel(channels, bits)
    with torch.no_grad():
        m.logits.copy_(torch.randn_like(m.logits) * 2.0 - 1.0)
    return m, m.probability_table()


def _latent(shape, scale: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.tanh(torch.randn(shape, generator=g) * scale)


@pytest.mark.parametrize("shape,bits", [((1, 3, 9, 14), 5), ((2, 4, 6, 5), 6), ((1, 2, 1, 7), 5),
                                        ((1, 3, 16, 12), 6)])  # fmt: skip
def test_the_rate_model_is_the_coders_ideal_code_length(shape, bits):
    model, table = _model(shape[1], bits, seed=sum(shape))
    levels = quantize_levels(_latent(shape, 0.6, seed=1), bits)
    levels[:, 1] = 0  # an empty channel: its slices are not coded
    ideal = encode_embedded(to_bitplanes(levels, bits), model, table).ideal
    assert RateModel(model, table).bits_of(levels) == pytest.approx(ideal, rel=1e-12, abs=1e-9)


def _objective(levels, y, rate, lam, weights) -> float:
    """J = D + lambda R of the module doc, R the true ideal length."""
    bits = rate.bits
    u = y.double().numpy() * 2 ** (bits - 1)
    w = np.asarray(weights)[None, :, None, None]
    d = float((w * (u + 0.5 - levels.numpy()) ** 2).sum())
    return d + lam * rate.bits_of(levels)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 2), c=st.integers(1, 4), h=st.integers(1, 11), w=st.integers(1, 11),
    bits=st.integers(2, 7), scale=st.floats(0.05, 4.0), lam=st.floats(0.0, 20.0),
    seed=st.integers(0, 2**16), passes=st.integers(1, 3),
)  # fmt: skip
def test_every_level_stays_in_range_and_the_objective_never_rises(n, c, h, w, bits, scale, lam, seed,
                                                                  passes):  # fmt: skip
    model, table = _model(c, bits, seed)
    y = _latent((n, c, h, w), scale, seed)
    if seed % 3 == 0:  # values at the quantizer's ends
        y = y.sign() * (1 - 1e-6) * (y.abs() > 0.5) + y * (y.abs() <= 0.5)
    plain = quantize_levels(y, bits)
    weights = np.random.default_rng(seed).uniform(0.2, 3.0, c)
    new = rdoq_levels(plain, y, model, table, lam, weights, passes=passes)
    m = max_level(bits)
    assert new.dtype == torch.int32 and new.shape == plain.shape
    assert int(new.abs().max()) <= m
    assert int((new - plain).abs().max()) <= passes  # one step per value per pass
    rate = RateModel(model, table)
    assert _objective(new, y, rate, lam, weights) <= _objective(plain, y, rate, lam, weights) + 1e-6
    # and the levels are a latent the coder round-trips
    planes = to_bitplanes(new, bits)
    enc = encode_embedded(planes, model, table)
    dec = decode_embedded(enc.payload(), model, table, tuple(planes.shape))
    assert torch.equal(from_bitplanes(dec.planes), new)


def _brute_force(levels, y, model, table, lam, weights, passes):
    """The same greedy, value by value: each value of a grid is judged against the state
    before that grid by the total code length with only it changed (slices coded as at the
    start of the pass), then the grid's decisions are applied together."""
    rate = RateModel(model, table)
    bits = model.bits
    m, planes = max_level(bits), bits - 1
    lv, chan = rate.slices(levels.numpy().astype(np.int32))
    lv = lv.copy()
    u = y.double().numpy().reshape(lv.shape) * 2 ** (bits - 1) + 0.5
    wc = np.tile(np.asarray(weights, float), levels.shape[0])
    s, h, w = lv.shape
    for _ in range(passes):
        mag = np.abs(lv).astype(np.int16)
        active = rate.active(mag)

        def total(a, active=active):
            return rate.costs(np.abs(a).astype(np.int16), a < 0, chan, active).sum()

        for a in range(3):
            for b in range(3):
                before, r0 = lv.copy(), total(lv)
                for si in range(s):
                    for i in range(a, h, 3):
                        for j in range(b, w, 3):
                            k = before[si, i, j]
                            cand = k - 1 if u[si, i, j] < k else k + 1
                            if abs(cand) > m or any(not active[p, si] and (abs(cand) >> (planes - 1 - p)) & 1
                                                    for p in range(planes)):  # fmt: skip
                                continue
                            trial = before.copy()
                            trial[si, i, j] = cand
                            dj = wc[si] * ((u[si, i, j] - cand) ** 2 - (u[si, i, j] - k) ** 2)
                            dj += lam * (total(trial) - r0)
                            if dj < 0:
                                lv[si, i, j] = cand
    return torch.from_numpy(lv.reshape(levels.shape))


@pytest.mark.parametrize("seed", [0, 1])
def test_the_greedy_search_takes_exactly_the_brute_force_decisions(seed):
    """The 3 x 3 grid trick (all values of a grid changed at once, their rate changes read
    off disjoint windows) is exact: the same decisions as changing values one at a time."""
    shape, bits = (1, 2, 7, 8), 5
    model, table = _model(shape[1], bits, seed)
    y = _latent(shape, 0.5, seed)
    plain = quantize_levels(y, bits)
    weights = np.array([0.7, 1.6])
    fast = rdoq_levels(plain, y, model, table, 0.4, weights, passes=2)
    assert torch.equal(fast, _brute_force(plain, y, model, table, 0.4, weights, passes=2))
    assert not torch.equal(fast, plain)  # it did change something


def test_lambda_zero_and_none_change_nothing():
    model, table = _model(3, 6)
    y = _latent((1, 3, 8, 8), 1.0, 0)
    plain = quantize_levels(y, 6)
    assert torch.equal(rdoq_levels(plain, y, model, table, 0.0), plain)
    with pytest.raises(ValueError):
        rdoq_levels(plain, y, model, table, -0.1)


def test_box3_is_a_3x3_sum():
    a = np.arange(2 * 4 * 5, dtype=float).reshape(2, 4, 5)
    out = _box3(a)
    assert out[1, 1, 1] == a[1, 0:3, 0:3].sum() and out[0, 0, 0] == a[0, 0:2, 0:2].sum()
    assert out[1, 3, 4] == a[1, 2:4, 3:5].sum()


def test_channel_weights_follow_the_decoder_reads(codec):
    w = channel_weights(codec.autoencoder)
    assert w.shape == (codec.architecture.latent_channels,) and w.mean() == pytest.approx(1.0)
    dec = codec.autoencoder.decoder
    read = dec.joint[0].weight.detach().double().pow(2).sum(dim=(0, 2, 3))
    read = read + dec.lowpass.weight.detach().double().pow(2).sum(dim=(0, 2, 3))
    np.testing.assert_allclose(w, (read / read.mean()).numpy(), rtol=1e-12)


def test_channel_weights_of_the_patch_form_count_each_channels_block():
    """Architecture.patch: the linear path's transposed conv holds the latent channels in
    its first dimension; a channel whose block is painted twice as strongly weighs more."""
    from codec_helpers import TINY
    from rtaic.nn.autoencoder import Architecture, Autoencoder

    ae = Autoencoder(Architecture(**{**TINY.to_dict(), "patch": True}))
    with torch.no_grad():
        ae.decoder.joint[0].weight.zero_()
        ae.decoder.lowpass.weight.fill_(0.1)
        ae.decoder.lowpass.weight[1] *= 2
    w = channel_weights(ae)
    assert w.shape == (TINY.latent_channels,)
    assert w[1] == pytest.approx(4 * w[0]) and w[0] == pytest.approx(w[2])


# -- through the codec ---------------------------------------------------------------------


def test_codec_rdoq_zero_gives_the_plain_bytes(codec):
    from codec_helpers import photo

    image = photo(56, 40, seed=3)
    plain = codec.compress(image)
    assert codec.compress(image, rdoq=0) == plain and codec.compress(image, rdoq=None) == plain
    assert codec.encode_progressive(image, rdoq=0.0).data() == plain
    with pytest.raises(ValueError):
        codec.compress(image, rdoq=-1)


def test_codec_rdoq_files_decode_with_the_unchanged_decoder(codec):
    from codec_helpers import photo

    image = photo(56, 40, seed=4)
    plain = codec.compress(image)
    r = codec.encode(image, rdoq=2.0, reconstruct=True)
    assert r.data != plain and len(r.data) < len(plain)
    header, payload = unpack(r.data)
    # the same header but for the payload's length: same model, image, tiling and format
    assert replace(header, payload_length=0) == replace(unpack(plain)[0], payload_length=0)
    # the payload holds exactly the levels RDOQ chose, and decodes to the encoder's image
    c, h, w = header.latent_shape
    dec = decode_embedded(payload, codec.context_model, codec.table, (1, header.bits, c, h, w))
    assert torch.equal(from_bitplanes(dec.planes), codec.latent_levels(image, rdoq=2.0))
    assert np.array_equal(np.asarray(codec.decompress(r.data)), np.asarray(r.reconstruction))
    assert r.timings["rdoq"] > 0
    # cut files of an RDOQ encode decode too
    prog = codec.encode_progressive(image, rdoq=2.0)
    assert prog.data() == r.data
    cut = prog.cuts()[len(prog.cuts()) // 2]
    assert codec.decompress(prog.data(cut)).size == image.size


def test_tiled_images_give_the_whole_latent(ckpt):
    """The continuous latent RDOQ reads is assembled tile by tile like the levels."""
    from codec_helpers import photo
    from rtaic.codec import load_codec

    codec = load_codec(ckpt, tile=256, margin=64)
    image = photo(330, 280, seed=2)  # 2 x 2 tiles
    levels, latent = codec.latents(image)
    assert torch.equal(levels, codec.latent_levels(image))
    assert torch.equal(quantize_levels(latent, codec.architecture.bits), levels)
    new = codec.latent_levels(image, rdoq=1.0)
    assert not torch.equal(new, levels)
    data = codec.compress(image, rdoq=1.0)
    assert codec.decompress(data).size == image.size and len(data) < len(codec.compress(image))


def _crops() -> list[Image.Image]:
    from rtaic.data.samples import sample_images

    out = []
    for path, box in zip(sample_images("train")[:3], [(100, 60), (150, 80), (200, 120)], strict=True):
        with Image.open(path) as im:
            out.append(im.convert("RGB").crop((*box, box[0] + 128, box[1] + 96)))
    return out


def test_over_a_lambda_sweep_on_real_images_the_mean_size_falls():
    from rtaic import zoo
    from rtaic.codec import load_codec

    path = zoo.default_model()
    if path is None:
        pytest.skip("no bundled default model")
    codec = load_codec(path)
    crops = _crops()
    sizes = [np.mean([len(codec.compress(im, rdoq=lam)) for im in crops])
             for lam in (0.0, 0.01, 0.03, 0.1, 0.3)]  # fmt: skip
    assert all(a > b for a, b in zip(sizes, sizes[1:], strict=False)), sizes
    assert sizes[-1] < 0.9 * sizes[0]
