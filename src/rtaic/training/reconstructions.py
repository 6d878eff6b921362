"""Validation reconstructions beside their originals, in the W&B run.

MS-SSIM barely sees a colour shift; a person looking at the pairs does. The first
validation batch's first ``images`` pairs are logged at every validation (rank 0 only).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger


def side_by_side(x: torch.Tensor, x_hat: torch.Tensor, k: int) -> list[torch.Tensor]:
    """The first k (original | reconstruction) pairs as uint8 CHW images: wandb no longer
    rescales float tensors in [0, 1]."""
    return [
        (torch.cat([a, b], dim=-1).clamp(0, 1) * 255).round().to(torch.uint8).cpu()
        for a, b in zip(x[:k], x_hat[:k], strict=True)
    ]


class ReconstructionLogger(pl.Callback):
    def __init__(self, images: int) -> None:
        if images < 0:
            raise ValueError(f"images must be >= 0, got {images}")
        self.images = images

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx != 0 or not self.images or trainer.global_rank != 0 or not outputs:
            return
        pairs = side_by_side(batch, outputs["x_hat"], self.images)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="val/reconstructions", images=pairs,
                                 caption=["original | reconstruction"] * len(pairs), step=trainer.global_step)
