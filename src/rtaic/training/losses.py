"""Distortion loss: 1 - MS-SSIM in the configured colour space (paper section 5.1).

MS-SSIM compares means only at its coarsest scale, so a network trained on it alone can
drift in colour (a channel offset costs it little). ``l1_weight`` adds a small mean
absolute error in RGB that pins the colours; 0 is the paper's loss.
"""

from __future__ import annotations

import torch

from rtaic.metrics import weighted_msssim


def msssim_loss(x_hat: torch.Tensor, x: torch.Tensor, color_space: str, win_size: int | None = None):
    """Returns (loss, per-image MS-SSIM). The window adapts to the crop size (see metrics)."""
    score = weighted_msssim(x_hat, x, color_space, win_size)
    return 1.0 - score.mean(), score


def distortion_loss(
    x_hat: torch.Tensor,
    x: torch.Tensor,
    color_space: str,
    win_size: int | None = None,
    l1_weight: float = 0.0,
):
    """Returns (1 - MS-SSIM + l1_weight * mean |x_hat - x|, per-image MS-SSIM)."""
    loss, score = msssim_loss(x_hat, x, color_space, win_size)
    if l1_weight:
        loss = loss + l1_weight * (x_hat - x).abs().mean()
    return loss, score
