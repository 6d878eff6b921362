"""Decoder: the counterpart of the encoder, run in reverse.

    z   = Joint(q)                                   (joint convs on the latent grid)
    h_m = Refine_m(Unalign_m(z))                     (latent grid -> scale m)
    r_{M-1} = h_{M-1};  r_m = lrelu(Up_m(r_{m+1})) + h_m   (learned 4x4 stride-2 upsamplers)
    x_hat = Out(r_0) + 0.5 [+ upsample(L(q))]          (optional linear low-pass path)

The output is not clamped during training (the loss sees the raw values); inference
clamps it to [0, 1].

The optional low-pass path L, a 1x1 conv of q upsampled bilinearly to the image grid, is
the decoder's half of the encoder's linear path (see rtaic.nn.encoder). Its ``patch`` form
is a learned transposed conv with 2*stride kernels (lapped: neighbouring blocks overlap by
half, so no block edges), on q padded by one replicated cell: bilinear upsampling of a
1x1 conv is its special case (see rtaic.training.runner.lowpass_as_patch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rtaic.nn.layers import act, conv, extractor, resample


class Decoder(nn.Module):
    def __init__(
        self,
        channels: list[int],
        align_channels: int,
        latent_channels: int,
        latent_stride_log2: int = 3,
        extractor_depth: int = 1,
        joint_layers: int = 2,
        out_channels: int = 3,
        lowpass: bool = False,
        patch: bool = False,
    ) -> None:
        super().__init__()
        self.scales = len(channels)
        self.latent_stride = s = 2**latent_stride_log2
        self.patch = patch
        if not lowpass:
            self.lowpass = None
        elif patch:
            self.lowpass = nn.ConvTranspose2d(latent_channels, out_channels, 2 * s, stride=s)
        else:
            self.lowpass = nn.Conv2d(latent_channels, out_channels, 1)
        joint: list[nn.Module] = [conv(latent_channels, align_channels), act()]
        for _ in range(joint_layers - 1):
            joint += [conv(align_channels, align_channels), act()]
        self.joint = nn.Sequential(*joint)
        self.unalign = nn.ModuleList(
            nn.Sequential(resample(align_channels, channels[m], m - latent_stride_log2), act())
            for m in range(self.scales)
        )
        self.refine = nn.ModuleList(
            extractor(channels[m], channels[m], extractor_depth) for m in range(self.scales)
        )
        self.up = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(channels[m + 1], channels[m], 4, stride=2, padding=1), act())
            for m in range(self.scales - 1)
        )
        self.out = conv(channels[0], out_channels)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        q = q.contiguous(memory_format=torch.channels_last)  # see Autoencoder: faster convs
        z = self.joint(q.to(self.trunk_dtype))
        r = None
        for m in reversed(range(self.scales)):
            h = self.refine[m](self.unalign[m](z))
            r = h if r is None else self.up[m](r) + h
        out = self.out(r.to(self.out.weight.dtype)) + 0.5
        linear = self.linear(q)
        if linear is not None:
            out = out + linear
        return out.contiguous()  # NCHW again: the MS-SSIM filter is 3x slower on NHWC

    @property
    def trunk_dtype(self) -> torch.dtype:
        """The non-linear trunk's dtype (see :meth:`with_bfloat16_trunk`)."""
        return self.joint[0].weight.dtype

    def with_bfloat16_trunk(self) -> Decoder:
        """This decoder (in place) for inference with the trunk in bfloat16 and the output
        layer and the linear path in float32: on a CPU with bfloat16 matrix units (AMX)
        its convolutions take about 2/3 of the time, for a loss of about 0.0001 in
        MS-SSIM; the float32 end keeps the image's own resolution (bfloat16 has a step
        of 1/256 at 0.5..1)."""
        for name, module in self.named_children():
            if name not in ("out", "lowpass"):
                module.to(torch.bfloat16)
        return self

    def linear(self, q: torch.Tensor) -> torch.Tensor | None:
        """The linear path's contribution to the image, or None."""
        if self.lowpass is None:
            return None
        s = self.latent_stride
        if self.patch:
            return lapped_synthesis(q, self.lowpass.weight, self.lowpass.bias, s)
        return F.interpolate(self.lowpass(q), scale_factor=s, mode="bilinear", align_corners=False)


def lapped_synthesis(q: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, s: int) -> torch.Tensor:
    """The patch form's image: ``conv_transpose2d(pad(q, 1, replicate), weight, bias,
    stride=s)`` cropped to the latent's s x s cells, as one matmul and four shifted sums.

    Every latent cell paints a 2s x 2s patch, four s x s quadrants; the image cell (i, j)
    sums quadrant (a, b) of cell (i - a, j - b). The transposed convolution computes the
    same (to float rounding) at twice the time on a CPU (oneDNN: 10 vs 5 ms for a Kodak
    image, one thread), and the codec's decoder waits for it. ``weight`` is the
    ConvTranspose2d's (latent, colour, 2s, 2s); the result is a strided NCHW view.
    """
    h, w = q.shape[-2:]
    p = F.pad(q, (1, 1, 1, 1), mode="replicate")
    n, c, hp, wp = p.shape
    out = weight.shape[1]
    cols = torch.matmul(weight.reshape(c, -1).t(), p.reshape(n, c, hp * wp)).view(n, out, 2, s, 2, s, hp, wp)
    cells = cols[:, :, 0, :, 0, :, 1:, 1:] + bias.view(1, out, 1, 1, 1, 1)
    cells = cells.add_(cols[:, :, 1, :, 0, :, :-1, 1:]).add_(cols[:, :, 0, :, 1, :, 1:, :-1])
    cells = cells.add_(cols[:, :, 1, :, 1, :, :-1, :-1])  # (n, colour, y, x, cell row, cell column)
    image = cells.permute(0, 1, 4, 2, 5, 3).reshape(n, out, (hp - 1) * s, (wp - 1) * s)
    c0 = s // 2  # the crop starts half a cell into the padded cell's quadrant row
    return image[..., c0 : c0 + h * s, c0 : c0 + w * s]
