"""``rtaic compress | decompress``: the codec from the shell.

    rtaic compress photo.png -o photo.rtaic --model model.ckpt    # prints size and bpp
    rtaic decompress photo.rtaic -o photo_rec.png --model model.ckpt
    cat photo.png | rtaic compress - --model model.ckpt > photo.rtaic
    rtaic compress a.png b.png c.png --model model.ckpt          # a.rtaic, b.rtaic, c.rtaic

``-`` is stdin (and then stdout by default). With several inputs, ``-o`` names a directory.
Derived output names never overwrite an existing file without ``--force``; an explicit
``-o FILE`` does. The model comes from ``--model`` or the ``RTAIC_MODEL`` environment
variable; without either, ``compress`` uses the bundled default model and ``decompress``
the bundled model whose fingerprint the file names (see :mod:`rtaic.zoo`).
``rtaic export CKPT -o MODEL`` strips a training checkpoint down to what the codec needs. Reports go to stderr (stdout may carry data). Exit status: 0 if every file
succeeded, 1 if any failed (the others are still processed), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from rtaic import __version__

SUFFIX = ".rtaic"
STDIO = "-"


class CliError(Exception):
    """A user-facing failure for one file or the whole run (printed as 'rtaic: ...')."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rtaic", description="Learned lossy image compression.")
    p.add_argument("--version", action="version", version=f"rtaic {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for name, what in (("compress", "image files to .rtaic"), ("decompress", ".rtaic files to images")):
        s = sub.add_parser(name, help=f"{name} {what}")
        s.add_argument("inputs", nargs="+", metavar="FILE", help="input files; '-' is stdin")
        s.add_argument("-o", "--output", help="output file ('-' for stdout), or a directory")
        s.add_argument("-m", "--model",
                       help="checkpoint or bundled model name (default: $RTAIC_MODEL, else a "
                            "bundled model)")  # fmt: skip
        if name == "compress":
            s.add_argument("--quality", type=int, metavar="N",
                           help="the N-th bundled RGB model, lowest rate first (1 = smallest files)")  # fmt: skip
        s.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
        s.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
        if name == "decompress":
            s.add_argument("--format", help="image format (default: from the suffix, else PNG)")
    e = sub.add_parser("export", help="write a codec-only model file from a training checkpoint")
    e.add_argument("checkpoint", help="training checkpoint (.ckpt)")
    e.add_argument("-o", "--output", required=True, help="model file to write")
    return p


class _Models:
    """Loads codecs on demand: the explicit model, else bundled ones (by fingerprint)."""

    def __init__(self, explicit: str | None) -> None:
        self.explicit, self.loaded = explicit, {}

    def _load(self, path) -> object:
        from rtaic.checkpoint import CheckpointError
        from rtaic.codec import load_codec

        key = str(path)
        if key not in self.loaded:
            try:
                self.loaded[key] = load_codec(path)
            except (CheckpointError, ValueError, KeyError, RuntimeError) as e:
                raise CliError(f"cannot load model {path}: {e}") from e
        return self.loaded[key]

    def for_compress(self):
        from rtaic import zoo

        path = self.explicit or zoo.default_model()
        if path is None:
            raise CliError("no model: pass --model CHECKPOINT or set RTAIC_MODEL")
        return self._load(path)

    def for_data(self, name: str, data: bytes):
        if self.explicit:
            return self._load(self.explicit)
        from rtaic import zoo
        from rtaic.coding.bitstream import BitstreamError, unpack

        try:
            header, _ = unpack(data)
        except BitstreamError as e:
            raise CliError(f"{name}: invalid rtaic file: {e}") from e
        path = zoo.model_for_fingerprint(header.fingerprint)
        if path is None:
            raise CliError(f"{name}: made with model {header.fingerprint.hex()}, which is not "
                           "bundled: pass --model CHECKPOINT")  # fmt: skip
        return self._load(path)


def _read(name: str) -> bytes:
    if name == STDIO:
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as e:
        raise CliError(f"{name}: cannot read: {e.strerror or e}") from e


def _output_for(name: str, args, many: bool) -> tuple[str, bool]:
    """(output path or '-', whether overwriting is allowed).

    Derived names: compress photo.png -> photo.rtaic; decompress photo.rtaic -> photo.png
    (any other name gets the suffix appended)."""
    if args.output and not many:
        return args.output, True
    if name == STDIO:
        if many:
            raise CliError("'-' (stdin) cannot be combined with several inputs")
        return STDIO, True
    path = Path(name)
    if args.command == "compress":
        new = SUFFIX
        derived = path.with_suffix(new) if path.suffix.lower() != new else Path(name + new)
    else:
        new = ".png"
        derived = path.with_suffix(new) if path.suffix.lower() == SUFFIX else Path(name + new)
    if many and args.output:
        derived = Path(args.output) / derived.name
    return str(derived), args.force


def _write(out: str, data: bytes, overwrite: bool) -> None:
    if out == STDIO:
        if sys.stdout.isatty():
            raise CliError("refusing to write binary data to a terminal; use -o or redirect")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = Path(out)
    if path.exists() and not overwrite:
        raise CliError(f"{out}: exists (use --force to overwrite)")
    tmp = path.with_name(path.name + ".part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CliError(f"{out}: cannot write: {e.strerror or e}") from e


def _open_image(name: str, data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise CliError(f"{name}: not a readable image: {e}") from e
    except (OSError, ValueError, SyntaxError) as e:
        raise CliError(f"{name}: cannot decode image: {e}") from e
    return image


def _compress(models: _Models, name: str, out: str, overwrite: bool, quiet: bool) -> None:
    from rtaic.imageio import ImageModeError

    codec = models.for_compress()
    image = _open_image(name, _read(name))
    try:
        data = codec.compress(image)
    except ImageModeError as e:
        raise CliError(f"{name}: {e}") from e
    _write(out, data, overwrite)
    if not quiet:
        w, h = image.size
        print(f"{name} -> {out}: {len(data)} bytes, {8 * len(data) / (w * h):.4f} bpp",
              file=sys.stderr)  # fmt: skip


def _decompress(models: _Models, name: str, out: str, overwrite: bool, quiet: bool,
                fmt: str | None) -> None:  # fmt: skip
    from rtaic.coding.bitstream import BitstreamError

    data = _read(name)
    codec = models.for_data(name, data)
    try:
        image = codec.decompress(data)
    except BitstreamError as e:
        raise CliError(f"{name}: invalid rtaic file: {e}") from e
    if fmt is None and (out == STDIO or not Path(out).suffix):
        fmt = "PNG"
    buf = io.BytesIO()
    try:
        if fmt is None:
            ext = Path(out).suffix.lower()
            fmt = Image.registered_extensions().get(ext)
            if fmt is None:
                raise CliError(f"{out}: unknown image suffix {ext!r} (use --format)")
        image.save(buf, format=fmt)
    except (OSError, ValueError, KeyError) as e:
        raise CliError(f"{out}: cannot save a {image.mode} image as {fmt}: {e}") from e
    _write(out, buf.getvalue(), overwrite)
    if not quiet:
        print(f"{name} -> {out}: {image.width}x{image.height} {image.mode}", file=sys.stderr)


def _error(message: str) -> None:
    print(f"rtaic: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rtaic`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "export":
        return _export(args.checkpoint, args.output)
    many = len(args.inputs) > 1
    if args.inputs.count(STDIO) > 1:
        _error("'-' (stdin) can be given only once")
        return 2
    if many and args.output and (args.output == STDIO or not Path(args.output).is_dir()):
        _error(f"with several inputs, -o must be an existing directory (got {args.output!r})")
        return 2

    if getattr(args, "quality", None) is not None:
        from rtaic import zoo

        ladder = zoo.quality_ladder()
        if args.model:
            _error("give --model or --quality, not both")
            return 2
        if not 1 <= args.quality <= len(ladder):
            _error(f"--quality must be 1..{len(ladder)} (bundled models: {', '.join(ladder)})")
            return 2
        args.model = ladder[args.quality - 1]
    elif args.model is None:
        args.model = os.environ.get("RTAIC_MODEL")
    if args.model:
        from rtaic import zoo

        args.model = str(zoo.resolve(args.model))
    models = _Models(args.model)
    if args.command == "compress" and not args.model:
        from rtaic import zoo

        if zoo.default_model() is None:
            _error("no model: pass --model CHECKPOINT or set RTAIC_MODEL")
            return 2
    if args.command == "compress":
        try:
            models.for_compress()  # a bad model is one error, not one per file
        except CliError as e:
            _error(str(e))
            return 1
    failed = 0
    for name in args.inputs:
        try:
            out, overwrite = _output_for(name, args, many)
            if args.command == "compress":
                _compress(models, name, out, overwrite, args.quiet)
            else:
                _decompress(models, name, out, overwrite, args.quiet, args.format)
        except CliError as e:
            _error(str(e))
            failed += 1
        except MemoryError:
            _error(f"{name}: out of memory")
            failed += 1
        except Exception as e:  # noqa: BLE001 - report, never a traceback; go on with the rest
            _error(f"{name}: unexpected error ({type(e).__name__}): {e}")
            failed += 1
    return 1 if failed else 0


def _export(checkpoint: str, output: str) -> int:
    from rtaic.checkpoint import CheckpointError, export_checkpoint
    from rtaic.codec import model_fingerprint

    try:
        nets = export_checkpoint(checkpoint, output)
    except (CheckpointError, OSError) as e:
        _error(str(e))
        return 1
    print(f"{checkpoint} -> {output}: fingerprint {model_fingerprint(nets).hex()}, "
          f"{os.path.getsize(output)} bytes", file=sys.stderr)  # fmt: skip
    return 0
