"""How many bytes of a file are header, per format, so sizes can be reported without them.

The paper compares file sizes with each format's header removed. "Header" here means the
bytes that describe the image rather than code its pixels; what counts is format-specific and
documented in docs/evaluation.md. Every function takes the whole file and returns the header's
length in bytes; payload = len(data) - header.
"""

from __future__ import annotations

import struct


class HeaderError(ValueError):
    """The bytes are not a well-formed file of the expected format."""


# -- JPEG ------------------------------------------------------------------------------------
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RST0..RST7 carry no length field


def jpeg_header_bytes(data: bytes) -> int:
    """Everything except the entropy-coded scan data (SOI, all marker segments, EOI)."""
    if data[:2] != b"\xff\xd8":
        raise HeaderError("not a JPEG (no SOI marker)")
    n, i, entropy = len(data), 2, 0
    while i < n:
        if data[i] != 0xFF:
            raise HeaderError(f"expected a marker at byte {i}")
        while i + 1 < n and data[i + 1] == 0xFF:  # fill bytes before a marker
            i += 1
        marker = data[i + 1]
        if marker == 0xD9:  # EOI
            break
        if marker in _STANDALONE:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        i += 2 + length
        if marker == 0xDA:  # SOS: entropy-coded data follows until the next real marker
            start = i
            while True:
                j = data.find(b"\xff", i)
                if j < 0 or j + 1 >= n:
                    i = n
                    break
                if data[j + 1] == 0x00 or 0xD0 <= data[j + 1] <= 0xD7:  # stuffing, restart
                    i = j + 2
                    continue
                i = j
                break
            entropy += i - start
    return n - entropy


# -- JPEG 2000 codestream --------------------------------------------------------------------
_J2K_NO_LENGTH = {0x4F, 0x93, 0xD9}  # SOC, SOD, EOC


def j2k_header_bytes(data: bytes) -> int:
    """Everything except the packet data of the tile-parts (main header, SOT..SOD, EOC)."""
    if data[:2] != b"\xff\x4f":
        raise HeaderError("not a JPEG 2000 codestream (no SOC marker); write it with no_jp2=True")
    n, i, packets = len(data), 2, 0
    while i + 1 < n:
        if data[i] != 0xFF:
            raise HeaderError(f"expected a marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xD9:
            break
        if marker in _J2K_NO_LENGTH:
            i += 2
            continue
        if marker == 0x90:  # SOT: Psot is the tile-part length from the SOT marker on
            (psot,) = struct.unpack(">I", data[i + 6 : i + 10])
            end = n - 2 if psot == 0 else i + psot
            j = i + 12
            while j + 1 < end and data[j : j + 2] != b"\xff\x93":  # tile-part header to SOD
                (length,) = struct.unpack(">H", data[j + 2 : j + 4])
                j += 2 + length
            packets += end - (j + 2)
            i = end
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        i += 2 + length
    return n - packets


# -- WebP ------------------------------------------------------------------------------------
def _riff_chunks(data: bytes):
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise HeaderError("not a WebP file")
    i = 12
    while i + 8 <= len(data):
        fourcc = data[i : i + 4]
        (size,) = struct.unpack("<I", data[i + 4 : i + 8])
        yield fourcc, i + 8, size
        i += 8 + size + (size & 1)


# Uncompressed frame headers at the start of the bitstream chunks: VP8 has a 3-byte frame tag,
# a 3-byte start code and 4 bytes of dimensions; VP8L a 1-byte signature and 4 bytes of fields.
_WEBP_FRAME_HEADER = {b"VP8 ": 10, b"VP8L": 5}


def webp_header_bytes(data: bytes) -> int:
    """Everything except the VP8/VP8L bitstream after its uncompressed frame header."""
    payload = sum(
        max(size - _WEBP_FRAME_HEADER[fourcc], 0)
        for fourcc, _, size in _riff_chunks(data)
        if fourcc in _WEBP_FRAME_HEADER
    )
    return len(data) - payload


# -- ISOBMFF (AVIF, HEIF) --------------------------------------------------------------------
def isobmff_header_bytes(data: bytes) -> int:
    """Everything except the payload of the ``mdat`` boxes (all other boxes count)."""
    n, i, payload = len(data), 0, 0
    while i + 8 <= n:
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        head = 8
        if size == 1:
            (size,) = struct.unpack(">Q", data[i + 8 : i + 16])
            head = 16
        elif size == 0:
            size = n - i
        if size < head or i + size > n:
            raise HeaderError(f"bad box size {size} at byte {i}")
        if kind == b"mdat":
            payload += size - head
        i += size
    if i != n:
        raise HeaderError("trailing bytes after the last box")
    return n - payload


# -- JPEG XL codestream ----------------------------------------------------------------------
class _Bits:
    """LSB-first bit reader, as the JPEG XL codestream is written."""

    def __init__(self, data: bytes, start: int):
        self.data, self.pos = data, start * 8

    def u(self, n: int) -> int:
        v = 0
        for k in range(n):
            byte = self.data[(self.pos + k) >> 3]
            v |= ((byte >> ((self.pos + k) & 7)) & 1) << k
        self.pos += n
        return v

    def u32(self, bits: tuple[int, ...]) -> int:
        selector = self.u(2)
        return 1 + self.u(bits[selector])


def jxl_header_bytes(data: bytes) -> int:
    """Signature, SizeHeader and ImageMetadata of a bare codestream, rounded up to whole bytes.

    Only the all-default ImageMetadata (a single bit, what libjxl writes for 8-bit sRGB lossy
    images) is parsed; anything else raises rather than guess.
    """
    if data[:2] != b"\xff\x0a":
        raise HeaderError("not a bare JPEG XL codestream (write it with use_container=False)")
    r = _Bits(data, 2)
    if r.u(1):  # small: sizes in multiples of 8 up to 256
        r.u(5)
        if r.u(3) == 0:
            r.u(5)
    else:
        r.u32((9, 13, 18, 30))
        if r.u(3) == 0:
            r.u32((9, 13, 18, 30))
    if not r.u(1):
        raise HeaderError("JPEG XL ImageMetadata is not all-default; its length is not parsed")
    return (r.pos + 7) // 8
