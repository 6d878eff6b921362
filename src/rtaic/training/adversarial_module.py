"""The adversarial layer over the compression module (paper section 4), and its gate.

:class:`AdversarialRTAICModule` adds a paired multiscale discriminator D to
:class:`rtaic.training.module.RTAICModule`, from step ``start_step`` on. Each step then
is a D step (D alone learns; the autoencoder's weights stay as they are) or a confusion
step for G (the reconstruction and rate losses plus the confusion term; D stays as it is),
as :class:`AdversarialGate` decided, still with one backward: D's loss sees a detached pair, and the confusion gradient is taken at
x_hat by ``autograd.grad`` (D's weights untouched), rescaled against the reconstruction
gradient there and added at x_hat. D has its own Adam and scheduler, stepped outside
Lightning's step counter so that ``global_step`` stays one per batch.

:class:`AdversarialGate` is the accuracy-gated schedule as a feedback controller, the same
pattern as ACR (see rtaic.training.module): before a step it sets the module's
``gate_decision``; after it, it reads D's rank-averaged batch accuracy from the module's
``feedback``. A decision is counted only once its step was taken (a skipped step takes
the same decision again), and its state is checkpointed as the callback's.

``python train.py +discriminator=multiscale`` (or ``experiment=gan``) selects both.
"""

from __future__ import annotations

from typing import NamedTuple

import pytorch_lightning as pl
import torch

from rtaic.nn.discriminator import MultiscaleDiscriminator
from rtaic.training.adversarial import (
    AdversarialConfig,
    AdversarialSchedule,
    Decision,
    GateState,
    balance_gradients,
    batch_accuracy,
    confusion_loss,
    discriminator_loss,
    make_pairs,
)
from rtaic.training.module import RTAICModule, StepLosses, step_decay


class AdversarialTerms(NamedTuple):
    """What the GAN adds to one training step."""

    decision: Decision
    extra_loss: torch.Tensor  # D's loss and/or the balanced confusion term, same backward
    accuracy: float  # D's batch accuracy on this step's pair (rank-averaged), before any update
    logs: dict


class AdversarialRTAICModule(RTAICModule):
    """RTAICModule + discriminator; ``adversarial`` holds the keys of
    ``conf/discriminator/multiscale.yaml`` (:class:`AdversarialConfig`)."""

    def __init__(self, adversarial: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.adversarial = AdversarialConfig(**adversarial)
        a = self.adversarial
        self.discriminator = MultiscaleDiscriminator(a.width, a.depth, a.max_width)
        self.gate_decision: Decision | None = None  # set by AdversarialGate before each step
        self._gan: AdversarialTerms | None = None

    @property
    def gan_active(self) -> bool:
        return self.global_step >= self.adversarial.start_step

    def on_fit_start(self) -> None:
        if not any(isinstance(cb, AdversarialGate) for cb in self.trainer.callbacks):
            raise ValueError("an adversarial model needs the AdversarialGate callback "
                             "(+discriminator=multiscale adds callbacks.adversarial_gate)")

    # -- the hooks of RTAICModule.training_step ------------------------------------------
    def _extra_loss(self, x: torch.Tensor, losses: StepLosses) -> torch.Tensor | None:
        """The GAN's share of this step, as the gate decided.

        D step:         BCE of D on the detached (target, reconstruction) pair.
        Confusion step: g_adv = d confusion / d x_hat, rescaled to balance_ratio x the
                        reconstruction gradient g_rec = d rec / d x_hat, enters the backward
                        as <x_hat, scale * g_adv>. D is evaluated but gets no gradient.
        """
        self._gan = None
        if not self.gan_active:
            return None
        decision = self.gate_decision
        if decision is None:
            raise RuntimeError("no gate decision for this GAN step (AdversarialGate missing?)")
        x_hat = losses.out.x_hat
        pair, labels = make_pairs(x, x_hat)
        logits = self.discriminator(pair if decision.confuse_generator else pair.detach())
        loss_d = discriminator_loss(logits, labels)
        loss_adv = confusion_loss(logits, labels)
        (g_rec,) = torch.autograd.grad(losses.rec, x_hat, retain_graph=True)
        # every key every step: Lightning re-logs a key's last value on steps that skip it
        logs = {
            "train/gate_state": float(decision.state),
            "train/d_step": float(decision.train_discriminator),
            "train/d_loss": loss_d.detach(),
            "train/confusion_loss": loss_adv.detach(),
            "train/grad_rec_norm": g_rec.norm().item(),
            "train/grad_adv_norm": 0.0,  # 0: no confusion gradient reached G this step
            "train/adv_scale": 0.0,
        }
        extra = loss_d if decision.train_discriminator else torch.zeros((), device=x.device)
        if decision.confuse_generator:
            (g_adv,) = torch.autograd.grad(loss_adv, x_hat, retain_graph=True)
            b = balance_gradients(g_rec, g_adv, self.adversarial.balance_ratio)
            if b.scale:
                extra = extra + (x_hat * (b.scale * g_adv)).sum()
            logs.update({"train/grad_adv_norm": b.adv_norm, "train/adv_scale": b.scale})
        accuracy = self._synced(batch_accuracy(logits.detach(), labels))
        self._gan = AdversarialTerms(decision, extra, accuracy, logs)
        return extra

    def _autoencoder_trains(self) -> bool:
        """Not in a D-only step (the gate's DISCRIMINATOR state, and D's turns when it
        alternates): the paper trains D alone there. The context model still learns."""
        return self._gan is None or self._gan.decision.confuse_generator

    def _clip_extra(self) -> torch.Tensor:
        if self._gan is None or not self._gan.decision.train_discriminator:
            return torch.zeros(())
        return torch.nn.utils.clip_grad_norm_(self.discriminator.parameters(), self.hparams.grad_clip)

    def _after_step(self, opts: list, scheds: list, extra_norm: torch.Tensor) -> float | None:
        """Step D if it trained, log what the GAN did; D's accuracy goes to the gate."""
        gan = self._gan
        if gan is None:
            return None
        opt_d, sched_d = opts[1], scheds[1]
        if gan.decision.train_discriminator:
            # not opt_d.step(): Lightning would count it in global_step (one per batch here)
            self.trainer.strategy.optimizer_step(opt_d.optimizer, closure=lambda: None, model=self)
            sched_d.step()
        self.log_dict(
            {
                **gan.logs,
                "train/d_batch_accuracy": gan.accuracy,
                "train/d_grad_norm": extra_norm,  # 0 when D did not train
                "train/d_lr": opt_d.param_groups[0]["lr"],
            }
        )
        return gan.accuracy

    def configure_optimizers(self):
        opt_g, sched_g = self._generator_optimizer()
        a = self.adversarial
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=a.lr, betas=a.betas)
        sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, step_decay(a.lr_milestones, a.lr_gamma))  # in D steps
        return [opt_g, opt_d], [sched_g, {"scheduler": sched_d, "interval": "step"}]


class AdversarialGate(pl.Callback):
    """The accuracy-gated schedule (paper 4.2) steering an :class:`AdversarialRTAICModule`:
    train D while its running accuracy is below ``lower``, alternate between ``lower`` and
    ``upper``, confuse G above ``upper`` (see :class:`AdversarialSchedule`)."""

    def __init__(self, lower: float, upper: float, momentum: float) -> None:
        self.schedule = AdversarialSchedule(lower, upper, momentum)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        pl_module.gate_decision = self.schedule.peek() if pl_module.gan_active else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        feedback = pl_module.feedback
        decision = pl_module.gate_decision
        if decision is None or feedback is None or feedback.discriminator_accuracy is None:
            return  # no GAN step, or the step was skipped: the decision stays uncounted
        self.schedule.commit(decision)
        self.schedule.update(feedback.discriminator_accuracy)
        counts = self.schedule.counts
        pl_module.log_dict(
            {
                "train/d_accuracy": self.schedule.accuracy.value,
                **{f"train/gate_count_{s.name.lower()}": float(counts[s]) for s in GateState},
            }
        )

    def state_dict(self) -> dict:
        return self.schedule.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.schedule.load_state_dict(state_dict)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        """Checkpoints written before the gate was a callback kept it in the module's
        ``rtaic_adversarial`` entry (the callback's own state, if any, is loaded after)."""
        if "rtaic_adversarial" in checkpoint:
            self.schedule.load_state_dict(checkpoint["rtaic_adversarial"])
