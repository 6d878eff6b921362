"""One rate-distortion point: encode to real bytes, decode, score the decoded 8-bit image.

The same record serves the baselines and our own checkpoints, so the report treats them alike.
Bits always come from ``len(bytes)`` of a real file (never from an entropy estimate), and the
metrics compare the decoded 8-bit image with the original 8-bit image.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

from rtaic.metrics import ciede2000, psnr, weighted_msssim

# Bump when a field's meaning or a metric's definition changes: it invalidates cached records.
RECORD_VERSION = 2  # 2: ciede2000


@dataclass
class Record:
    codec: str  # baseline name, or "rtaic" for our checkpoints
    quality: str  # the codec's setting (a number as text), or the checkpoint's file name
    image: str  # file name
    sha256: str  # of the original file
    width: int
    height: int
    file_bytes: int  # the whole file as written
    header_bytes: int  # part of file_bytes that is header (docs/evaluation.md)
    bpp: float  # 8 * file_bytes / pixels
    bpp_payload: float  # 8 * (file_bytes - header_bytes) / pixels
    msssim_rgb: float
    msssim_ycbcr: float
    psnr_rgb: float
    psnr_y: float
    ciede2000: float  # mean CIEDE2000 colour difference (sees hue shifts that MS-SSIM misses)
    encode_s: float
    decode_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> (1, 3, H, W) float64 in [0, 1]."""
    arr = np.array(image.convert("RGB"), dtype=np.float64) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)


def quality_metrics(original: torch.Tensor, decoded: torch.Tensor) -> dict[str, float]:
    """MS-SSIM (RGB 1:1:1, YCbCr 6:1:1), PSNR (RGB, luma) and mean CIEDE2000 of two 8-bit
    images as tensors."""
    from rtaic.color import rgb_to_ycbcr

    x, y = original.float(), decoded.float()
    y_luma = rgb_to_ycbcr(original)[:, :1], rgb_to_ycbcr(decoded)[:, :1]
    return {
        "msssim_rgb": float(weighted_msssim(x, y, "rgb")[0]),
        "msssim_ycbcr": float(weighted_msssim(x, y, "ycbcr")[0]),
        "psnr_rgb": float(psnr(original, decoded)[0]),
        "psnr_y": float(psnr(*y_luma)[0]),
        "ciede2000": float(ciede2000(original, decoded)[0]),
    }


def measure(
    codec: str,
    quality: str,
    image: Image.Image,
    original: torch.Tensor,
    name: str,
    sha256: str,
    encode: Callable[[Image.Image], bytes],
    decode: Callable[[bytes], Image.Image],
    header_bytes: Callable[[bytes], int],
) -> Record:
    """Time one encode and one decode, then score the decoded image against the original."""
    t0 = time.perf_counter()
    data = encode(image)
    t1 = time.perf_counter()
    decoded = decode(data).convert("RGB")
    t2 = time.perf_counter()
    if decoded.size != image.size:
        raise ValueError(f"{codec} q={quality} decoded {decoded.size}, expected {image.size}")
    pixels = image.width * image.height
    head = header_bytes(data)
    return Record(
        codec=codec, quality=str(quality), image=name, sha256=sha256,
        width=image.width, height=image.height,
        file_bytes=len(data), header_bytes=head,
        bpp=8 * len(data) / pixels, bpp_payload=8 * (len(data) - head) / pixels,
        **quality_metrics(original, to_tensor(decoded)),
        encode_s=t1 - t0, decode_s=t2 - t1,
    )
