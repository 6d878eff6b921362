"""A stand-in for ``rtaic.load_codec`` in tests: a "checkpoint" is a text file with a JPEG
quality, and the "bitstream" is a 4-byte tag followed by the JPEG 4:2:0 baseline's file."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from rtaic.evaluation.baselines import BASELINES
from rtaic.evaluation.headers import jpeg_header_bytes

TAG = b"FAKE"


class FakeCodec:
    def __init__(self, quality: int):
        self.quality = quality

    def compress(self, image: Image.Image) -> bytes:
        return TAG + BASELINES["jpeg420"].encode(image, self.quality)

    def decompress(self, data: bytes) -> Image.Image:
        assert data[:4] == TAG
        with Image.open(io.BytesIO(data[4:])) as im:
            return im.convert("RGB")

    def header_bytes(self, data: bytes) -> int:
        return len(TAG) + jpeg_header_bytes(data[4:])


def load_fake(path: str) -> FakeCodec:
    return FakeCodec(int(Path(path).read_text()))
