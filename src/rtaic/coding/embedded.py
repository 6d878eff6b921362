"""Payload version 3: an embedded scan, where every unit boundary is a valid cut point.

Versions 1 and 2 code all magnitude planes and then all signs, so only the whole payload
means anything. Version 3 codes the same bits with the same context ids, reordered so that
the bits of any prefix of whole *units* describe the latent completely at a coarser
precision (like progressive JPEG or JPEG 2000):

    for plane p = MSB magnitude .. LSB magnitude:
        unit: the flags of plane p, one per slice (1 = the slice holds a 1), P(1) = 1/2
        for parity q = 0, 1; for sub-grid g = (even rows), (odd rows) of that parity;
        for every active slice s (flag 1), in order:
            for piece i = 0 .. R_p - 1 of the positions of sub-grid g (row-major):
                unit (p, q, g, s, i): the magnitude bits of plane p on that piece of
                                      slice s, then the sign of every position among
                                      them whose magnitude became non-zero with this bit

R_p = min(8, ceil(32 / slices flagged in plane p)) pieces of consecutive positions,
piece i = positions [floor(i n / R_p), floor((i + 1) n / R_p)) of the sub-grid's n: about
128 or more cut points per plane whatever the number of channels.

Sub-grids are those of version 2: parity 0 = (even rows, even columns), (odd rows, odd
columns); parity 1 = (even rows, odd columns), (odd rows, even columns); each row-major.
The magnitude bits come in exactly the order of version 2 and see exactly its contexts
(:meth:`BitContextModel.plane_contexts`). A sign is coded where its value first becomes
non-zero instead of in a plane of its own. Its context keeps version 2's ids:

* the magnitude bucket (0 | 1 | 2-3 | 4+) of the *final* magnitude, which the plane of
  first significance already fixes: magnitudes that first become non-zero in plane p lie in
  [2^(B-2-p), 2^(B-1-p) - 1], one bucket;
* the neighbour value, for both parities: 0 ('unknown') if none of the 4 neighbours is
  non-zero *so far*, else 2 + the sign (-1 | 0 | +1) of the sum of their signs. "So far"
  is what the decoder has when it reads the sign: for parity 0 the neighbours (parity 1)
  with a 1 in planes 0..p-1, for parity 1 the neighbours (parity 0) with a 1 in planes
  0..p. Version 2 gave parity 0 always 'unknown' and parity 1 the balance over the final
  magnitudes (2 when no neighbour was non-zero). The ids and the trained table are the
  same; only which value a sign sees differs (on Kodak, this makes version 3 files about
  0.6% smaller than version 2 at full length).

Cuts. After k whole units, each position knows a prefix of its magnitude planes
(:func:`known_planes`): the decoder reconstructs a missing tail of low bits at the middle
of its interval (:func:`partial_levels`). The range coder's words needed for the first k
units (:mod:`rtaic.coding.arithmetic`) are recorded by the encoder and recomputed by the
decoder, which re-encodes what it decodes: the cut points are recoverable from the stream,
and no index is stored.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from rtaic.coding.context import BitContextModel
from rtaic.coding.scan import _bucket, _eight_neighbours, _four_neighbours, _padded, slice_view

# (rows, columns) slices of the two sub-grids of each parity, in coding order.
SUBGRIDS = (
    ((slice(0, None, 2), slice(0, None, 2)), (slice(1, None, 2), slice(1, None, 2))),
    ((slice(0, None, 2), slice(1, None, 2)), (slice(1, None, 2), slice(0, None, 2))),
)


class UnitCoder(Protocol):
    """What the scan drives. ``code`` codes bits (encoder: the given ones; decoder: ignores
    them and returns the decoded ones) with context ids; ``code_flags`` with P(1) = 1/2;
    ``unit_done`` is called after every unit and returns False to stop the scan there."""

    def code(self, bits: np.ndarray, contexts: np.ndarray) -> np.ndarray: ...

    def code_flags(self, bits: np.ndarray) -> np.ndarray: ...

    def unit_done(self) -> bool: ...


def sign_bucket(bits: int, p: int) -> int:
    """Magnitude bucket of every value that first becomes non-zero in magnitude plane p."""
    return int(_bucket(np.array(2 ** (bits - 2 - p))))


class EmbeddedScan:
    """Walks (N, B, C, H, W) bitplanes in the version-3 order (module doc).

    ``planes`` is a uint8 numpy array the scan reads (encoder) or None (decoder, which fills
    the scan in; :meth:`result` returns the planes). After :meth:`run`, ``flags`` holds the
    flags of every plane reached ((B-1, S) uint8; planes not reached stay 0).
    """

    def __init__(self, model: BitContextModel, shape: tuple[int, ...], planes: np.ndarray | None = None):
        n, b, c, h, w = self.shape = tuple(shape)
        self.view, self.chan = slice_view(model, self.shape, planes)
        self.model, self.channels = model, c
        self.flags = np.zeros((b - 1, n * c), dtype=np.uint8)

    def result(self) -> np.ndarray:
        """The (N, B, C, H, W) planes."""
        n, b, c, h, w = self.shape
        return np.ascontiguousarray(self.view.reshape(b, n, c, h, w).transpose(1, 0, 2, 3, 4))

    def run(self, coder: UnitCoder) -> bool:
        """Code every unit in order; False if the coder stopped the scan before the end."""
        b, s = self.view.shape[:2]
        mag = np.zeros(self.view.shape[1:], dtype=np.int16)  # magnitude of the planes above
        for p in range(b - 1):
            given = self.view[p].reshape(s, -1).any(axis=1).astype(np.uint8)
            self.flags[p] = coder.code_flags(given)
            if not coder.unit_done():
                return False
            active = np.flatnonzero(self.flags[p])
            if active.size and not self._plane(coder, p, active, mag[active]):
                return False
            mag <<= 1
            mag |= self.view[p]
        return True

    def _plane(self, coder: UnitCoder, p: int, active: np.ndarray, mag: np.ndarray) -> bool:
        """Code the units of plane p; False if the coder stopped the scan."""
        b = self.view.shape[0]
        k = active.size
        sig = _eight_neighbours(mag > 0)
        np.minimum(sig, 3, out=sig)
        chan = self.chan[active].astype(np.int32)[:, None, None]
        base = ((((p * self.channels) + chan) * 4 + _bucket(mag)) * 4 + sig) * 4
        offset, bucket = self.model.sign_offset, sign_bucket(b, p)
        sign_base = offset + chan * 16 + bucket  # + 4 * neighbour value
        plane, signs = self.view[p], self.view[-1]
        pieces = pieces_per_unit(k)
        for parity in (0, 1):
            if parity == 0:
                now, cur = mag, None  # neighbours (parity 1) so far: planes above p
            else:  # the parity-0 bits of plane p are all known now
                bits = plane[active]
                cur = _padded(bits)
                now = (mag << 1) | bits  # neighbours (parity 0) so far: planes 0 .. p
            around = _padded(_sign_weights(now, signs[active]))
            for rows, cols in SUBGRIDS[parity]:
                # the sub-grid of every active slice, flat: (k, n) positions, row-major
                # (strided first, then the active slices: copies a quarter of the planes;
                # neighbour sums only on the sub-grid; contexts as intp, which numpy's
                # take uses without converting)
                grid_bits = plane[:, rows, cols][active].reshape(k, -1)
                grid_signs = signs[:, rows, cols][active].reshape(k, -1)
                grid_ctx = base[:, rows, cols]
                if cur is not None:
                    near = _four_neighbours_on(cur, rows, cols)
                    np.minimum(near, 2, out=near)
                    grid_ctx = grid_ctx + near + 1
                grid_ctx = np.ascontiguousarray(grid_ctx, dtype=np.intp).reshape(k, -1)
                grid_zero = (mag[:, rows, cols] == 0).reshape(k, -1)
                value = _VALUE.take(_four_neighbours_on(around, rows, cols))
                grid_sctx = (sign_base + 4 * value).astype(np.intp).reshape(k, -1)
                go_on = self._units(coder, grid_bits, grid_signs, grid_ctx, grid_zero, grid_sctx,
                                    piece_bounds(grid_bits.shape[1], pieces))  # fmt: skip
                view = plane[:, rows, cols]  # write the sub-grid back (decoder: what it has)
                view[active] = grid_bits.reshape(view[active].shape)
                view = signs[:, rows, cols]
                view[active] = grid_signs.reshape(view[active].shape)
                if not go_on:
                    return False
        return True

    @staticmethod
    def _units(coder: UnitCoder, grid_bits: np.ndarray, grid_signs: np.ndarray, grid_ctx: np.ndarray,
               grid_zero: np.ndarray, grid_sctx: np.ndarray, bounds: list[tuple[int, int]]) -> bool:  # fmt: skip
        """The units of one sub-grid, slice by slice and piece by piece (filled in place);
        False if the coder stopped the scan. The hot loop of both sides (about 600 units
        and 1100 coder calls per Kodak image), so it keeps to a few numpy calls per unit."""
        code, unit_done = coder.code, coder.unit_done
        slices = zip(grid_bits, grid_signs, grid_ctx, grid_zero, grid_sctx, strict=True)
        for gb, gs, gc, gz, gsc in slices:
            for lo, hi in bounds:
                bits = code(gb[lo:hi], gc[lo:hi])
                gb[lo:hi] = bits
                new = (gz[lo:hi] & bits).nonzero()[0]  # first non-zero in this plane: their signs
                if new.size:
                    new += lo
                    gs[new] = code(gs[new], gsc[new])
                if not unit_done():
                    return False
        return True


def pieces_per_unit(active: int) -> int:
    """R_p: the pieces each (parity, sub-grid, slice) of a plane with ``active`` flagged
    slices is cut into, so that a plane has at least about 128 cut points."""
    return min(8, max(1, -(-32 // max(active, 1))))


def piece_bounds(n: int, pieces: int) -> list[tuple[int, int]]:
    """Piece i of a sub-grid of n positions: [floor(i n / R), floor((i + 1) n / R))."""
    return [(i * n // pieces, (i + 1) * n // pieces) for i in range(pieces)]


# _sign_weights by 2 * (non-zero so far) + sign bit; the neighbour value of every sum of four
_SIGN_WEIGHT = np.array([0, 0, 17, 15], dtype=np.int16)
_VALUE = np.array([0 if (t + 8) >> 4 == 0 else int(np.sign(t - 16 * ((t + 8) >> 4))) + 2
                   for t in range(4 * 17 + 1)], dtype=np.int16)  # fmt: skip


def _sign_weights(now: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """What each position adds to its neighbours' sign sum: 0 while zero so far, else 16 +
    its sign (17 | 15), so that a sum of four is 16 * count + balance, |balance| <= count."""
    index = (now > 0).view(np.uint8) << 1
    index |= signs
    return _SIGN_WEIGHT.take(index)


def _neighbour_signs(now: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """The neighbour value of a sign context: 0 where none of the 4 neighbours is non-zero
    so far, else 2 + (sign of the sum of their signs, -1 | 0 | +1) = 1 | 2 | 3.

    One neighbour sum of :func:`_sign_weights` (0 .. 68) and one table give both; the scan
    takes the same sum on each sub-grid only (:func:`_four_neighbours_on`).
    """
    return _VALUE.take(_four_neighbours(_sign_weights(now, signs)))


def _four_neighbours_on(padded: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """:func:`~rtaic.coding.scan._four_neighbours` at the positions (rows, cols) of a
    sub-grid only, from the zero-bordered (S, H + 2, W + 2) array: half the work of the
    whole plane for the two sub-grids of a parity."""
    h, w = padded.shape[1] - 2, padded.shape[2] - 2
    out = padded[:, 0:h, 1 : w + 1][:, rows, cols] + padded[:, 1 : h + 1, 0:w][:, rows, cols]
    out += padded[:, 1 : h + 1, 2 : w + 2][:, rows, cols]
    out += padded[:, 2 : h + 2, 1 : w + 1][:, rows, cols]
    return out


def unit_count(flags: np.ndarray) -> int:
    """Units of a complete scan with these (B-1, S) flags."""
    return int(sum(1 + 4 * int(f.sum()) * pieces_per_unit(int(f.sum())) for f in flags))


def known_planes(shape: tuple[int, ...], flags: np.ndarray, units: int) -> np.ndarray:
    """(N, C, H, W) uint8: how many magnitude planes (a prefix, MSB first) each position
    knows after the first ``units`` units of a scan with these (B-1, S) flags."""
    n, b, c, h, w = shape
    known = np.zeros((n * c, h, w), dtype=np.uint8)
    left = units
    for p in range(b - 1):
        if left <= 0:
            break
        left -= 1  # the flags: empty slices are known (all zero) in plane p
        known[flags[p] == 0] = p + 1
        active = np.flatnonzero(flags[p])
        pieces = pieces_per_unit(active.size)
        if left >= 4 * active.size * pieces:
            known[active] = p + 1
            left -= 4 * active.size * pieces
            continue
        for parity in (0, 1):
            for rows, cols in SUBGRIDS[parity]:
                for sl in active:
                    grid = known[sl, rows, cols]  # a view
                    flat = grid.reshape(-1).copy()
                    for lo, hi in piece_bounds(flat.size, pieces):
                        if left <= 0:
                            break
                        flat[lo:hi] = p + 1
                        left -= 1
                    grid[...] = flat.reshape(grid.shape)
                    if left <= 0:
                        return known.reshape(n, c, h, w)
    return known.reshape(n, c, h, w)


def mask_unknown(planes: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Planes with every bit the decoder does not know set to 0: magnitude bits below each
    position's known prefix, and signs where the known magnitude is 0."""
    b = planes.shape[1]
    p = torch.arange(b - 1, device=planes.device).view(1, -1, 1, 1, 1)
    out = planes.clone()
    out[:, :-1] *= (p < known.unsqueeze(1).long()).to(out.dtype)
    out[:, -1] *= out[:, :-1].any(dim=1).to(out.dtype)
    return out


def partial_levels(planes: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Latent levels (N, C, H, W) float32 from masked planes and the known-plane counts:
    each value at the middle of the interval its known bits leave open.

    A position that knows k of the B-1 magnitude planes and has magnitude m > 0 in them
    lies in sign * [m 2^r, m 2^r + 2^r - 1], r = B-1-k: reconstructed at sign * (m 2^r +
    (2^r - 1) / 2). With m = 0 the interval [-(2^r - 1), 2^r - 1] is centred on 0. With all
    planes known this is the exact integer level.
    """
    from rtaic.coding.bitplanes import magnitude

    b = planes.shape[1]
    mag = magnitude(planes).to(torch.float32)  # unknown bits are 0: m * 2^r
    r = (b - 1) - known.to(torch.int32)
    half = ((2 ** r) - 1).to(torch.float32) / 2
    value = torch.where(mag > 0, mag + half, torch.zeros_like(mag))
    return torch.where(planes[:, -1].bool(), -value, value)
