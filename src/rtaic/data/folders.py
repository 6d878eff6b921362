"""Finding, identifying and reading images: folders, content hashes, any mode to 8-bit RGB."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image

from rtaic.imageio import prepare

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".ppm", ".tif", ".tiff")


def find_images(root: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Images below ``root`` (in sub-folders too unless ``recursive=False``), sorted for
    reproducibility."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    candidates = root.rglob("*") if recursive else root.iterdir()
    files = sorted(p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) below {root}")
    return files


def sha256_file(path: str | os.PathLike) -> str:
    """Content hash of a file: identifies an image whatever its name (caches, downloads)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_rgb8(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8: the file as the codec reads it (:func:`rtaic.imageio.prepare`, one
    reading path: 16-bit values / 65535, float images on 0..255, palettes and grey expanded
    to RGB), rounded to 8 bits; alpha is dropped (the codec refuses transparency)."""
    with Image.open(path) as img:
        img.load()
        return prepare(img, drop_alpha=True).rgb8()
