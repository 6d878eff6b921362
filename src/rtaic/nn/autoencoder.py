"""The reconstruction path of the codec: colour -> encoder -> B-bit quantizer -> decoder.

    x (RGB) -> to colour space -> pad -> Encoder -> y -> quantize -> q -> Decoder -> x_hat

The whole model is described by an :class:`Architecture` of plain numbers, stored in every
checkpoint so that the codec can be rebuilt without the training configuration.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
from torch import nn

from rtaic.coding.quantize import quantize
from rtaic.color import check_color_space, from_space, to_space
from rtaic.nn.decoder import Decoder
from rtaic.nn.encoder import Encoder
from rtaic.nn.layers import pad_to_multiple


def latent_channels_for(target_bpp: float, ratio: float, stride_log2: int, bits: int) -> int:
    """Latent width so that the raw bitplanes hold ``ratio`` x the target rate:
    channels = ratio * target_bpp * stride**2 / B (at least 1)."""
    return max(1, round(ratio * target_bpp * 4**stride_log2 / bits))


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Every number needed to rebuild the networks (no training settings)."""

    channels: tuple[int, ...] = (16, 32, 64, 96, 128, 128)
    align_channels: int = 96
    latent_channels: int = 16
    latent_stride_log2: int = 3
    extractor_depth: int = 1
    joint_layers: int = 2
    bits: int = 6
    color_space: str = "rgb"
    # Linear low-pass path beside the pyramid (rtaic.nn.encoder). False here only so that
    # records written before the field existed rebuild the networks they describe; every
    # model config sets it.
    lowpass: bool = False
    # The linear path as a learned patch transform (a stride x stride analysis conv, a
    # lapped 2*stride synthesis) instead of the low-pass one: every latent channel can then
    # carry a block pattern the decoder renders exactly, which the thin non-linear decoder
    # of the small models cannot (rtaic.nn.decoder). Needs lowpass; omitted when False.
    patch: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        check_color_space(self.color_space)
        if not 2 <= self.bits <= 16:
            raise ValueError(f"bits must be in [2, 16], got {self.bits}")
        if len(self.channels) < 1:
            raise ValueError("need at least one scale")
        if self.patch and not self.lowpass:
            raise ValueError("patch is a form of the linear path: it needs lowpass=True")

    @property
    def scales(self) -> int:
        return len(self.channels)

    @property
    def stride(self) -> int:
        """Input sizes are padded to a multiple of this."""
        return 2 ** max(self.scales - 1, self.latent_stride_log2)

    @property
    def latent_stride(self) -> int:
        return 2**self.latent_stride_log2

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        if not self.lowpass:  # the record (and so the fingerprint) of models made before the field
            del d["lowpass"]
        if not self.patch:
            del d["patch"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Architecture:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown architecture fields: {sorted(unknown)}")
        return cls(**d)


class AutoencoderOutput(NamedTuple):
    x_hat: torch.Tensor  # reconstruction, RGB, same size as the input (unclamped)
    y: torch.Tensor  # continuous latent in (-1, 1)
    q: torch.Tensor  # quantized latent (straight-through gradient)


class Autoencoder(nn.Module):
    def __init__(self, architecture: Architecture) -> None:
        super().__init__()
        self.architecture = a = architecture
        kw = dict(
            channels=list(a.channels),
            align_channels=a.align_channels,
            latent_channels=a.latent_channels,
            latent_stride_log2=a.latent_stride_log2,
            extractor_depth=a.extractor_depth,
            joint_layers=a.joint_layers,
            lowpass=a.lowpass,
            patch=a.patch,
        )
        self.encoder = Encoder(**kw)
        self.decoder = Decoder(**kw)
        # channels-last (NHWC) weights and activations: oneDNN's convolutions run about 1.5x
        # faster on them than on NCHW (training fwd + bwd of rtaic_small, 1 CPU thread:
        # 155 -> 99 ms per batch of 8 x 128 px). Loading a state dict keeps this layout.
        self.to(memory_format=torch.channels_last)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """RGB (N, 3, H, W) in [0, 1], any size -> continuous latent y."""
        padded, _ = pad_to_multiple(to_space(x, self.architecture.color_space), self.architecture.stride)
        return self.encoder(padded)

    def decode(self, q: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Quantized latent -> RGB reconstruction cropped to ``size`` (unclamped)."""
        out = self.decoder(q)[..., : size[0], : size[1]]
        return from_space(out, self.architecture.color_space)

    def forward(self, x: torch.Tensor) -> AutoencoderOutput:
        y = self.encode(x)
        q = quantize(y, self.architecture.bits)
        return AutoencoderOutput(self.decode(q, x.shape[-2:]), y, q)
