"""Distortion loss: 1 - MS-SSIM in the configured colour space (paper section 5.1)."""

from __future__ import annotations

import torch

from rtaic.metrics import weighted_msssim


def msssim_loss(x_hat: torch.Tensor, x: torch.Tensor, color_space: str, win_size: int | None = None):
    """Returns (loss, per-image MS-SSIM). The window adapts to the crop size (see metrics)."""
    score = weighted_msssim(x_hat, x, color_space, win_size)
    return 1.0 - score.mean(), score
