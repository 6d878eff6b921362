"""Callbacks that tests add to real training runs (``+callbacks.NAME._target_=probes.X``):
they record what happened inside the run, and can steer the GAN gate."""

from __future__ import annotations

import json

import pytorch_lightning as pl
import torch

from rtaic.training.acr import ACRCallback

RECORDS: dict[str, list] = {}  # by probe name: what each probe saw, read by the tests


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict, module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


class StartState(pl.Callback):
    """What a run starts from: the module's ACR weight and the ACR callback's running bpp."""

    def __init__(self, name: str) -> None:
        self.name = name

    def on_train_start(self, trainer, pl_module) -> None:
        acr = next(cb for cb in trainer.callbacks if isinstance(cb, ACRCallback))
        RECORDS[self.name] = [float(pl_module.acr_alpha), acr.running_bpp, trainer.global_step]


class BppTrace(pl.Callback):
    """The ACR callback's running bpp and alpha after every step."""

    def __init__(self, name: str) -> None:
        self.name = name
        RECORDS[name] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        acr = next(cb for cb in trainer.callbacks if isinstance(cb, ACRCallback))
        RECORDS[self.name].append((acr.running_bpp, float(pl_module.acr_alpha)))


class GateSteps(pl.Callback):
    """Per GAN step: the gate's decision and whether the autoencoder and D changed. With
    ``accuracies``, sets the gate's running accuracy before each step (step k gets
    accuracies[k - 1]) so that a short run visits the states it lists. Put it after the
    gate in the callback list (``+callbacks`` appends)."""

    def __init__(self, name: str, accuracies: list[float] | None = None) -> None:
        self.name, self.accuracies = name, list(accuracies or [])
        RECORDS[name] = []

    def _gate(self, trainer):
        return next(cb for cb in trainer.callbacks if type(cb).__name__ == "AdversarialGate")

    def _force(self, trainer, step: int) -> None:
        if 0 < step <= len(self.accuracies):
            self._gate(trainer).schedule.accuracy.value = self.accuracies[step - 1]

    def on_train_start(self, trainer, pl_module) -> None:
        self._force(trainer, trainer.global_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._before = (_snapshot(pl_module.autoencoder), _snapshot(pl_module.discriminator))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        decision = pl_module.gate_decision
        ae, d = self._before
        RECORDS[self.name].append({
            "step": trainer.global_step - 1,
            "state": None if decision is None else int(decision.state),
            "autoencoder_changed": _changed(ae, pl_module.autoencoder),
            "discriminator_changed": _changed(d, pl_module.discriminator),
        })  # fmt: skip
        # the next step's state: the gate has updated the running accuracy by now
        self._force(trainer, trainer.global_step)


class RankLog(pl.Callback):
    """Each rank writes what its controllers decided per step to ``{out}/rank{r}.json``."""

    def __init__(self, out: str) -> None:
        self.out, self.steps = out, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        decision = getattr(pl_module, "gate_decision", None)
        self.steps.append({
            "alpha": float(pl_module.acr_alpha),
            "decision": None if decision is None else list(decision),
            "feedback": None if pl_module.feedback is None else list(pl_module.feedback),
        })  # fmt: skip

    def on_train_end(self, trainer, pl_module) -> None:
        with open(f"{self.out}/rank{trainer.global_rank}.json", "w") as f:
            json.dump(self.steps, f)


class StartWeights(pl.Callback):
    """The module's weights when training starts (after any warm start or resume)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def on_train_start(self, trainer, pl_module) -> None:
        RECORDS[self.name] = _snapshot(pl_module)
