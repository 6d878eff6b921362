"""RGB <-> YCbCr (ITU-R BT.601, full range, as JPEG uses it) and the metric's channel weights.

The paper reports MS-SSIM in RGB (channels weighted equally) and in YCbCr with the
weights 6:1:1 (luma counts six times as much as each chroma channel).
"""

from __future__ import annotations

import torch

# Each colour space's key (configs, records, file names) and its name in text and plots.
COLOR_SPACE_NAMES = {"rgb": "RGB", "ycbcr": "YCbCr"}
COLOR_SPACES = tuple(COLOR_SPACE_NAMES)
CHANNEL_WEIGHTS = {"rgb": (1 / 3, 1 / 3, 1 / 3), "ycbcr": (6 / 8, 1 / 8, 1 / 8)}

_RGB_TO_YCBCR = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [-0.168735892, -0.331264108, 0.5],
        [0.5, -0.418687589, -0.081312411],
    ],
    dtype=torch.float64,
)
# The luma row, Y = 0.299 R + 0.587 G + 0.114 B (also what Pillow's convert("L") computes).
LUMA = tuple(_RGB_TO_YCBCR[0].tolist())
_YCBCR_TO_RGB = torch.linalg.inv(_RGB_TO_YCBCR)
_OFFSET = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)


def check_color_space(name: str) -> str:
    if name not in COLOR_SPACES:
        raise ValueError(f"unknown colour space {name!r}; expected one of {COLOR_SPACES}")
    return name


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> YCbCr in [0, 1] (chroma centred on 0.5)."""
    y = torch.einsum("ij,...jhw->...ihw", _RGB_TO_YCBCR.to(x), x)  # .to(x): x's device and dtype
    return y + _OFFSET.to(x).view(3, 1, 1)


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr`."""
    return torch.einsum("ij,...jhw->...ihw", _YCBCR_TO_RGB.to(x), x - _OFFSET.to(x).view(3, 1, 1))


def to_space(x: torch.Tensor, color_space: str) -> torch.Tensor:
    """RGB -> the named colour space."""
    return rgb_to_ycbcr(x) if check_color_space(color_space) == "ycbcr" else x


def from_space(x: torch.Tensor, color_space: str) -> torch.Tensor:
    """The named colour space -> RGB."""
    return ycbcr_to_rgb(x) if check_color_space(color_space) == "ycbcr" else x
