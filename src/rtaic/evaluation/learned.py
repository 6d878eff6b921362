"""Our own checkpoints as one more codec: real bitstreams through ``rtaic.load_codec``.

The evaluation reaches our models only through the public ``Codec`` API (``compress(image) ->
bytes``, ``decompress(bytes) -> image``), never through the training stack, so what it reports
is what a user gets. The loader is named by a ``"module:function"`` string, imported lazily in
the worker; tests point it at a fake codec.
"""

from __future__ import annotations

import importlib

from PIL import Image

from rtaic.evaluation.measure import Record, measure, to_tensor

CODEC_NAME = "learned"
DEFAULT_LOADER = "rtaic:load_codec"

_loaded: dict[tuple[str, str], object] = {}


def load(checkpoint: str, loader: str = DEFAULT_LOADER):
    """The codec for one checkpoint, loaded once per process. ``dir/m@0.25.ckpt`` is model
    ``dir/m.ckpt`` with its files cut to 25% of their length (rtaic.sizing.truncated_name)."""
    key = (loader, checkpoint)
    if key not in _loaded:
        from rtaic.sizing import TruncatedCodec, split_truncated

        path, fraction = split_truncated(checkpoint)
        module, _, function = loader.partition(":")
        codec = getattr(importlib.import_module(module), function)(path)
        _loaded[key] = codec if fraction is None else TruncatedCodec(codec, fraction)
    return _loaded[key]


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
