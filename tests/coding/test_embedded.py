"""Payload version 3: the embedded order, its cut points and the reconstruction of a cut."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch

from rtaic.coding.arithmetic import (
    COMPLETE,
    decode_embedded,
    decode_planes,
    encode_embedded,
    encode_planes,  # fmt: skip
)
from rtaic.coding.bitplanes import from_bitplanes, magnitude, to_bitplanes
from rtaic.coding.bitstream import BitstreamError
from rtaic.coding.context import BitContextModel, _bucket
from rtaic.coding.embedded import (
    EmbeddedScan,
    known_planes,
    mask_unknown,
    partial_levels,
    unit_count,
)

BITS = 5


def _model(channels=3, bits=BITS, seed=0) -> BitContextModel:
    torch.manual_seed(seed)
    m = BitContextModel(channels, bits)
    with torch.no_grad():
        m.logits.copy_(torch.randn_like(m.logits) * 2.0)
    return m


def _planes(shape, scale=4.0, seed=0, empty_channel=False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = 2 ** (BITS - 1) - 1
    levels = (torch.randn(shape, generator=g) * scale).round().clamp(-m, m).int()
    if empty_channel:
        levels[:, 1] = 0
    return to_bitplanes(levels, BITS)


SHAPES = [(1, 3, 1, 1), (1, 3, 1, 7), (1, 3, 5, 1), (1, 3, 9, 14), (2, 3, 6, 5), (1, 3, 16, 12)]
CASES = [(shape, sparse) for shape in SHAPES for sparse in (False, True)]


def _case(shape, sparse):
    return _planes(shape, scale=2.0 if sparse else 4.0, seed=sum(shape), empty_channel=sparse)


class _Recorder:
    """A UnitCoder that keeps what the scan codes: (kind, bits, contexts) and unit ends."""

    def __init__(self):
        self.groups, self.ends = [], []

    def code(self, bits, contexts):
        if bits.size:  # an empty sub-grid codes nothing
            self.groups.append(("bits", bits.astype(np.int64), contexts.astype(np.int64)))
        return bits

    def code_flags(self, bits):
        self.groups.append(("flags", bits.astype(np.int64), np.full(bits.size, -1)))
        return bits

    def unit_done(self):
        self.ends.append(len(self.groups))
        return True


def _neighbour_value(so_far: torch.Tensor, signs: torch.Tensor, s: int, i: int, j: int) -> int:
    """docs/bitstream.md: 0 if no 4-neighbour is non-zero so far, else 2 + sign(sum of signs)."""
    h, w = so_far.shape[-2:]
    total, any_known = 0, False
    for di, dj in ((-1, 0), (0, -1), (0, 1), (1, 0)):
        y, x = i + di, j + dj
        if 0 <= y < h and 0 <= x < w and so_far[s, y, x] > 0:
            any_known = True
            total += -1 if signs[s, y, x] else 1
    return 0 if not any_known else 2 + (total > 0) - (total < 0)


def _documented_order(model: BitContextModel, planes: torch.Tensor):
    """The version-3 sequence as docs/bitstream.md states it, from plane_contexts and the
    documented sign contexts, computed independently of coding/embedded.py."""
    n, b, c, h, w = planes.shape
    view = planes.transpose(0, 1).reshape(b, n * c, h, w)
    final = magnitude(planes).reshape(n * c, h, w)
    signs = view[-1]
    chan = [k % c for k in range(n * c)]
    groups, ends = [], []
    subgrids = {0: ((0, 0), (1, 1)), 1: ((0, 1), (1, 0))}
    for p in range(b - 1):
        flags = view[p].flatten(1).any(1)
        groups.append(("flags", flags.long().numpy(), np.full(n * c, -1)))
        ends.append(len(groups))
        ctx = model.plane_contexts(planes, p).reshape(n * c, h, w)
        before = magnitude(planes, upto=p).reshape(n * c, h, w)
        after = magnitude(planes, upto=p + 1).reshape(n * c, h, w)
        active = torch.nonzero(flags).flatten().tolist()
        pieces = min(8, math.ceil(32 / max(len(active), 1)))  # R_p
        for parity in (0, 1):
            so_far = before if parity == 0 else after  # what the neighbours hold then
            for r0, c0 in subgrids[parity]:
                positions = [(i, j) for i in range(r0, h, 2) for j in range(c0, w, 2)]  # row-major
                n_pos = len(positions)
                for s in active:
                    for piece in range(pieces):
                        mine = positions[piece * n_pos // pieces : (piece + 1) * n_pos // pieces]
                        if mine:
                            groups.append(("bits", np.array([int(view[p, s, i, j]) for i, j in mine]),
                                           np.array([int(ctx[s, i, j]) for i, j in mine])))  # fmt: skip
                        sbits, sctx = [], []
                        for i, j in mine:
                            if view[p, s, i, j] and before[s, i, j] == 0:
                                value = _neighbour_value(so_far, signs, s, i, j)
                                bucket = int(_bucket(final[s, i, j]))
                                sbits.append(int(signs[s, i, j]))
                                sctx.append(model.sign_offset + (chan[s] * 4 + value) * 4 + bucket)
                        if sbits:
                            groups.append(("bits", np.array(sbits), np.array(sctx)))
                        ends.append(len(groups))
    return groups, ends


@pytest.mark.parametrize("shape, sparse", CASES)
def test_scan_codes_the_documented_order_and_contexts(shape, sparse):
    model = _model()
    planes = _case(shape, sparse)
    recorder = _Recorder()
    assert EmbeddedScan(model, planes.shape, planes.numpy()).run(recorder)
    want_groups, want_ends = _documented_order(model, planes)
    flat = lambda gs: [(k, b.tolist(), c.tolist()) for k, b, c in gs]  # noqa: E731
    assert flat(recorder.groups) == flat(want_groups)
    assert recorder.ends == want_ends
    flags = planes.transpose(0, 1).flatten(3).any(3).reshape(BITS, -1)[:-1].numpy()
    assert len(want_ends) == unit_count(flags)


@pytest.mark.parametrize("shape, sparse", CASES)
def test_magnitudes_are_version_2s_bits_in_version_2s_order(shape, sparse):
    """Only the signs and the flags move: the magnitude bits and their contexts are v2's."""
    model = _model()
    planes = _case(shape, sparse)
    recorder = _Recorder()
    EmbeddedScan(model, planes.shape, planes.numpy()).run(recorder)
    mags = [(b, c) for k, b, c in recorder.groups if k == "bits" and (c < model.sign_offset).all()]
    mag_bits = np.concatenate([b for b, _ in mags]) if mags else np.zeros(0)
    n, b, c, h, w = planes.shape
    expected = []
    for p in range(b - 1):
        view = planes[:, p].reshape(n * c, h, w)
        active = view.flatten(1).any(1)
        for rows, cols in ((0, 0), (1, 1), (0, 1), (1, 0)):
            expected.append(view[active.bool()][:, rows::2, cols::2].reshape(-1))
    assert np.array_equal(mag_bits, torch.cat(expected).numpy())


@pytest.mark.parametrize("shape, sparse", CASES)
def test_round_trip_and_every_valid_cut(shape, sparse):
    model = _model()
    table = model.probability_table()
    planes = _case(shape, sparse)
    enc = encode_embedded(planes, model, table)
    whole = decode_embedded(enc.payload(), model, table, planes.shape, with_cuts=True)
    assert whole.complete and torch.equal(whole.planes, planes)
    assert whole.cuts == enc.cuts  # the decoder recovers every cut point from the stream
    assert torch.equal(decode_planes(enc.payload(), model, table, planes.shape, 3), planes)
    previous = -1
    for k in enc.valid_cuts()[:-1]:
        payload = enc.payload(k)
        assert len(payload) == 4 + 4 * enc.words_for(k) < len(enc.payload())
        cut = decode_embedded(payload, model, table, planes.shape)
        known = torch.from_numpy(enc.known(k))
        assert not cut.complete and cut.units == k
        assert torch.equal(cut.known, known)
        assert torch.equal(cut.planes, mask_unknown(planes, known))
        # the whole stream decoded within the cut's length gives the same (or a longer) cut
        budget = decode_embedded(enc.payload(), model, table, planes.shape, max_words=enc.words_for(k))
        assert budget.units >= k and enc.words_for(budget.units) == enc.words_for(k)
        assert torch.equal(budget.planes, mask_unknown(planes, budget.known))
        assert enc.words_for(k) >= previous
        previous = enc.words_for(k)


def _forged(cut: int, words: np.ndarray) -> bytes:
    return struct.pack("<I", cut) + words.astype("<u4").tobytes()


@pytest.mark.parametrize("shape", [(1, 3, 9, 14), (2, 3, 6, 5)])
def test_cuts_at_invalid_points_are_refused(shape):
    model = _model()
    table = model.probability_table()
    planes = _planes(shape, seed=3)
    enc = encode_embedded(planes, model, table)
    words = enc.words
    # every k short of the end with exactly its words (the encoder offers only the cuts
    # shorter than the whole stream; a cut as long as it still decodes what it says)
    valid = {(k, enc.words_for(k)) for k in range(enc.units)}
    some = sorted({*range(0, enc.units + 2, 9), 1, 2, enc.units - 1, enc.units, enc.units + 1})
    for k in some:
        near = {enc.words_for(k) + d for d in (-2, -1, 1, 2)} | {0, len(words) // 2, len(words)}
        for n in sorted(x for x in near if 0 <= x <= len(words)):
            if (k, n) in valid:
                continue
            with pytest.raises(BitstreamError):
                decode_embedded(_forged(k, words[:n]), model, table, planes.shape)
    # a cut that kept the 'whole' field: every shorter stream, and one longer, is refused
    for n in range(len(words)):
        with pytest.raises(BitstreamError):
            decode_embedded(_forged(COMPLETE, words[:n]), model, table, planes.shape)
    with pytest.raises(BitstreamError):
        decode_embedded(_forged(COMPLETE, np.append(words, 0)), model, table, planes.shape)
    for bad in (b"", b"\x00\x00", enc.payload()[:-2]):
        with pytest.raises(BitstreamError):
            decode_embedded(bad, model, table, planes.shape)


def test_estimate_matches_the_real_size():
    model = _model()
    table = model.probability_table()
    for planes in (_planes((1, 3, 24, 32), scale=6.0), _planes((2, 3, 24, 32), scale=2.0, empty_channel=True)):
        payload, ideal = encode_planes(planes, model, table, version=3)
        assert ideal == pytest.approx(encode_embedded(planes, model, table).ideal)
        assert ideal > 1000
        assert 8 * (len(payload) - 4) <= ideal * 1.01 + 64
        assert 8 * (len(payload) - 4) >= ideal * 0.99


def test_all_zero_latent():
    model = _model()
    table = model.probability_table()
    planes = to_bitplanes(torch.zeros(1, 3, 8, 8, dtype=torch.int32), BITS)
    enc = encode_embedded(planes, model, table)
    assert enc.ideal == (BITS - 1) * 3 and enc.units == BITS - 1  # only the flags
    assert torch.equal(decode_embedded(enc.payload(), model, table, planes.shape).planes, planes)


def test_known_planes_grow_with_the_units():
    model = _model()
    planes = _planes((1, 3, 7, 6), seed=4)
    enc = encode_embedded(planes, model, model.probability_table())
    previous = np.zeros((1, 3, 7, 6), np.uint8)
    for k in range(enc.units + 1):
        known = known_planes(planes.shape, enc.flags, k)
        assert (known >= previous).all() and known.max() <= BITS - 1
        previous = known
    assert (previous == BITS - 1).all()
    assert (known_planes(planes.shape, enc.flags, 0) == 0).all()


def test_missing_low_bits_are_reconstructed_at_the_middle_of_their_interval():
    levels = torch.tensor([[[[13, -13, 5, 0, 1, -15, 2, 3]]]], dtype=torch.int32)  # B = 5: 4 magnitude planes
    planes = to_bitplanes(levels, BITS)
    for k in range(BITS):
        known = torch.full(levels.shape, k, dtype=torch.uint8)
        value = partial_levels(mask_unknown(planes, known), known)[0, 0, 0]
        r = (BITS - 1) - k
        for v, level in zip(value.tolist(), levels[0, 0, 0].tolist(), strict=True):
            m = abs(level) >> r
            if m == 0:  # sign unknown: [-(2^r - 1), 2^r - 1]
                assert v == 0
            else:
                lo, hi = m << r, (m << r) + (1 << r) - 1
                assert abs(v) == (lo + hi) / 2 and np.sign(v) == np.sign(level)
    all_known = torch.full(levels.shape, BITS - 1, dtype=torch.uint8)
    assert torch.equal(partial_levels(planes, all_known), from_bitplanes(planes).float())


def test_neighbour_signs_table_equals_the_two_sums():
    """The packed sum + table of _neighbour_signs against the definition: a count of the
    non-zero 4-neighbours and the sign of the sum of their signs (random arrays, also
    signs set where the value is still zero, which must not count); and the sub-grid
    neighbour sums the scan takes against the whole plane's."""
    from rtaic.coding.embedded import SUBGRIDS, _four_neighbours_on, _neighbour_signs
    from rtaic.coding.scan import _four_neighbours, _padded

    rng = np.random.default_rng(7)
    for t in range(60):
        shape = tuple(int(x) for x in rng.integers(1, 10, 3))
        now = (rng.integers(0, 9, shape) * (rng.random(shape) < 0.6)).astype(np.int16)
        signs = (rng.random(shape) < 0.5).astype(np.uint8)
        if t % 2:
            signs *= (now > 0).astype(np.uint8)
        significant = now > 0
        count = _four_neighbours(significant)
        balance = _four_neighbours(np.where(signs == 1, -1, 1) * significant)
        expected = np.where(count == 0, 0, np.sign(balance) + 2)
        got = _neighbour_signs(now, signs)
        assert got.shape == shape and np.array_equal(got, expected)
        padded = _padded(now)
        for grids in SUBGRIDS:
            for rows, cols in grids:  # the scan's sums on one sub-grid at a time
                assert np.array_equal(_four_neighbours_on(padded, rows, cols),
                                      _four_neighbours(now)[:, rows, cols])  # fmt: skip


@pytest.mark.parametrize("shape, sparse", CASES[::3])
def test_buffered_decoder_equals_the_decoder_with_cut_points(shape, sparse):
    """A whole payload decodes through the buffers (re-encoded in one call at the end), or
    with with_cuts=True bit group by bit group: the same planes, and the same payloads
    refused (a flipped word, a missing or an extra word)."""
    model = _model()
    table = model.probability_table()
    planes = _case(shape, sparse)
    payload = encode_embedded(planes, model, table).payload()
    fast = decode_embedded(payload, model, table, planes.shape)
    slow = decode_embedded(payload, model, table, planes.shape, with_cuts=True)
    assert fast.complete and torch.equal(fast.planes, planes) and torch.equal(slow.planes, planes)
    words = np.frombuffer(payload, dtype="<u4")[1:]
    bad = [words[:-1], np.append(words, 1)]
    flip = np.uint32(0x9E3779B9)
    bad += [np.where(np.arange(words.size) == i, words ^ flip, words) for i in range(words.size)]
    for w in bad:
        outcomes = []
        for with_cuts in (False, True):
            try:
                forged = _forged(COMPLETE, w)
                outcomes.append(decode_embedded(forged, model, table, planes.shape, with_cuts=with_cuts).planes)
            except BitstreamError:
                outcomes.append(None)
        assert (outcomes[0] is None) == (outcomes[1] is None)
        if outcomes[0] is not None:
            assert torch.equal(outcomes[0], outcomes[1])
