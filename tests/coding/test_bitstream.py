"""The .rtaic format: every malformed input is a BitstreamError, never a crash or a wrong image."""

from __future__ import annotations

import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec_helpers import TINY, make_checkpoint, photo
from rtaic.codec import load_codec
from rtaic.coding import bitstream
from rtaic.coding.bitstream import HEADER_SIZE, BitstreamError, Header, pack, unpack

HEADER = Header(
    fingerprint=b"12345678",
    width=48,
    height=40,
    mode="RGB",
    color_space="rgb",
    bits=5,
    tile=1024,
    margin=128,
    latent_shape=(4, 5, 6),
)


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    return load_codec(make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"))


@pytest.fixture(scope="module")
def real(codec):
    """A real bitstream and the image it decodes to."""
    data = codec.compress(photo(40, 24))
    return data, np.asarray(codec.decompress(data))


def _with_crc(fields: bytes, payload: bytes) -> bytes:
    """Re-seal a (possibly tampered) header so that only the semantic checks can refuse it."""
    crc = zlib.crc32(payload, zlib.crc32(fields))
    return fields + struct.pack("<I", crc) + payload


def test_header_size_is_38_bytes():
    assert HEADER_SIZE == 38
    assert len(pack(HEADER, b"")) == 38


def test_pack_unpack_round_trip():
    payload = bytes(range(16))
    header, out = unpack(pack(HEADER, payload))
    assert out == payload
    assert header == replace(HEADER, payload_length=16)


def test_wrong_magic():
    data = pack(HEADER, b"abcd")
    with pytest.raises(BitstreamError, match="magic"):
        unpack(b"PNG\x00" + data[4:])
    with pytest.raises(BitstreamError, match="magic"):
        unpack(b"")


def test_unknown_version():
    data = bytearray(pack(HEADER, b"abcd"))
    data[4] = 99
    with pytest.raises(BitstreamError, match="version 99"):
        unpack(bytes(data))


def test_every_truncation_is_refused():
    data = pack(HEADER, b"abcdefgh")
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            unpack(data[:n])


def test_trailing_data_is_refused():
    with pytest.raises(BitstreamError, match="trailing"):
        unpack(pack(HEADER, b"abcd") + b"x")


def test_every_single_bit_flip_is_refused(real):
    data, _ = real
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(BitstreamError):
            unpack(bytes(flipped))


@pytest.mark.parametrize(
    "change",
    [
        dict(width=0),
        dict(height=70000 - 65535),  # fine by itself: paired with width below
        dict(width=65535, height=65535),  # absurd: 4 Gpx
        dict(bits=40),
        dict(tile=0),
        dict(margin=-8),
        dict(latent_shape=(0, 5, 6)),
        dict(latent_shape=(100000, 5, 6)),
        dict(fingerprint=b"short"),
        dict(mode="XYZ"),
        dict(color_space="lab"),
    ],
)
def test_absurd_fields_are_refused_on_both_sides(change):
    header = replace(HEADER, **change)
    try:
        header.validate()
    except BitstreamError:
        with pytest.raises(BitstreamError):
            pack(header, b"")
        return
    except (struct.error, ValueError):
        pytest.fail("validate must raise BitstreamError only")
    assert change == dict(height=70000 - 65535)  # the only valid one


def test_absurd_fields_with_a_valid_checksum_are_refused():
    """A crafted file (correct CRC) still cannot make the decoder allocate gigabytes."""
    good = pack(HEADER, b"")
    fields = bytearray(good[: HEADER_SIZE - 4])
    struct.pack_into("<HH", fields, 13, 65535, 65535)  # width, height
    with pytest.raises(BitstreamError, match="exceeds"):
        unpack(_with_crc(bytes(fields), b""))
    fields = bytearray(good[: HEADER_SIZE - 4])
    fields[17] = 200  # mode code
    with pytest.raises(BitstreamError, match="mode"):
        unpack(_with_crc(bytes(fields), b""))


def test_mismatched_model_is_refused(real, tmp_path):
    data, _ = real
    other = load_codec(make_checkpoint(tmp_path / "other.ckpt", seed=1))
    with pytest.raises(BitstreamError, match="different model"):
        other.decompress(data)
    wider = replace(TINY, latent_channels=5)
    with pytest.raises(BitstreamError, match="different model"):
        load_codec(make_checkpoint(tmp_path / "wider.ckpt", arch=wider)).decompress(data)


def test_latent_shape_must_match_the_model(codec, real):
    data, _ = real
    header, payload = unpack(data)
    c, h, w = header.latent_shape
    for shape in [(c + 1, h, w), (c, h + 1, w), (c, h, w - 1)]:
        forged = pack(replace(header, latent_shape=shape), payload)
        with pytest.raises(BitstreamError, match="does not match"):
            codec.decompress(forged)


def test_corrupt_payload_with_a_resealed_checksum_never_crashes(codec, real):
    """Beyond the CRC (a forged file): the coder and the leftover check still refuse, or
    the result is at least an image of the promised size and mode."""
    data, _ = real
    for i in range(HEADER_SIZE, len(data)):
        forged = bytearray(data)
        forged[i] ^= 0x5A
        resealed = _with_crc(bytes(forged[: HEADER_SIZE - 4]), bytes(forged[HEADER_SIZE:]))
        try:
            image = codec.decompress(resealed)
        except BitstreamError:
            continue
        assert image.size == (40, 24) and image.mode == "RGB"


@pytest.fixture(scope="module")
def real_cut(codec, real):
    """A valid cut of the real (version 3) file, about half its length, and its image."""
    data, _ = real
    cut = codec.truncate(data, len(data) // 2)
    assert HEADER_SIZE < len(cut) < len(data)
    return cut, np.asarray(codec.decompress(cut))


def _mutate(data, original: bytes) -> bytes:
    kind = data.draw(st.sampled_from(["flip", "byte", "truncate", "insert", "delete", "splice"]))
    b = bytearray(original)
    if kind == "flip":
        for i in data.draw(st.lists(st.integers(0, 8 * len(b) - 1), min_size=1, max_size=8)):
            b[i // 8] ^= 1 << (i % 8)
    elif kind == "byte":
        b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.integers(0, 255))
    elif kind == "truncate":
        b = b[: data.draw(st.integers(0, len(b) - 1))]
    elif kind == "insert":
        i = data.draw(st.integers(0, len(b)))
        b[i:i] = data.draw(st.binary(min_size=1, max_size=16))
    elif kind == "delete":
        i = data.draw(st.integers(0, len(b) - 1))
        del b[i : i + data.draw(st.integers(1, 16))]
    else:
        i = data.draw(st.integers(0, len(b)))
        b = b[:i] + bytearray(data.draw(st.binary(max_size=64)))
    return bytes(b)


def _refused_or_same(codec, mutated: bytes, original: bytes, image) -> None:
    try:
        decoded = codec.decompress(mutated)
    except BitstreamError:
        return
    assert mutated == original
    assert np.array_equal(np.asarray(decoded), image)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_and_truncated_bitstreams(codec, real, data):
    """Any mutation of a real file: BitstreamError, or (a no-op mutation) the same image."""
    original, image = real
    _refused_or_same(codec, _mutate(data, original), original, image)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_and_truncated_cut_bitstreams(codec, real_cut, data):
    """The same for a valid cut of a version-3 file (a file of its own)."""
    original, image = real_cut
    _refused_or_same(codec, _mutate(data, original), original, image)


def test_format_tables_are_append_only():
    """Codes are written into files: the first entries must never move."""
    assert bitstream.MODES[:3] == ("RGB", "L", "RGBA")
    assert bitstream.COLOR_SPACES == ("rgb", "ycbcr")
    assert bitstream.MAGIC == b"RTAI" and bitstream.VERSION == 3
    assert bitstream.READABLE_VERSIONS[:3] == (1, 2, 3)  # old files stay readable
