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
        z = self.joint(q)
        r = None
        for m in reversed(range(self.scales)):
            h = self.refine[m](self.unalign[m](z))
            r = h if r is None else self.up[m](r) + h
        out = self.out(r) + 0.5
        linear = self.linear(q)
        if linear is not None:
            out = out + linear
        return out.contiguous()  # NCHW again: the MS-SSIM filter is 3x slower on NHWC

    def linear(self, q: torch.Tensor) -> torch.Tensor | None:
        """The linear path's contribution to the image, or None."""
        if self.lowpass is None:
            return None
        s = self.latent_stride
        if self.patch:
            h, w = q.shape[-2:]
            out = self.lowpass(F.pad(q, (1, 1, 1, 1), mode="replicate"))
            c = s + s // 2  # the padded cell and half a kernel's overhang on each side
            return out[..., c : c + h * s, c : c + w * s]
        return F.interpolate(self.lowpass(q), scale_factor=s, mode="bilinear", align_corners=False)
