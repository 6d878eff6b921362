"""Builds everything a training job needs from a composed Hydra config and runs it.

The entry point ``train.py`` only composes the config; this keeps the job testable with
``hydra.compose`` (tests call :func:`train` directly).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def _group_name() -> str | None:
    """The sweep (multirun) or run folder name: W&B groups the runs of one sweep."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    folder = hc.sweep.dir if hc.mode == RunMode.MULTIRUN else hc.run.dir
    return Path(folder).name


def _instantiate_all(node: DictConfig | None, **kwargs) -> list:
    if not node:
        return []
    return [instantiate(v, **kwargs) for v in node.values() if v is not None and "_target_" in v]


def load_warm_start(model: pl.LightningModule, path: str) -> None:
    """Initialise weights from another checkpoint (strict=False: e.g. plain -> GAN model)."""
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    log.info("warm start from %s (missing %d, unexpected %d keys)", path, len(missing), len(unexpected))


def train(cfg: DictConfig) -> dict:
    """Fit the model; returns the final callback metrics as floats."""
    pl.seed_everything(cfg.seed, workers=True)
    if not cfg.get("cpu_onednn", True):
        # oneDNN (mkldnn) runs the networks' convolutions ~3x faster than PyTorch's own CPU
        # kernels here; the MS-SSIM filter, which it runs badly, is kept off it in
        # rtaic.metrics whatever this says. Off: benchmarks/train_throughput.py --no-onednn.
        torch.backends.mkldnn.enabled = False
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    if cfg.get("init_from"):
        load_warm_start(model, cfg.init_from)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    group = _group_name()
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        extra = {"group": group} if name == "wandb" and group else {}
        loggers.append(instantiate(node, **extra))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    finally:
        if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
            import wandb

            wandb.finish()
            # finish() can return before the offline run's transaction log is flushed
            # (seen in CI: a header-only .wandb file); teardown waits for the writer.
            wandb.teardown()
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics["skipped_steps"] = int(model.skipped_steps)
    ckpt_cb = trainer.checkpoint_callback
    if ckpt_cb is not None:
        metrics["last_checkpoint"] = getattr(ckpt_cb, "last_model_path", "")
        metrics["best_checkpoint"] = getattr(ckpt_cb, "best_model_path", "")
    log.info("final metrics: %s", metrics)
    return metrics
