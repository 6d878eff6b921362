"""Adversarial training machinery (paper 4.2): pairs, the accuracy-gated schedule and
gradient-magnitude balancing. Plain torch, no Lightning: rtaic.training.adversarial_module
calls these.

One training step with the GAN on:

    pair, labels = make_pairs(x, x_hat)                     # random order, labels follow it
    decision = schedule.decide()                             # from the running accuracy
    D step      if decision.train_discriminator              # BCE on the detached pair;
                                                             # the autoencoder stays as it is
    G step      if decision.confuse_generator: reconstruction + rate + confusion,
                g = g_rec + balance(g_rec, g_adv, ratio).scale * g_adv   (both at x_hat)
    schedule.update(batch accuracy of D on this step's pair) # before D's update

(In training, rtaic.training.adversarial_module.AdversarialGate calls ``peek`` before a
step and ``commit`` + ``update`` once it was taken.)

Gate states (bounds L < U on the running accuracy a):

    a < L        DISCRIMINATOR (0): train D only (the autoencoder does not change)
    L <= a <= U  ALTERNATE     (1): take turns, D step then confusion step then D step ...
    a > U        GENERATOR     (2): confusion only, D frozen (still evaluated, so a moves)

The alternation uses a toggle kept in the schedule's state (not the step parity): it
flips on every alternate step, the first alternate step ever trains D, and the turn
survives leaving and re-entering the band. It is part of ``state_dict`` so that a
resumed run takes the same next turn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

import torch
import torch.nn.functional as F


def make_pairs(
    target: torch.Tensor, recon: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate target and reconstruction along channels, swapped with probability 1/2.

    Returns the (N, 2C, H, W) pair and float labels (N,): 1 where the target comes first,
    0 where the reconstruction comes first (the discriminator's logit predicts the label).
    """
    if target.shape != recon.shape:
        raise ValueError(f"shapes differ: {tuple(target.shape)} vs {tuple(recon.shape)}")
    n = target.shape[0]
    swap = torch.rand(n, generator=generator, device="cpu").to(target.device) < 0.5
    s = swap.view(n, 1, 1, 1)
    first = torch.where(s, recon, target)
    second = torch.where(s, target, recon)
    labels = (~swap).to(target.dtype)
    return torch.cat([first, second], dim=1), labels


def discriminator_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """D learns to point at the real target."""
    return F.binary_cross_entropy_with_logits(logits, labels)


def confusion_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """G wants D to point at the reconstruction (non-saturating form: flipped labels)."""
    return F.binary_cross_entropy_with_logits(logits, 1.0 - labels)


def batch_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of pairs in which D points at the real target (logit 0 counts as 'second')."""
    return ((logits > 0).to(labels.dtype) == labels).float().mean().item()


class RunningAccuracy:
    """Exponential running average over mini-batches: a <- m * a + (1 - m) * batch.

    Starts at chance (0.5) by default: an untrained discriminator is at chance, so the
    schedule begins by training it.
    """

    def __init__(self, momentum: float = 0.8, initial: float = 0.5) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.value = float(initial)
        self.updates = 0

    def update(self, batch: float) -> float:
        self.value = self.momentum * self.value + (1.0 - self.momentum) * float(batch)
        self.updates += 1
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])
        self.updates = int(state["updates"])


class GateState(IntEnum):
    DISCRIMINATOR = 0  # a < L: train D only
    ALTERNATE = 1  # L <= a <= U: take turns
    GENERATOR = 2  # a > U: confusion only, D frozen


class Decision(NamedTuple):
    state: GateState
    train_discriminator: bool
    confuse_generator: bool


class AdversarialSchedule:
    """Accuracy-gated switch between discriminator and confusion steps (paper 4.2).

    Call :meth:`decide` before a step and :meth:`update` with D's batch accuracy after it.
    """

    def __init__(self, lower: float, upper: float, momentum: float) -> None:
        if not 0.0 <= lower < upper <= 1.0:
            raise ValueError(f"need 0 <= lower < upper <= 1, got {lower}, {upper}")
        self.lower, self.upper = lower, upper
        self.accuracy = RunningAccuracy(momentum)
        self.discriminator_turn = True  # the next alternate step trains D
        self.counts = [0, 0, 0]  # decisions taken per GateState

    def state(self) -> GateState:
        a = self.accuracy.value
        if a < self.lower:
            return GateState.DISCRIMINATOR
        if a > self.upper:
            return GateState.GENERATOR
        return GateState.ALTERNATE

    def peek(self) -> Decision:
        """The action of the next step, changing nothing (see :meth:`commit`)."""
        state = self.state()
        if state is GateState.DISCRIMINATOR:
            return Decision(state, True, False)
        if state is GateState.GENERATOR:
            return Decision(state, False, True)
        train_d = self.discriminator_turn
        return Decision(state, train_d, not train_d)

    def commit(self, decision: Decision) -> None:
        """Count a decision whose step was taken; an alternate step passes the turn."""
        self.counts[decision.state] += 1
        if decision.state is GateState.ALTERNATE:
            self.discriminator_turn = not decision.train_discriminator

    def decide(self) -> Decision:
        """The action of this step, counted (:meth:`peek` then :meth:`commit`)."""
        decision = self.peek()
        self.commit(decision)
        return decision

    def update(self, batch_accuracy: float) -> float:
        return self.accuracy.update(batch_accuracy)

    def state_dict(self) -> dict:
        return {
            "accuracy": self.accuracy.state_dict(),
            "discriminator_turn": self.discriminator_turn,
            "counts": list(self.counts),
        }

    def load_state_dict(self, state: dict) -> None:
        self.accuracy.load_state_dict(state["accuracy"])
        self.discriminator_turn = bool(state["discriminator_turn"])
        self.counts = [int(c) for c in state["counts"]]


class Balance(NamedTuple):
    """Result of :func:`balance_gradients`: the confusion gradient's scale, and its norm
    before scaling (logged)."""

    scale: float
    adv_norm: float


def balance_gradients(
    g_rec: torch.Tensor, g_adv: torch.Tensor, ratio: float, eps: float = 1e-12
) -> Balance:
    """Rescale the confusion gradient so that ||scale * g_adv|| = ratio * ||g_rec||.

    Both gradients are taken w.r.t. the reconstruction x_hat, so the generator's update
    mixes them at a fixed proportion however large the raw confusion loss is. A zero (or
    non-finite) norm on either side gives scale 0: no confusion signal that step.
    """
    rec_norm = g_rec.detach().norm().item()
    adv_norm = g_adv.detach().norm().item()
    ok = all(math.isfinite(v) and v > eps for v in (rec_norm, adv_norm))
    scale = ratio * rec_norm / adv_norm if ok else 0.0
    return Balance(scale, adv_norm)


@dataclass(frozen=True)
class AdversarialConfig:
    """The module's ``adversarial`` keys (``model.adversarial`` in
    ``conf/discriminator/multiscale.yaml``, where the values live; the gate's bounds are
    the ``callbacks.adversarial_gate`` keys there)."""

    start_step: int  # training steps of the autoencoder alone before the GAN starts
    width: int  # channels of D's first block
    depth: int  # D's downsampling blocks = scalar branches averaged into the logit
    max_width: int
    balance_ratio: float  # ||confusion gradient|| = ratio x ||reconstruction gradient||
    lr: float
    betas: tuple[float, float]
    lr_milestones: tuple[int, ...]  # counted in discriminator steps
    lr_gamma: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "lr_milestones", tuple(int(m) for m in self.lr_milestones))
        if self.balance_ratio < 0 or self.start_step < 0:
            raise ValueError("balance_ratio and start_step must be >= 0")
