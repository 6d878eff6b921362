"""Header lengths per format: hand-built files, and real encoder output with lengths worked out
from the format specifications (not from our parser)."""

import io
import struct

import numpy as np
import pytest
from PIL import Image, features

from rtaic.evaluation import headers
from rtaic.evaluation.baselines import BASELINES


def _segment(marker: int, body: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body


def test_jpeg_hand_built_counts_everything_but_the_scan_data():
    scan = b"\x12\xff\x00\x34\xff\xd0\x56"  # stuffed 0xFF00 and a restart marker are scan data
    data = (b"\xff\xd8" + _segment(0xE0, b"J" * 14) + _segment(0xDB, b"q" * 65)
            + _segment(0xDA, b"s" * 10) + scan + b"\xff\xd9")
    assert headers.jpeg_header_bytes(data) == len(data) - len(scan) == 2 + 18 + 69 + 14 + 2


def test_jpeg_real_file_with_standard_tables():
    # libjpeg, baseline, standard Huffman tables, colour: SOI 2 + APP0/JFIF 18 + 2 DQT x 69 +
    # SOF0 19 + DHT 2 x 33 (DC) + 2 x 183 (AC) + SOS 14 + EOI 2 = 625 bytes.
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 70)).save(buf, "JPEG", quality=75)
    assert headers.jpeg_header_bytes(buf.getvalue()) == 625


def test_j2k_hand_built_counts_marker_segments_and_tile_part_headers():
    body = b"\x00" * 100
    tile_header = _segment(0x64, b"c" * 6)  # a COM inside the tile-part header: 10 bytes
    psot = 12 + len(tile_header) + 2 + len(body)
    sot = struct.pack(">BBHHIBB", 0xFF, 0x90, 10, 0, psot, 0, 1)
    data = (b"\xff\x4f" + _segment(0x51, b"s" * 41) + _segment(0x52, b"c" * 12)
            + sot + tile_header + b"\xff\x93" + body + b"\xff\xd9")
    # SOC 2 + SIZ 45 + COD 16 + SOT 12 + COM 10 + SOD 2 + EOC 2
    assert headers.j2k_header_bytes(data) == len(data) - 100 == 2 + 45 + 16 + 12 + 10 + 2 + 2


def test_j2k_real_openjpeg_file():
    # One tile, 3 components, 5 levels, irreversible: SOC 2 + SIZ (2+38+3*3) 49 + COD 14 +
    # QCD scalar-expounded (2+3+2*16) 37 + COM (2+4+text) + SOT 12 + SOD 2 + EOC 2.
    text = f"Created by OpenJPEG version {features.version('jpg_2000')}"
    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8))
    data = BASELINES["jpeg2000"].encode(im, 1.0)
    assert headers.j2k_header_bytes(data) == 2 + 49 + 14 + 37 + 6 + len(text) + 12 + 2 + 2


def test_webp_counts_riff_chunk_headers_padding_and_the_vp8_frame_header():
    vp8 = b"\x00" * 101  # odd size: one padding byte follows
    data = b"RIFF" + struct.pack("<I", 4 + 8 + 102 + 14) + b"WEBP"
    data += b"VP8 " + struct.pack("<I", 101) + vp8 + b"\x00" + b"EXIF" + struct.pack("<I", 6) + b"e" * 6
    assert headers.webp_header_bytes(data) == 12 + 8 + 10 + 1 + 14


def test_webp_real_file():
    im = Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    data = BASELINES["webp"].encode(im, 50)
    (size,) = struct.unpack("<I", data[16:20])
    assert data[12:16] == b"VP8 "
    assert headers.webp_header_bytes(data) == 12 + 8 + 10 + (size & 1)


def test_isobmff_counts_all_boxes_but_the_mdat_payload():
    ftyp = struct.pack(">I4s", 20, b"ftyp") + b"avif" + b"\0" * 8
    meta = struct.pack(">I4s", 50, b"meta") + b"m" * 42
    mdat = struct.pack(">I4s", 8 + 300, b"mdat") + b"d" * 300
    assert headers.isobmff_header_bytes(ftyp + meta + mdat) == 78
    large = struct.pack(">I4sQ", 1, b"mdat", 16 + 30) + b"d" * 30
    assert headers.isobmff_header_bytes(ftyp + large) == 20 + 16
    with pytest.raises(headers.HeaderError):
        headers.isobmff_header_bytes(ftyp + mdat[:-1])


@pytest.mark.parametrize("codec", ["avif", "hevc444"])
def test_isobmff_real_files_split_into_header_and_mdat(codec):
    im = Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = BASELINES[codec].encode(im, 50)
    i = data.index(b"mdat") - 4
    (size,) = struct.unpack(">I", data[i : i + 4])
    assert headers.isobmff_header_bytes(data) == len(data) - (size - 8)


def test_jxl_real_file_header_bits():
    # 100x60 is not a multiple of 8: SizeHeader = small(1) + U32 selector(2) + ysize-1 (9) +
    # ratio(3) + selector(2) + xsize-1 (9) = 26 bits; all-default ImageMetadata 1 bit. With the
    # 16-bit signature: 43 bits -> 6 bytes.
    im = Image.fromarray(np.random.default_rng(3).integers(0, 255, (60, 100, 3), dtype=np.uint8))
    assert headers.jxl_header_bytes(BASELINES["jxl"].encode(im, 50)) == 6
    # 768x512: ysize-1 = 511 in 9 bits, ratio 3:2 -> 15 bits + 1: 32 bits -> 4 bytes.
    assert headers.jxl_header_bytes(b"\xff\x0a\xf8\xcf\x01") == 4


def test_wrong_format_is_refused():
    for fn in (headers.jpeg_header_bytes, headers.j2k_header_bytes, headers.webp_header_bytes,
               headers.jxl_header_bytes):
        with pytest.raises(headers.HeaderError):
            fn(b"RIFX0000garbage!")
