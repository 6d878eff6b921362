"""Finding and reading training images: recursive folders, any common mode, 8-bit RGB out."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def find_images(root: str | os.PathLike) -> list[Path]:
    """All images below ``root`` (recursive), sorted for reproducibility."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) below {root}")
    return files


def read_rgb8(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8. 16-bit and float images are scaled, alpha is dropped, palettes
    and grayscale expanded: training always sees 8-bit RGB, like the codec's inputs."""
    with Image.open(path) as img:
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            a = np.asarray(img, dtype=np.float64)
            peak = 65535.0 if a.max() > 255 else 255.0
            return np.repeat((a / peak * 255 + 0.5).clip(0, 255).astype(np.uint8)[..., None], 3, -1)
        if img.mode == "F":
            a = np.asarray(img, dtype=np.float64)
            return np.repeat((a * 255 + 0.5).clip(0, 255).astype(np.uint8)[..., None], 3, -1)
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
