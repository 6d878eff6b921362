"""Format stability: committed .rtaic files of every payload version decode, forever, to
the committed latent levels and pixels (tests/golden/make_golden.py made them once; these
tests only read them and never regenerate anything).

The latent levels are exact on any machine (integer contexts and table). The pixels are
those of the float32 decoder; docs/bitstream.md ("Same pixels") allows another CPU
family or torch build to differ by one level on rare rounding boundaries: if only
``pixels_sha256`` fails there while ``levels_sha256`` passes, that is the cause, not a
format change.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from make_golden import (
    HERE,
    decode,
    golden_codec,
    inputs,
    levels_digest,
    older_version,
    pixel_digest,
)
from PIL import Image

from rtaic.coding import bitstream

GOLDEN = json.loads((HERE / "golden.json").read_text())
_CODECS: dict = {}


def _codec(model: str):
    if model not in _CODECS:
        _CODECS[model] = golden_codec(HERE / model)
    return _CODECS[model]


def test_every_payload_version_and_the_interesting_inputs_are_covered():
    versions = {g["version"] for g in GOLDEN.values()}
    assert versions == set(bitstream.READABLE_VERSIONS) == {1, 2, 3, 4}
    assert {g["mode"] for g in GOLDEN.values()} == {"RGB", "L", "I;16"}
    assert {g["color_space"] for g in GOLDEN.values()} == {"rgb", "ycbcr"}
    assert all((HERE / name).stat().st_size < 512 for name in GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_file_decodes_to_its_levels_and_pixels(name):
    g = GOLDEN[name]
    data = (HERE / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == g["file_sha256"], "the golden file itself changed"
    header, _ = bitstream.unpack(data)
    assert (header.version, header.mode, header.color_space, [header.width, header.height]) == (
        g["version"], g["mode"], g["color_space"], g["size"])  # fmt: skip
    codec = _codec(g["model"])
    levels, image = decode(codec, data)
    assert levels_digest(levels) == g["levels_sha256"], "the entropy decoder reads other levels"
    assert image.mode == g["mode"] and list(image.size) == g["size"]
    assert pixel_digest(image) == g["pixels_sha256"], "the same levels give other pixels"
    result = codec.decode(data)
    assert result.complete == ("cut" not in name) and result.bytes_used == len(data)


@pytest.mark.parametrize("version", [1, 2])
def test_older_versions_decode_only_whole(version):
    data = (HERE / f"v{version}_rgb_48x32.rtaic").read_bytes()
    codec = _codec("tiny_rgb.ckpt")
    assert pixel_digest(codec.decompress(data, max_bytes=len(data))) == GOLDEN[
        f"v{version}_rgb_48x32.rtaic"]["pixels_sha256"]  # fmt: skip
    with pytest.raises(ValueError, match="cannot be cut"):
        codec.decompress(data, max_bytes=len(data) - 4)


def test_the_encoder_still_writes_the_golden_bytes():
    """Today's encoder, on the committed sources, writes the committed files byte for byte
    (versions 1 to 3 through the writer make_golden.py uses). The encoder's networks are
    float32: on another CPU a latent value on a quantization boundary may legitimately be
    coded one level apart (docs/bitstream.md); the decode tests above are the format."""
    rgb, ycbcr = _codec("tiny_rgb.ckpt"), _codec("tiny_ycbcr.ckpt")
    for tag in ("48x32", "37x23"):
        with Image.open(HERE / f"source_{tag}.png") as im:
            image = im.convert("RGB")
        v4 = rgb.compress(image)
        assert v4 == (HERE / f"v4_rgb_{tag}.rtaic").read_bytes()
        for version in (1, 2, 3):
            assert older_version(rgb, image, v4, version) == (HERE / f"v{version}_rgb_{tag}.rtaic").read_bytes()
        v3 = (HERE / f"v3_rgb_{tag}.rtaic").read_bytes()
        if tag == "37x23":
            for mode, source in inputs(image).items():
                if mode != "rgb":
                    v3_mode = older_version(rgb, source, rgb.compress(source), 3)
                    assert v3_mode == (HERE / f"v3_{mode}_{tag}.rtaic").read_bytes()
        else:
            v3_ycbcr = older_version(ycbcr, image, ycbcr.compress(image), 3)
            assert v3_ycbcr == (HERE / "v3_ycbcr_48x32.rtaic").read_bytes()
            cut = (HERE / "v3cut_rgb_48x32.rtaic").read_bytes()
            assert rgb.truncate(v3, len(cut)) == cut
