"""Experiment loggers. W&B runs offline unless the user's environment says otherwise."""

from __future__ import annotations

import os

from pytorch_lightning.loggers import WandbLogger


def wandb_logger(project: str = "rtaic", **kwargs) -> WandbLogger:
    """A WandbLogger in offline mode unless WANDB_MODE is set to 'online' (or 'disabled').

    One run per job: ``group`` names the sweep, ``tags`` the model, target and colour space.
    """
    mode = os.environ.get("WANDB_MODE", "offline")
    os.makedirs(kwargs.get("save_dir", "."), exist_ok=True)
    return WandbLogger(project=project, offline=mode == "offline", mode=mode, **kwargs)
