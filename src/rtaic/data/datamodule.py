"""LightningDataModule over image folders (or the shipped samples when none is set).

Training draws random crops with horizontal flips; an 'epoch' is a fixed number of crops
(``crops_per_epoch``) so that schedules are counted in steps whatever the data set size.
Decoded images are cached in memory (uint8), since decoding a megapixel PNG per crop
would dominate a CPU training step. Validation uses centre crops (``val_crop_size``) or
whole images (``val_crop_size: null``, batch size 1).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from rtaic.data.folders import find_images, read_rgb8
from rtaic.data.samples import sample_images


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float().div_(255)


def _pad_to(a: np.ndarray, size: int) -> np.ndarray:
    h, w = a.shape[:2]
    if h >= size and w >= size:
        return a
    return np.pad(a, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="reflect")


class _Images:
    """Paths plus a lazily filled in-memory cache of decoded images."""

    def __init__(self, paths: list[Path], cache: bool) -> None:
        self.paths, self.cache = paths, cache
        self._store: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        if i in self._store:
            return self._store[i]
        a = read_rgb8(self.paths[i])
        if self.cache:
            self._store[i] = a
        return a


class RandomCrops(Dataset):
    def __init__(self, images: _Images, crop_size: int, length: int) -> None:
        self.images, self.crop_size, self.length = images, crop_size, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = random  # seeded (per worker too) by Lightning's seed_everything(workers=True)
        a = _pad_to(self.images[index % len(self.images)], self.crop_size)
        h, w = a.shape[:2]
        top, left = rng.randrange(h - self.crop_size + 1), rng.randrange(w - self.crop_size + 1)
        crop = a[top : top + self.crop_size, left : left + self.crop_size]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return _to_tensor(crop)


class CentreCrops(Dataset):
    def __init__(self, images: _Images, crop_size: int | None) -> None:
        self.images, self.crop_size = images, crop_size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        a = self.images[index]
        if self.crop_size:
            a = _pad_to(a, self.crop_size)
            h, w = a.shape[:2]
            top, left = (h - self.crop_size) // 2, (w - self.crop_size) // 2
            a = a[top : top + self.crop_size, left : left + self.crop_size]
        return _to_tensor(a)


def _resolve(path: str | os.PathLike | None) -> Path | None:
    return None if path in (None, "") else Path(os.path.expanduser(str(path))).resolve()


class ImageDataModule(pl.LightningDataModule):
    def __init__(
        self,
        root: str | None = None,
        val_root: str | None = None,
        crop_size: int = 128,
        val_crop_size: int | None = 256,
        batch_size: int = 8,
        val_batch_size: int = 8,
        crops_per_epoch: int = 8000,
        val_fraction: float = 0.05,
        max_val_images: int | None = 32,
        num_workers: int = 0,
        cache_images: bool = True,
    ) -> None:
        super().__init__()
        self.root, self.val_root = _resolve(root), _resolve(val_root)
        self.crop_size, self.val_crop_size = crop_size, val_crop_size
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size if val_crop_size else 1
        self.crops_per_epoch, self.val_fraction = crops_per_epoch, val_fraction
        self.max_val_images, self.num_workers, self.cache = max_val_images, num_workers, cache_images

    def split(self) -> tuple[list[Path], list[Path]]:
        """(train, val) image paths. Without val_root, every k-th image of root is held out."""
        if self.root is None:
            return sample_images("train"), sample_images("val")
        images = find_images(self.root)
        if self.val_root is not None:
            train, val = images, find_images(self.val_root)
        else:
            k = max(2, round(1 / self.val_fraction))
            val = images[::k]
            train = [p for i, p in enumerate(images) if i % k]
        if self.max_val_images:
            val = val[: self.max_val_images]
        return train, val

    def setup(self, stage: str | None = None) -> None:
        train, val = self.split()
        self.train_set = RandomCrops(_Images(train, self.cache), self.crop_size, self.crops_per_epoch)
        self.val_set = CentreCrops(_Images(val, self.cache), self.val_crop_size)

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=shuffle,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.val_batch_size, False)
