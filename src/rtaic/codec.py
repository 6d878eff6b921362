"""The codec: a trained checkpoint turned into compress(image) -> bytes -> decompress.

    image -> imageio.prepare -> [tiles] -> colour space -> Encoder -> y -> quantize -> levels
          -> bitplanes -> arithmetic.encode_planes (contexts + range coder) -> header + payload
    bytes -> header -> arithmetic.decode_planes -> levels -> [tiles] -> Decoder -> RGB
          -> imageio.Canvas (the input's mode)

Tiling (bounded memory for any image size): the networks run on tiles of ``tile`` x ``tile``
pixels on a grid aligned to the model stride, each extended by ``margin`` pixels of
context on every side; only the tile's own part of the output is kept. The latent is
coded whole, so tiling changes neither the bits nor the context model; an image within one
tile (every Kodak image with the default 1024) runs exactly as the autoencoder does. Tile
and margin are written in the header (bounded: ``bitstream.MIN_TILE`` .. ``MAX_TILE``,
margin at most half the tile), so the decoder reproduces the encoder's reconstruction.

Same pixels on any thread count: the networks always run with one torch thread per tile
(float reductions in a fixed order, whatever ``torch.get_num_threads()`` says), and the
caller's threads work on several tiles at once; an image of one tile runs the finest
scale's branch of the encoder or decoder beside the rest (:func:`_encode_branches`,
:func:`_decode_branches`). So a file decodes to the same pixels with 1 or N threads, in
any process on the machine, and to what the encoder's ``reconstruct=True`` returns
(docs/bitstream.md, "Same pixels", says what holds across machines).

RDOQ (``compress(image, rdoq=lam)``): the encoder may code, per latent value, a level next
to the quantizer's when that saves more bits under the coder's own context model than it
costs in (weighted latent) distortion (:mod:`rtaic.coding.rdoq`). Only the encoder
changes; the files are ordinary files of the same format, and ``rdoq=0`` (or None) codes
exactly the plain levels, so exactly the plain bytes.

Progressive files (bitstream version 3): any valid cut of a file is a smaller file of the
same image at a coarser precision (:mod:`rtaic.coding.embedded`). ``compress(image,
max_bytes=N)`` writes the longest cut that fits, ``decompress(data, max_bytes=N)`` decodes
the longest cut of ``data`` that fits, ``truncate(data, N)`` writes it as a file.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from rtaic.checkpoint import CodecNetworks, load_networks
from rtaic.coding import bitstream
from rtaic.coding.arithmetic import (
    CUT_FIELD_BYTES,
    EmbeddedEncoding,
    decode_embedded,
    decode_planes,
    encode_embedded,
    encode_planes,
    single_thread,
)
from rtaic.coding.bitplanes import from_bitplanes, to_bitplanes
from rtaic.coding.bitstream import MAX_TILE, MIN_TILE, BitstreamError, Header
from rtaic.coding.embedded import mask_unknown, partial_levels
from rtaic.coding.quantize import dequantize, quantize_levels
from rtaic.coding.rdoq import DEFAULT_PASSES, RateModel, channel_weights, rdoq_levels
from rtaic.coding.refine import refine_latent
from rtaic.color import from_space, to_space
from rtaic.imageio import Canvas, Prepared, prepare

DEFAULT_TILE = 1024
DEFAULT_MARGIN = 128
# The recommended lambda of RDOQ (quantization steps squared per bit), tuned for BD-rate on
# the validation images (docs/bitstream.md, "Encoder choices"); encoding uses RDOQ only
# when asked (compress(image, rdoq=DEFAULT_RDOQ), rtaic compress --rdoq 0.03).
DEFAULT_RDOQ = 0.03


class EncodeResult(NamedTuple):
    data: bytes  # the .rtaic file
    estimated_bits: float  # the model's ideal code length of the payload
    timings: dict[str, float]  # seconds: network, entropy (contexts + coder), total
    reconstruction: Image.Image | None  # what decompress(data) returns, if asked for


class DecodeResult(NamedTuple):
    image: Image.Image
    timings: dict[str, float]
    complete: bool = True  # False: a cut file, or a cut of it (max_bytes); coarser image
    bytes_used: int = 0  # length of the (cut) file the image was decoded from


SMALLEST_FILE = bitstream.HEADER_SIZE + CUT_FIELD_BYTES  # a version-3 file cut before any bit


class Progressive(NamedTuple):
    """One image coded once in the embedded order: its file, cut anywhere valid, and what
    each cut decodes to, without entropy-decoding again (:meth:`Codec.encode_progressive`)."""

    codec: Codec
    header: Header
    stream: EmbeddedEncoding
    planes: torch.Tensor  # the full (1, B, C, h, w) planes
    timings: dict[str, float]  # seconds: network, entropy (contexts + coder), total

    def cuts(self) -> list[int]:
        """Unit counts of the valid cuts, shortest first; the last is the whole file."""
        return self.stream.valid_cuts()

    def size(self, units: int | None = None) -> int:
        """File bytes of the cut after ``units`` units (None: the whole file)."""
        units = self.stream.units if units is None else units
        return bitstream.HEADER_SIZE + self.stream.payload_bytes(units)

    def cut_for(self, max_bytes: int) -> int | None:
        """The longest valid cut (units) whose file fits in ``max_bytes``, or None."""
        return self.stream.cut_for(max_bytes - bitstream.HEADER_SIZE)

    def data(self, units: int | None = None) -> bytes:
        return bitstream.pack(self.header, self.stream.payload(units))

    def reconstruction(self, units: int | None = None) -> Image.Image:
        """What decompress(self.data(units)) returns."""
        h = self.header
        if units is None or units >= self.stream.units:
            levels = from_bitplanes(self.planes)
        else:
            known = torch.from_numpy(self.stream.known(units))
            levels = partial_levels(mask_unknown(self.planes, known), known)
        return self.codec._synthesize(levels, h.height, h.width, h.mode, h.tile, h.margin)


def model_fingerprint(networks: CodecNetworks) -> bytes:
    """8 bytes of sha256 over the architecture, the probability table and the weights."""
    h = hashlib.sha256()
    arch = networks.autoencoder.architecture
    h.update(json.dumps(arch.to_dict(), sort_keys=True).encode())
    h.update(np.ascontiguousarray(networks.probability_table, dtype="<i8").tobytes())
    for name, t in sorted(networks.autoencoder.state_dict().items()):
        a = t.detach().cpu().contiguous().numpy()
        h.update(name.encode())
        h.update(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.digest()[:8]


def _spans(length: int, tile: int, margin: int) -> Iterator[tuple[int, int, int, int]]:
    """(core start, core end, region start, region end) along one axis."""
    for c0 in range(0, length, tile):
        c1 = min(c0 + tile, length)
        yield c0, c1, max(0, c0 - margin), min(length, c1 + margin)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


# -- memory: keep freed network buffers for reuse ----------------------------------------------
_MALLOC_TUNED = False


def _tune_malloc() -> None:
    """glibc only, once per process (``RTAIC_MALLOPT=0`` turns it off): keep freed memory
    in the heap for the next allocation instead of returning it to the system. Every layer
    allocates its output anew (megabytes at full resolution); by default glibc gives such
    blocks back when they are freed, and the next layer page-faults the same amount in
    again. M_MMAP_THRESHOLD 32 MB (glibc's maximum) and M_TRIM_THRESHOLD 512 MB: Kodak
    decode network 74 -> 64 ms (one thread, on a 2-vCPU Intel Xeon running other jobs). The cost: a process keeps up to
    its peak heap after a large image (freed memory is reused, not returned)."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    if os.environ.get("RTAIC_MALLOPT", "1") == "0" or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 32 * 2**20)
        libc.mallopt(m_trim_threshold, 512 * 2**20)
    except (OSError, AttributeError):  # not glibc
        pass


# -- threads: the same pixels on any thread count --------------------------------------------
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of at least ``workers`` threads for network tiles and branches."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < workers:
            old, _POOL = _POOL, ThreadPoolExecutor(workers, thread_name_prefix="rtaic-net")
            if old is not None:
                old.shutdown(wait=False)
        return _POOL


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist: start a new pool when needed."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _one_thread(fn: Callable, *args):
    """Run ``fn`` in inference mode (thread-local in torch) with one torch (OpenMP / oneDNN)
    thread in the calling thread: pool threads wrap every task in this. The caller's own
    setting is restored by ``single_thread`` once all tasks are done."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    with torch.inference_mode():
        return fn(*args)


def _run_all(tasks: list[Callable[[], object]], workers: int) -> list:
    """Run the tasks, each on one torch thread, ``workers`` at a time (the calling thread
    is one of them; all take the next task as they finish one); results in order. The
    results do not depend on ``workers``: only on the tasks."""
    workers = min(workers, len(tasks))
    if workers <= 1:
        return [task() for task in tasks]
    results: list = [None] * len(tasks)
    lock = threading.Lock()
    order = iter(range(len(tasks)))

    def drain() -> None:
        while True:
            with lock:
                i = next(order, None)
            if i is None:
                return
            results[i] = tasks[i]()

    helpers = [_pool(workers - 1).submit(_one_thread, drain) for _ in range(workers - 1)]
    try:
        drain()
    finally:
        for h in helpers:
            h.result()  # waits, and re-raises a helper's exception
    return results


def _encode_branches(encoder, x: torch.Tensor, pool: ThreadPoolExecutor | None) -> torch.Tensor:
    """``encoder(x)`` (:class:`rtaic.nn.encoder.Encoder`'s forward: the same operations on
    the same tensors in the same layouts and the same order of sums), with the finest
    scale's branch ``align[0](extract[0](x))`` and the low-pass path on a second thread when
    ``pool`` is given. Checked against the module before first use."""
    x = x.contiguous(memory_format=torch.channels_last)
    image = x

    def finest():
        return encoder.align[0](encoder.extract[0](image))

    jobs = [pool.submit(_one_thread, finest), pool.submit(_one_thread, encoder.linear, image)] if pool else None
    try:
        total = None
        for m in range(1, encoder.scales):
            x = encoder.down[m - 1](x)  # (``image`` stays the input: finest() reads it)
            aligned = encoder.align[m](encoder.extract[m](x))
            if total is None:
                total = jobs[0].result() if jobs else finest()
            total = total + aligned
        if total is None:
            total = jobs[0].result() if jobs else finest()
        pre = encoder.joint(total)
        low = jobs[1].result() if jobs else encoder.linear(image)
    finally:
        for job in jobs or ():
            job.cancel()
    if low is not None:
        pre = pre + low
    return torch.tanh(pre).contiguous()


def _decode_branches(decoder, q: torch.Tensor, pool: ThreadPoolExecutor | None) -> torch.Tensor:
    """``decoder(q)`` (:class:`rtaic.nn.decoder.Decoder`'s forward, the same operations on
    the same tensors in the same layouts, so the same values), with the finest scale's
    branch ``refine[0](unalign[0](z))`` (the largest) and then the low-pass path on a
    second thread when ``pool`` is given. Differences that do not change a value: sums are
    made in place, and the output stays channels-last (the canvas wants HWC).
    :meth:`Codec._branches_match` checks it against the module before first use."""
    q = q.contiguous(memory_format=torch.channels_last)
    z = decoder.joint(q.to(decoder.trunk_dtype))

    def finest():
        return decoder.refine[0](decoder.unalign[0](z))

    jobs = [pool.submit(_one_thread, finest), pool.submit(_one_thread, decoder.linear, q)] if pool else None
    try:
        r = None
        for m in reversed(range(1, decoder.scales)):
            h = decoder.refine[m](decoder.unalign[m](z))
            r = h if r is None else decoder.up[m](r).add_(h)
        h0 = jobs[0].result() if jobs else finest()
        r = h0 if r is None else decoder.up[0](r).add_(h0)
        out = decoder.out(r.to(decoder.out.weight.dtype)).add_(0.5)
        low = jobs[1].result() if jobs else decoder.linear(q)
    finally:
        for job in jobs or ():
            job.cancel()
    return out if low is None else out.add_(low)


PRECISIONS = ("auto", "float32", "bfloat16")


def synthesis_precision(precision: str = "auto") -> str:
    """The decoder trunk's precision: ``auto`` is bfloat16 where the CPU has bfloat16
    matrix instructions (AMX or AVX512-BF16: there its convolutions take about 2/3 of the
    float32 time), else float32 (emulated bfloat16 would be slower). The environment
    variable RTAIC_PRECISION overrides ``auto``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        precision = os.environ.get("RTAIC_PRECISION", "auto")
        if precision not in PRECISIONS:
            raise ValueError(f"RTAIC_PRECISION must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    try:
        native = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    except AttributeError:  # a torch without these probes
        native = False
    return "bfloat16" if native else "float32"


class Codec:
    """compress(PIL image) -> bytes and decompress(bytes) -> PIL image of the same size and
    mode, for one trained model. Inference only, on the CPU."""

    def __init__(
        self, networks: CodecNetworks, tile: int = DEFAULT_TILE, margin: int = DEFAULT_MARGIN,
        precision: str = "auto",
    ) -> None:
        self.networks = networks
        self.autoencoder = networks.autoencoder.eval().cpu()
        self.context_model = networks.context_model.eval().cpu()
        self.table = np.asarray(networks.probability_table, dtype=np.int64)
        self.architecture = a = self.autoencoder.architecture
        if self.table.shape != (self.context_model.num_contexts,):
            raise ValueError("probability table does not fit the context model")
        if tile < 1 or margin < 0:
            raise ValueError(f"bad tiling: tile {tile}, margin {margin}")
        self.tile = _round_up(tile, a.stride)  # multiples of the stride keep tiles aligned
        self.margin = _round_up(margin, a.stride)
        if not (MIN_TILE <= self.tile <= MAX_TILE and 2 * self.margin <= self.tile):
            raise ValueError(f"bad tiling: tile {self.tile}, margin {self.margin} (tile "
                             f"{MIN_TILE}..{MAX_TILE} pixels, margin at most tile / 2)")  # fmt: skip
        self.fingerprint = model_fingerprint(networks)
        _tune_malloc()
        self._branches_ok: bool | None = None  # _encode/_decode_branches == modules (checked once)
        self._rdoq: tuple[RateModel, np.ndarray] | None = None  # rate model, channel weights
        self.precision = synthesis_precision(precision)
        if self.precision == "bfloat16":  # a copy: ``networks`` stays the float32 model
            self.autoencoder = copy.deepcopy(self.autoencoder)
            self.autoencoder.decoder.with_bfloat16_trunk()

    # -- geometry -----------------------------------------------------------------------
    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        a = self.architecture
        s, ls = a.stride, a.latent_stride
        return a.latent_channels, _round_up(height, s) // ls, _round_up(width, s) // ls

    def coded_shape(self, height: int, width: int, version: int = bitstream.VERSION) -> tuple[int, int, int]:
        """(C, h, w) of the latent a file of ``version`` codes: from version 4 only the
        positions that touch the image (those wholly in the padding to the model's stride
        are 0: coding them cost 3-4% of a 481x321 image's bits); before, the whole grid."""
        c, lh, lw = self.latent_shape(height, width)
        if version < 4:
            return c, lh, lw
        ls = self.architecture.latent_stride
        return c, -(-height // ls), -(-width // ls)

    def _on_grid(self, levels: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Coded levels (any version) on the whole latent grid, zero beyond the image."""
        c, lh, lw = self.latent_shape(height, width)
        if tuple(levels.shape[-2:]) == (lh, lw):
            return levels
        grid = levels.new_zeros((*levels.shape[:-2], lh, lw))
        grid[..., : levels.shape[-2], : levels.shape[-1]] = levels
        return grid

    # -- networks -----------------------------------------------------------------------
    @torch.inference_mode()
    def _analyse(self, prep: Prepared, latent: torch.Tensor | None = None) -> torch.Tensor:
        """Image -> integer latent levels (1, C, h, w), tile by tile (one torch thread per
        tile; the caller's torch threads work on several tiles at once). ``latent``: a
        (1, C, h, w) float tensor that receives the continuous latent y as well."""
        a = self.architecture
        ls = a.latent_stride
        c, lh, lw = self.latent_shape(*prep.size)
        levels = torch.empty((1, c, lh, lw), dtype=torch.int32)

        def tile(y0, y1, ry0, ry1, x0, x1, rx0, rx1):
            x = to_space(prep.tile(ry0, rx0, ry1 - ry0, rx1 - rx0), a.color_space)
            y = _encode_branches(self.autoencoder.encoder, x, pool) if own else self.autoencoder.encoder(x)
            y = y[..., (y0 - ry0) // ls : (y1 - ry0) // ls, (x0 - rx0) // ls : (x1 - rx0) // ls]
            levels[..., y0 // ls : y1 // ls, x0 // ls : x1 // ls] = quantize_levels(y, a.bits)
            if latent is not None:
                latent[..., y0 // ls : y1 // ls, x0 // ls : x1 // ls] = y

        tasks = [lambda ys=ys, xs=xs: tile(*ys, *xs)
                 for ys in _spans(lh * ls, self.tile, self.margin)
                 for xs in _spans(lw * ls, self.tile, self.margin)]  # fmt: skip
        workers = torch.get_num_threads()
        own = self._branches_match()
        pool = _pool(1) if own and workers > 1 and len(tasks) == 1 else None
        with single_thread():
            _run_all(tasks, workers)
        # Latent positions wholly beyond the image only shape padding that the decoder crops
        # away: zero, the image's own pixels change by less than 1e-4 in MS-SSIM, and from
        # version 4 they are not coded at all (before, 3-4% of a 481x321 image's bits).
        return self._zero_beyond(levels, *prep.size)

    def _zero_beyond(self, levels: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """``levels`` with the positions wholly beyond the image set to 0 (in place)."""
        _, ch, cw = self.coded_shape(height, width, version=4)
        levels[..., ch:, :] = 0
        levels[..., :, cw:] = 0
        return levels

    def _branches_match(self) -> bool:
        """Whether :func:`_encode_branches` and :func:`_decode_branches` compute exactly what
        the network modules do (a guard against the two drifting apart; checked once per
        codec on a small image and latent, with and without the second thread)."""
        if self._branches_ok is None:
            a = self.architecture
            g = torch.Generator().manual_seed(0)
            k = max(1, a.stride // a.latent_stride)  # latent sizes the pyramid accepts
            q = torch.randint(-3, 4, (1, a.latent_channels, 3 * k, 2 * k), generator=g).float() / 4
            x = torch.rand((1, 3, 3 * a.stride, 2 * a.stride), generator=g)
            enc, dec = self.autoencoder.encoder, self.autoencoder.decoder
            ok = True
            with torch.inference_mode(), single_thread():
                for fn, module, inp in ((_encode_branches, enc, x), (_decode_branches, dec, q)):
                    expected = module(inp)
                    for pool in (None, _pool(1)):
                        try:
                            ok = ok and torch.equal(fn(module, inp, pool), expected)
                        except (AttributeError, TypeError, IndexError, RuntimeError):
                            ok = False
            self._branches_ok = ok
        return self._branches_ok

    @torch.inference_mode()
    def _synthesize(self, levels: torch.Tensor, height: int, width: int, mode: str, tile: int,
                    margin: int) -> Image.Image:  # fmt: skip
        """Integer latent levels -> image of ``mode``, tile by tile (one torch thread per
        tile, several tiles or the scale branches of one tile at once)."""
        a = self.architecture
        ls = a.latent_stride
        canvas = Canvas(height, width, mode)
        q = dequantize(self._on_grid(levels, height, width), a.bits)
        lh, lw = q.shape[-2:]
        workers = torch.get_num_threads()
        spans = [(ys, xs) for ys in _spans(lh, tile // ls, margin // ls)
                 for xs in _spans(lw, tile // ls, margin // ls)]  # fmt: skip
        own = self._branches_match()  # else the module's forward (same pixels, a little slower)
        branches = own and workers > 1 and len(spans) == 1

        def tile_task(ys, xs):
            (y0, y1, ry0, ry1), (x0, x1, rx0, rx1) = ys, xs
            region = q[..., ry0:ry1, rx0:rx1]
            if own:
                out = _decode_branches(self.autoencoder.decoder, region, _pool(1) if branches else None)
            else:
                out = self.autoencoder.decoder(region)
            top, bottom = y0 * ls, min(y1 * ls, height)
            left, right = x0 * ls, min(x1 * ls, width)
            out = out[..., top - ry0 * ls : bottom - ry0 * ls, left - rx0 * ls : right - rx0 * ls]
            canvas.put(top, left, from_space(out, a.color_space))

        with single_thread():
            _run_all([lambda s=s: tile_task(*s) for s in spans], workers)
        return canvas.image()

    # -- API ------------------------------------------------------------------------------
    def encode(self, image: Image.Image, reconstruct: bool = False, max_bytes: int | None = None,
               rdoq: float | None = None, refine: int = 0) -> EncodeResult:  # fmt: skip
        """Compress, with the estimate, the time split and optionally the reconstruction.

        ``max_bytes``: the longest valid cut of the file that fits (at least
        ``SMALLEST_FILE`` bytes); the estimate is still that of the whole payload.
        ``rdoq``: lambda of rate-distortion optimized quantization (None or 0: off; the
        time it takes is ``timings["rdoq"]``, part of "network" + "entropy" + "rdoq").
        ``refine``: steps of latent refinement (:mod:`rtaic.coding.refine`; 0: off; its time
        is ``timings["refine"]``, part of "network").
        """
        if max_bytes is not None:
            return self._encode_cut(image, reconstruct, max_bytes, rdoq, refine)
        t0 = time.perf_counter()
        prep, levels, _, (payload, ideal), timings = self._code(
            image, lambda planes: encode_planes(planes, self.context_model, self.table, bitstream.VERSION),
            rdoq, refine)
        data = bitstream.pack(self._header(prep, levels), payload)
        timings["total"] = time.perf_counter() - t0
        recon = None
        if reconstruct:
            h, w = prep.size
            recon = self._synthesize(levels, h, w, prep.mode, self.tile, self.margin)
        return EncodeResult(data, ideal, timings, recon)

    def _code(self, image: Image.Image, coder, rdoq: float | None = None, refine: int = 0):
        """prepare -> networks -> [refinement] -> [RDOQ] -> bitplanes -> ``coder(planes)``,
        the coder single-threaded: (prep, levels, planes, what the coder returned,
        {"network": s, "entropy": s, "rdoq": s, "refine": s})."""
        prep = prepare(image)
        lam = _check_rdoq(rdoq)
        refine = _check_refine(refine)
        t1 = time.perf_counter()
        latent = torch.empty((1, *self.latent_shape(*prep.size))) if lam or refine else None
        levels = self._analyse(prep, latent)
        t_refine = time.perf_counter()
        if refine:
            levels, latent = self._refined(prep, latent, refine)
        t2 = time.perf_counter()
        t_refine = t2 - t_refine
        with single_thread():
            if lam:
                levels = self.rdoq_levels(levels, latent, lam)
            _, ch, cw = self.coded_shape(*prep.size)
            levels = levels[..., :ch, :cw].contiguous()
            t3 = time.perf_counter()
            planes = to_bitplanes(levels, self.architecture.bits)
            coded = coder(planes)
        t4 = time.perf_counter()
        return prep, levels, planes, coded, {"network": t2 - t1, "entropy": t4 - t3, "rdoq": t3 - t2,
                                             "refine": t_refine}  # fmt: skip

    def _refined(self, prep: Prepared, latent: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(levels, latent) after latent refinement, with the float32 networks; positions
        wholly beyond the image stay 0, as :meth:`_analyse` leaves them."""
        h, w = prep.size
        nets = self.networks
        y, _ = refine_latent(nets.autoencoder, prep.tile(0, 0, h, w), latent, steps, alpha=nets.acr_alpha)
        return self._zero_beyond(quantize_levels(y, self.architecture.bits), h, w), y

    def rdoq_levels(self, levels: torch.Tensor, latent: torch.Tensor, lam: float,
                    passes: int = DEFAULT_PASSES) -> torch.Tensor:  # fmt: skip
        """The levels RDOQ codes instead of ``levels`` (quantized from ``latent``), with
        this model's context model, probability table and decoder channel weights."""
        if self._rdoq is None:
            # the float32 model's weights (the codec's decoder may run in bfloat16)
            self._rdoq = (RateModel(self.context_model, self.table), channel_weights(self.networks.autoencoder))
        rate, weights = self._rdoq
        return rdoq_levels(levels, latent, self.context_model, self.table, lam, weights, passes, rate)

    def _header(self, prep: Prepared, levels: torch.Tensor) -> Header:
        h, w = prep.size
        return Header(
            fingerprint=self.fingerprint,
            width=w,
            height=h,
            mode=prep.mode,
            color_space=self.architecture.color_space,
            bits=self.architecture.bits,
            tile=self.tile,
            margin=self.margin,
            latent_shape=tuple(levels.shape[1:]),
        )

    def encode_progressive(self, image: Image.Image, rdoq: float | None = None,
                           refine: int = 0) -> Progressive:  # fmt: skip
        """Code the image once in the embedded order (version 3); every cut and what it
        decodes to come from the result (see :class:`Progressive`). ``rdoq``: as
        :meth:`encode`."""
        t0 = time.perf_counter()
        prep, levels, planes, stream, timings = self._code(
            image, lambda planes: encode_embedded(planes, self.context_model, self.table), rdoq, refine)
        timings["total"] = time.perf_counter() - t0
        return Progressive(self, self._header(prep, levels), stream, planes, timings)

    def _encode_cut(self, image: Image.Image, reconstruct: bool, max_bytes: int,
                    rdoq: float | None = None, refine: int = 0) -> EncodeResult:  # fmt: skip
        t0 = time.perf_counter()
        prog = self.encode_progressive(image, rdoq, refine)
        units = prog.cut_for(max_bytes)
        if units is None:
            raise ValueError(f"max_bytes={max_bytes} is below the smallest file ({SMALLEST_FILE} bytes)")
        data = prog.data(units)
        timings = {**prog.timings, "total": time.perf_counter() - t0}
        recon = prog.reconstruction(units) if reconstruct else None
        return EncodeResult(data, prog.stream.ideal, timings, recon)

    def latent_levels(self, image: Image.Image, rdoq: float | None = None, refine: int = 0) -> torch.Tensor:
        """The integer latent levels (1, C, h, w) that :meth:`encode` codes."""
        return self.latents(image, rdoq, refine)[0]

    def latents(self, image: Image.Image, rdoq: float | None = None,
                refine: int = 0) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """(levels that :meth:`encode` codes with this ``rdoq`` and ``refine``, continuous
        latent y), each (1, C, h, w) on the whole latent grid (:meth:`encode` codes its
        :meth:`coded_shape` corner; the rest is 0)."""
        prep = prepare(image)
        lam = _check_rdoq(rdoq)
        refine = _check_refine(refine)
        latent = torch.empty((1, *self.latent_shape(*prep.size)))
        levels = self._analyse(prep, latent)
        if refine:
            levels, latent = self._refined(prep, latent, refine)
        if lam:
            with single_thread():
                levels = self.rdoq_levels(levels, latent, lam)
        return levels, latent

    def read_header(self, data: bytes) -> Header:
        """Parse and check a bitstream's header against this model (BitstreamError if not)."""
        header, _ = bitstream.unpack(data)
        self._check(header)
        return header

    def _check(self, header: Header) -> None:
        a = self.architecture
        if header.fingerprint != self.fingerprint:
            raise BitstreamError(
                f"made with a different model (fingerprint {header.fingerprint.hex()}, "
                f"this model is {self.fingerprint.hex()})"
            )
        expected = self.coded_shape(header.height, header.width, header.version)
        if (header.bits, header.color_space, header.latent_shape) != (
            a.bits,
            a.color_space,
            expected,
        ):
            raise BitstreamError("header does not match the model (bits, colour space or latent)")
        if header.tile % a.stride or header.margin % a.stride:
            raise BitstreamError(f"tiling not aligned to the model stride {a.stride}")

    def decode(self, data: bytes, max_bytes: int | None = None) -> DecodeResult:
        """Decompress, with the time split.

        ``max_bytes``: decode the longest valid cut of ``data`` whose file fits (version 3;
        a version 1 or 2 file decodes only whole). Missing low bits are reconstructed at the
        middle of their interval.
        """
        t0 = time.perf_counter()
        header, payload = bitstream.unpack(data)
        self._check(header)
        c, lh, lw = header.latent_shape
        shape = (1, self.architecture.bits, c, lh, lw)
        used = len(data)
        with single_thread():
            if header.version < 3:
                if max_bytes is not None and max_bytes < len(data):
                    raise ValueError(f"a version {header.version} file cannot be cut: it decodes "
                                     f"only whole ({len(data)} bytes)")  # fmt: skip
                planes = decode_planes(payload, self.context_model, self.table, shape, header.version)
                levels, complete = from_bitplanes(planes), True
            else:
                max_words = None
                if max_bytes is not None and max_bytes < len(data):
                    if max_bytes < SMALLEST_FILE:
                        raise ValueError(f"max_bytes={max_bytes} is below the smallest file "
                                         f"({SMALLEST_FILE} bytes)")  # fmt: skip
                    max_words = (max_bytes - SMALLEST_FILE) // 4
                dec = decode_embedded(payload, self.context_model, self.table, shape, max_words)
                complete = dec.complete
                levels = from_bitplanes(dec.planes) if complete else partial_levels(dec.planes, dec.known)
                if max_words is not None:
                    used = SMALLEST_FILE + 4 * (dec.cuts[-1] if dec.units else 0)
        t1 = time.perf_counter()
        image = self._synthesize(levels, header.height, header.width, header.mode, header.tile,
                                 header.margin)  # fmt: skip
        t2 = time.perf_counter()
        return DecodeResult(image, {"network": t2 - t1, "entropy": t1 - t0, "total": t2 - t0},
                            complete, used)  # fmt: skip

    def compress(self, image: Image.Image, max_bytes: int | None = None,
                 rdoq: float | None = None, refine: int = 0) -> bytes:  # fmt: skip
        """PIL image -> .rtaic bytes (``max_bytes``: the longest valid cut that fits;
        ``rdoq``: lambda of rate-distortion optimized quantization, None or 0 for off;
        ``refine``: steps of latent refinement, 0 for off)."""
        return self.encode(image, max_bytes=max_bytes, rdoq=rdoq, refine=refine).data

    def decompress(self, data: bytes, max_bytes: int | None = None) -> Image.Image:
        """.rtaic bytes -> PIL image (same size and mode as the compressed one);
        ``max_bytes``: from the longest valid cut of the file that fits."""
        return self.decode(data, max_bytes).image

    def cut_sizes(self, data: bytes) -> list[int]:
        """File sizes of every valid cut of a version-3 file, shortest first (the last is
        the file itself). Recovered from the stream: decodes it and re-encodes it."""
        header, payload = bitstream.unpack(data)
        self._check(header)
        if header.version < 3:
            return [len(data)]
        c, lh, lw = header.latent_shape
        shape = (1, self.architecture.bits, c, lh, lw)
        with single_thread():
            dec = decode_embedded(payload, self.context_model, self.table, shape, with_cuts=True)
        sizes = [SMALLEST_FILE] + [SMALLEST_FILE + 4 * n for n in dec.cuts]
        return sorted({n for n in sizes if n < len(data)} | {len(data)})

    def truncate(self, data: bytes, max_bytes: int) -> bytes:
        """The longest valid cut of a file that fits in ``max_bytes``, as a file of its own
        (header and CRC updated); ``data`` itself if it fits. Version 3 files only."""
        if len(data) <= max_bytes:
            bitstream.unpack(data)  # still refuse a corrupt file
            return bytes(data)
        header, payload = bitstream.unpack(data)
        self._check(header)
        if header.version < 3:
            raise ValueError(f"a version {header.version} file cannot be cut")
        if max_bytes < SMALLEST_FILE:
            raise ValueError(f"max_bytes={max_bytes} is below the smallest file ({SMALLEST_FILE} bytes)")
        c, lh, lw = header.latent_shape
        shape = (1, self.architecture.bits, c, lh, lw)
        max_words = (max_bytes - SMALLEST_FILE) // 4
        with single_thread():
            dec = decode_embedded(payload, self.context_model, self.table, shape, max_words)
        words = dec.cuts[-1] if dec.units else 0
        cut = struct.pack("<I", dec.units) + payload[CUT_FIELD_BYTES : CUT_FIELD_BYTES + 4 * words]
        return bitstream.pack(header, cut)


def _check_refine(refine: int | None) -> int:
    """The number of refinement steps (0: off); ValueError unless a whole number >= 0."""
    if refine is None:
        return 0
    if isinstance(refine, bool) or not float(refine).is_integer() or refine < 0:
        raise ValueError(f"refine must be a whole number of steps >= 0, got {refine!r}")
    return int(refine)


def _check_rdoq(rdoq: float | None) -> float:
    """The RDOQ lambda as a float (0.0: off); ValueError if negative or not finite."""
    if rdoq is None:
        return 0.0
    lam = float(rdoq)
    if not (lam >= 0 and np.isfinite(lam)):
        raise ValueError(f"rdoq lambda must be a finite number >= 0, got {rdoq!r}")
    return lam


def load_codec(path: str | os.PathLike, **kwargs) -> Codec:
    """Build a :class:`Codec` from a training checkpoint (``CheckpointError`` if unusable)."""
    return Codec(load_networks(path), **kwargs)
