"""MS-SSIM, PSNR and CIEDE2000: MS-SSIM and PSNR as the paper measures them: per channel, then weighted by colour space.

Used both as the training loss and by the evaluation, so that the number we optimise is the
number we report. pytorch-msssim needs the short side of an image to exceed
``(win_size - 1) * 2**(levels - 1)``; :func:`msssim_window` picks the largest odd window
(at most the standard 11) that makes the standard 5-level MS-SSIM valid for a given size,
so 128 px training crops use a 7x7 window while Kodak uses the standard 11x11.
"""

from __future__ import annotations

import torch
from pytorch_msssim import ms_ssim

from rtaic.color import CHANNEL_WEIGHTS, to_space

LEVELS = 5


def msssim_window(short_side: int, max_window: int = 11) -> int:
    """Largest odd window <= max_window valid for 5-level MS-SSIM at this short side."""
    for win in range(max_window, 2, -2):
        if short_side > (win - 1) * 2 ** (LEVELS - 1):
            return win
    raise ValueError(
        f"images with a short side of {short_side} px are too small for {LEVELS}-level "
        f"MS-SSIM (need more than {2 * 2 ** (LEVELS - 1)} px)"
    )


def _no_mkldnn():
    # oneDNN runs the depthwise Gaussian filter about 2x slower on CPU than PyTorch's own kernel.
    return torch.backends.mkldnn.flags(enabled=False)


class _WithoutOneDnn(torch.autograd.Function):
    """Runs ``fn(a, b)`` with oneDNN off in the forward *and* the backward pass.

    Autograd picks the convolution backend again when it runs the backward, with the flags
    in force then: a flag set around the forward alone leaves the MS-SSIM filter's backward
    on oneDNN, which made it ~3x slower than PyTorch's own kernel on a 2-core x86 CPU while the
    networks' convolutions are ~3x faster on oneDNN. So the metric keeps its own graph and
    differentiates it here, with the flag off.
    """

    @staticmethod
    def forward(ctx, fn, a, b):
        ctx.inputs = [t.detach().requires_grad_(t.requires_grad) for t in (a, b)]
        with torch.enable_grad(), _no_mkldnn():
            ctx.output = fn(*ctx.inputs)
        return ctx.output.detach()

    @staticmethod
    def backward(ctx, grad):
        needed = [t.requires_grad for t in ctx.inputs]
        wanted = [t for t in ctx.inputs if t.requires_grad]
        # retain: the outer graph may be differentiated again (the GAN's gradient balancing
        # takes the reconstruction gradient first); the metric's graph is freed with ctx.
        with _no_mkldnn():
            grads = iter(torch.autograd.grad(ctx.output, wanted, grad, retain_graph=True) if wanted else ())
        return (None, *(next(grads) if need else None for need in needed))


def weighted_msssim(
    x: torch.Tensor,
    y: torch.Tensor,
    color_space: str = "rgb",
    win_size: int | None = None,
) -> torch.Tensor:
    """Per-image MS-SSIM of two RGB batches (N, 3, H, W) in [0, 1], in ``color_space``.

    Each channel is scored on its own and the channels are combined with the colour space's
    weights (RGB 1:1:1, YCbCr 6:1:1). Returns a tensor of shape (N,).
    """
    if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected two (N, 3, H, W) batches, got {tuple(x.shape)} and {tuple(y.shape)}")
    win = win_size or msssim_window(min(x.shape[-2:]))
    weights = CHANNEL_WEIGHTS[color_space]

    def score(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = to_space(a, color_space), to_space(b, color_space)
        per_channel = [
            ms_ssim(a[:, c : c + 1], b[:, c : c + 1], data_range=1.0, size_average=False, win_size=win)
            for c in range(3)
        ]
        return sum(w * s for w, s in zip(weights, per_channel, strict=True))

    if x.device.type != "cpu":
        return score(x, y)
    if torch.is_grad_enabled() and (x.requires_grad or y.requires_grad):
        return _WithoutOneDnn.apply(score, x, y)
    with _no_mkldnn():
        return score(x, y)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of two batches in [0, 1]."""
    mse = (x - y).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(1.0 / mse)


def ciede2000(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image mean CIEDE2000 colour difference of two RGB batches (N, 3, H, W) in [0, 1].

    MS-SSIM per channel barely sees a shift of hue (a model that lost the red-green axis
    kept its MS-SSIM); this sees it. The batches are read as sRGB (D65); not differentiable.
    """
    from skimage.color import deltaE_ciede2000, rgb2lab

    if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected two (N, 3, H, W) batches, got {tuple(x.shape)} and {tuple(y.shape)}")
    a, b = (t.detach().clamp(0, 1).permute(0, 2, 3, 1).double().cpu().numpy() for t in (x, y))
    d = deltaE_ciede2000(rgb2lab(a, channel_axis=-1), rgb2lab(b, channel_axis=-1), channel_axis=-1)
    return torch.from_numpy(d.reshape(d.shape[0], -1).mean(1)).to(x.dtype)
