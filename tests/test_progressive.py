"""Progressive files (bitstream version 3) through the codec API: every valid cut is a file
of the whole image, max_bytes on both sides, truncate, and files of a requested size."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from codec_helpers import make_checkpoint, photo
from rtaic.codec import SMALLEST_FILE, load_codec
from rtaic.coding.bitstream import HEADER_SIZE, BitstreamError, unpack
from rtaic.sizing import (
    TruncatedCodec,
    bytes_for_bpp,
    fit_to_size,
    parse_size,
    split_truncated,
    truncated_name,  # fmt: skip
)


@pytest.fixture(scope="module")
def prog(codec):
    return codec.encode_progressive(photo(90, 70, seed=2))


def _same(a: Image.Image, b: Image.Image) -> bool:
    return a.mode == b.mode and a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


def _reseal(data: bytes, payload: bytes) -> bytes:
    """The header of ``data`` over another payload, length and CRC updated."""
    fields = bytearray(data[: HEADER_SIZE - 4])
    struct.pack_into("<I", fields, HEADER_SIZE - 8, len(payload))
    return bytes(fields) + struct.pack("<I", zlib.crc32(payload, zlib.crc32(bytes(fields)))) + payload


def test_the_whole_file_is_what_compress_writes(codec, prog):
    data = codec.compress(photo(90, 70, seed=2))
    assert prog.data() == data and unpack(data)[0].version == 4
    assert _same(codec.decompress(data), prog.reconstruction())


def test_every_valid_cut_decodes_to_the_full_image_size(codec, prog):
    data = prog.data()
    sizes = codec.cut_sizes(data)  # recovered from the stream by the decoder
    assert sizes == sorted({prog.size(k) for k in prog.cuts()})
    assert sizes[0] == SMALLEST_FILE and sizes[-1] == len(data) and len(sizes) > 10
    for units in prog.cuts():
        cut = prog.data(units)
        assert len(cut) == prog.size(units)
        header, payload = unpack(cut)  # header and CRC of a file of its own
        assert header.version == 4 and header.payload_length == len(payload) == len(cut) - HEADER_SIZE
        result = codec.decode(cut)
        assert result.image.size == (90, 70) and result.image.mode == "RGB"
        assert result.complete == (cut == data)
        assert _same(result.image, prog.reconstruction(units))  # what the encoder predicts
        assert _same(codec.decompress(data, max_bytes=len(cut)), result.image)
        assert codec.truncate(data, len(cut)) == cut
        assert codec.truncate(data, len(cut) + 3) == cut  # the longest cut that fits


def test_compress_to_a_byte_budget(codec, prog):
    image = photo(90, 70, seed=2)
    sizes = [prog.size(k) for k in prog.cuts()]
    for budget in (SMALLEST_FILE, 60, 200, len(prog.data()) // 2, len(prog.data()) - 1, 10**6):
        data = codec.compress(image, max_bytes=budget)
        assert len(data) <= budget
        assert len(data) == max(s for s in sizes if s <= budget)
        assert codec.decompress(data).size == image.size
    with pytest.raises(ValueError, match="smallest file"):
        codec.compress(image, max_bytes=SMALLEST_FILE - 1)
    with pytest.raises(ValueError, match="smallest file"):
        codec.decompress(prog.data(), max_bytes=10)


def test_a_cut_before_any_bit_is_the_mean_image(codec, prog):
    empty = prog.data(0)
    assert len(empty) == SMALLEST_FILE
    assert _same(codec.decompress(empty), prog.reconstruction(0))


def test_cuts_of_cuts(codec, prog):
    middle = prog.cuts()[len(prog.cuts()) // 2]
    cut = prog.data(middle)
    for units in prog.cuts()[: len(prog.cuts()) // 2 + 1]:
        assert codec.truncate(cut, prog.size(units)) == prog.data(units)
        assert _same(codec.decompress(cut, max_bytes=prog.size(units)), prog.reconstruction(units))
    assert codec.cut_sizes(cut)[-1] == len(cut)


def test_cuts_at_invalid_points_are_refused(codec, prog):
    """Any other prefix of the payload, even with header and CRC made to fit (with the
    'whole' cut field it had, or with the cut field of any valid cut), is refused."""
    data = prog.data()
    _, payload = unpack(data)
    stream = prog.stream
    fields = [(None, payload[:4])] + [(k, struct.pack("<I", k)) for k in range(0, stream.units, 5)]
    for n in range(0, len(payload)):
        if n > 0:
            with pytest.raises(BitstreamError):
                codec.decompress(data[: HEADER_SIZE + n])  # header untouched
        for k, field in fields:
            forged = field + payload[4:n]
            if k is not None and len(forged) == 4 + 4 * stream.words_for(k):
                continue  # the valid cut after k units
            with pytest.raises(BitstreamError):
                codec.decompress(_reseal(data, forged))


def test_midpoint_reconstruction_beats_zero_filling(codec, prog):
    """Missing low bits at the middle of their interval, not at zero: closer to the whole
    file's latent on average."""
    import torch

    from rtaic.coding.bitplanes import from_bitplanes
    from rtaic.coding.embedded import mask_unknown, partial_levels

    levels = from_bitplanes(prog.planes).float()
    better = 0
    cuts = prog.cuts()[1:-1]
    for units in cuts:
        known = torch.from_numpy(prog.stream.known(units))
        masked = mask_unknown(prog.planes, known)
        mid = (partial_levels(masked, known) - levels).abs().mean()
        zero = (from_bitplanes(masked).float() - levels).abs().mean()
        better += bool(mid <= zero)
    assert better == len(cuts)


def test_version_3_files_keep_decoding_after_a_reload(ckpt, prog):
    again = load_codec(ckpt)
    for units in prog.cuts()[::7]:
        assert _same(again.decompress(prog.data(units)), prog.reconstruction(units))


# -- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, n", [("20000", 20000), ("20KB", 20000), ("20kb", 20000), ("20KiB", 20480),
                                     ("1.5MB", 1_500_000), ("2MiB", 2 * 1024**2), ("10 KB", 10000), (123, 123)])  # fmt: skip
def test_parse_size(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["", "KB", "20XB", "-5KB", "1e3"])
def test_parse_size_refuses_nonsense(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_bytes_for_bpp():
    assert bytes_for_bpp(0.3, 768, 512) == 14745
    with pytest.raises(ValueError):
        bytes_for_bpp(0, 10, 10)


@pytest.fixture
def two_model_zoo(tmp_path, monkeypatch):
    """A manifest with two RGB models (low, high) and a legacy one."""
    from rtaic import zoo

    models = tmp_path / "models"
    models.mkdir()
    entries = {}
    for seed, (name, extra) in enumerate([("low", {"target_bpp": 0.1}), ("high", {"target_bpp": 1.0}),
                                          ("old", {"target_bpp": 0.5, "legacy": True})]):
        make_checkpoint(models / f"{name}.ckpt", seed=seed)
        entries[name] = {"file": f"{name}.ckpt", "fingerprint": load_codec(models / f"{name}.ckpt").fingerprint.hex(),
                         "color_space": "rgb", **extra}
    (models / "manifest.json").write_text(json.dumps({"default": "low", "models": entries}))
    monkeypatch.setattr(zoo, "MODELS_DIR", models)
    monkeypatch.setattr(zoo, "MANIFEST", models / "manifest.json")
    return models


def test_fit_to_size_picks_a_zoo_model_and_a_cut(two_model_zoo):
    image = photo(120, 80, seed=1)
    low, high = (load_codec(two_model_zoo / f"{n}.ckpt") for n in ("low", "high"))
    whole = {n: len(c.compress(image)) for n, c in (("low", low), ("high", high))}
    for target in (SMALLEST_FILE + 40, min(whole.values()) // 2, max(whole.values()) - 5, 10**6):
        choice = fit_to_size(image, target)
        assert len(choice.data) <= target
        assert [c.model.split("/")[-1] for c in choice.candidates][:1] == ["low.ckpt"]
        assert all("old" not in c.model for c in choice.candidates)  # legacy models are not used
        codec = load_codec(choice.model)
        assert codec.decompress(choice.data).size == image.size
        if len(choice.candidates) > 1 and any(c.bytes >= 0.97 * target for c in choice.candidates):
            assert len(choice.data) >= 0.97 * target
            within = [c for c in choice.candidates if c.bytes >= 0.97 * target]
            if len(within) > 1:  # compared by MS-SSIM (PSNR below its minimum size)
                assert choice.msssim == max(c.msssim for c in within)
    assert fit_to_size(image, 10**6).whole
    import rtaic

    assert rtaic.compress_to_size(image, "1MB") == fit_to_size(image, 10**6).data


def test_fit_to_size_with_given_models(codec):
    image = photo(60, 50)
    whole = len(codec.compress(image))
    choice = fit_to_size(image, whole // 2, models=[("tiny", codec)])
    assert choice.model == "tiny" and not choice.whole and len(choice.data) <= whole // 2
    assert len(choice.candidates) == 1 and choice.msssim is None
    with pytest.raises(ValueError, match="smallest"):
        fit_to_size(image, 10, models=[("tiny", codec)])


def test_truncated_model_names_for_the_evaluation(ckpt, codec, prog):
    name = truncated_name(ckpt, 0.25)
    assert name.endswith("tiny@0.25.ckpt")
    assert split_truncated(name) == (str(ckpt), 0.25)
    assert split_truncated(str(ckpt)) == (str(ckpt), None)
    from rtaic.evaluation.measure import load

    cut = load(name)
    assert isinstance(cut, TruncatedCodec)
    image = photo(90, 70, seed=2)
    data = cut.compress(image)
    assert len(data) <= 0.25 * len(prog.data()) and len(data) == max(
        s for s in (prog.size(k) for k in prog.cuts()) if s <= 0.25 * len(prog.data()))
    assert _same(cut.decompress(data), prog.reconstruction(unpack(data)[1] and prog.cut_for(len(data))))
