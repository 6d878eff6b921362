"""The default data set when none is configured: colour photographs shipped by scikit-image.

So that ``python train.py`` runs on a fresh machine with nothing downloaded.
"""

from __future__ import annotations

from pathlib import Path

TRAIN_SAMPLES = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "retina.jpg",
    "chessboard_RGB.png",
    "color.png",
)
VAL_SAMPLES = ("rocket.jpg", "motorcycle_right.png")


def sample_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def sample_images(split: str) -> list[Path]:
    names = TRAIN_SAMPLES if split == "train" else VAL_SAMPLES
    paths = [sample_dir() / n for n in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"scikit-image does not ship the sample images {missing}")
    return paths
