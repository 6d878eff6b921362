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


# Width of the box filter that smooths the border row and column before they are extended.
BORDER_SMOOTHING = 33


def blurred_edges(x: torch.Tensor, width: int = BORDER_SMOOTHING) -> tuple[torch.Tensor, torch.Tensor]:
    """The last row (N, C, W) and last column (N, C, H) of (N, C, H, W), each box-filtered
    along itself (``width`` taps, replicated at its ends)."""
    row, col = x[..., -1, :], x[..., :, -1]

    def blur(v: torch.Tensor) -> torch.Tensor:
        return F.avg_pool1d(F.pad(v, (width // 2, width // 2), mode="replicate"), width, stride=1)

    return blur(row), blur(col)


def extend(x: torch.Tensor, ph: int, pw: int, row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, h + ph, w + pw): rows below repeat ``row`` (N, C, w), columns
    to the right repeat ``col`` (N, C, h), the corner is their corner values' mean.

    With the image's blurred edges (:func:`blurred_edges`) the padding is smooth along the
    border: replicating the last row itself paints stripes of its texture that the encoder
    then pays for (about 0.7% of the bits on 481x321 images)."""
    if not (ph or pw):
        return x
    n, c, h, w = x.shape
    out = x.new_empty((n, c, h + ph, w + pw))
    out[..., :h, :w] = x
    out[..., h:, :w] = row[..., None, :]
    out[..., :h, w:] = col[..., :, None]
    out[..., h:, w:] = ((row[..., -1] + col[..., -1]) / 2)[..., None, None]
    return out


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N, C, H, W) on the bottom and right up to a multiple (:func:`extend` with the
    blurred edges, as the codec pads); returns the original size. Any size from 1x1 works."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return extend(x, ph, pw, *blurred_edges(x)), (h, w)
