"""The bit-probability model of the adaptive arithmetic coder (paper 3.2.3).

A classifier over discrete contexts: each bit gets a context id built only from bits the
decoder already has, and a learned logit per context gives P(bit = 1). Being a table over
integer features, its probabilities are identical for any batch size, thread count or
process; the coder uses them as integers (``probability_table``).

Decoding order (whole groups of bits at once, never one Python call per bit):

    for each plane p = MSB magnitude ... LSB magnitude, then the sign plane:
        group (p, parity 0): positions with (h + w) even  -- context: higher planes only
        group (p, parity 1): positions with (h + w) odd   -- + the 4 neighbours in plane p
                                                             (all of parity 0, decoded)

Context features of a magnitude bit at (c, h, w) in plane p:
    plane p and channel c;
    the magnitude so far (higher planes) at this position, bucketed 0 | 1 | 2-3 | 4+;
    how many of the 8 neighbours are already significant, bucketed 0 | 1 | 2 | 3+;
    for parity 1: how many of the 4 neighbours have bit 1 in plane p, 0 | 1 | 2+
    (parity 0 has its own 'unknown' value).
Sign bits are coded only where the magnitude is non-zero; their context is the channel,
the magnitude bucket and, for parity 1, the sign balance of the non-zero 4-neighbours.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rtaic.coding.bitplanes import magnitude

PROBABILITY_BITS = 16  # the coder's probabilities are integers in units of 2**-16
_EIGHT = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
_FOUR = [(-1, 0), (0, -1), (0, 1), (1, 0)]
_MAG_FEATURES = 4 * 4 * 4  # magnitude bucket x significant neighbours x current-plane neighbours
_SIGN_FEATURES = 4 * 4  # current-plane sign balance x magnitude bucket


def _neighbour_sum(a: torch.Tensor, offsets: list[tuple[int, int]]) -> torch.Tensor:
    """Sum of a (N, C, H, W) integer tensor over neighbour offsets, zero outside the image."""
    h, w = a.shape[-2:]
    ap = F.pad(a, (1, 1, 1, 1))
    out = torch.zeros_like(a)
    for dy, dx in offsets:
        out += ap[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
    return out


def parity_mask(h: int, w: int, device=None) -> torch.Tensor:
    """(H, W) bool, True where (h + w) is odd: the second group of every plane."""
    ii = torch.arange(h, device=device).view(-1, 1)
    jj = torch.arange(w, device=device).view(1, -1)
    return ((ii + jj) % 2).bool()


def _bucket(m: torch.Tensor) -> torch.Tensor:
    """0 | 1 | 2-3 | 4+ -> 0..3"""
    return (m >= 1).int() + (m >= 2).int() + (m >= 4).int()


class BitContextModel(nn.Module):
    """Learned P(bit = 1 | context) for the bitplanes of a (C-channel, B-bit) latent."""

    def __init__(self, channels: int, bits: int, init_logit: float = -2.0) -> None:
        super().__init__()
        self.channels, self.bits = channels, bits
        self.sign_offset = (bits - 1) * channels * _MAG_FEATURES
        self.num_contexts = self.sign_offset + channels * _SIGN_FEATURES
        self.logits = nn.Parameter(torch.full((self.num_contexts,), float(init_logit)))

    # -- contexts ---------------------------------------------------------------------
    def plane_contexts(self, planes: torch.Tensor, p: int) -> torch.Tensor:
        """Context ids (N, C, H, W) int64 for plane p of (N, B, C, H, W) planes.

        Uses only planes < p everywhere, and plane p at parity-0 positions for the
        parity-1 positions: so the decoder may call it on partially decoded planes.
        """
        n, b, c, h, w = planes.shape
        if b != self.bits or c != self.channels:
            raise ValueError(f"planes of shape {tuple(planes.shape)} do not fit a {c}-channel, {b}-bit model")
        odd = parity_mask(h, w, planes.device)
        chan = torch.arange(c, device=planes.device).view(1, c, 1, 1)
        if p < b - 1:
            so_far = magnitude(planes, upto=p)
            sig_nbrs = _neighbour_sum((so_far > 0).int(), _EIGHT).clamp_(max=3)
            cur_nbrs = _neighbour_sum(planes[:, p].int(), _FOUR).clamp_(max=2) + 1
            cur = torch.where(odd, cur_nbrs, torch.zeros_like(cur_nbrs))
            ctx = ((p * c + chan) * 4 + _bucket(so_far)) * 4 + sig_nbrs
            return (ctx * 4 + cur).long()
        mag = magnitude(planes)
        signed = torch.where(planes[:, p].bool(), -1, 1) * (mag > 0).int()
        balance = _neighbour_sum(signed, _FOUR).sign() + 2  # 1, 2, 3
        cur = torch.where(odd, balance, torch.zeros_like(balance))
        return (self.sign_offset + (chan * 4 + cur) * 4 + _bucket(mag)).long()

    @staticmethod
    def coded_mask(planes: torch.Tensor, p: int) -> torch.Tensor | None:
        """Which bits of plane p are coded: all of them, except sign bits of zeros."""
        return magnitude(planes) > 0 if p == planes.shape[1] - 1 else None

    # -- training: differentiable code length ----------------------------------------
    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        """Estimated code length in bits of each image's planes, shape (N,)."""
        total = torch.zeros(planes.shape[0], device=planes.device)
        for p in range(planes.shape[1]):
            ctx = self.plane_contexts(planes, p)
            nats = F.binary_cross_entropy_with_logits(
                self.logits[ctx], planes[:, p].float(), reduction="none"
            )
            mask = self.coded_mask(planes, p)
            if mask is not None:
                nats = nats * mask
            total = total + nats.flatten(1).sum(1)
        return total / math.log(2)

    # -- coding: exact integer probabilities --------------------------------------------
    @torch.no_grad()
    def probability_table(self) -> np.ndarray:
        """P(bit = 1) per context as int64 in units of 2**-16, in [1, 2**16 - 1].

        Computed in float64 with numpy on the CPU; the codec stores this table, so the
        encoder and decoder never recompute probabilities from floats.
        """
        logits = self.logits.detach().cpu().double().numpy()
        p1 = 1.0 / (1.0 + np.exp(-logits))
        scale = 2**PROBABILITY_BITS
        return np.clip(np.rint(p1 * scale), 1, scale - 1).astype(np.int64)


def code_length_bits(
    table: np.ndarray, model: BitContextModel, planes: torch.Tensor, skip_empty: bool = False
) -> float:
    """Ideal code length in bits of planes under an integer probability table.

    ``skip_empty=True`` counts what payload version 2 codes: the bits of empty magnitude
    slices (plane, image, channel) are left out and every such slice has a 1-bit flag.
    """
    p1 = torch.from_numpy(table).double() / 2**PROBABILITY_BITS
    total = 0.0
    for p in range(planes.shape[1]):
        ctx = model.plane_contexts(planes, p)
        bit = planes[:, p].bool()
        prob = torch.where(bit, p1[ctx], 1 - p1[ctx])
        mask = model.coded_mask(planes, p)
        if skip_empty and p < planes.shape[1] - 1:
            active = bit.flatten(2).any(dim=2)  # (N, C)
            total += active.numel()  # the flags
            mask = active[..., None, None].expand_as(bit)
        if mask is not None:
            prob = prob[mask]
        total += float(-torch.log2(prob).sum())
    return total
