"""The .rtaic file format: a fixed 38-byte header + the range coder's payload (docs/bitstream.md).

All integers little-endian, packed with :mod:`struct` (no pickle). The CRC-32 at the end of
the header covers every header byte before it and the whole payload, so a flipped bit
anywhere is refused instead of decoded into a wrong image. Every problem with a bitstream,
whatever its cause, raises :class:`BitstreamError`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"RTAI"
VERSION = 4  # what this rtaic writes: version 3's payload over the image's own latent positions
# 1: every slice coded, Bernoulli model; 2: all signs last; 3: the embedded (progressive)
# payload, coding/embedded.py, over the whole latent grid of the padded image; 4: version 3
# without the latent positions wholly beyond the image (always 0, so not coded)
READABLE_VERSIONS = (1, 2, 3, 4)

# Code <-> name tables are part of the format: append only, never reorder.
MODES = ("RGB", "L", "RGBA", "LA", "P", "1", "I;16", "I", "F", "CMYK", "YCbCr", "HSV", "RGBX")
COLOR_SPACES = ("rgb", "ycbcr")

# Sanity limits, checked before anything is allocated.
MAX_SIDE = 65535  # the header's u16 fields
MAX_PIXELS = 2**27  # 134 Mpx: about 0.4 GB of decoded RGB
MAX_LATENT_CHANNELS = 4096
MAX_PAYLOAD = 2**31
# Network tiling (docs/bitstream.md, "Tiling"): every tile is computed with its margin of
# context, so a tiny tile with a huge margin would make each tile process the whole image
# (a 54-byte file then decoded for minutes). Within these bounds a tile's region is at most
# (1 + 2 x 1/2)^2 = 4 times its own area, there are at most pixels / 256^2 tiles, and no
# region exceeds 4096 x 4096 pixels: decode time and memory follow the real pixel count.
MIN_TILE = 256
MAX_TILE = 2048
# and 0 <= margin <= tile / 2

#  magic, version, fingerprint, width, height, mode, colour space, bits, tile, margin,
#  latent C, latent H, latent W, payload length | crc32
_FIELDS = struct.Struct("<4sB8sHHBBBHHHHHI")
_CRC = struct.Struct("<I")
HEADER_SIZE = _FIELDS.size + _CRC.size  # 38 bytes


class BitstreamError(ValueError):
    """The data is not a valid rtaic bitstream for this model (any reason)."""


@dataclass(frozen=True)
class Header:
    fingerprint: bytes  # 8 bytes identifying the model (architecture, table, weights)
    width: int
    height: int
    mode: str  # the PIL mode decompress() returns
    color_space: str
    bits: int  # B
    tile: int  # tile size in pixels, a multiple of the model stride
    margin: int  # tile overlap on each side in pixels, a multiple of the model stride
    latent_shape: tuple[int, int, int]  # (C, H, W) of the coded latent
    payload_length: int = 0
    version: int = VERSION  # the payload layout (the header is the same in all versions)

    def validate(self) -> None:
        """Refuse values no valid encoder writes (before anything is allocated)."""
        if self.version not in READABLE_VERSIONS:
            raise BitstreamError(f"unsupported bitstream version {self.version}")
        if len(self.fingerprint) != 8:
            raise BitstreamError("fingerprint must be 8 bytes")
        if not (1 <= self.width <= MAX_SIDE and 1 <= self.height <= MAX_SIDE):
            raise BitstreamError(f"image size {self.width}x{self.height} out of range")
        if self.width * self.height > MAX_PIXELS:
            raise BitstreamError(f"image of {self.width}x{self.height} exceeds {MAX_PIXELS} pixels")
        if self.mode not in MODES:
            raise BitstreamError(f"unknown image mode {self.mode!r}")
        if self.color_space not in COLOR_SPACES:
            raise BitstreamError(f"unknown colour space {self.color_space!r}")
        if not 2 <= self.bits <= 16:
            raise BitstreamError(f"B = {self.bits} out of range [2, 16]")
        if not (MIN_TILE <= self.tile <= MAX_TILE and 0 <= 2 * self.margin <= self.tile):
            raise BitstreamError(f"bad tiling: tile {self.tile}, margin {self.margin} (tile "
                                 f"{MIN_TILE}..{MAX_TILE} pixels, margin 0..tile/2)")  # fmt: skip
        c, h, w = self.latent_shape
        if not (1 <= c <= MAX_LATENT_CHANNELS and 1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
            raise BitstreamError(f"latent shape {self.latent_shape} out of range")
        if h * w > MAX_PIXELS:
            raise BitstreamError(f"latent shape {self.latent_shape} out of range")
        if not 0 <= self.payload_length <= MAX_PAYLOAD or self.payload_length % 4:
            raise BitstreamError(f"bad payload length {self.payload_length}")


def pack(header: Header, payload: bytes) -> bytes:
    """Header + payload -> file bytes (the header's payload_length is set here)."""
    from dataclasses import replace

    header = replace(header, payload_length=len(payload))
    header.validate()
    c, h, w = header.latent_shape
    fields = _FIELDS.pack(
        MAGIC,
        header.version,
        header.fingerprint,
        header.width,
        header.height,
        MODES.index(header.mode),
        COLOR_SPACES.index(header.color_space),
        header.bits,
        header.tile,
        header.margin,
        c,
        h,
        w,
        header.payload_length,
    )
    crc = zlib.crc32(payload, zlib.crc32(fields))
    return fields + _CRC.pack(crc) + bytes(payload)


def unpack(data: bytes) -> tuple[Header, bytes]:
    """File bytes -> (header, payload), checking magic, version, length, sanity and CRC."""
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise BitstreamError("not an rtaic bitstream (bad magic)")
    if len(data) < len(MAGIC) + 1:
        raise BitstreamError("truncated header")
    version = data[len(MAGIC)]
    if version not in READABLE_VERSIONS:
        readable = ", ".join(map(str, READABLE_VERSIONS))
        raise BitstreamError(f"unsupported bitstream version {version} (this rtaic reads {readable})")
    if len(data) < HEADER_SIZE:
        raise BitstreamError(f"truncated header ({len(data)} of {HEADER_SIZE} bytes)")
    fields = data[: _FIELDS.size]
    (_, _, fp, width, height, mode, space, bits, tile, margin, c, h, w, length) = _FIELDS.unpack(
        fields
    )
    (crc,) = _CRC.unpack_from(data, _FIELDS.size)
    payload = data[HEADER_SIZE:]
    if len(payload) != length:
        what = "truncated" if len(payload) < length else "trailing data after the payload"
        raise BitstreamError(f"{what}: header says {length} payload bytes, found {len(payload)}")
    if zlib.crc32(payload, zlib.crc32(fields)) != crc:
        raise BitstreamError("checksum mismatch: the file is corrupt")
    if mode >= len(MODES):
        raise BitstreamError(f"unknown image mode code {mode}")
    if space >= len(COLOR_SPACES):
        raise BitstreamError(f"unknown colour space code {space}")
    header = Header(fp, width, height, MODES[mode], COLOR_SPACES[space], bits, tile, margin,
                    (c, h, w), length, version)  # fmt: skip
    header.validate()
    return header, payload
