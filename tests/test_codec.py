"""The codec API: exact round trips for any size and mode, tiling, determinism, honesty."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

import rtaic
from codec_helpers import TINY, make_checkpoint, photo
from rtaic.checkpoint import CheckpointError, load_networks
from rtaic.codec import Codec, load_codec
from rtaic.coding.arithmetic import encode_embedded, encode_planes
from rtaic.coding.bitplanes import to_bitplanes
from rtaic.coding.bitstream import HEADER_SIZE, BitstreamError, unpack
from rtaic.coding.context import code_length_bits
from rtaic.coding.quantize import dequantize, quantize_levels
from rtaic.imageio import ImageModeError


def _same(a: Image.Image, b: Image.Image) -> bool:
    return a.mode == b.mode and a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (13, 1), (7, 7), (48, 40), (65, 33)])
def test_decoded_image_is_the_encoders_reconstruction(codec, size):
    image = photo(*size)
    result = codec.encode(image, reconstruct=True)
    decoded = codec.decompress(result.data)
    assert decoded.size == size and decoded.mode == "RGB"
    assert _same(decoded, result.reconstruction)


def test_codec_runs_the_autoencoder_exactly(codec):
    """Within one tile the codec is the autoencoder: same levels, same reconstruction."""
    image = photo(45, 30)
    x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255
    ae, bits = codec.autoencoder, TINY.bits
    with torch.inference_mode():
        levels = quantize_levels(ae.encode(x), bits)
        x_hat = ae.decode(dequantize(levels, bits), x.shape[-2:])
    expected = (x_hat.clamp(0, 1) * 255).round().byte()[0].permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(codec.decompress(codec.compress(image))), expected)
    result = codec.encode(image)
    planes = to_bitplanes(levels, bits)
    assert levels.abs().max() >= 2  # the test exercises several planes
    # version 3 codes the bits version 2 codes, signs with slightly different neighbours
    assert result.estimated_bits == pytest.approx(
        encode_embedded(planes, codec.context_model, codec.table).ideal, rel=1e-12
    )
    assert result.estimated_bits == pytest.approx(
        code_length_bits(codec.table, codec.context_model, planes, skip_empty=True), rel=0.05
    )


def test_real_size_is_the_estimate_plus_header(codec):
    result = codec.encode(photo(200, 120))
    payload_bits = 8 * (len(result.data) - HEADER_SIZE)
    assert result.estimated_bits > 2000
    assert abs(payload_bits - result.estimated_bits) <= 0.01 * result.estimated_bits + 64


def test_compression_is_deterministic(codec, ckpt):
    image = photo(50, 30, seed=3)
    assert codec.compress(image) == codec.compress(image) == load_codec(ckpt).compress(image)


def test_tiled_codec_is_exact_and_close_to_untiled(ckpt):
    """Several tiles (6 of 256 px): the decoder reproduces the encoder's reconstruction;
    with margins wider than the receptive field the tiles join seamlessly."""
    image = photo(700, 300)
    tiled = load_codec(ckpt, tile=256, margin=64)
    whole = load_codec(ckpt)
    result = tiled.encode(image, reconstruct=True)
    assert unpack(result.data)[0].tile == 256
    decoded = whole.decompress(result.data)  # tiling comes from the header, not the codec
    assert _same(decoded, result.reconstruction)
    diff = np.abs(np.asarray(decoded, np.int16) - np.asarray(whole.decompress(whole.compress(image)), np.int16))
    assert diff.mean() < 0.1


def test_tile_and_margin_are_aligned_to_the_stride_and_bounded(ckpt):
    c = load_codec(ckpt, tile=300, margin=3)
    assert (c.tile, c.margin) == (304, 8)
    assert (load_codec(ckpt, tile=256, margin=128).tile, load_codec(ckpt, tile=2048).tile) == (256, 2048)
    for tile, margin in [(0, 0), (10, 3), (248, 0), (2049, 0), (256, 129), (1024, 1024)]:
        with pytest.raises(ValueError, match="tiling"):
            load_codec(ckpt, tile=tile, margin=margin)


def _rgb(w=20, h=12):
    return photo(w, h)


@pytest.mark.parametrize(
    "make, mode",
    [
        (lambda: _rgb().convert("L"), "L"),
        (lambda: _rgb().convert("1"), "1"),
        (lambda: _rgb().convert("P"), "P"),
        (lambda: _rgb().convert("RGBA"), "RGBA"),
        (lambda: _rgb().convert("LA"), "LA"),
        (lambda: _rgb().convert("PA"), "RGBA"),
        (lambda: _rgb().convert("RGBa"), "RGBA"),
        (lambda: _rgb().convert("CMYK"), "CMYK"),
        (lambda: _rgb().convert("YCbCr"), "YCbCr"),
        (lambda: _rgb().convert("HSV"), "HSV"),
        (lambda: _rgb().convert("RGBX"), "RGBX"),
        (lambda: _rgb().convert("LAB"), "RGB"),
        (lambda: Image.fromarray((np.arange(240).reshape(12, 20) * 270).astype(np.uint16)), "I;16"),
        (lambda: Image.fromarray((np.arange(240).reshape(12, 20) * 270).astype(np.int32)), "I"),
        (lambda: Image.fromarray((np.arange(240).reshape(12, 20) / 1.0).astype(np.float32)), "F"),
    ],
)
def test_modes_come_back(codec, make, mode):
    image = make()
    result = codec.encode(image, reconstruct=True)
    decoded = codec.decompress(result.data)
    assert decoded.mode == mode and decoded.size == image.size
    assert _same(decoded, result.reconstruction)
    if mode in ("RGBA", "LA"):
        assert decoded.getchannel("A").getextrema() == (255, 255)


def test_sixteen_bit_input_keeps_its_precision(ckpt):
    """16-bit grey is coded from the 16-bit values, not from an 8-bit copy."""
    codec = load_codec(ckpt)
    seen = []
    # the finest scale's first layer sees the image (last call: the codec checks its own
    # forward against the module's on a random image before the first use)
    codec.autoencoder.encoder.extract[0].register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    grey = np.full((8, 8), 1000, np.uint16)  # 1000 / 65535: between two 8-bit steps
    codec.compress(Image.fromarray(grey))
    assert torch.allclose(seen[-1], torch.full_like(seen[-1], 1000 / 65535))


def test_transparency_is_refused_clearly(codec):
    image = _rgb().convert("RGBA")
    image.putpixel((3, 3), (1, 2, 3, 128))
    with pytest.raises(ImageModeError, match="transparency"):
        codec.compress(image)
    p = _rgb().convert("P")
    p.info["transparency"] = p.getpixel((0, 0))
    with pytest.raises(ImageModeError, match="transparency"):
        codec.compress(p)


def test_read_header_checks_the_file_against_the_model(codec, tmp_path):
    """docs/bitstream.md: a caller decoding untrusted files reads the size first."""
    from rtaic.coding.bitstream import BitstreamError

    data = codec.compress(photo(30, 20))
    header = codec.read_header(data)
    assert header == unpack(data)[0] and (header.width, header.height) == (30, 20)
    other = load_codec(make_checkpoint(tmp_path / "other.ckpt", seed=1))
    with pytest.raises(BitstreamError, match="different model"):
        other.read_header(data)


def test_bad_arguments(codec, tmp_path):
    with pytest.raises(TypeError):
        codec.compress(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(CheckpointError):
        load_codec(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_codec(tmp_path / "junk.ckpt")


def test_package_exports(ckpt):
    """The lazy top-level names are the codec's own, and the package docstring's use works."""
    from rtaic.sizing import compress_to_size

    assert rtaic.Codec is Codec and rtaic.load_codec is load_codec
    assert rtaic.compress_to_size is compress_to_size
    assert set(rtaic.__all__) == {"Codec", "load_codec", "compress_to_size", "__version__"}
    with pytest.raises(AttributeError, match="no_such_name"):
        rtaic.no_such_name  # noqa: B018
    image = photo(20, 12)
    data = rtaic.load_codec(ckpt).compress(image)
    assert data == rtaic.Codec(load_networks(ckpt)).compress(image)
    assert _same(rtaic.load_codec(ckpt).decompress(data), Codec(load_networks(ckpt)).decompress(data))


def test_import_boundaries():
    """The codec runs without the training stack, and `import rtaic` does not load torch."""
    code = textwrap.dedent(
        """
        import sys
        import rtaic
        assert "torch" not in sys.modules, "import rtaic loaded torch"
        import rtaic.cli, rtaic.codec
        rtaic.load_codec
        bad = [m for m in sys.modules if m.split(".")[0] in
               ("lightning", "pytorch_lightning", "hydra", "wandb", "omegaconf")
               or m.startswith("rtaic.training")]
        assert not bad, bad
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


DECODE_ELSEWHERE = """
import sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))
from rtaic.codec import load_codec
image = load_codec(sys.argv[1]).decompress(open(sys.argv[2], "rb").read())
np.save(sys.argv[2] + ".npy", np.asarray(image))
print(torch.get_num_threads())
"""


def test_decodes_identically_in_another_process_with_other_threads(ckpt, tmp_path):
    codec = load_codec(ckpt)
    result = codec.encode(photo(90, 70), reconstruct=True)
    path = tmp_path / "image.rtaic"
    path.write_bytes(result.data)
    threads = 1 if torch.get_num_threads() > 1 else 2
    out = subprocess.run(
        [sys.executable, "-c", DECODE_ELSEWHERE, str(ckpt), str(path), str(threads)],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert int(out.stdout) == threads != torch.get_num_threads()
    assert np.array_equal(np.load(str(path) + ".npy"), np.asarray(result.reconstruction))


def test_ycbcr_model_through_the_codec(tmp_path):
    """A YCbCr model: the header says so, the networks see YCbCr and their output is turned
    back into RGB (checked against skimage's BT.601 conversion, full range as JPEG's), the
    decoded image is the encoder's reconstruction, and the YCbCr MS-SSIM the evaluation
    reports is the 6:1:1 mean of pytorch-msssim on skimage's YCbCr channels."""
    from dataclasses import replace

    from pytorch_msssim import ms_ssim
    from skimage.color import rgb2ypbpr, ypbpr2rgb

    from rtaic.evaluation.measure import quality_metrics, to_tensor

    codec = load_codec(make_checkpoint(tmp_path / "ycbcr.ckpt", replace(TINY, color_space="ycbcr")))
    image = photo(72, 56, seed=4)  # multiples of the stride 8: no padding
    result = codec.encode(image, reconstruct=True)
    header, _ = unpack(result.data)
    assert header.color_space == "ycbcr" and header.mode == "RGB"
    decoded = codec.decompress(result.data)
    assert _same(decoded, result.reconstruction)

    offset = np.array([0.0, 0.5, 0.5])

    def ycbcr(img):  # (H, W, 3) uint8 RGB -> (1, 3, H, W) float64 YCbCr in [0, 1]
        return torch.from_numpy(rgb2ypbpr(np.asarray(img) / 255.0) + offset).permute(2, 0, 1)[None]

    ae, bits = codec.autoencoder, TINY.bits
    levels = codec.latent_levels(image)
    with torch.inference_mode():
        assert torch.equal(quantize_levels(ae.encoder(ycbcr(image).float()), bits), levels)
        out = ae.decoder(dequantize(levels, bits))[0].permute(1, 2, 0).double().numpy()
    rgb = np.round(np.clip(ypbpr2rgb(out - offset), 0, 1) * 255)
    diff = np.abs(rgb - np.asarray(decoded, np.float64))
    assert diff.max() <= 1 and diff.mean() < 0.01
    as_if_rgb = np.round(np.clip(out, 0, 1) * 255)  # what skipping the conversion would give
    assert np.abs(as_if_rgb - np.asarray(decoded, np.float64)).mean() > 5

    reported = quality_metrics(to_tensor(image), to_tensor(decoded))["msssim_ycbcr"]
    a, b = ycbcr(image), ycbcr(decoded)
    per_channel = [float(ms_ssim(a[:, c : c + 1], b[:, c : c + 1], data_range=1.0, win_size=3))
                   for c in range(3)]  # fmt: skip
    expected = (6 * per_channel[0] + per_channel[1] + per_channel[2]) / 8
    assert 0 < expected < 0.999  # an untrained model: far from perfect, but not degenerate
    assert reported == pytest.approx(expected, abs=1e-5)


def test_latent_positions_wholly_beyond_the_image_are_coded_as_zero(tmp_path):
    """A model whose padding multiple (16) exceeds its latent stride (8) has latent rows and
    columns that see only padding: the codec codes them as zero, which the networks alone
    would not, and the image's own levels are the networks' ones."""
    import dataclasses

    arch = dataclasses.replace(TINY, channels=(4, 6, 8, 8, 8))
    codec = load_codec(make_checkpoint(tmp_path / "five_scales.ckpt", arch))
    assert (arch.stride, arch.latent_stride) == (16, 8)
    image = photo(35, 19, seed=3)  # padded to 48 x 32: latent 6 x 4, the image's 5 x 3
    levels = codec.latent_levels(image)
    x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        networks = quantize_levels(codec.autoencoder.encode(x), arch.bits)
    assert levels.shape == networks.shape == (1, arch.latent_channels, 4, 6)
    assert networks[..., 3:, :].abs().sum() > 0 and networks[..., :, 5:].abs().sum() > 0
    assert levels[..., 3:, :].abs().sum() == 0 and levels[..., :, 5:].abs().sum() == 0
    assert torch.equal(levels[..., :3, :5], networks[..., :3, :5])
    result = codec.encode(image, reconstruct=True)
    assert _same(codec.decompress(result.data), result.reconstruction)


def test_latent_positions_beyond_the_image_are_not_coded(tmp_path):
    """Version 4 codes only the latent positions that touch the image: a model whose
    stride (4 scales: 8 px) exceeds its latent stride (4 px) pads 37x17 to 40x24, a 6x10
    latent grid of which the last row lies wholly in the padding. The file is smaller
    than the version-3 file of the same levels and decodes to the same image."""
    from dataclasses import replace

    from rtaic.coding import bitstream

    arch = replace(TINY, channels=(8, 12, 16, 16), latent_stride_log2=2)
    codec = load_codec(make_checkpoint(tmp_path / "m.ckpt", arch))
    image = photo(37, 17, seed=4)
    assert codec.latent_shape(17, 37) == (4, 6, 10) and codec.coded_shape(17, 37) == (4, 5, 10)
    assert codec.coded_shape(17, 37, version=3) == (4, 6, 10)
    result = codec.encode(image, reconstruct=True)
    header, _ = unpack(result.data)
    assert header.version == 4 and header.latent_shape == (4, 5, 10)
    levels = codec.latent_levels(image)
    assert levels.shape == (1, 4, 6, 10) and not levels[..., 5:, :].any() and levels[..., :5, :].any()
    # the same levels as a version-3 file: the whole grid coded
    v3 = bitstream.pack(replace(header, version=3, latent_shape=(4, 6, 10)),
                        encode_planes(to_bitplanes(levels, arch.bits), codec.context_model, codec.table, 3)[0])  # fmt: skip
    assert len(v3) > len(result.data)
    assert _same(codec.decompress(v3), codec.decompress(result.data))
    assert _same(codec.decompress(result.data), result.reconstruction)
    # a header that claims the whole grid in version 4 (or the cropped one in 3) is refused
    for bad in (replace(header, latent_shape=(4, 6, 10)), replace(header, version=3)):
        with pytest.raises(BitstreamError):
            codec.decompress(bitstream.pack(bad, unpack(result.data)[1]))
