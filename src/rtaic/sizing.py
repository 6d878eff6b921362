"""Files of a requested size: ``rtaic compress --size 20KB`` and :func:`compress_to_size`.

Version-3 files can be cut after any unit of the embedded scan (docs/bitstream.md), so a
model's file can be made to fit any budget down to a few dozen bytes; cut points lie a
fraction of a percent to a few percent of the file apart. What fits best depends on the
image: a higher-rate model cut short keeps all its planes for some channels and loses the
last one elsewhere, a lower-rate model's whole file may fit outright. :func:`fit_to_size`
codes the image with the zoo's RGB models (``rtaic.zoo.quality_ladder``, lowest rate first;
the default model if there are none) up to the first whose whole file does not fit, plus
``extra`` more, takes each one's longest cut that fits, and keeps the one with the best
MS-SSIM among those within ``tolerance`` of the budget (among all, if none is).

Sizes: ``parse_size("20KB")`` = 20000 bytes (KB, MB: powers of 1000; KiB, MiB: of 1024;
a bare number is bytes); ``bytes_for_bpp(0.3, w, h)`` = floor(0.3 w h / 8).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import NamedTuple

from PIL import Image

_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)

DEFAULT_TOLERANCE = 0.03


def parse_size(text: str | int) -> int:
    """'20KB' -> 20000, '20KiB' -> 20480, '1.5MB' -> 1500000, '4096' -> 4096 (bytes)."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (e.g. 20000, 20KB, 20KiB, 1.5MB)")
    return int(math.floor(float(m.group(1)) * _UNITS[m.group(2).lower()]))


def bytes_for_bpp(bpp: float, width: int, height: int) -> int:
    """The file size in bytes that ``bpp`` bits per pixel of a width x height image allow."""
    if not bpp > 0:
        raise ValueError(f"bpp must be positive, got {bpp}")
    return int(math.floor(bpp * width * height / 8))


class Candidate(NamedTuple):
    model: str  # the model's file
    bytes: int  # of the longest cut that fits (the whole file if it fits)
    whole_bytes: int  # of the model's whole file
    units: int  # units kept (the whole scan if the whole file fits)
    msssim: float | None  # MS-SSIM (RGB) of its decoded image, if it had to be compared


class SizeChoice(NamedTuple):
    data: bytes  # the chosen file
    model: str  # the model that made it
    units: int  # the cut (units kept)
    whole: bool  # the model's whole file, not a cut
    msssim: float | None  # its MS-SSIM (RGB), if candidates were compared
    candidates: list[Candidate]  # everything considered, lowest rate first


_loaded: dict[str, object] = {}


def _codec(model: str | os.PathLike):
    """The Codec of a model file or bundled model name, loaded once per process."""
    from rtaic import zoo
    from rtaic.codec import load_codec

    key = str(zoo.resolve(str(model)))
    if key not in _loaded:
        _loaded[key] = load_codec(key)
    return _loaded[key]


def zoo_models() -> list[Path]:
    """The models :func:`fit_to_size` chooses among by default: the zoo's RGB models,
    lowest rate first, else the default model."""
    from rtaic import zoo

    ladder = [zoo.model_path(name) for name in zoo.quality_ladder()]
    if ladder:
        return ladder
    default = zoo.default_model()
    return [default] if default is not None else []


def _score(image: Image.Image, decoded: Image.Image) -> float:
    """MS-SSIM (RGB 1:1:1) of the decoded image; PSNR / 100 below MS-SSIM's minimum size
    (only candidates of one image are compared, all with the same measure)."""
    import numpy as np
    import torch

    from rtaic.metrics import psnr, weighted_msssim

    def to_tensor(im: Image.Image) -> torch.Tensor:
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)

    x, y = to_tensor(image), to_tensor(decoded)
    try:
        return float(weighted_msssim(x, y, "rgb")[0])
    except ValueError:
        return float(psnr(x, y)[0]) / 100


def fit_to_size(image: Image.Image, max_bytes: int, models=None, tolerance: float = DEFAULT_TOLERANCE,
                extra: int = 1) -> SizeChoice:  # fmt: skip
    """The best file of at most ``max_bytes`` bytes (module doc). ``models``: model files,
    bundled model names or (name, Codec) pairs, lowest rate first (default:
    :func:`zoo_models`)."""
    from rtaic.codec import SMALLEST_FILE

    if max_bytes < SMALLEST_FILE:
        raise ValueError(f"{max_bytes} bytes is below the smallest rtaic file ({SMALLEST_FILE} bytes)")
    models = list(zoo_models() if models is None else models)
    if not models:
        raise ValueError("no model to compress with")
    progs, over = [], 0
    for model in models:
        name, codec = model if isinstance(model, tuple) else (str(model), _codec(model))
        prog = codec.encode_progressive(image)
        units = prog.cut_for(max_bytes)
        progs.append((name, prog, units))
        if prog.size() > max_bytes:
            over += 1
            if over > extra:
                break
    low = math.ceil((1 - tolerance) * max_bytes)
    within = [i for i, (_, prog, units) in enumerate(progs) if prog.size(units) >= low]
    pool = within or list(range(len(progs)))
    scores: dict[int, float] = {}
    if len(pool) > 1:
        for i in pool:
            _, prog, units = progs[i]
            scores[i] = _score(image, prog.reconstruction(units))
        best = max(pool, key=lambda i: (scores[i], progs[i][1].size(progs[i][2])))
    else:
        best = pool[0]
    candidates = [Candidate(name, prog.size(units), prog.size(), units, scores.get(i))
                  for i, (name, prog, units) in enumerate(progs)]  # fmt: skip
    name, prog, units = progs[best]
    whole = units >= prog.stream.units
    return SizeChoice(prog.data(units), name, units, whole, scores.get(best), candidates)


def compress_to_size(image: Image.Image, max_bytes: int | str, models=None,
                     tolerance: float = DEFAULT_TOLERANCE) -> bytes:  # fmt: skip
    """A .rtaic file of at most ``max_bytes`` (an int, or a size such as '20KB') with the
    best MS-SSIM the zoo's models and cut points give (see :func:`fit_to_size`)."""
    return fit_to_size(image, parse_size(max_bytes), models, tolerance).data


# -- one model's files cut to a fraction of their length (the evaluation's truncated curve) --

_TRUNCATED = re.compile(r"^(?P<stem>.+)@(?P<fraction>\d*\.?\d+)$")


def truncated_name(model: str | os.PathLike, fraction: float) -> str:
    """'dir/m.ckpt', 0.25 -> 'dir/m@0.25.ckpt': names model m's files cut to 25% of their
    length, wherever a checkpoint path is expected (``rtaic.evaluation.measure.load``)."""
    p = Path(model)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return str(p.with_name(f"{p.stem}@{fraction:g}{p.suffix}"))


def split_truncated(name: str | os.PathLike) -> tuple[str, float | None]:
    """Inverse of :func:`truncated_name`: (model path, fraction), or (name, None) for a
    plain model (also for an existing file whose name merely looks like one)."""
    p = Path(name)
    m = _TRUNCATED.match(p.stem)
    if m is None or p.is_file() or not 0 < float(m["fraction"]) <= 1:
        return str(name), None
    return str(p.with_name(m["stem"] + p.suffix)), float(m["fraction"])


class TruncatedCodec:
    """A codec whose files are its model's whole files cut to ``fraction`` of their length
    (the longest valid cut within it); they decode as any file does."""

    def __init__(self, codec, fraction: float) -> None:
        self.codec, self.fraction = codec, fraction

    def compress(self, image: Image.Image) -> bytes:
        prog = self.codec.encode_progressive(image)
        units = prog.cut_for(max(int(self.fraction * prog.size()), 1))
        return prog.data(units if units is not None else 0)

    def decompress(self, data: bytes) -> Image.Image:
        return self.codec.decompress(data)
