"""Measure a codec on an image into records: encode to real bytes, decode, score the decoded
8-bit image.

One record per (codec, setting, image), the same for the baselines (:func:`measure_baseline`,
a codec of baselines.py at one quality) and for our own checkpoints
(:func:`measure_checkpoints`, one checkpoint each), so the report treats them alike. Bits
always come from ``len(bytes)`` of a real file (never from an entropy estimate), and the
metrics compare the decoded 8-bit image with the original 8-bit image.

Our checkpoints are reached only through the public ``Codec`` API (``compress(image) ->
bytes``, ``decompress(bytes) -> image``), never through the training stack, so what is
reported is what a user gets. The loader is named by a ``"module:function"`` string, imported
lazily in the worker; tests point it at a fake codec.

RDOQ (rate-distortion optimized quantization at encode time, rtaic.coding.rdoq) is scored
as one more curve per colour space, ``learned_rdoq`` and ``learned_ycbcr_rdoq``: the checkpoint name ``dir/m+rdoq0.03.ckpt``
(:func:`rdoq_name`) is model ``dir/m.ckpt`` encoding with ``rdoq=0.03``; its files decode
with the plain decoder like any other (``eval.py rdoq=0.03`` adds the curves).
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rtaic.evaluation.baselines import get_baseline
from rtaic.evaluation.names import OURS, RDOQ_CURVES, REFINE_CURVES, is_ours
from rtaic.metrics import ciede2000, psnr, weighted_msssim

# Bump when a field's meaning or a metric's definition changes: it invalidates cached records.
RECORD_VERSION = 2  # 2: ciede2000


@dataclass
class Record:
    codec: str  # baseline name, or the name of our curve (names.py)
    quality: str  # the codec's setting (a number as text), or the checkpoint's path
    image: str  # file name
    sha256: str  # of the original file
    width: int
    height: int
    file_bytes: int  # the whole file as written
    header_bytes: int  # part of file_bytes that is header (docs/evaluation.md)
    bpp: float  # 8 * file_bytes / pixels
    bpp_payload: float  # 8 * (file_bytes - header_bytes) / pixels
    msssim_rgb: float
    msssim_ycbcr: float
    psnr_rgb: float
    psnr_y: float
    ciede2000: float  # mean CIEDE2000 colour difference (sees hue shifts that MS-SSIM misses)
    encode_s: float
    decode_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> (1, 3, H, W) float64 in [0, 1]."""
    arr = np.array(image.convert("RGB"), dtype=np.float64) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)


def quality_metrics(original: torch.Tensor, decoded: torch.Tensor) -> dict[str, float]:
    """MS-SSIM (RGB 1:1:1, YCbCr 6:1:1), PSNR (RGB, luma) and mean CIEDE2000 of two 8-bit
    images as tensors."""
    from rtaic.color import rgb_to_ycbcr

    x, y = original.float(), decoded.float()
    y_luma = rgb_to_ycbcr(original)[:, :1], rgb_to_ycbcr(decoded)[:, :1]
    return {
        "msssim_rgb": float(weighted_msssim(x, y, "rgb")[0]),
        "msssim_ycbcr": float(weighted_msssim(x, y, "ycbcr")[0]),
        "psnr_rgb": float(psnr(original, decoded)[0]),
        "psnr_y": float(psnr(*y_luma)[0]),
        "ciede2000": float(ciede2000(original, decoded)[0]),
    }


def measure(
    codec: str,
    quality: str,
    image: Image.Image,
    original: torch.Tensor,
    name: str,
    sha256: str,
    encode: Callable[[Image.Image], bytes],
    decode: Callable[[bytes], Image.Image],
    header_bytes: Callable[[bytes], int],
) -> Record:
    """Time one encode and one decode, then score the decoded image against the original."""
    t0 = time.perf_counter()
    data = encode(image)
    t1 = time.perf_counter()
    decoded = decode(data).convert("RGB")
    t2 = time.perf_counter()
    if decoded.size != image.size:
        raise ValueError(f"{codec} q={quality} decoded {decoded.size}, expected {image.size}")
    pixels = image.width * image.height
    head = header_bytes(data)
    return Record(
        codec=codec, quality=str(quality), image=name, sha256=sha256,
        width=image.width, height=image.height,
        file_bytes=len(data), header_bytes=head,
        bpp=8 * len(data) / pixels, bpp_payload=8 * (len(data) - head) / pixels,
        **quality_metrics(original, to_tensor(decoded)),
        encode_s=t1 - t0, decode_s=t2 - t1,
    )


# -- the baselines ------------------------------------------------------------------------


def _open_rgb(path: str) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def measure_baseline(path: str, name: str, sha256: str, codec: str, qualities: list) -> list[dict]:
    """All requested qualities of one baseline on one image (a worker job)."""
    baseline = get_baseline(codec)
    baseline.setup()  # import the plugin outside the timed encode
    image = _open_rgb(path)
    original = to_tensor(image)
    return [
        measure(codec, q, image, original, name, sha256,
                encode=lambda img, q=q: baseline.encode(img, q),
                decode=baseline.decode, header_bytes=baseline.header_bytes).to_dict()
        for q in qualities
    ]


# -- our checkpoints, through the codec API -----------------------------------------------

DEFAULT_LOADER = "rtaic:load_codec"

_loaded: dict[tuple[str, str], object] = {}


def load(checkpoint: str, loader: str = DEFAULT_LOADER):
    """The codec for one checkpoint, loaded once per process. ``dir/m@0.25.ckpt`` is model
    ``dir/m.ckpt`` with its files cut to 25% of their length (rtaic.sizing.truncated_name);
    ``dir/m+rdoq0.03.ckpt`` is model ``dir/m.ckpt`` encoding with RDOQ at lambda 0.03;
    ``dir/m+refine30.ckpt`` encoding with 30 steps of latent refinement."""
    key = (loader, checkpoint)
    if key not in _loaded:
        from rtaic.sizing import TruncatedCodec, split_truncated

        path, steps = split_refine(checkpoint)
        path, lam = split_rdoq(path)
        path, fraction = split_truncated(path)
        module, _, function = loader.partition(":")
        codec = getattr(importlib.import_module(module), function)(path)
        if lam is not None or steps is not None:
            codec = RdoqCodec(codec, lam, steps or 0)
        _loaded[key] = codec if fraction is None else TruncatedCodec(codec, fraction)
    return _loaded[key]


# -- RDOQ: a model encoding with rate-distortion optimized quantization ----------------------

_RDOQ = re.compile(r"^(?P<stem>.+)\+rdoq(?P<lam>\d*\.?\d+(?:[eE][-+]?\d+)?)$")


def rdoq_name(model: str | Path, lam: float) -> str:
    """'dir/m.ckpt', 0.03 -> 'dir/m+rdoq0.03.ckpt': names model m encoding with RDOQ at
    ``lam``, wherever a checkpoint path is expected (:func:`load`)."""
    if not lam > 0:
        raise ValueError(f"RDOQ lambda must be > 0, got {lam}")
    p = Path(model)
    return str(p.with_name(f"{p.stem}+rdoq{lam:g}{p.suffix}"))


def split_rdoq(name: str | Path) -> tuple[str, float | None]:
    """Inverse of :func:`rdoq_name`: (model path, lambda), or (name, None) for a plain model
    (also for an existing file whose name merely looks like one)."""
    p = Path(name)
    m = _RDOQ.match(p.stem)
    if m is None or p.is_file():
        return str(name), None
    return str(p.with_name(m["stem"] + p.suffix)), float(m["lam"])


class RdoqCodec:
    """A codec that encodes with RDOQ at ``lam`` and ``refine`` steps of latent refinement;
    its files decode as any file does."""

    def __init__(self, codec, lam: float | None, refine: int = 0) -> None:
        self.codec, self.lam, self.refine = codec, lam, refine

    def compress(self, image: Image.Image) -> bytes:
        return self.codec.compress(image, rdoq=self.lam, refine=self.refine)

    def decompress(self, data: bytes) -> Image.Image:
        return self.codec.decompress(data)

    def encode_progressive(self, image: Image.Image):
        return self.codec.encode_progressive(image, rdoq=self.lam, refine=self.refine)


# -- latent refinement: a slower encoder (rtaic.coding.refine) ------------------------------

_REFINE = re.compile(r"^(?P<stem>.+)\+refine(?P<steps>\d+)$")


def refine_name(model: str | Path, steps: int) -> str:
    """'dir/m.ckpt', 30 -> 'dir/m+refine30.ckpt': model m encoding with 30 refinement steps."""
    if not (isinstance(steps, int) and steps > 0):
        raise ValueError(f"refinement steps must be a whole number > 0, got {steps!r}")
    p = Path(model)
    return str(p.with_name(f"{p.stem}+refine{steps}{p.suffix}"))


def split_refine(name: str | Path) -> tuple[str, int | None]:
    """Inverse of :func:`refine_name` (an existing file is itself, whatever its name)."""
    p = Path(name)
    m = _REFINE.match(p.stem)
    if m is None or p.is_file():
        return str(name), None
    return str(p.with_name(m["stem"] + p.suffix)), int(m["steps"])


def with_refine(checkpoints: dict[str, list[str]] | list[str], steps: int | None,
                curves: list[str] | None = None) -> dict[str, list[str]] | list[str]:  # fmt: skip
    """``checkpoints`` plus each colour space's plain curve (or the curves named in ``curves``,
    e.g. ``["learned_ycbcr"]``, since refinement is slow, or an RDOQ curve such as
    ``learned_ycbcr_rdoq`` to combine both) encoding with ``steps`` of latent refinement:
    ``learned_refine``, ``learned_ycbcr_refine``, ``learned_ycbcr_rdoq_refine`` (None or 0:
    unchanged)."""
    if not steps:
        return checkpoints
    out = dict(checkpoints) if isinstance(checkpoints, dict) else ({OURS: list(checkpoints)} if checkpoints else {})
    for curve in list(REFINE_CURVES) if curves is None else list(curves):
        if out.get(curve):
            out[REFINE_CURVES.get(curve, f"{curve}_refine")] = [refine_name(c, int(steps)) for c in out[curve]]
    return out


def with_rdoq(checkpoints: dict[str, list[str]] | list[str], lam,
              ) -> dict[str, list[str]] | list[str]:  # fmt: skip
    """``checkpoints`` plus, for each plain curve of a colour space (the RGB ``learned`` one,
    ``learned_ycbcr``; a plain list is the RGB curve), its models encoding with RDOQ at
    ``lam`` as one more curve: ``learned_rdoq``, ``learned_ycbcr_rdoq`` (None or 0:
    ``checkpoints`` unchanged).

    ``lam`` may be a list: each model then gives one point per lambda, the settings an
    encoder aiming at a size or a quality chooses among (docs/training.md, tenth session:
    about 1% on val with [0.03, 0.1])."""
    listed = lam if isinstance(lam, Sequence) and not isinstance(lam, str) else [lam]
    lams = [float(x) for x in listed if x]
    if not lams:
        return checkpoints
    out = dict(checkpoints) if isinstance(checkpoints, dict) else ({OURS: list(checkpoints)} if checkpoints else {})
    for plain, coded in RDOQ_CURVES.items():
        if out.get(plain):
            out[coded] = [rdoq_name(c, x) for c in out[plain] for x in lams]
    return out


def header_bytes(codec, data: bytes) -> int:
    """The codec's own header length if it can tell (``codec.header_bytes(data)``), else the
    fixed header of the .rtaic bitstream (docs/bitstream.md)."""
    fn = getattr(codec, "header_bytes", None)
    if callable(fn):
        return int(fn(data))
    from rtaic.coding.bitstream import HEADER_SIZE

    return HEADER_SIZE


def curves_of(checkpoints: dict[str, list[str]] | list[str]) -> list[tuple[str, str]]:
    """(curve, checkpoint) pairs; a plain list of checkpoints is the one ``learned`` curve."""
    if isinstance(checkpoints, dict):
        for curve in checkpoints:
            if not is_ours(curve):
                raise ValueError(f"our curves are named {OURS!r} or '{OURS}_<family>', got {curve!r}")
        return [(curve, str(c)) for curve, paths in checkpoints.items() for c in paths]
    return [(OURS, str(c)) for c in checkpoints]


def measure_checkpoints(
    path: str, name: str, sha256: str, checkpoints: list, loader: str = DEFAULT_LOADER
) -> list[dict]:
    """One record per checkpoint for one image (a worker job); ``checkpoints`` are paths or
    (curve, path) pairs."""
    image = _open_rgb(path)
    original = to_tensor(image)
    records: list[Record] = []
    for item in checkpoints:
        curve, ckpt = item if isinstance(item, (tuple, list)) else (OURS, item)
        codec = load(ckpt, loader)
        records.append(
            measure(curve, ckpt, image, original, name, sha256,
                    encode=codec.compress, decode=codec.decompress,
                    header_bytes=lambda data, c=codec: header_bytes(c, data))
        )
    return [r.to_dict() for r in records]
