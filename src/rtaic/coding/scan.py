"""The coder's scan: which bits are coded, in which order, with which context ids.

The context ids are those of :meth:`BitContextModel.plane_contexts` (the tests hold the two
equal), computed here incrementally with numpy on the CPU: the magnitude so far is carried
from plane to plane instead of being rebuilt, the features that do not depend on the
current plane are computed once for both parity groups, and only the *active* slices are
touched. The coder spends a fixed time per coded bit, so what it skips is what makes it fast.

Slices. A (plane, image, channel) slice of magnitude bits that is all zero is not coded:
one flag per slice, coded first, says which slices are active. High planes are mostly
empty (on Kodak at 0.5 bpp, 46% of all magnitude bits lie in empty slices). Sign bits are
coded only where the magnitude is non-zero, which the decoder knows by then.

Order (payload version 2):

    flags of planes 0 .. B-2, each plane's slices in (image, channel) order, P(1) = 1/2
    for each plane p = MSB magnitude .. LSB magnitude, then the sign plane:
        parity 0 ((row + column) even): sub-grid (even rows, even columns) of every
            active slice, then sub-grid (odd rows, odd columns) of every active slice
        parity 1: sub-grid (even rows, odd columns), then (odd rows, even columns)
    each sub-grid in (slice, row, column) order. Strided sub-grids are what numpy copies
    fastest; any order that the decoder can follow would code the same bits.

Version 1 had every slice active, no flags, and each group in (slice, row, column) order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rtaic.coding.context import BitContextModel

FLAG_PROBABILITY = 0.5

# Each group goes through `code(bits, contexts) -> bits`: the encoder codes the bits it is
# given and returns them; the decoder ignores them (zeros, not yet known) and returns the
# decoded ones, which the scan writes back before computing the next group's contexts.
Code = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _bucket(m: np.ndarray) -> np.ndarray:
    """0 | 1 | 2-3 | 4+ -> 0..3 (as BitContextModel)."""
    return (m >= 1).astype(np.int32) + (m >= 2) + (m >= 4)


def _padded(a: np.ndarray) -> np.ndarray:
    """(S, H, W) -> (S, H + 2, W + 2) int16 with a zero border (outside the image)."""
    s, h, w = a.shape
    ap = np.zeros((s, h + 2, w + 2), dtype=np.int16)
    ap[:, 1:-1, 1:-1] = a
    return ap


def _four_neighbours(a: np.ndarray) -> np.ndarray:
    """Sum of the 4 neighbours (up, left, right, down) of a (S, H, W) array."""
    ap = _padded(a)
    out = ap[:, :-2, 1:-1] + ap[:, 1:-1, :-2]
    out += ap[:, 1:-1, 2:]
    out += ap[:, 2:, 1:-1]
    return out


def _eight_neighbours(a: np.ndarray) -> np.ndarray:
    """Sum of the 8 neighbours of a (S, H, W) 0/1 array: a 3x3 box sum (separable) minus a."""
    ap = _padded(a)
    rows = ap[:, :, :-2] + ap[:, :, 1:-1]
    rows += ap[:, :, 2:]
    out = rows[:, :-2] + rows[:, 1:-1]
    out += rows[:, 2:]
    out -= ap[:, 1:-1, 1:-1]
    return out


class _RowMajor:
    """Version 1: the positions of one parity in row-major order (an index gather)."""

    def __init__(self, h: int, w: int, parity: int) -> None:
        odd = ((np.arange(h)[:, None] + np.arange(w)[None, :]) % 2).astype(bool).reshape(-1)
        self.index = np.flatnonzero(odd if parity else ~odd)

    def take(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(a.shape[0], -1)[:, self.index].reshape(-1)

    def put(self, a: np.ndarray, flat: np.ndarray) -> None:
        a.reshape(a.shape[0], -1)[:, self.index] = flat.reshape(a.shape[0], -1)


class _SubGrids:
    """Version 2: the positions of one parity as two strided sub-grids (see module doc)."""

    def __init__(self, h: int, w: int, parity: int) -> None:
        first = (slice(0, None, 2), slice(parity, None, 2))  # even rows
        second = (slice(1, None, 2), slice(1 - parity, None, 2))  # odd rows
        self.grids = [(slice(None), *first), (slice(None), *second)]

    def take(self, a: np.ndarray) -> np.ndarray:
        return np.concatenate([a[g].reshape(-1) for g in self.grids])

    def put(self, a: np.ndarray, flat: np.ndarray) -> None:
        start = 0
        for g in self.grids:
            view = a[g]
            view[...] = flat[start : start + view.size].reshape(view.shape)
            start += view.size


def slice_view(model: BitContextModel, shape: tuple[int, ...], planes: np.ndarray | None):
    """(B, S, H, W) uint8 planes with S = N*C slices in (image, channel) order (zeros for a
    decoder to fill in), and each slice's channel; checks the shape against the model."""
    n, b, c, h, w = shape
    if b != model.bits or c != model.channels:
        raise ValueError(f"planes of shape {tuple(shape)} do not fit a {model.channels}-channel, "
                         f"{model.bits}-bit model")  # fmt: skip
    if planes is None:
        view = np.zeros((b, n * c, h, w), dtype=np.uint8)
    else:
        view = np.ascontiguousarray(planes.transpose(1, 0, 2, 3, 4), dtype=np.uint8).reshape(b, n * c, h, w)
    return view, np.tile(np.arange(c, dtype=np.int32), n)


class PlaneScan:
    """Walks (N, B, C, H, W) bitplanes in coding order, for the encoder and the decoder.

    ``planes`` is a uint8 numpy array the scan reads (encoder) or None (decoder, which
    fills the scan in; :meth:`result` returns the planes). ``version`` 1 or 2 (module doc).
    """

    def __init__(self, model: BitContextModel, shape: tuple[int, ...],
                 planes: np.ndarray | None = None, version: int = 2):  # fmt: skip
        n, b, c, h, w = self.shape = tuple(shape)
        self.view, self.chan = slice_view(model, self.shape, planes)
        self.model, self.skip_empty = model, version >= 2
        self.channels = c
        order = _SubGrids if version >= 2 else _RowMajor
        self.orders = [order(h, w, 0), order(h, w, 1)]

    def result(self) -> np.ndarray:
        """The (N, B, C, H, W) planes."""
        n, b, c, h, w = self.shape
        return np.ascontiguousarray(self.view.reshape(b, n, c, h, w).transpose(1, 0, 2, 3, 4))

    def flags(self) -> np.ndarray:
        """(B-1, S) uint8: 1 where the magnitude slice holds a 1 (encoder side)."""
        b, s = self.view.shape[:2]
        return self.view[:-1].reshape(b - 1, s, -1).any(axis=2).astype(np.uint8)

    def run(self, code: Code, flags: np.ndarray | None) -> None:
        """Code every group in order; ``flags`` (B-1, S) says which slices are active
        (version 2; version 1 codes every slice and takes None)."""
        b, s = self.view.shape[:2]
        mag = np.zeros(self.view.shape[1:], dtype=np.int16)  # magnitude of the planes above
        for p in range(b - 1):
            if self.skip_empty:
                active = np.flatnonzero(flags[p])
                if active.size:
                    plane = self.view[p][active]  # a copy
                    self._magnitude_plane(code, p, active, mag[active], plane)
                    self.view[p][active] = plane
            else:
                self._magnitude_plane(code, p, np.arange(s), mag, self.view[p])
            mag <<= 1
            mag |= self.view[p]
        self._sign_plane(code, mag)

    def _magnitude_plane(self, code: Code, p: int, active: np.ndarray, mag: np.ndarray,
                         plane: np.ndarray) -> None:  # fmt: skip
        """Code plane p of the active slices; ``plane`` (k, H, W) is read or filled in."""
        sig = _eight_neighbours(mag > 0)
        np.minimum(sig, 3, out=sig)
        chan = (p * self.channels + self.chan[active]).astype(np.int32)[:, None, None]
        base = ((chan * 4 + _bucket(mag)) * 4 + sig) * 4
        even, odd = self.orders
        even.put(plane, code(even.take(plane), even.take(base)))
        cur = _four_neighbours(plane)
        np.minimum(cur, 2, out=cur)
        ctx1 = odd.take(base) + odd.take(cur) + 1
        odd.put(plane, code(odd.take(plane), ctx1))

    def _sign_plane(self, code: Code, mag: np.ndarray) -> None:
        active = np.flatnonzero(mag.reshape(mag.shape[0], -1).any(axis=1))
        if active.size == 0:
            return
        m = mag[active]
        nonzero = m > 0
        chan = self.chan[active].astype(np.int32)[:, None, None]
        offset = self.model.sign_offset
        plane = self.view[-1][active]
        bucket = _bucket(m)
        even, odd = self.orders
        # parity 0: only the magnitude bucket is known around
        keep = even.take(nonzero)
        bits = even.take(plane)
        ctx = even.take(offset + chan * 16 + bucket)
        bits[keep] = code(bits[keep], ctx[keep])
        even.put(plane, bits)
        # parity 1: + the sign balance of the non-zero 4-neighbours (all of parity 0)
        signed = np.where(plane == 1, -1, 1).astype(np.int16) * nonzero
        balance = np.sign(_four_neighbours(signed)) + 2
        keep = odd.take(nonzero)
        bits = odd.take(plane)
        ctx = odd.take(offset + (chan * 4 + balance) * 4 + bucket)
        bits[keep] = code(bits[keep], ctx[keep])
        odd.put(plane, bits)
        self.view[-1][active] = plane
