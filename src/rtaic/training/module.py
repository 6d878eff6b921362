"""The training LightningModule: autoencoder + bit-probability model, manual optimization.

One training step:

    x -> Autoencoder -> (x_hat, y, q)
    loss_G   = 1 - MS-SSIM(x_hat, x)  +  alpha_t * ACR(q)         -> autoencoder
    loss_ctx = code length of bitplanes(q) under the context model -> context model only
    bpp      = loss_ctx / pixels  (what the arithmetic coder spends)

Both losses go through a single backward and a single optimizer step (their parameters are
disjoint, the bitplanes are detached), so the step is DDP-friendly. A non-finite loss or
gradient skips the step, is counted (``skipped_steps``, checkpointed) and never touches
the weights.

Feedback controllers are callbacks (:class:`rtaic.training.acr.ACRCallback` steers alpha_t
towards the target rate; the GAN's :class:`rtaic.training.adversarial_module.AdversarialGate`
picks D or G steps). They share one pattern: after each step the module publishes what it
measured as :attr:`feedback` (rank-averaged under DDP, None when the step was skipped),
and a controller sets the knob the next step reads (the buffer ``acr_alpha``, the
module's ``gate_decision``). Why callbacks: a controller is a policy over a run, not part
of the network; a run without one is a plain module (the quantization-aware finetune has
no ACR), a controller's state is checkpointed by Lightning as callback state, and the step
stays one readable function with no controller logic inside it.

The adversarial parts (a discriminator, its optimizer, the confusion gradient) live in a
subclass, :class:`rtaic.training.adversarial_module.AdversarialRTAICModule`; this module
offers it the hooks :meth:`_extra_loss`, :meth:`_autoencoder_trains`, :meth:`_clip_extra`
and :meth:`_after_step`.

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

from rtaic.checkpoint import codec_record
from rtaic.coding.bitplanes import to_bitplanes
from rtaic.coding.context import BitContextModel
from rtaic.coding.quantize import dequantize, quantize_levels
from rtaic.metrics import ciede2000, msssim_window, psnr
from rtaic.nn.autoencoder import Architecture, Autoencoder, AutoencoderOutput, latent_channels_for
from rtaic.training.acr import acr_penalty
from rtaic.training.losses import distortion_loss, msssim_loss


class StepLosses(NamedTuple):
    """The terms of one step, per-batch means (``out`` keeps the graph to x_hat)."""

    out: AutoencoderOutput
    rec: torch.Tensor  # the distortion loss (1 - MS-SSIM [+ L1])
    msssim: torch.Tensor
    acr: torch.Tensor  # the ACR penalty without alpha (0 when the encoder is frozen)
    bpp: torch.Tensor  # the context model's code length per pixel


class Feedback(NamedTuple):
    """What a step measured, for the feedback controllers (averaged over DDP ranks)."""

    bpp: float  # the context model's code length, bits per pixel
    discriminator_accuracy: float | None = None  # D's batch accuracy (GAN steps only)


def step_decay(milestones, gamma: float):
    """The learning-rate factor at a step: gamma to the number of milestones passed."""
    milestones = sorted(milestones)
    return lambda step: gamma ** bisect.bisect_right(milestones, step)


class RTAICModule(pl.LightningModule):
    """The codec's networks and how they learn. Arguments are the keys of
    ``conf/model/*.yaml``; those the config always sets have no default here."""

    def __init__(
        self,
        architecture: dict,
        target_bpp: float,
        total_to_target_ratio: float,
        lr: float,
        lr_milestones: list[int],
        lr_gamma: float,
        context_lr: float,
        grad_clip: float,
        acr_epsilon: float,
        l1_weight: float,
        train_crop_size: int,
        max_consecutive_skips: int,
        freeze_encoder: bool = False,
        finetune_rdoq: float = 0.0,
        finetune_rdoq_share: float = 1.0,
        architecture_from: str | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.save_hyperparameters()
        if target_bpp <= 0:
            raise ValueError(f"target_bpp must be positive, got {target_bpp}")
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
        self.register_buffer("acr_alpha", torch.tensor(1.0))  # set by ACRCallback
        self.register_buffer("skipped_steps", torch.tensor(0, dtype=torch.long))
        self.train_window = msssim_window(train_crop_size)
        self.feedback: Feedback | None = None  # the last step's measurements; None: skipped
        self._consecutive_skips = 0

    @property
    def target_bpp(self) -> float:
        """The rate this model is trained for (ACR steers to it, ``val/score`` penalises
        overshooting it)."""
        return float(self.hparams.target_bpp)

    # -- losses -----------------------------------------------------------------------
    def estimated_bpp(self, y: torch.Tensor, pixels: int) -> torch.Tensor:
        """Per-image code length of the quantized latent under the context model, in bpp."""
        bits = self.architecture.bits
        planes = to_bitplanes(quantize_levels(y, bits), bits)
        return self.context_model(planes) / pixels

    def _distortion(self, x_hat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rec, msssim = distortion_loss(
            x_hat, x, self.architecture.color_space, self.train_window, self.hparams.l1_weight
        )
        return rec, msssim.mean()

    def reconstruction_losses(self, x: torch.Tensor) -> StepLosses:
        out = self.autoencoder(x)
        rec, msssim = self._distortion(out.x_hat, x)
        penalty = acr_penalty(out.q, self.hparams.acr_epsilon)
        bpp = self.estimated_bpp(out.y, x.shape[-2] * x.shape[-1])
        return StepLosses(out, rec, msssim, penalty, bpp.mean())

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
        n = round(float(self.hparams.finetune_rdoq_share) * len(x))
        if lam > 0 and n > 0:
            from rtaic.coding.rdoq import channel_weights, rdoq_levels

            table = self.context_model.probability_table()
            weights = channel_weights(self.autoencoder)
            chosen = rdoq_levels(levels[:n].cpu(), y[:n].float().cpu(), self.context_model, table, lam, weights)
            levels = torch.cat([chosen.to(y.device), levels[n:]])
        return y, levels, dequantize(levels, bits, y.dtype)

    def quantized_losses(self, x: torch.Tensor) -> StepLosses:
        """:meth:`reconstruction_losses` on the inference latents: the decoder and the
        context model learn what the codec will give them; no ACR (the encoder is fixed)."""
        y, levels, q = self.inference_latents(x)
        x_hat = self.autoencoder.decode(q, x.shape[-2:])
        rec, msssim = self._distortion(x_hat, x)
        planes = to_bitplanes(levels, self.architecture.bits)
        bpp = self.context_model(planes) / (x.shape[-2] * x.shape[-1])
        return StepLosses(AutoencoderOutput(x_hat, y, q), rec, msssim, torch.zeros((), device=x.device), bpp.mean())

    # -- training ---------------------------------------------------------------------
    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        scheds = self.lr_schedulers()
        scheds = scheds if isinstance(scheds, list) else [scheds]
        r = self.quantized_losses(batch) if self.hparams.freeze_encoder else self.reconstruction_losses(batch)
        loss_g = r.rec + self.acr_alpha * r.acr
        loss = loss_g + r.bpp
        if not torch.isfinite(loss):
            self._skip("loss")
            return
        extra = self._extra_loss(batch, r)
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        trained = loss if self._autoencoder_trains() else r.bpp  # else: the context model only
        self.manual_backward(trained if extra is None else trained + extra)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.autoencoder.parameters(), self.hparams.grad_clip)
        extra_norm = self._clip_extra()
        if not (torch.isfinite(grad_norm) and torch.isfinite(extra_norm)):
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            self._skip("gradient")
            return
        opts[0].step()
        scheds[0].step()
        self._consecutive_skips = 0
        accuracy = self._after_step(opts, scheds, extra_norm)
        self.feedback = Feedback(self._synced(float(r.bpp.detach())), accuracy)
        self.log_dict(
            {
                "train/loss": loss_g.detach(),
                "train/msssim": r.msssim.detach(),
                "train/acr_penalty": r.acr.detach(),
                "train/bpp": r.bpp.detach(),
                "train/grad_norm": grad_norm,
                "train/lr": opts[0].param_groups[0]["lr"],
            },
            prog_bar=False,
        )
        self.log("bpp", r.bpp.detach(), prog_bar=True, logger=False)
        self.log("msssim", r.msssim.detach(), prog_bar=True, logger=False)

    def _extra_loss(self, x: torch.Tensor, losses: StepLosses) -> torch.Tensor | None:
        """A subclass's term added to this step's backward (None: nothing)."""
        return None

    def _autoencoder_trains(self) -> bool:
        """False in a step that trains a subclass's network instead (a GAN's D-only step):
        the autoencoder then gets no gradient, and Adam leaves its weights as they are."""
        return True

    def _clip_extra(self) -> torch.Tensor:
        """Clip a subclass's own gradients; their norm (0: none) joins the finite check."""
        return torch.zeros(())

    def _after_step(self, opts: list, scheds: list, extra_norm: torch.Tensor) -> float | None:
        """A subclass's share after the generator stepped; returns D's accuracy or None."""
        return None

    def _synced(self, value: float) -> float:
        """Mean over DDP ranks, so that every rank's controllers take the same decisions."""
        if self._trainer is None or self.trainer.world_size == 1:
            return value
        t = torch.tensor(value, device=self.device)
        return float(self.trainer.strategy.reduce(t, reduce_op="mean"))

    def _skip(self, what: str) -> None:
        self.skipped_steps += 1
        self._consecutive_skips += 1
        self.feedback = None
        if self._consecutive_skips > self.hparams.max_consecutive_skips:
            raise FloatingPointError(
                f"{self._consecutive_skips} consecutive steps had a non-finite {what}: training "
                "diverged (try a lower lr or grad_clip, or check the data)"
            )
        self.log("train/skipped_steps", self.skipped_steps.float())
        if self._trainer is not None and self.global_rank == 0:
            print(f"rtaic: non-finite {what} at step {self.global_step}; step skipped "
                  f"({int(self.skipped_steps)} so far)")

    # -- validation -------------------------------------------------------------------
    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> dict:
        """Logs the validation metrics; returns the clamped reconstruction (for
        :class:`rtaic.training.reconstructions.ReconstructionLogger`)."""
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
        # model selection: MS-SSIM, minus a penalty for overshooting the target by > 10 %
        rd_score = score - max(0.0, float(bpp) / self.target_bpp - 1.1)
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
        return {"x_hat": x_hat}

    # -- optimizers & checkpoints -----------------------------------------------------
    def _generator_optimizer(self):
        """One Adam over two parameter groups (autoencoder; context model), so that a
        training step is one optimizer step (Lightning counts global_step in those).
        The autoencoder's lr drops by lr_gamma at each milestone; the context model's not.
        With ``freeze_encoder`` the first group is the decoder only: the encoder is never
        stepped."""
        hp = self.hparams
        trained = self.autoencoder.decoder if hp.freeze_encoder else self.autoencoder
        opt = torch.optim.Adam(
            [
                {"params": trained.parameters(), "lr": hp.lr},
                {"params": self.context_model.parameters(), "lr": hp.context_lr},
            ]
        )
        decay = step_decay(hp.lr_milestones, hp.lr_gamma)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, [decay, lambda step: 1.0])
        return opt, {"scheduler": sched, "interval": "step"}

    def configure_optimizers(self):
        opt, sched = self._generator_optimizer()
        return [opt], [sched]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rtaic"] = codec_record(self.autoencoder, self.context_model)
        if self._trainer is not None:  # the latest validation, for the model zoo's manifest
            checkpoint["rtaic_val"] = {
                k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")
            }
