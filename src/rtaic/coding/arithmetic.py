"""Adaptive arithmetic coding of the bitplanes (paper 3.2.3) with constriction's range coder.

    planes (N, B, C, H, W) --[contexts -> integer P(1) table -> float64]--> RangeEncoder
    payload --> RangeDecoder <-> contexts of the already decoded bits, group by group

The bits are coded in the order of :class:`~rtaic.coding.scan.PlaneScan` (the decoding
order of :class:`~rtaic.coding.context.BitContextModel`): slice flags, then for each plane
(MSB magnitude .. LSB, then sign) the parity-0 group ((h + w) even), then the parity-1
group, each over the active slices only; sign bits only where the magnitude is non-zero.
One constriction call per group, never one per bit.

Probabilities come only from the integer table (units of 2**-16), converted as p / 65536 in
float64: exact, so both sides see bit-identical numbers whatever the thread count.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import constriction
import numpy as np
import torch

from rtaic.coding.bitstream import READABLE_VERSIONS, BitstreamError
from rtaic.coding.context import PROBABILITY_BITS, BitContextModel
from rtaic.coding.scan import FLAG_PROBABILITY, PlaneScan

_BERNOULLI = constriction.stream.model.Bernoulli(perfect=False)
_BINARY = constriction.stream.model.Categorical(perfect=False)

class _Scheme:
    """How a payload version codes bits.

    Version 1: every slice coded, each bit with ``Bernoulli(perfect=False)``.
    Version 2: empty magnitude slices skipped (flags first), each bit as a two-symbol
    ``Categorical(perfect=False)`` with the row (1 - p, p): the same probabilities, but
    constriction codes it 2-3x faster per bit than its Bernoulli model on this CPU.
    """

    def __init__(self, version: int) -> None:
        if version not in READABLE_VERSIONS:
            raise ValueError(f"unknown payload version {version}")
        self.skip_empty = version >= 2
        self.family, self.params = (_BINARY, _rows) if self.skip_empty else (_BERNOULLI, None)

    def _model_args(self, p1: np.ndarray) -> np.ndarray:
        return self.params(p1) if self.params else p1

    def encode(self, encoder, bits: np.ndarray, p1: np.ndarray) -> None:
        encoder.encode(bits.astype(np.int32), self.family, self._model_args(p1))

    def decode(self, decoder, p1: np.ndarray) -> np.ndarray:
        return decoder.decode(self.family, self._model_args(p1)).astype(np.uint8)


def _rows(p1: np.ndarray) -> np.ndarray:
    """(n,) P(1) -> (n, 2) rows (P(0), P(1)); 1 - p is exact for p = k / 2**16."""
    rows = np.empty((p1.size, 2), dtype=np.float64)
    np.subtract(1.0, p1, out=rows[:, 0])
    rows[:, 1] = p1
    return rows


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch ops on one thread for the duration (restored after, even on error).

    The bitplane conversions around the coder are small tensor ops; on this 2-core machine
    shared with other processes, torch's intra-op thread pool made such ops up to 20x
    slower (threads waiting at barriers for a descheduled peer), while one thread is fast
    and steady. The setting is process-wide: do not run other torch work in parallel
    threads meanwhile.
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


def encode_planes(
    planes: torch.Tensor, model: BitContextModel, table: np.ndarray, version: int = 2
) -> tuple[bytes, float]:
    """Code (N, B, C, H, W) uint8 planes; returns (payload, ideal code length in bits).

    The ideal length (-sum log2 P(coded bit), slice flags at one bit each) is what the
    model promises; the payload is within a few bytes of it. ``version`` selects the
    payload layout (see :class:`_Scheme`); readers accept every version.
    """
    scheme = _Scheme(version)
    array = planes.to(torch.uint8).cpu().numpy()
    p1 = probabilities(table)
    scan = PlaneScan(model, array.shape, array, version)
    encoder = constriction.stream.queue.RangeEncoder()
    counts = np.zeros(2 * p1.size, dtype=np.int64)  # (context, bit) pairs
    flags = scan.flags() if scheme.skip_empty else None
    if flags is not None:
        scheme.encode(encoder, flags.reshape(-1), _flag_probs(flags.size))

    def code(bits: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        if bits.size:
            scheme.encode(encoder, bits, p1[contexts])
            counts[:] += np.bincount(2 * contexts + bits, minlength=counts.size)
        return bits

    scan.run(code, flags)
    with np.errstate(divide="ignore"):
        logs = np.stack([np.log2(1.0 - p1), np.log2(p1)], axis=1).reshape(-1)
    ideal = -float(counts[counts > 0] @ logs[counts > 0])
    if flags is not None:
        ideal += flags.size * -np.log2(FLAG_PROBABILITY)
    words = encoder.get_compressed()
    return words.astype("<u4").tobytes(), ideal


def _flag_probs(n: int) -> np.ndarray:
    return np.full(n, FLAG_PROBABILITY, dtype=np.float64)


def decode_planes(
    payload: bytes,
    model: BitContextModel,
    table: np.ndarray,
    shape: tuple[int, ...],
    version: int = 2,
) -> torch.Tensor:
    """Inverse of :func:`encode_planes` for planes of ``shape`` (N, B, C, H, W).

    Raises :class:`BitstreamError` if the payload is not a whole number of 32-bit words, the
    coder rejects it, or it holds data beyond the last coded bit.
    """
    scheme = _Scheme(version)
    if len(payload) % 4:
        raise BitstreamError("payload is not a whole number of 32-bit words")
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    p1 = probabilities(table)
    scan = PlaneScan(model, tuple(shape), None, version)
    n, b, c = shape[:3]
    try:
        decoder = constriction.stream.queue.RangeDecoder(words)
        flags = None
        if scheme.skip_empty:
            flags = scheme.decode(decoder, _flag_probs((b - 1) * n * c)).reshape(b - 1, n * c)

        def code(_bits, contexts: np.ndarray) -> np.ndarray:
            if contexts.size == 0:
                return np.zeros(0, dtype=np.uint8)
            return scheme.decode(decoder, p1[contexts])

        scan.run(code, flags)
        exhausted = decoder.maybe_exhausted()
    except (AssertionError, ValueError, RuntimeError, OverflowError) as e:
        # constriction reports invalid data as AssertionError (0.5.0) or ValueError
        raise BitstreamError(f"corrupt payload: {e}") from e
    if not exhausted:
        raise BitstreamError("corrupt payload: data left over after the last coded bit")
    return torch.from_numpy(scan.result())
