"""Our own checkpoints as one more codec: real bitstreams through ``rtaic.load_codec``.

The evaluation reaches our models only through the public ``Codec`` API (``compress(image) ->
bytes``, ``decompress(bytes) -> image``), never through the training stack, so what it reports
is what a user gets. The loader is named by a ``"module:function"`` string, imported lazily in
the worker; tests point it at a fake codec.

RDOQ (rate-distortion optimized quantization at encode time, rtaic.coding.rdoq) is scored
as one more curve, ``learned_rdoq``: the checkpoint name ``dir/m+rdoq0.03.ckpt``
(:func:`rdoq_name`) is model ``dir/m.ckpt`` encoding with ``rdoq=0.03``; its files decode
with the plain decoder like any other (``eval.py rdoq=0.03`` adds the curve).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from PIL import Image

from rtaic.evaluation.measure import Record, measure, to_tensor

CODEC_NAME = "learned"
DEFAULT_LOADER = "rtaic:load_codec"
RDOQ_CURVE = CODEC_NAME + "_rdoq"

_loaded: dict[tuple[str, str], object] = {}


def load(checkpoint: str, loader: str = DEFAULT_LOADER):
    """The codec for one checkpoint, loaded once per process. ``dir/m@0.25.ckpt`` is model
    ``dir/m.ckpt`` with its files cut to 25% of their length (rtaic.sizing.truncated_name);
    ``dir/m+rdoq0.03.ckpt`` is model ``dir/m.ckpt`` encoding with RDOQ at lambda 0.03."""
    key = (loader, checkpoint)
    if key not in _loaded:
        from rtaic.sizing import TruncatedCodec, split_truncated

        path, lam = split_rdoq(checkpoint)
        path, fraction = split_truncated(path)
        module, _, function = loader.partition(":")
        codec = getattr(importlib.import_module(module), function)(path)
        if lam is not None:
            codec = RdoqCodec(codec, lam)
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
    """A codec that encodes with RDOQ at ``lam``; its files decode as any file does."""

    def __init__(self, codec, lam: float) -> None:
        self.codec, self.lam = codec, lam

    def compress(self, image: Image.Image) -> bytes:
        return self.codec.compress(image, rdoq=self.lam)

    def decompress(self, data: bytes) -> Image.Image:
        return self.codec.decompress(data)

    def encode_progressive(self, image: Image.Image):
        return self.codec.encode_progressive(image, rdoq=self.lam)


def with_rdoq(checkpoints: dict[str, list[str]] | list[str], lam: float | None,
              curve: str = CODEC_NAME) -> dict[str, list[str]] | list[str]:  # fmt: skip
    """``checkpoints`` plus the curve ``learned_rdoq``: the models of ``curve`` (the RGB
    ``learned`` one; a plain list is that curve) encoding with RDOQ at ``lam`` (None or 0:
    ``checkpoints`` unchanged)."""
    if not lam:
        return checkpoints
    out = dict(checkpoints) if isinstance(checkpoints, dict) else ({CODEC_NAME: list(checkpoints)} if checkpoints else {})
    out[RDOQ_CURVE] = [rdoq_name(c, float(lam)) for c in out.get(curve, [])]
    return out


def header_bytes(codec, data: bytes) -> int:
    """The codec's own header length if it can tell (``codec.header_bytes(data)``), else the
    fixed header of the .rtaic bitstream (docs/bitstream.md)."""
    fn = getattr(codec, "header_bytes", None)
    if callable(fn):
        return int(fn(data))
    from rtaic.coding.bitstream import HEADER_SIZE

    return HEADER_SIZE


def is_ours(codec: str) -> bool:
    """Our curves: ``learned`` (the RGB models) and ``learned_<family>`` (e.g. YCbCr, GAN)."""
    return codec == CODEC_NAME or codec.startswith(CODEC_NAME + "_")


def curves_of(checkpoints: dict[str, list[str]] | list[str]) -> list[tuple[str, str]]:
    """(curve, checkpoint) pairs; a plain list of checkpoints is the one ``learned`` curve."""
    if isinstance(checkpoints, dict):
        for curve in checkpoints:
            if not is_ours(curve):
                raise ValueError(f"our curves are named {CODEC_NAME!r} or '{CODEC_NAME}_<family>', got {curve!r}")
        return [(curve, str(c)) for curve, paths in checkpoints.items() for c in paths]
    return [(CODEC_NAME, str(c)) for c in checkpoints]


def measure_checkpoints(
    path: str, name: str, sha256: str, checkpoints: list, loader: str = DEFAULT_LOADER
) -> list[dict]:
    """One record per checkpoint for one image (a worker job); ``checkpoints`` are paths or
    (curve, path) pairs."""
    with Image.open(path) as im:
        image = im.convert("RGB")
    original = to_tensor(image)
    records: list[Record] = []
    for item in checkpoints:
        curve, ckpt = item if isinstance(item, (tuple, list)) else (CODEC_NAME, item)
        codec = load(ckpt, loader)
        records.append(
            measure(curve, ckpt, image, original, name, sha256,
                    encode=codec.compress, decode=codec.decompress,
                    header_bytes=lambda data, c=codec: header_bytes(c, data))
        )
    return [r.to_dict() for r in records]
