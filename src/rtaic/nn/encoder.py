"""Encoder: pyramidal decomposition + interscale alignment (paper section 3.1).

    x_0 = image;  x_m = lrelu(Down_m(x_{m-1}))   (learned 4x4 stride-2 downsamplers)
    f_m = Extract_m(x_m)                          (learned per-scale extractors)
    y   = Bound(Joint(sum_m Align_m(f_m)) + L(avgpool(x_0 - 1/2)))   (optional linear path)

Align_m is a strided conv for scales finer than the latent grid and a transposed conv for
coarser ones, so every scale lands on the same (H / stride, W / stride) grid. The output
is bounded to (-1, 1), the range of the B-bit quantizer.

The optional low-pass path L (a 1x1 conv of the image averaged over each latent cell) is
linear, so the image's mean colour per cell reaches the latent in one step. Its ``patch``
form is a learned stride x stride conv of the image instead (a block transform; the
low-pass path is the special case of a constant kernel). The deep
non-linear path alone learns low frequencies and the chroma axes slowly: short CPU runs
trained on MS-SSIM kept one chroma axis and lost the other (CIEDE2000 ~12 on saturated
images); with the path they match JPEG's colour error at the same rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rtaic.nn.layers import act, conv, extractor, resample


class Encoder(nn.Module):
    def __init__(
        self,
        channels: list[int],
        align_channels: int,
        latent_channels: int,
        latent_stride_log2: int = 3,
        extractor_depth: int = 1,
        joint_layers: int = 2,
        in_channels: int = 3,
        lowpass: bool = False,
        patch: bool = False,
    ) -> None:
        super().__init__()
        self.scales = len(channels)
        self.latent_stride = s = 2**latent_stride_log2
        self.patch = patch
        kernel = (s, s) if patch else (1, 1)
        self.lowpass = nn.Conv2d(in_channels, latent_channels, kernel, stride=kernel) if lowpass else None
        ins = [in_channels] + list(channels[1:])
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ins[m - 1], channels[m], 4, stride=2, padding=1), act())
            for m in range(1, self.scales)
        )
        self.extract = nn.ModuleList(
            extractor(ins[m], channels[m], extractor_depth) for m in range(self.scales)
        )
        self.align = nn.ModuleList(
            resample(channels[m], align_channels, latent_stride_log2 - m) for m in range(self.scales)
        )
        joint: list[nn.Module] = [act()]
        for _ in range(joint_layers - 1):
            joint += [conv(align_channels, align_channels), act()]
        joint += [conv(align_channels, latent_channels)]
        self.joint = nn.Sequential(*joint)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)  # see Autoencoder: faster convs
        image = x
        total = None
        for m in range(self.scales):
            if m > 0:
                x = self.down[m - 1](x)
            aligned = self.align[m](self.extract[m](x))
            total = aligned if total is None else total + aligned
        pre = self.joint(total)
        linear = self.linear(image)
        if linear is not None:
            pre = pre + linear
        return torch.tanh(pre).contiguous()  # NCHW again for the quantizer and the coder

    def linear(self, image: torch.Tensor) -> torch.Tensor | None:
        """The linear path's contribution to the latent (before the bound), or None."""
        if self.lowpass is None:
            return None
        if self.patch:
            return self.lowpass(image - 0.5)
        return self.lowpass(F.avg_pool2d(image - 0.5, self.latent_stride))
