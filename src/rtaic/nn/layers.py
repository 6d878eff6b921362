"""Small building blocks shared by the encoder and decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NEGATIVE_SLOPE = 0.2  # leaky ReLU slope of the paper


def act() -> nn.Module:
    return nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True)


def conv(cin: int, cout: int, kernel: int = 3) -> nn.Conv2d:
    """Stride-1 'same' convolution."""
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2)


def resample(cin: int, cout: int, log2_factor: int) -> nn.Module:
    """Map a tensor by 2**log2_factor in resolution: >0 downsamples with a strided conv,
    <0 upsamples with a transposed conv, 0 is a 1x1 conv (kernel = stride, no overlap)."""
    if log2_factor == 0:
        return nn.Conv2d(cin, cout, 1)
    k = 2 ** abs(log2_factor)
    if log2_factor > 0:
        return nn.Conv2d(cin, cout, k, stride=k)
    return nn.ConvTranspose2d(cin, cout, k, stride=k)


def extractor(cin: int, cout: int, depth: int) -> nn.Sequential:
    """Per-scale feature extractor: a 3x3 conv then (depth - 1) 1x1 convs, leaky ReLUs."""
    layers: list[nn.Module] = [conv(cin, cout, 3), act()]
    for _ in range(depth - 1):
        layers += [conv(cout, cout, 1), act()]
    return nn.Sequential(*layers)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N, C, H, W) on the bottom and right up to a multiple; returns the original size.

    Replicate padding keeps the border smooth (cheap to code); any size from 1x1 works.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)
