"""``rtaic compress | decompress``: the codec from the shell.

    rtaic compress photo.png -o photo.rtaic --model model.ckpt    # prints size and bpp
    rtaic decompress photo.rtaic -o photo_rec.png --model model.ckpt
    cat photo.png | rtaic compress - --model model.ckpt > photo.rtaic
    rtaic compress a.png b.png c.png --model model.ckpt          # a.rtaic, b.rtaic, c.rtaic
    rtaic compress photo.png --size 20KB                         # at most 20000 bytes
    rtaic compress photo.png --rdoq 0.03                         # smaller file, same format
    rtaic compress photo.png --refine 30                         # a slower, better encoder
    rtaic decompress photo.rtaic --max-bytes 8KB -o preview.png  # from the first 8000 bytes
    rtaic truncate photo.rtaic --bytes 8KB -o small.rtaic        # a valid, smaller file

``-`` is stdin (and then stdout by default). With several inputs, ``-o`` names a directory.
Derived output names never overwrite an existing file without ``--force``; an explicit
``-o FILE`` does. The model comes from ``--model`` or the ``RTAIC_MODEL`` environment
variable; without either, ``compress`` uses the bundled default model and ``decompress``
the bundled model whose fingerprint the file names (see :mod:`rtaic.zoo`).
``rtaic export CKPT -o MODEL`` strips a training checkpoint down to what the codec needs.
``compress --rdoq LAMBDA`` lets the encoder pick cheaper latent levels where they save more
bits than they cost (rate-distortion optimized quantization, :mod:`rtaic.coding.rdoq`;
0.03 is the tuned value, 0 is off); the files decode as any other. ``compress --refine N``
searches N steps for a better latent through the decoder (:mod:`rtaic.coding.refine`; about
N decoder passes, forward and backward, per image), also a file like any other.

Sizes (``--size``, ``--max-bytes``, ``--bytes``) count whole files in bytes: 20000, 20KB
(1000s), 20KiB (1024s), 1.5MB. ``compress --size`` (or ``--bpp``) chooses among the bundled
models of the default model's family and cut points the file with the best MS-SSIM at or under the size (within 3% of
it where the models allow; :mod:`rtaic.sizing`); with ``--model`` or ``--quality`` it only
cuts that model's file. Reports go to stderr (stdout may carry data). Exit status: 0 if
every file succeeded, 1 if any failed (the others are still processed), 2 for usage errors.
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


def _size(text: str) -> int:
    from rtaic.sizing import parse_size

    try:
        n = parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
    if n <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return n


def _bpp(text: str) -> float:
    try:
        v = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from e
    if not v > 0:
        raise argparse.ArgumentTypeError(f"bpp must be positive: {text!r}")
    return v


def _lambda(text: str) -> float:
    try:
        v = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from e
    if not (v >= 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"lambda must be a finite number >= 0: {text!r}")
    return v


def _steps(text: str) -> int:
    try:
        v = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from e
    if v < 0:
        raise argparse.ArgumentTypeError(f"steps must be >= 0: {text!r}")
    return v


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
                           help="the N-th bundled model of the default family, lowest rate first (1 = smallest files)")  # fmt: skip
            size = s.add_mutually_exclusive_group()
            size.add_argument("--size", type=_size, metavar="SIZE",
                              help="file size to hit, at or under (20000, 20KB, 20KiB): the best "
                                   "bundled model and cut point for it")  # fmt: skip
            size.add_argument("--bpp", type=_bpp, metavar="BPP",
                              help="the same as a size of BPP x pixels / 8 bytes")  # fmt: skip
            s.add_argument("--rdoq", type=_lambda, default=None, metavar="LAMBDA",
                           help="rate-distortion optimized quantization: smaller files for a "
                                "little quality, same format (0.03 recommended; 0: off)")  # fmt: skip
            s.add_argument("--refine", type=_steps, default=0, metavar="STEPS",
                           help="latent refinement: a slower encoder that searches STEPS steps "
                                "for a better latent (30 recommended; 0: off), same format")  # fmt: skip
        else:
            s.add_argument("--max-bytes", type=_size, metavar="SIZE",
                           help="decode only the longest valid cut of the file within SIZE bytes")  # fmt: skip
        s.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
        s.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
        if name == "decompress":
            s.add_argument("--format", help="image format (default: from the suffix, else PNG; TIFF "
                           "for modes PNG cannot store, such as CMYK)")  # fmt: skip
    t = sub.add_parser("truncate", help="cut a .rtaic file to a smaller, valid file of the same image")
    t.add_argument("input", metavar="FILE", help=".rtaic file; '-' is stdin")
    t.add_argument("--bytes", type=_size, required=True, metavar="SIZE",
                   help="at most this many bytes: the longest valid cut within them")  # fmt: skip
    t.add_argument("-o", "--output", required=True, help="output file ('-' for stdout)")
    t.add_argument("-m", "--model", help="checkpoint or bundled model name (default: $RTAIC_MODEL, "
                   "else the bundled model the file names)")  # fmt: skip
    t.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    e = sub.add_parser("export", help="write a codec-only model file from a training checkpoint")
    e.add_argument("checkpoint", help="training checkpoint (.ckpt)")
    e.add_argument("-o", "--output", required=True, help="model file to write")
    return p


class _Encoding:
    """A codec whose progressive encodes use RDOQ and refinement (what
    ``sizing.fit_to_size`` calls)."""

    def __init__(self, codec, lam: float | None, refine: int) -> None:
        self.codec, self.lam, self.refine = codec, lam, refine

    def encode_progressive(self, image):
        return self.codec.encode_progressive(image, rdoq=self.lam, refine=self.refine)


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

    def zoo(self, rdoq: float | None = None, refine: int = 0) -> list:
        """The bundled models ``--size`` chooses among, loaded once (``rdoq``: encoding
        with RDOQ at that lambda; ``refine``: with that many refinement steps)."""
        from rtaic.sizing import zoo_models

        return [(str(path), _Encoding(self._load(path), rdoq, refine) if rdoq or refine else self._load(path))
                for path in zoo_models()]  # fmt: skip

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
    except UnidentifiedImageError as e:  # its message names a BytesIO object, not the file
        raise CliError(f"{name}: not a readable image (no image format Pillow knows)") from e
    except Image.DecompressionBombError as e:
        raise CliError(f"{name}: not a readable image: {e}") from e
    except (OSError, ValueError, SyntaxError) as e:
        raise CliError(f"{name}: cannot decode image: {e}") from e
    return image


def _compress(models: _Models, name: str, out: str, overwrite: bool, args) -> None:
    from rtaic.codec import SMALLEST_FILE
    from rtaic.imageio import ImageModeError

    image = _open_image(name, _read(name))
    target = args.size
    if args.bpp is not None:
        target = max(1, int(args.bpp * image.width * image.height / 8))
    how = ""
    try:
        if target is None:
            data = models.for_compress().compress(image, rdoq=args.rdoq, refine=args.refine)
        elif target < SMALLEST_FILE:
            raise CliError(f"{name}: {target} bytes is below the smallest rtaic file "
                           f"({SMALLEST_FILE} bytes)")  # fmt: skip
        elif models.explicit:
            prog = models.for_compress().encode_progressive(image, rdoq=args.rdoq, refine=args.refine)
            units = prog.cut_for(target)
            data = prog.data(units)
            how = "whole file" if units >= prog.stream.units else f"cut after {units} of {prog.stream.units} units"
        else:
            from rtaic.sizing import fit_to_size

            choice = fit_to_size(image, target, models.zoo(args.rdoq, args.refine))
            total = next(c for c in choice.candidates if c.model == choice.model)
            how = (f"model {Path(choice.model).stem}, "
                   + ("whole file" if choice.whole else f"cut at {choice.units} units of {total.whole_bytes} bytes"))  # fmt: skip
            data = choice.data
    except ImageModeError as e:
        raise CliError(f"{name}: {e}") from e
    _write(out, data, overwrite)
    if not args.quiet:
        w, h = image.size
        extra = f" (target {target} bytes: {len(data) / target:.1%}; {how})" if target else ""
        print(f"{name} -> {out}: {len(data)} bytes, {8 * len(data) / (w * h):.4f} bpp{extra}",
              file=sys.stderr)  # fmt: skip


def _can_store(mode: str, fmt: str) -> bool:
    try:
        Image.new(mode, (1, 1)).save(io.BytesIO(), format=fmt)
    except (OSError, ValueError, KeyError):
        return False
    return True


def _png_can_store(mode: str) -> bool:
    return _can_store(mode, "PNG")


def _tiff_can_store(mode: str) -> bool:
    return _can_store(mode, "TIFF")


def _decompress(models: _Models, name: str, out: str, overwrite: bool, quiet: bool,
                fmt: str | None, max_bytes: int | None = None, derived: bool = False) -> None:  # fmt: skip
    """``derived``: ``out`` was made from the input's name (``photo.rtaic`` -> ``photo.png``);
    a mode PNG cannot store (CMYK, ...) then goes to ``photo.tiff`` instead."""
    from rtaic.coding.bitstream import BitstreamError

    data = _read(name)
    codec = models.for_data(name, data)
    try:
        result = codec.decode(data, max_bytes)
    except BitstreamError as e:
        raise CliError(f"{name}: invalid rtaic file: {e}") from e
    except ValueError as e:  # a cut the file cannot give
        raise CliError(f"{name}: {e}") from e
    image = result.image
    fallback = ""
    if fmt is None and (out == STDIO or not Path(out).suffix or derived):
        # derived names and stdout: PNG, or TIFF for modes PNG cannot store (CMYK, YCbCr, F, ...)
        fmt = "PNG" if _png_can_store(image.mode) else "TIFF"
        if fmt == "TIFF" and not _tiff_can_store(image.mode):  # HSV: neither stores it
            fmt, fallback, image = "PNG", f" (as RGB: PNG and TIFF cannot store {image.mode})", image.convert("RGB")
        elif fmt == "TIFF":
            fallback = f" (TIFF: PNG cannot store {image.mode})"
            if derived:
                out = str(Path(out).with_suffix(".tiff"))
    buf = io.BytesIO()
    try:
        if fmt is None:
            ext = Path(out).suffix.lower()
            fmt = Image.registered_extensions().get(ext)
            if fmt is None:
                raise CliError(f"{out}: unknown image suffix {ext!r} (use --format)")
        image.save(buf, format=fmt)
    except (OSError, ValueError, KeyError) as e:
        hint = " (a .tiff output or --format TIFF stores it)" if _tiff_can_store(image.mode) else ""
        raise CliError(f"{out}: cannot save a {image.mode} image as {fmt}{hint}: {e}") from e
    _write(out, buf.getvalue(), overwrite)
    if not quiet:
        cut = "" if result.bytes_used >= len(data) else f" (from the first {result.bytes_used} of {len(data)} bytes)"
        partial = "" if result.complete or cut else " (a cut file)"
        print(f"{name} -> {out}: {image.width}x{image.height} {image.mode}{cut}{partial}{fallback}",
              file=sys.stderr)  # fmt: skip


def _truncate(args) -> int:
    from rtaic.coding.bitstream import BitstreamError

    model = args.model or os.environ.get("RTAIC_MODEL")
    if model:
        from rtaic import zoo

        model = str(zoo.resolve(model))
    try:
        data = _read(args.input)
        codec = _Models(model).for_data(args.input, data)
        try:
            cut = codec.truncate(data, args.bytes)
        except BitstreamError as e:
            raise CliError(f"{args.input}: invalid rtaic file: {e}") from e
        except ValueError as e:
            raise CliError(f"{args.input}: {e}") from e
        _write(args.output, cut, True)
    except CliError as e:
        _error(str(e))
        return 1
    if not args.quiet:
        print(f"{args.input} -> {args.output}: {len(cut)} of {len(data)} bytes", file=sys.stderr)
    return 0


def _error(message: str) -> None:
    print(f"rtaic: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rtaic`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "export":
        return _export(args.checkpoint, args.output)
    if args.command == "truncate":
        return _truncate(args)
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
            if (args.size or args.bpp) and not args.model:
                models.zoo()
        except CliError as e:
            _error(str(e))
            return 1
    failed = 0
    for name in args.inputs:
        try:
            out, overwrite = _output_for(name, args, many)
            if args.command == "compress":
                _compress(models, name, out, overwrite, args)
            else:
                derived = name != STDIO and not (args.output and not many)
                _decompress(models, name, out, overwrite, args.quiet, args.format, args.max_bytes,
                            derived)  # fmt: skip
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
