"""Lossless bitplane decomposition of the quantized latent (paper 3.2.2).

Layout (sign + magnitude, so the high planes are sparse when the latent is small):

    planes[:, 0 .. B-2] = magnitude bits |k|, most significant first
    planes[:, B-1]      = sign bit (1 = negative), 0 wherever the magnitude is 0

levels (N, C, H, W) int  <->  planes (N, B, C, H, W) uint8
"""

from __future__ import annotations

import torch

from rtaic.coding.quantize import max_level


def to_bitplanes(levels: torch.Tensor, bits: int) -> torch.Tensor:
    if levels.dim() != 4:
        raise ValueError(f"expected (N, C, H, W) levels, got shape {tuple(levels.shape)}")
    levels = levels.to(torch.int32)
    m = max_level(bits)
    if levels.numel() and int(levels.abs().max()) > m:
        raise ValueError(f"levels exceed the {bits}-bit range [-{m}, {m}]")
    mag = levels.abs()
    shifts = torch.arange(bits - 2, -1, -1, device=levels.device, dtype=torch.int32)
    mag_planes = (mag.unsqueeze(1) >> shifts.view(1, -1, 1, 1, 1)) & 1
    sign = (levels < 0).to(torch.int32).unsqueeze(1)
    return torch.cat([mag_planes, sign], dim=1).to(torch.uint8)


def magnitude(planes: torch.Tensor, upto: int | None = None) -> torch.Tensor:
    """Magnitude made of the first ``upto`` magnitude planes (all by default), as int32,
    in units of the least significant of those planes."""
    bits = planes.shape[1]
    upto = bits - 1 if upto is None else upto
    mag = torch.zeros(planes[:, 0].shape, dtype=torch.int32, device=planes.device)
    for p in range(upto):
        mag = (mag << 1) | planes[:, p].to(torch.int32)
    return mag


def from_bitplanes(planes: torch.Tensor) -> torch.Tensor:
    if planes.dim() != 5:
        raise ValueError(f"expected (N, B, C, H, W) planes, got shape {tuple(planes.shape)}")
    mag = magnitude(planes)
    return torch.where(planes[:, -1].bool(), -mag, mag)
