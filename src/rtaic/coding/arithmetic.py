"""Adaptive arithmetic coding of the bitplanes (paper 3.2.3) with constriction's range coder.

    planes (N, B, C, H, W) --[contexts -> integer P(1) table -> float64]--> RangeEncoder
    payload --> RangeDecoder <-> contexts of the already decoded bits, group by group

The bits are coded in the order of :class:`~rtaic.coding.scan.PlaneScan` (the decoding
order of :class:`~rtaic.coding.context.BitContextModel`): slice flags, then for each plane
(MSB magnitude .. LSB, then sign) the parity-0 group ((h + w) even), then the parity-1
group, each over the active slices only; sign bits only where the magnitude is non-zero.
One constriction call per group, never one per bit.

Version 3 (:mod:`~rtaic.coding.embedded`) codes the same bits unit by unit in an embedded
order: the payload is a 4-byte cut field and one range coder stream, and every unit
boundary is a cut point. A cut after unit k keeps the stream's first ``2 + n_k`` words,
``n_k`` being the words the encoder had shifted out by then (``RangeEncoder.pos()``): the
decoder reads two words to start and one more per word shifted out, and reads missing words
as zeros, so those words decode the first k units exactly as the whole stream does.

Probabilities come only from the integer table (units of 2**-16), converted as p / 65536 in
float64: exact, so both sides see bit-identical numbers whatever the thread count.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import constriction
import numpy as np
import torch

from rtaic.coding.bitstream import READABLE_VERSIONS, BitstreamError
from rtaic.coding.context import PROBABILITY_BITS, BitContextModel
from rtaic.coding.embedded import EmbeddedScan, known_planes, mask_unknown, unit_count
from rtaic.coding.scan import FLAG_PROBABILITY, PlaneScan

_BERNOULLI = constriction.stream.model.Bernoulli(perfect=False)
_BINARY = constriction.stream.model.Categorical(perfect=False)

class _Scheme:
    """How a payload version codes bits.

    Version 1: every slice coded, each bit with ``Bernoulli(perfect=False)``.
    Version 2: empty magnitude slices skipped (flags first), each bit as a two-symbol
    ``Categorical(perfect=False)`` with the row (1 - p, p): the same probabilities, but
    constriction 0.5.0 codes it 2-3x faster per bit than its Bernoulli model (measured on
    an x86-64 Intel Xeon).
    """

    def __init__(self, version: int) -> None:
        if version not in READABLE_VERSIONS:
            raise ValueError(f"unknown payload version {version}")
        self.skip_empty = version >= 2  # version 3 codes like version 2, in its own order
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

    The bitplane conversions around the coder are small tensor ops; on a 2-core machine
    shared with other processes (a 2-vCPU Intel Xeon running training jobs beside), torch's intra-op thread pool made such ops up to 20x
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
    if version >= 3:
        enc = encode_embedded(planes, model, table)
        return enc.payload(), enc.ideal
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
    if version >= 3:
        return decode_embedded(payload, model, table, shape).planes
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


# -- version 3: the embedded payload ------------------------------------------------------

_CUT = struct.Struct("<I")
CUT_FIELD_BYTES = _CUT.size
COMPLETE = 0xFFFFFFFF  # the cut field of a whole (not cut) payload


def _log_costs(p1: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.stack([np.log2(1.0 - p1), np.log2(p1)], axis=1).reshape(-1)


class _Embedded:
    """The range coder side of :class:`EmbeddedScan`: the encoder, or (with ``words``) the
    decoder, which re-encodes what it decodes to check the stream exactly and, with
    ``positions``, to know where every unit ends in it.

    Bits are coded one constriction call per group the scan hands over, and re-encoded as
    they come with ``positions`` (the encoder reads its position after every unit), else
    all at once at the end. Then (a whole payload, the common decode) the decoder writes
    each group's model rows straight into one buffer for the whole scan (``capacity``: at
    least the bits it may code) and decodes from that slice of it, keeping the bits beside
    them: the final re-encoding is one call on the buffers, with nothing gathered or
    concatenated again (the lists it replaced cost 3-4 ms of a Kodak decode, profiled, to
    concatenate 6-7 MB of rows).
    """

    def __init__(self, p1: np.ndarray, words: np.ndarray | None = None,
                 max_words: int | None = None, positions: bool = True,
                 capacity: int = 0) -> None:  # fmt: skip
        self.p1, self.max_words = p1, max_words
        self.rows = _rows(p1)  # (contexts, 2): P(0), P(1) of every context
        self.decoder = None if words is None else constriction.stream.queue.RangeDecoder(words)
        self.encoder = constriction.stream.queue.RangeEncoder()
        self.positions = positions or words is None
        if not self.positions:  # decoded bits and their rows, in coding order, re-encoded at the end
            self.bits_buf = np.empty(capacity, dtype=np.int32)
            self.rows_buf = np.empty((capacity, 2), dtype=np.float64)
            self.filled = 0
        self.coded: list[tuple[np.ndarray, np.ndarray]] = []  # (contexts, bits), encoder
        self.flag_bits = 0
        self.units = 0
        self.cuts: list[int] = []  # words needed for the first k units, k = 1, 2, ...
        self.over_budget = False

    def _slot(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next n rows and bits of the buffers (decoder without positions)."""
        lo = self.filled
        if lo + n > self.bits_buf.size:
            raise ValueError("more bits than the latent holds")
        self.filled = lo + n
        return self.rows_buf[lo : lo + n], self.bits_buf[lo : lo + n]

    def _code(self, bits: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if self.decoder is not None:
            bits = self.decoder.decode(_BINARY, rows).astype(np.uint8)
        self.encoder.encode(bits.astype(np.int32), _BINARY, rows)
        return bits

    def code(self, bits: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        if contexts.size == 0:
            return np.zeros(0, dtype=np.uint8)
        if not self.positions:
            rows, out = self._slot(contexts.size)
            self.rows.take(contexts, axis=0, out=rows)
            out[:] = self.decoder.decode(_BINARY, rows)
            return out
        bits = self._code(bits, self.rows.take(contexts, axis=0))
        if self.decoder is None:
            self.coded.append((contexts, bits))
        return bits

    def code_flags(self, bits: np.ndarray) -> np.ndarray:
        self.flag_bits += bits.size
        if not self.positions:
            rows, out = self._slot(bits.size)
            rows[:, 0] = rows[:, 1] = FLAG_PROBABILITY
            out[:] = self.decoder.decode(_BINARY, rows)
            return out
        return self._code(bits, _rows(_flag_probs(bits.size)))

    def unit_done(self) -> bool:
        if self.positions:
            needed = 2 + self.encoder.pos()[0]
            if self.max_words is not None and needed > self.max_words:
                self.over_budget = True
                return False
            self.cuts.append(needed)
        self.units += 1
        return True

    def stream(self) -> np.ndarray:
        """The whole stream of everything coded (the decoder's re-encoding)."""
        if not self.positions and self.filled:
            n = self.filled
            self.encoder.encode(self.bits_buf[:n], _BINARY, self.rows_buf[:n])
            self.filled = 0
        return self.encoder.get_compressed()

    def ideal(self) -> float:
        if not self.coded:
            return self.flag_bits * -np.log2(FLAG_PROBABILITY)
        contexts, bits = (np.concatenate(a) for a in zip(*self.coded, strict=True))
        counts = np.bincount(2 * contexts.astype(np.int64) + bits, minlength=2 * self.p1.size)
        logs = _log_costs(self.p1)
        nz = counts > 0
        return -float(counts[nz] @ logs[nz]) + self.flag_bits * -np.log2(FLAG_PROBABILITY)


class EmbeddedEncoding(NamedTuple):
    """A whole version-3 stream and where it may be cut."""

    words: np.ndarray  # the range coder stream (uint32)
    ideal: float  # -sum log2 P(coded bit), flags at one bit each
    cuts: list[int]  # cuts[k - 1]: words needed for the first k units (k = 1 .. units)
    flags: np.ndarray  # (B-1, S) slice flags
    shape: tuple[int, ...]  # of the planes

    @property
    def units(self) -> int:
        return len(self.cuts)

    def words_for(self, units: int) -> int:
        """Stream words of the payload cut after ``units`` units."""
        if units >= self.units:
            return len(self.words)
        return 0 if units == 0 else self.cuts[units - 1]

    def valid_cuts(self) -> list[int]:
        """Unit counts of the cuts worth writing, shortest first: for each length shorter
        than the whole stream, the most units it holds; then the whole stream
        (``self.units``). (A cut after fewer units with the same words is valid too.)"""
        out = []
        for k in range(self.units):
            n = self.words_for(k)
            if n >= len(self.words):
                break
            if self.words_for(k + 1) > n:
                out.append(k)
        return out + [self.units]

    def payload_bytes(self, units: int) -> int:
        return CUT_FIELD_BYTES + 4 * self.words_for(units)

    def payload(self, units: int | None = None) -> bytes:
        """The payload, whole (None) or cut after ``units`` units (a valid cut)."""
        if units is None or units >= self.units:
            return _CUT.pack(COMPLETE) + self.words.astype("<u4").tobytes()
        n = self.words_for(units)
        if units < 0 or n >= len(self.words):
            raise ValueError(f"no valid cut after {units} units")
        return _CUT.pack(units) + self.words[:n].astype("<u4").tobytes()

    def cut_for(self, max_payload_bytes: int) -> int | None:
        """The longest valid cut (in units) whose payload fits, or None."""
        best = None
        for k in self.valid_cuts():
            if self.payload_bytes(k) <= max_payload_bytes:
                best = k
        return best

    def known(self, units: int) -> np.ndarray:
        """(N, C, H, W) known-plane counts after ``units`` units."""
        return known_planes(self.shape, self.flags, min(units, self.units))


def encode_embedded(planes: torch.Tensor, model: BitContextModel, table: np.ndarray) -> EmbeddedEncoding:
    """Code (N, B, C, H, W) planes in the version-3 order, recording every cut point."""
    array = planes.to(torch.uint8).cpu().numpy()
    scan = EmbeddedScan(model, array.shape, array)
    coder = _Embedded(probabilities(table))
    scan.run(coder)
    words = coder.stream().astype(np.uint32)
    return EmbeddedEncoding(words, coder.ideal(), coder.cuts, scan.flags.copy(), array.shape)


class EmbeddedDecoding(NamedTuple):
    planes: torch.Tensor  # (N, B, C, H, W) uint8; bits the cut leaves unknown are 0
    known: torch.Tensor  # (N, C, H, W) uint8: magnitude planes known at each position
    units: int  # units decoded
    complete: bool  # every unit of the scan decoded (known is B-1 everywhere)
    cuts: list[int] | None  # cuts[k - 1]: words needed for the first k units decoded


def decode_embedded(payload: bytes, model: BitContextModel, table: np.ndarray, shape: tuple[int, ...],
                    max_words: int | None = None, with_cuts: bool = False) -> EmbeddedDecoding:  # fmt: skip
    """Decode a version-3 payload, whole or cut (its cut field says which).

    ``max_words``: decode only the longest valid cut whose stream fits in that many words.
    The decoder re-encodes what it decodes: that checks the payload exactly and gives the
    cut points of the stream (``cuts``: always for a cut payload or with ``max_words``,
    for a whole one only ``with_cuts``, which costs a little time).

    Raises :class:`BitstreamError` if the payload is malformed or the coder rejects it, if
    a whole payload is not exactly the stream of the bits it decodes to (a cut that kept
    its 'whole' field, data left over), or if a cut payload does not end exactly at its cut
    point.
    """
    if len(payload) < CUT_FIELD_BYTES or len(payload) % 4:
        raise BitstreamError("payload is not a cut field and whole 32-bit words")
    (cut,) = _CUT.unpack_from(payload)
    words = np.frombuffer(payload, dtype="<u4", offset=CUT_FIELD_BYTES).astype(np.uint32)
    if cut != COMPLETE and cut > unit_count(np.ones((shape[1] - 1, shape[0] * shape[2]))):
        raise BitstreamError(f"corrupt payload: cut after {cut} units, more than the latent has")
    if max_words is not None and max_words >= len(words):
        max_words = None
    scan = EmbeddedScan(model, tuple(shape), None)
    positions = with_cuts or cut != COMPLETE or max_words is not None
    capacity = int(np.prod(shape)) + (shape[1] - 1) * shape[0] * shape[2]  # every bit and flag
    coder = _Embedded(probabilities(table), words, max_words, positions, capacity)
    if cut != COMPLETE:
        step = coder.unit_done
        coder.unit_done = lambda: step() and coder.units < cut
    finished = False
    try:
        if cut != 0:
            finished = scan.run(coder)
        canonical = coder.stream() if cut == COMPLETE and finished else None
    except (AssertionError, ValueError, RuntimeError, OverflowError) as e:
        raise BitstreamError(f"corrupt payload: {e}") from e
    if coder.over_budget:
        pass  # the longest cut within max_words: the rest of the stream is not needed
    elif cut == COMPLETE:
        if canonical is None or not np.array_equal(canonical, words):
            raise BitstreamError("corrupt payload: not the stream of the bits it decodes to "
                                 "(cut without a cut field, or data left over)")  # fmt: skip
    else:
        needed = coder.cuts[-1] if cut and coder.cuts else 0
        if finished or coder.units != cut or needed != len(words) or cut >= unit_count(scan.flags):
            raise BitstreamError(f"corrupt payload: not a valid cut ({len(words)} words for "
                                 f"{cut} units)")  # fmt: skip
    b = shape[1]
    complete = finished and cut == COMPLETE
    planes = torch.from_numpy(scan.result())
    if complete:
        known = torch.full((shape[0], *shape[2:]), b - 1, dtype=torch.uint8)
    else:
        known = torch.from_numpy(known_planes(tuple(shape), scan.flags, coder.units))
        planes = mask_unknown(planes, known)
    return EmbeddedDecoding(planes, known, coder.units, complete, coder.cuts if positions else None)
