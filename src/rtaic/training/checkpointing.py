"""Checkpoints that survive being killed: written beside the target, then renamed.

Lightning writes a checkpoint in place, so a run killed during the write (the model zoo's
training is stopped at any time) leaves a truncated ``last.ckpt`` that nothing can resume
from. Renaming a complete file over the old one is atomic on POSIX file systems.
"""

from __future__ import annotations

import os

from pytorch_lightning.callbacks import ModelCheckpoint


class AtomicModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose files are always either the previous or the new one."""

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        partial = f"{filepath}.partial"
        super()._save_checkpoint(trainer, partial)
        if trainer.is_global_zero:
            os.replace(partial, filepath)
        trainer.strategy.barrier("atomic_checkpoint")
        self._last_checkpoint_saved = filepath
