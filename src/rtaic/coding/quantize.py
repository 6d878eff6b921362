"""B-bit quantization (paper 3.2.1): q = ceil(2^(B-1) y) / 2^(B-1), straight-through.

The encoder bounds y to (-1, 1); the integer levels k = ceil(2^(B-1) y) are clamped to
[-(2^(B-1) - 1), 2^(B-1) - 1] so that a sign bit plus B-1 magnitude bits hold them
exactly (see :mod:`rtaic.coding.bitplanes`).
"""

from __future__ import annotations

import torch


def max_level(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def quantize_levels(y: torch.Tensor, bits: int) -> torch.Tensor:
    """Continuous latent -> integer levels (int32), no gradient."""
    scale = 2 ** (bits - 1)
    m = max_level(bits)
    return torch.ceil(y.detach() * scale).clamp_(-m, m).to(torch.int32)


def dequantize(levels: torch.Tensor, bits: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return levels.to(dtype) / 2 ** (bits - 1)


def quantize(y: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantized value in the forward pass, identity gradient in the backward pass."""
    q = dequantize(quantize_levels(y, bits), bits, y.dtype)
    return y + (q - y).detach()
