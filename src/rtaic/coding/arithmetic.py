"""Adaptive arithmetic coding of the bitplanes (paper 3.2.3) with constriction's range coder.

    planes (N, B, C, H, W) --[contexts -> integer P(1) table -> float64]--> RangeEncoder
    payload --> RangeDecoder <-> contexts of the already decoded bits, group by group

The bits are coded in the decoding order of :class:`~rtaic.coding.context.BitContextModel`:
for each plane (MSB magnitude .. LSB, then sign) the parity-0 group ((h + w) even), then the
parity-1 group; sign bits only where the magnitude is non-zero. Inside a group the bits go
in row-major (N, C, H, W) order. One constriction call per group, never one per bit.

Probabilities come only from the integer table (units of 2**-16), converted as p / 65536 in
float64: exact, so both sides see bit-identical numbers whatever the thread count.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import constriction
import numpy as np
import torch

from rtaic.coding.bitstream import BitstreamError
from rtaic.coding.context import PROBABILITY_BITS, BitContextModel, parity_mask

_FAMILY = constriction.stream.model.Bernoulli(perfect=False)


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch ops on one thread for the duration (restored after, even on error).

    The context ops are many small tensor ops; on this 2-core machine shared with other
    processes, torch's intra-op thread pool made them up to 20x slower (threads waiting at
    barriers for a descheduled peer), while one thread is fast and steady. The setting is
    process-wide: do not run other torch work in parallel threads meanwhile.
    """
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def probabilities(table: np.ndarray) -> np.ndarray:
    """Integer table -> float64 P(bit = 1), exactly (division by a power of two)."""
    table = np.asarray(table)
    if table.dtype.kind not in "iu":
        raise TypeError("the probability table must hold integers")
    return table.astype(np.float64) / float(2**PROBABILITY_BITS)


class _Groups:
    """Where each coding group lives, as flat indices (row-major, so in coding order).

    Index arrays replace boolean masks: gathering with them is several times faster than
    torch's masked indexing, which matters at ~10^6 bits per image.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        n, self.bits, c, h, w = shape
        self.chw = c * h * w
        odd = np.broadcast_to(parity_mask(h, w).numpy(), (n, c, h, w))
        self.latent = [np.flatnonzero(~odd), np.flatnonzero(odd)]  # into (N, C, H, W)
        self.image = [i // self.chw for i in self.latent]

    def indices(self, p: int, parity: int, coded: torch.Tensor | None):
        """(index into (N, C, H, W), index into (N, B, C, H, W)) of the coded bits of the
        group (plane p, parity)."""
        i4 = self.latent[parity]
        i5 = i4 + (self.image[parity] * (self.bits - 1) + p) * self.chw
        if coded is not None:
            keep = coded.numpy().reshape(-1)[i4]
            i4, i5 = i4[keep], i5[keep]
        return i4, i5


def _flat(t: torch.Tensor) -> np.ndarray:
    """A flat numpy view (no copy for the contiguous tensors used here)."""
    return np.ascontiguousarray(t.numpy()).reshape(-1)


def encode_planes(
    planes: torch.Tensor, model: BitContextModel, table: np.ndarray
) -> tuple[bytes, float]:
    """Code (N, B, C, H, W) uint8 planes; returns (payload, ideal code length in bits).

    The ideal length (-sum log2 P(coded bit)) is what the model promises; the payload is
    within a few bytes of it.
    """
    with single_thread():
        return _encode(planes.to(torch.uint8).cpu(), model, probabilities(table))


def _encode(planes: torch.Tensor, model: BitContextModel, p1: np.ndarray) -> tuple[bytes, float]:
    planes = planes.contiguous()
    flat = _flat(planes)
    groups = _Groups(tuple(planes.shape))
    encoder = constriction.stream.queue.RangeEncoder()
    ideal = 0.0
    for p in range(planes.shape[1]):
        # All bits are known here, so one context pass per plane serves both groups:
        # parity-0 contexts never look at plane p, parity-1 contexts look only at plane p's
        # parity-0 bits (see BitContextModel.plane_contexts).
        contexts = _flat(model.plane_contexts(planes, p))
        coded = model.coded_mask(planes, p)
        for parity in (0, 1):
            i4, i5 = groups.indices(p, parity, coded)
            if i4.size == 0:
                continue
            bits = flat[i5].astype(np.int32)
            probs = p1[contexts[i4]]
            encoder.encode(bits, _FAMILY, probs)
            ideal -= float(np.log2(np.where(bits == 1, probs, 1.0 - probs)).sum())
    words = encoder.get_compressed()
    return words.astype("<u4").tobytes(), ideal


def decode_planes(
    payload: bytes, model: BitContextModel, table: np.ndarray, shape: tuple[int, ...]
) -> torch.Tensor:
    """Inverse of :func:`encode_planes` for planes of ``shape`` (N, B, C, H, W).

    Raises :class:`BitstreamError` if the payload is not a whole number of 32-bit words, the
    coder rejects it, or it holds data beyond the last coded bit.
    """
    if len(payload) % 4:
        raise BitstreamError("payload is not a whole number of 32-bit words")
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    with single_thread():
        return _decode(words, model, probabilities(table), shape)


def _decode(words: np.ndarray, model: BitContextModel, p1: np.ndarray, shape) -> torch.Tensor:
    array = np.zeros(shape, dtype=np.uint8)
    planes = torch.from_numpy(array)  # shares memory: decoded bits are seen by the contexts
    flat = array.reshape(-1)
    groups = _Groups(tuple(shape))
    try:
        decoder = constriction.stream.queue.RangeDecoder(words)
        for p in range(shape[1]):
            for parity in (0, 1):
                # Recomputed per group: parity-1 contexts need plane p's parity-0 bits.
                contexts = _flat(model.plane_contexts(planes, p))
                i4, i5 = groups.indices(p, parity, model.coded_mask(planes, p))
                if i4.size == 0:
                    continue
                flat[i5] = decoder.decode(_FAMILY, p1[contexts[i4]])
        exhausted = decoder.maybe_exhausted()
    except (AssertionError, ValueError, RuntimeError, OverflowError) as e:
        # constriction reports invalid data as AssertionError (0.5.0) or ValueError
        raise BitstreamError(f"corrupt payload: {e}") from e
    if not exhausted:
        raise BitstreamError("corrupt payload: data left over after the last coded bit")
    return planes
