"""Rate-distortion optimized quantization (RDOQ): an encoder choice, the format is unchanged.

The plain encoder codes the nearest level of the training quantizer, k = ceil(2^(B-1) y).
RDOQ may code another level of the same range (one step down or up, repeatedly over a few
passes) wherever that lowers

    J = D + lambda * R

    R: the ideal code length in bits of the whole latent under the coder's own context
       model and integer probability table, with the contexts of payload version 3
       (magnitude bits as :meth:`BitContextModel.plane_contexts`, signs at first
       significance as :mod:`rtaic.coding.embedded`, empty slices not coded);
    D: latent-domain squared error in units of one quantization step, weighted per
       channel: sum_c w_c sum (u - (k - 1/2))^2 with u = 2^(B-1) y. The decoder only ever
       saw level k for u in (k - 1, k], so k - 1/2 (the middle of that cell) is what it
       stands for; the plain level k minimises D, and moving a value that lies near the
       edge of its cell to the neighbouring level costs little distortion.

lambda = 0 changes nothing (every candidate costs distortion and only a strict decrease of J
is taken): the plain encoder's levels, so its bytes. Larger lambda trades more distortion
for fewer bits. The decoder never changes: every file stays decodable by today's decoder.

The search is greedy and exact about the context model: a value's bits set the contexts of
its 8 neighbours only (significance so far, the current plane's 4-neighbour bits, the sign
neighbour value), so the bits a change saves or costs lie in its 3 x 3 window. The latent
grid is split into the 9 classes (h mod 3, w mod 3): the 3 x 3 windows of one class tile
the grid without overlap, so the effect of changing every value of a class at once is,
window by window, exactly the effect of changing that value alone. For each class one
vectorized evaluation of the per-position code length (only the planes and slices a change
reaches) gives every value's rate change (the sum of the difference over its window); a
value moves if J falls, and the next class sees the result. The candidate is the level on
the side of the cell where u lies (k - 1 if u < k - 1/2, else k + 1: distortion cost 0..1
step^2 x w; the other side costs 1..2 and never paid off on the validation images;
``moves="both"`` tries both).
Two passes over the 9 classes (``DEFAULT_PASSES``) get nearly all of the gain. The slice
flags (which (plane, channel) slices are coded at all) are refreshed between passes; a
change that would need a bit in a slice that is not coded is not considered. Tests check
the decisions against a value-by-value brute force (tests/coding/test_rdoq.py).

Tuning (benchmarks/quantization_gain.py, 30 BSDS500 val images, bundled RGB models):
lambda 0.01 / 0.02 / 0.03 / 0.05 gave BD-rate -0.95 / -1.51 / -1.71 / -1.38 %; weights
from the decoder beat uniform ones (-1.75 vs -1.50 % on 10 images at 0.03); scaling
lambda per model by its rate did not help.
"""

from __future__ import annotations

import numpy as np
import torch

from rtaic.coding.context import BitContextModel
from rtaic.coding.embedded import _neighbour_signs, sign_bucket
from rtaic.coding.quantize import max_level
from rtaic.coding.scan import FLAG_PROBABILITY, _bucket, _eight_neighbours, _four_neighbours

DEFAULT_PASSES = 2


def _box3(a: np.ndarray) -> np.ndarray:
    """3 x 3 box sum of a (S, H, W) float array, zero outside."""
    s, h, w = a.shape
    ap = np.zeros((s, h + 2, w + 2), dtype=a.dtype)
    ap[:, 1:-1, 1:-1] = a
    rows = ap[:, :, :-2] + ap[:, :, 1:-1]
    rows += ap[:, :, 2:]
    out = rows[:, :-2] + rows[:, 1:-1]
    out += rows[:, 2:]
    return out


def _windows(a: int, b: int, h: int, w: int) -> list[tuple[slice, slice]]:
    """For the grid (rows a, a + 3, ..; columns b, b + 3, ..) of an h x w latent: the 9
    strided slices of the zero-bordered (h + 2, w + 2) array that hold, at each grid value's
    place, one position of its 3 x 3 window (summed over the 9: the window sum)."""
    gh, gw = len(range(a, h, 3)), len(range(b, w, 3))
    return [(slice(a + 1 + dy, a + 2 + dy + 3 * (gh - 1), 3), slice(b + 1 + dx, b + 2 + dx + 3 * (gw - 1), 3))
            for dy in (-1, 0, 1) for dx in (-1, 0, 1)]  # fmt: skip


class RateModel:
    """Ideal code length of integer latent levels under a context model's integer table,
    position by position, in the contexts of payload version 3."""

    def __init__(self, model: BitContextModel, table: np.ndarray) -> None:
        from rtaic.coding.arithmetic import probabilities

        p1 = probabilities(table)
        with np.errstate(divide="ignore"):
            cost = np.stack([-np.log2(1.0 - p1), -np.log2(p1)], axis=1)
        self.cost = cost.reshape(-1)  # float64, index 2 * context + bit
        self.channels, self.bits = model.channels, model.bits
        self.sign_offset = model.sign_offset
        self.sign_buckets = [sign_bucket(model.bits, p) for p in range(model.bits - 1)]
        # context features as lookup tables, pre-multiplied into 2 * context + bit:
        # 2 * ((((p C + c) 4 + bucket) 4 + sig) 4 + cur) + bit
        m = 2 ** (model.bits - 1)
        self._bucket = (32 * _bucket(np.arange(m))).astype(np.int32)
        self._sig = (8 * np.minimum(np.arange(9), 3)).astype(np.int32)
        self._cur = (2 * (np.minimum(np.arange(5), 2) + 1)).astype(np.int32)

    def slices(self, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(S, H, W) view of (N, C, H, W) levels and each slice's channel."""
        n, c, h, w = levels.shape
        if c != self.channels:
            raise ValueError(f"levels of {c} channels do not fit a {self.channels}-channel model")
        return levels.reshape(n * c, h, w), np.tile(np.arange(c, dtype=np.int32), n)

    def active(self, mag: np.ndarray) -> np.ndarray:
        """(B-1, S) bool: the magnitude slices that hold a 1 (the coded ones)."""
        planes = self.bits - 1
        bits = np.bitwise_or.reduce(mag.reshape(mag.shape[0], -1), axis=1)
        return np.stack([(bits >> (planes - 1 - p)) & 1 for p in range(planes)]).astype(bool)

    def costs(self, mag: np.ndarray, neg: np.ndarray, chan: np.ndarray,
              active: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """(S, H, W) bits spent at each position: its magnitude bits in every coded slice and
        its sign. ``mag`` (S, H, W) int16 magnitudes, ``neg`` bool signs, ``active`` (B-1, S)
        which slices count (default: those the magnitudes make active)."""
        if active is None:
            active = self.active(mag)
        out = np.zeros(mag.shape, dtype=np.float64)
        for p in range(self.bits - 1):
            out += self.plane_costs(mag, neg, chan, active[p], p)
        return out

    def plane_costs(self, mag: np.ndarray, neg: np.ndarray, chan: np.ndarray, active: np.ndarray,
                    p: int) -> np.ndarray:  # fmt: skip
        """(S, H, W) bits spent in magnitude plane p at each position: its bit (0 in slices
        not ``active``) and its sign if the value first becomes non-zero in plane p."""
        s, h, w = mag.shape
        shift = self.bits - 2 - p
        odd = self._odd(h, w)
        ch = chan.astype(np.int32)[:, None, None]
        above = mag >> (shift + 1)
        now = mag >> shift
        bit = now & 1
        idx = self._bucket.take(above)
        idx += self._sig.take(_eight_neighbours((above > 0).astype(np.int16)))
        idx += self._cur.take(_four_neighbours(bit)) * odd
        idx += bit
        idx += 128 * (p * self.channels + ch)
        cost = self.cost.take(idx)
        if not active.all():
            cost *= active[:, None, None]
        first = (bit == 1) & (above == 0)
        if first.any():  # signs, coded where the value first becomes non-zero
            # the sign context sees, for parity 0, its (parity-1) neighbours' planes above p;
            # for parity 1, its (parity-0) neighbours' planes up to p
            seen = np.where(odd.astype(bool), above, now)
            sctx = _neighbour_signs(seen, neg).astype(np.int32) * 4 + (self.sign_offset + self.sign_buckets[p])
            sctx += 16 * ch
            cost[first] += self.cost.take(2 * sctx[first] + neg[first])
        return cost

    def _odd(self, h: int, w: int) -> np.ndarray:
        """(H, W) int16: 1 where (h + w) is odd (parity 1)."""
        if getattr(self, "_odd_cache", (None,))[0] != (h, w):
            odd = ((np.arange(h)[:, None] + np.arange(w)[None, :]) % 2).astype(np.int16)
            self._odd_cache = ((h, w), odd)
        return self._odd_cache[1]

    def bits_of(self, levels: torch.Tensor | np.ndarray) -> float:
        """Ideal code length in bits of (N, C, H, W) levels as payload version 3 codes them:
        what :func:`rtaic.coding.arithmetic.encode_embedded` reports as ``ideal``."""
        lv, chan = self.slices(np.asarray(levels, dtype=np.int32))
        mag = np.abs(lv).astype(np.int16)
        flags = (self.bits - 1) * lv.shape[0] * -np.log2(FLAG_PROBABILITY)
        return float(self.costs(mag, lv < 0, chan).sum()) + flags


def channel_weights(autoencoder) -> np.ndarray:
    """Per-channel distortion weights from the decoder: the squared norm of the weights that
    read each latent channel (first joint conv, plus the low-pass path), mean 1."""
    dec = autoencoder.decoder
    read = dec.joint[0].weight.detach().double()
    w = read.transpose(0, 1).flatten(1).pow(2).sum(1)
    if getattr(dec, "lowpass", None) is not None:
        low = dec.lowpass.weight.detach().double()
        # the patch form is a transposed conv (latent channels first; its squared norm is the
        # energy of the block a level paints), the low-pass form a 1x1 conv (channels second)
        low = low if getattr(dec, "patch", False) else low.transpose(0, 1)
        w = w + low.flatten(1).pow(2).sum(1)
    w = w.numpy()
    mean = w.mean()
    return w / mean if mean > 0 else np.ones_like(w)


def rdoq_levels(
    levels: torch.Tensor,
    latent: torch.Tensor,
    model: BitContextModel,
    table: np.ndarray,
    lam: float,
    weights: np.ndarray | None = None,
    passes: int = DEFAULT_PASSES,
    rate: RateModel | None = None,
    moves: str = "nearer",
) -> torch.Tensor:
    """Levels (N, C, H, W) int32 chosen by RDOQ (module doc) from the plain ones.

    ``latent``: the continuous latent y (N, C, H, W) the plain levels were quantized from;
    ``weights`` (C,) per-channel distortion weights (default 1); ``lam`` >= 0 in quantization
    steps squared per bit. Every level stays in the quantizer's range [-m, m].
    ``moves``: "both" tries k - 1 and k + 1 for every value, "nearer" only the neighbouring
    level on the side of the cell the value lies in (half the work).
    """
    if lam < 0:
        raise ValueError(f"lambda must be >= 0, got {lam}")
    if moves not in ("both", "nearer"):
        raise ValueError(f"moves must be 'both' or 'nearer', got {moves!r}")
    if lam == 0 or levels.numel() == 0 or passes < 1:
        return levels.clone()
    bits = model.bits
    m = max_level(bits)
    planes = bits - 1
    rate = rate or RateModel(model, table)
    n, c, h, w = levels.shape
    lv, chan = rate.slices(levels.detach().cpu().numpy().astype(np.int32))
    lv = lv.copy()
    u = latent.detach().cpu().double().numpy().reshape(lv.shape) * 2 ** (bits - 1)
    wc = np.ones(c) if weights is None else np.asarray(weights, dtype=np.float64)
    if wc.shape != (c,):
        raise ValueError(f"weights must have shape ({c},), got {wc.shape}")
    wc = np.tile(wc, n)[:, None, None]
    centre = u + 0.5  # D(k) = w (centre - k)^2: the plain k = ceil(u) minimises it
    grids = [(a, b) for a in range(min(3, h)) for b in range(min(3, w))]
    for _ in range(passes):
        changed = False
        mag = np.abs(lv).astype(np.int16)
        active = rate.active(mag)
        # the planes of each slice that are not coded: a candidate may not set a bit there
        idle = sum((~active[p]).astype(np.int16) << (planes - 1 - p) for p in range(planes))
        idle = idle[:, None, None]
        base = [rate.plane_costs(mag, lv < 0, chan, active[p], p) for p in range(planes)]
        neg = lv < 0
        for a, b in grids:
            g = (slice(None), slice(a, None, 3), slice(b, None, 3))
            windows = _windows(a, b, h, w)
            k, cu, wg = lv[g], centre[g], wc
            d0 = (cu - k) ** 2
            if moves == "both":
                options = (k - 1, k + 1)
            else:
                options = (np.where(cu < k, k - 1, k + 1),)
            best, best_dj, trials = k.copy(), np.zeros(k.shape), []
            for cand in options:
                ok = (np.abs(cand) <= m) & ((np.abs(cand).astype(np.int16) & idle) == 0)
                if not ok.any():
                    continue
                cand = np.where(ok, cand, k)
                tmag, tneg = mag.copy(), neg.copy()
                tmag[g], tneg[g] = np.abs(cand), cand < 0
                # plane p changes only in slices where a change reaches it (the planes above
                # the highest bit a change flips keep their bits and contexts)
                flips = np.bitwise_or.reduce((mag[g] ^ tmag[g]).reshape(len(chan), -1), axis=1)
                diff = np.zeros((lv.shape[0], h + 2, w + 2))  # zero border: outside the latent
                inner = diff[:, 1:-1, 1:-1]
                costs = []
                for p in range(planes):
                    sel = np.flatnonzero(active[p] & ((flips >> (planes - 1 - p)) > 0))
                    if sel.size == 0:
                        costs.append(None)
                        continue
                    if sel.size == len(chan):
                        sel = slice(None)  # every slice: views, not copies
                    cost = rate.plane_costs(tmag[sel], tneg[sel], chan[sel], active[p][sel], p)
                    inner[sel] += cost - base[p][sel]
                    costs.append((sel, cost))
                dr = sum(diff[(slice(None), *win)] for win in windows)  # each grid value's window
                dj = wg * ((cu - cand) ** 2 - d0) + lam * dr
                take = ok & (dj < best_dj)
                best_dj = np.where(take, dj, best_dj)
                best = np.where(take, cand, best)
                trials.append((cand, costs))
            chosen = best != k
            if not chosen.any():
                continue
            changed = True
            # the 3 x 3 windows of one grid are disjoint: the new costs are each chosen
            # trial's costs in its windows, the old ones elsewhere
            for cand, costs in trials:
                picked = chosen & (best == cand)
                window = np.zeros((lv.shape[0], h + 2, w + 2), dtype=bool)
                for win in windows:
                    window[(slice(None), *win)] |= picked
                window = window[:, 1:-1, 1:-1]
                for p, item in enumerate(costs):
                    if item is not None:
                        sel, cost = item
                        base[p][sel] = np.where(window[sel], cost, base[p][sel])
            lv[g] = best
            mag[g], neg[g] = np.abs(best), best < 0
        if not changed:
            break
    return torch.from_numpy(lv.reshape(n, c, h, w).astype(np.int32))
