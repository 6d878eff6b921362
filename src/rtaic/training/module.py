"""The training LightningModule: autoencoder + bit-probability model, manual optimization.

One training step (generator side):

    x -> Autoencoder -> (x_hat, y, q)
    loss_G   = 1 - MS-SSIM(x_hat, x)  +  alpha_t * ACR(q)         -> autoencoder
    loss_ctx = code length of bitplanes(q) under the context model -> context model only
    bpp      = loss_ctx / pixels  (what the arithmetic coder spends; ACRCallback steers alpha)

Both losses go through a single backward and a single optimizer step (their parameters are
disjoint, the bitplanes are detached), so the step is DDP-friendly. A non-finite loss or gradient skips the step,
is counted (``skipped_steps``, checkpointed) and never touches the weights.

With ``adversarial`` set (``+discriminator=multiscale``, paper section 4) a paired multiscale
discriminator D joins from step ``start_step`` on (see ``_adversarial``). Each step then
also runs either a D step or a confusion step for G, as the accuracy-gated schedule
decides, still with one backward: D's loss sees a detached pair, and the confusion
gradient is taken at x_hat by ``autograd.grad`` (D's weights untouched), rescaled against
the reconstruction gradient there and added at x_hat. D has its own Adam and scheduler,
stepped outside Lightning's step counter so that ``global_step`` stays one per batch.

Quantization-aware finetuning (``freeze_encoder``, ``experiment=finetune_quantized``): the
encoder is frozen (no gradient, not in the optimizer) and the step trains the decoder and
the context model on the latents exactly as the codec makes them (:meth:`inference_latents`:
the hard quantizer, and RDOQ at ``finetune_rdoq`` when > 0), with no straight-through path
and no ACR (the encoder fixes the rate). Validation scores the same latents.
``architecture_from`` takes the architecture from a checkpoint (the one ``init_from`` warm
starts from), so that the finetuned model is exactly the network it starts from.
"""

from __future__ import annotations

import bisect
from typing import NamedTuple

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger

from rtaic.checkpoint import codec_record
from rtaic.coding.bitplanes import to_bitplanes
from rtaic.coding.context import BitContextModel
from rtaic.coding.quantize import dequantize, quantize_levels
from rtaic.metrics import ciede2000, msssim_window, psnr
from rtaic.nn.autoencoder import Architecture, Autoencoder, AutoencoderOutput, latent_channels_for
from rtaic.nn.discriminator import MultiscaleDiscriminator
from rtaic.training.acr import acr_penalty
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
from rtaic.training.losses import distortion_loss, msssim_loss


class AdversarialTerms(NamedTuple):
    """What the GAN adds to one training step."""

    decision: Decision
    extra_loss: torch.Tensor  # D's loss and/or the balanced confusion term, same backward
    accuracy: float  # D's batch accuracy on this step's pair, before any update
    logs: dict


class RTAICModule(pl.LightningModule):
    def __init__(
        self,
        architecture: dict,
        target_bpp: float,
        total_to_target_ratio: float = 4.0,
        lr: float = 3e-4,
        lr_milestones: tuple[int, ...] = (),
        lr_gamma: float = 0.2,
        context_lr: float = 1e-2,
        grad_clip: float = 1.0,
        acr_epsilon: float = 1e-2,
        l1_weight: float = 0.0,
        train_crop_size: int = 128,
        val_images_logged: int = 4,
        max_consecutive_skips: int = 50,
        adversarial: dict | None = None,
        freeze_encoder: bool = False,
        finetune_rdoq: float = 0.0,
        finetune_rdoq_share: float = 1.0,
        architecture_from: str | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.save_hyperparameters()
        arch = dict(architecture)
        if architecture_from:
            from rtaic.checkpoint import load_networks

            arch = load_networks(architecture_from).autoencoder.architecture.to_dict()
        if arch.get("latent_channels") is None:
            arch["latent_channels"] = latent_channels_for(
                target_bpp, total_to_target_ratio, arch.get("latent_stride_log2", 3), arch.get("bits", 6)
            )
        self.architecture = Architecture.from_dict(arch)
        self.autoencoder = Autoencoder(self.architecture)
        if finetune_rdoq < 0:
            raise ValueError(f"finetune_rdoq must be >= 0, got {finetune_rdoq}")
        if not 0.0 <= finetune_rdoq_share <= 1.0:
            raise ValueError(f"finetune_rdoq_share must be in [0, 1], got {finetune_rdoq_share}")
        if freeze_encoder and not architecture_from:
            raise ValueError("freeze_encoder finetunes a trained model: give its checkpoint as "
                             "architecture_from (experiment=finetune_quantized: init_from=CKPT)")
        if freeze_encoder:
            self.autoencoder.encoder.requires_grad_(False)
        self.context_model = BitContextModel(self.architecture.latent_channels, self.architecture.bits)
        self.register_buffer("acr_alpha", torch.tensor(1.0))
        self.register_buffer("skipped_steps", torch.tensor(0, dtype=torch.long))
        self.train_window = msssim_window(train_crop_size)
        self.last_train_bpp: float | None = None
        self._consecutive_skips = 0
        # GAN, off when adversarial is None; D's weights and the schedule are checkpointed
        self.adversarial = AdversarialConfig(**adversarial) if adversarial else None
        if self.adversarial is not None:
            a = self.adversarial
            self.discriminator = MultiscaleDiscriminator(a.width, a.depth, a.max_width)
            self.schedule = AdversarialSchedule(a.lower, a.upper, a.momentum)

    # -- shared pieces ----------------------------------------------------------------
    def estimated_bpp(self, y: torch.Tensor, pixels: int) -> torch.Tensor:
        """Per-image code length of the quantized latent under the context model, in bpp."""
        bits = self.architecture.bits
        planes = to_bitplanes(quantize_levels(y, bits), bits)
        return self.context_model(planes) / pixels

    def reconstruction_losses(self, x: torch.Tensor) -> dict:
        out = self.autoencoder(x)
        rec, msssim = distortion_loss(
            out.x_hat, x, self.architecture.color_space, self.train_window, self.hparams.l1_weight
        )
        penalty = acr_penalty(out.q, self.hparams.acr_epsilon)
        bpp = self.estimated_bpp(out.y, x.shape[-2] * x.shape[-1])
        return {"out": out, "rec": rec, "msssim": msssim.mean(), "acr": penalty, "bpp": bpp.mean()}

    # -- quantization-aware finetuning (frozen encoder) ---------------------------------
    @torch.no_grad()
    def inference_latents(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(y, levels, q) as the codec makes them from a batch: the encoder's latent, the
        hard quantizer's integer levels (RDOQ at ``finetune_rdoq`` with the current context
        model and decoder when > 0, on the first ``finetune_rdoq_share`` of the batch: the
        rest keeps the plain quantizer's, since the codec writes both kinds of file) and
        their values. No gradient reaches the encoder."""
        bits = self.architecture.bits
        y = self.autoencoder.encode(x)
        levels = quantize_levels(y, bits)
        lam = float(self.hparams.finetune_rdoq)
        n = round(float(self.hparams.get("finetune_rdoq_share", 1.0)) * len(x))
        if lam > 0 and n > 0:
            from rtaic.coding.rdoq import channel_weights, rdoq_levels

            table = self.context_model.probability_table()
            weights = channel_weights(self.autoencoder)
            chosen = rdoq_levels(levels[:n].cpu(), y[:n].float().cpu(), self.context_model, table, lam, weights)
            levels = torch.cat([chosen.to(y.device), levels[n:]])
        return y, levels, dequantize(levels, bits, y.dtype)

    def quantized_losses(self, x: torch.Tensor) -> dict:
        """:meth:`reconstruction_losses` on the inference latents: the decoder and the
        context model learn what the codec will give them; no ACR (the encoder is fixed)."""
        y, levels, q = self.inference_latents(x)
        x_hat = self.autoencoder.decode(q, x.shape[-2:])
        rec, msssim = distortion_loss(
            x_hat, x, self.architecture.color_space, self.train_window, self.hparams.l1_weight
        )
        planes = to_bitplanes(levels, self.architecture.bits)
        bpp = self.context_model(planes) / (x.shape[-2] * x.shape[-1])
        return {"out": AutoencoderOutput(x_hat, y, q), "rec": rec, "msssim": msssim.mean(),
                "acr": torch.zeros((), device=x.device), "bpp": bpp.mean()}  # fmt: skip

    # -- training ---------------------------------------------------------------------
    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        scheds = self.lr_schedulers()
        scheds = scheds if isinstance(scheds, list) else [scheds]
        opt_g, sched_g = opts[0], scheds[0]
        if self.hparams.freeze_encoder:
            r = self.quantized_losses(batch)
        else:
            r = self.reconstruction_losses(batch)
        loss_g = r["rec"] + self.acr_alpha * r["acr"]
        loss = loss_g + r["bpp"]
        if not torch.isfinite(loss):
            self._skip("loss")
            return
        gan = self._adversarial(batch, r) if self.gan_active else None
        opt_g.zero_grad(set_to_none=True)
        if gan is not None:
            opts[1].zero_grad(set_to_none=True)
        self.manual_backward(loss if gan is None else loss + gan.extra_loss)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.autoencoder.parameters(), self.hparams.grad_clip)
        train_d = gan is not None and gan.decision.train_discriminator
        d_grad_norm = (
            torch.nn.utils.clip_grad_norm_(self.discriminator.parameters(), self.hparams.grad_clip)
            if train_d
            else torch.zeros(())
        )
        if not (torch.isfinite(grad_norm) and torch.isfinite(d_grad_norm)):
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            self._skip("gradient")
            return
        opt_g.step()
        sched_g.step()
        if gan is not None:
            self._after_adversarial_step(gan, opts[1], scheds[1], d_grad_norm)
        self._consecutive_skips = 0
        self.last_train_bpp = float(r["bpp"].detach())
        self.log_dict(
            {
                "train/loss": loss_g.detach(),
                "train/msssim": r["msssim"].detach(),
                "train/acr_penalty": r["acr"].detach(),
                "train/bpp": r["bpp"].detach(),
                "train/grad_norm": grad_norm,
                "train/lr": opt_g.param_groups[0]["lr"],
            },
            prog_bar=False,
        )
        self.log("bpp", r["bpp"].detach(), prog_bar=True, logger=False)
        self.log("msssim", r["msssim"].detach(), prog_bar=True, logger=False)

    # -- adversarial training (paper section 4) ----------------------------------------
    @property
    def gan_active(self) -> bool:
        return self.adversarial is not None and self.global_step >= self.adversarial.start_step

    def _adversarial(self, x: torch.Tensor, r: dict) -> AdversarialTerms:
        """The GAN's share of this step, chosen by the schedule from D's running accuracy.

        D step:         BCE of D on the detached (target, reconstruction) pair.
        Confusion step: g_adv = d confusion / d x_hat, rescaled to balance_ratio x the
                        reconstruction gradient g_rec = d rec / d x_hat, enters the backward
                        as <x_hat, scale * g_adv>. D is evaluated but gets no gradient.
        """
        decision = self.schedule.decide()
        x_hat = r["out"].x_hat
        pair, labels = make_pairs(x, x_hat)
        logits = self.discriminator(pair if decision.confuse_generator else pair.detach())
        loss_d = discriminator_loss(logits, labels)
        loss_adv = confusion_loss(logits, labels)
        (g_rec,) = torch.autograd.grad(r["rec"], x_hat, retain_graph=True)
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
        return AdversarialTerms(decision, extra, accuracy, logs)

    def _synced(self, value: float) -> float:
        """Mean over DDP ranks, so that every rank's schedule takes the same decisions."""
        if self.trainer is None or self.trainer.world_size == 1:
            return value
        t = torch.tensor(value, device=self.device)
        return float(self.trainer.strategy.reduce(t, reduce_op="mean"))

    def _after_adversarial_step(self, gan: AdversarialTerms, opt_d, sched_d, d_grad_norm) -> None:
        """Step D (if it trained), update the schedule and log what the gate did."""
        if gan.decision.train_discriminator:
            # not opt_d.step(): Lightning would count it in global_step (one per batch here)
            self.trainer.strategy.optimizer_step(opt_d.optimizer, closure=lambda: None, model=self)
            sched_d.step()
        self.schedule.update(gan.accuracy)
        counts = self.schedule.counts
        self.log_dict(
            {
                **gan.logs,
                "train/d_accuracy": self.schedule.accuracy.value,
                "train/d_batch_accuracy": gan.accuracy,
                "train/d_grad_norm": d_grad_norm,  # 0 when D did not train
                "train/d_lr": opt_d.param_groups[0]["lr"],
                **{f"train/gate_count_{s.name.lower()}": float(counts[s]) for s in GateState},
            }
        )

    def _skip(self, what: str) -> None:
        self.skipped_steps += 1
        self._consecutive_skips += 1
        self.last_train_bpp = None
        if self._consecutive_skips > self.hparams.max_consecutive_skips:
            raise FloatingPointError(
                f"{self._consecutive_skips} consecutive steps had a non-finite {what}: training "
                "diverged (try a lower lr or grad_clip, or check the data)"
            )
        self.log("train/skipped_steps", self.skipped_steps.float())
        if self.trainer is not None and self.global_rank == 0:
            print(f"rtaic: non-finite {what} at step {self.global_step}; step skipped "
                  f"({int(self.skipped_steps)} so far)")

    # -- validation -------------------------------------------------------------------
    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        if self.hparams.freeze_encoder:  # what the codec gives (RDOQ included)
            _, levels, q = self.inference_latents(batch)
            x_hat = self.autoencoder.decode(q, batch.shape[-2:]).clamp(0, 1)
            planes = to_bitplanes(levels, self.architecture.bits)
            bpp = (self.context_model(planes) / (batch.shape[-2] * batch.shape[-1])).mean()
        else:
            out = self.autoencoder(batch)
            x_hat = out.x_hat.clamp(0, 1)
            bpp = self.estimated_bpp(out.y, batch.shape[-2] * batch.shape[-1]).mean()
        cs = self.architecture.color_space
        score = msssim_loss(x_hat, batch, cs, msssim_window(min(batch.shape[-2:])))[1].mean()
        target = self.hparams.target_bpp
        # model selection: MS-SSIM, minus a penalty for overshooting the target by > 10 %
        rd_score = score - max(0.0, float(bpp) / target - 1.1)
        self.log_dict(
            {
                "val/msssim": score,
                "val/bpp": bpp,
                "val/psnr": psnr(x_hat, batch).mean(),
                "val/ciede2000": ciede2000(x_hat, batch).mean().to(batch.device),
                "val/score": rd_score,
            },
            batch_size=batch.shape[0],
            sync_dist=True,
        )
        if batch_idx == 0:
            self._log_reconstructions(batch, x_hat)

    def _log_reconstructions(self, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        k = self.hparams.val_images_logged
        if not k or self.global_rank != 0:
            return
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                # uint8: wandb no longer rescales float tensors in [0, 1]
                pairs = [
                    (torch.cat([a, b], dim=-1).clamp(0, 1) * 255).round().to(torch.uint8).cpu()
                    for a, b in zip(x[:k], x_hat[:k], strict=True)
                ]
                logger.log_image(
                    key="val/reconstructions",
                    images=pairs,
                    caption=["original | reconstruction"] * len(pairs),
                    step=self.global_step,
                )

    # -- optimizers & checkpoints -----------------------------------------------------
    def configure_optimizers(self):
        """One Adam over two parameter groups (autoencoder; context model), so that a
        training step is one optimizer step (Lightning counts global_step in those).
        The autoencoder's lr drops by lr_gamma at each milestone; the context model's not.
        With ``freeze_encoder`` the first group is the decoder only: the encoder is never
        stepped."""
        hp = self.hparams
        trained = self.autoencoder.decoder if hp.freeze_encoder else self.autoencoder
        opt_g = torch.optim.Adam(
            [
                {"params": trained.parameters(), "lr": hp.lr},
                {"params": self.context_model.parameters(), "lr": hp.context_lr},
            ]
        )
        milestones = sorted(hp.lr_milestones)
        decay = lambda step: hp.lr_gamma ** bisect.bisect_right(milestones, step)  # noqa: E731
        sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, [decay, lambda step: 1.0])
        if self.adversarial is None:
            return [opt_g], [{"scheduler": sched_g, "interval": "step"}]
        a = self.adversarial
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=a.lr, betas=a.betas)
        d_decay = lambda step: a.lr_gamma ** bisect.bisect_right(a.lr_milestones, step)  # noqa: E731
        sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, d_decay)  # in D steps
        return [opt_g, opt_d], [
            {"scheduler": sched_g, "interval": "step"},
            {"scheduler": sched_d, "interval": "step"},
        ]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rtaic"] = codec_record(self.autoencoder, self.context_model)
        if self._trainer is not None:  # the latest validation, for the model zoo's manifest
            checkpoint["rtaic_val"] = {
                k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")
            }
        if self.adversarial is not None:
            checkpoint["rtaic_adversarial"] = self.schedule.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resume continues in the same gate state (running accuracy, turn, counts)."""
        if self.adversarial is not None and "rtaic_adversarial" in checkpoint:
            self.schedule.load_state_dict(checkpoint["rtaic_adversarial"])
