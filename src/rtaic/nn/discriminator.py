"""Paired multiscale discriminator (paper 4.1, fig. 10).

The discriminator never sees an image alone: it gets the target and its reconstruction as
one pair, concatenated along channels in a random order, and says which of the two is the
real target. Comparing the two directly is what lets it attend to the artifacts of the
reconstruction rather than to image content.

    pair (N, 6, H, W) = cat(first, second)
    h_0 = lrelu(Conv3x3(pair))
    h_d = Block_d(h_{d-1})          d = 1..depth, each halves the resolution
    s_d = mean_{H,W}(Conv1x1(h_d))  one scalar per depth (fine to coarse)
    b_d(first, second) = s_d(first, second) - s_d(second, first)
    logit = mean_d b_d              P(first is the target) = sigmoid(logit)

The antisymmetric readout b_d makes the answer consistent under swapping (P(first is
real) = 1 - P(second is real)) and is what makes D learn at all in a few hundred steps:
on reconstructions of a 0.1 bpp model, the plain concatenated network stayed at chance
for 360 Adam steps (lr 1e-3), the antisymmetric one reached 100 % accuracy within 60.

Every block is a 3x3 stride-2 conv (padding 1: size -> ceil(size / 2), never 0) and a
3x3 conv, so any image size from 1x1 up works, odd ones included. The branches make the
decision multiscale: fine-scale branches see local texture, coarse ones larger structure.
"""

from __future__ import annotations

import torch
from torch import nn

NEGATIVE_SLOPE = 0.2


def _act() -> nn.Module:
    return nn.LeakyReLU(NEGATIVE_SLOPE)  # not in-place: branches read the same activations


class MultiscaleDiscriminator(nn.Module):
    """Logit that the first image of a channel-concatenated pair is the real target.

    Args:
        width: channels of the stem and of the first block.
        depth: number of downsampling blocks, one scalar branch each.
        max_width: cap on the channel count, which doubles with each block.
        in_channels: channels of one image (the pair has twice as many).
    """

    def __init__(
        self, width: int = 32, depth: int = 4, max_width: int = 256, in_channels: int = 3
    ) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be >= 1, got {width}, {depth}")
        self.in_channels = in_channels
        self.stem = nn.Sequential(nn.Conv2d(2 * in_channels, width, 3, padding=1), _act())
        self.blocks = nn.ModuleList()
        self.branches = nn.ModuleList()
        cin = width
        for d in range(depth):
            cout = min(width * 2**d, max_width)
            self.blocks.append(
                nn.Sequential(
                    nn.Conv2d(cin, cout, 3, stride=2, padding=1),
                    _act(),
                    nn.Conv2d(cout, cout, 3, padding=1),
                    _act(),
                )
            )
            self.branches.append(nn.Conv2d(cout, 1, 1))
            cin = cout

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def branch_outputs(self, pair: torch.Tensor) -> torch.Tensor:
        """(N, 2C, H, W) -> (N, depth): the antisymmetric scalar of every branch, fine to
        coarse. Both orders of the pair go through the network as one batch."""
        if pair.dim() != 4 or pair.shape[1] != 2 * self.in_channels:
            raise ValueError(
                f"expected a pair of shape (N, {2 * self.in_channels}, H, W), got {tuple(pair.shape)}"
            )
        c = self.in_channels
        both = torch.cat([pair, torch.cat([pair[:, c:], pair[:, :c]], dim=1)], dim=0)
        h = self.stem(both)
        outs = []
        for block, branch in zip(self.blocks, self.branches, strict=True):
            h = block(h)
            outs.append(branch(h).mean(dim=(-2, -1)).squeeze(1))
        s = torch.stack(outs, dim=1)
        forward, swapped = s.chunk(2, dim=0)
        return forward - swapped

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        """(N, 2C, H, W) -> (N,) logit; sigmoid(logit) = P(the first image is the target)."""
        return self.branch_outputs(pair).mean(dim=1)
