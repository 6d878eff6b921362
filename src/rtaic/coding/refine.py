"""Latent refinement: a slower encoder that searches, per image, for a better latent.

The encoder network maps an image to its latent in one pass; it was trained for all images
at once and is far from converged (the amortization gap). Refinement starts from that
latent y and takes a few Adam steps on y itself through the (frozen) decoder, minimising

    1 - MS-SSIM(decode(Q(y)), x)  (in the model's colour space)  +  alpha * ACR(Q(y))

with Q the codec's quantizer and a straight-through gradient, alpha the model's own ACR
coefficient (recorded in the export; DEFAULT_ALPHA if it has none). The step is small
(1e-4 against a quantization step of 1/32): what moves is mostly which side of a
quantization boundary a value falls on. The iterate with the lowest loss is kept, the
first (the plain encoder's latent) included, so refinement never scores worse than the
plain encoder on this loss. Only the encoder changes: the file is an ordinary file.

Measured (docs/training.md, "Latent refinement"): on BSDS val images, 30 steps gave the
0.5 bpp YCbCr model +0.0043 RGB MS-SSIM at -0.2% bytes, at about 30 decoder passes
forward and backward per image.
"""

from __future__ import annotations

import torch

from rtaic.coding.penalty import acr_penalty
from rtaic.coding.quantize import quantize
from rtaic.metrics import msssim_window, weighted_msssim
from rtaic.nn.autoencoder import Autoencoder

DEFAULT_STEPS = 30
DEFAULT_LR = 1e-4
DEFAULT_ALPHA = 0.015  # for models exported without their ACR coefficient (trained: 0.010-0.034)
ACR_EPSILON = 1e-2  # the training default (conf/model/rtaic.yaml acr_epsilon)
MAX_PIXELS = 2**23  # 8 Mpx: the decoder's backward pass holds every activation at once


def refine_latent(
    autoencoder: Autoencoder,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    alpha: float | None = None,
) -> tuple[torch.Tensor, list[float]]:
    """(the best latent found, the loss of every iterate): ``x`` (1, 3, H, W) RGB in [0, 1],
    ``y`` the encoder's latent for it (1, C, h, w) on the whole latent grid. Images too
    small for 5-level MS-SSIM (a side of 32 px or less) keep ``y`` (no losses)."""
    if steps < 0:
        raise ValueError(f"refinement steps must be >= 0, got {steps}")
    try:
        msssim_window(min(x.shape[-2:]))
    except ValueError:
        return y, []
    if x.shape[-2] * x.shape[-1] > MAX_PIXELS:
        raise ValueError(f"latent refinement holds the decoder's activations for the whole image: "
                         f"{x.shape[-1]}x{x.shape[-2]} is above {MAX_PIXELS} pixels (encode without it)")  # fmt: skip
    arch = autoencoder.architecture
    alpha = DEFAULT_ALPHA if alpha is None else float(alpha)
    size = x.shape[-2:]
    was_training = autoencoder.training
    autoencoder.eval()
    params = list(autoencoder.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    var = y.detach().clone().float().requires_grad_(True)
    opt = torch.optim.Adam([var], lr=lr)
    best, best_loss, losses = var.detach().clone(), float("inf"), []
    try:
        with torch.enable_grad(), torch.inference_mode(False):
            for step in range(steps + 1):
                q = quantize(var.clamp(-1, 1), arch.bits)
                x_hat = autoencoder.decode(q, size)
                loss = 1 - weighted_msssim(x_hat, x, arch.color_space).mean()
                loss = loss + alpha * acr_penalty(q, ACR_EPSILON)
                value = float(loss.detach())
                losses.append(value)
                if value < best_loss:
                    best, best_loss = var.detach().clone(), value
                if step == steps:
                    break
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)
        autoencoder.train(was_training)
    return best.clamp(-1, 1), losses
