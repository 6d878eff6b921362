"""Checkpoints that survive being killed: written beside the target, then renamed.

Lightning writes a checkpoint in place, so a run killed during the write (the model zoo's
training is stopped at any time) leaves a truncated ``last.ckpt`` that nothing can resume
from. Renaming a complete file over the old one is atomic on POSIX file systems.
"""

from __future__ import annotations

import os

from pytorch_lightning.callbacks import ModelCheckpoint


class AtomicModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose files are always either the previous or the new one, and
    whose ``last`` file holds the final step of every run.

    Lightning saves when it validates; a run that stops at ``max_steps`` between two
    validations (or whose validation is skipped because it resumed mid-epoch) would
    otherwise lose the steps since the last one. The model zoo's rounds lost up to half
    their steps that way.
    """

    def on_validation_end(self, trainer, pl_module) -> None:
        """Lightning (2.6) writes ``last`` only when the monitored score improved, so a run
        whose score stalls (a rate drifting from its target lowers it) kept its first
        checkpoint while it trained on: a kill lost every step since. ``last`` is written
        at every validation here."""
        super().on_validation_end(trainer, pl_module)
        if (self.save_last and not self._should_skip_saving_checkpoint(trainer)
                and not self._should_save_on_train_epoch_end(trainer)):  # fmt: skip
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        if self.save_last and trainer.global_step > self._last_global_step_saved:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        partial = f"{filepath}.partial"
        super()._save_checkpoint(trainer, partial)
        if trainer.is_global_zero:
            os.replace(partial, filepath)
        trainer.strategy.barrier("atomic_checkpoint")
        self._last_checkpoint_saved = filepath
