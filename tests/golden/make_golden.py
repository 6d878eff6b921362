"""Make the golden files of tests/test_golden.py: run by hand, once; never by the tests.

    .venv/bin/python tests/golden/make_golden.py            # refuses to overwrite
    .venv/bin/python tests/golden/make_golden.py --force    # a deliberate new generation

Regenerating is a format decision, not a fix for a failing test: the point of the files is
that an rtaic of any later day decodes the bytes written here to the same latent and the
same pixels. Only regenerate when the golden *models* must change (e.g. a new checkpoint
layout), and then say why in the commit.

What it writes, all in tests/golden/:

* ``tiny_rgb.ckpt``, ``tiny_ycbcr.ckpt``: two tiny untrained models (2 scales, 2 latent
  channels, B = 5; about 20 KB each) in the layout ``checkpoint.export_checkpoint`` writes
  (``torch.save`` of ``{"state_dict", "rtaic"}``). Torch's initial weights (seed 2, chosen
  so that one latent channel holds levels 0..3, its two high magnitude planes empty, which
  versions 2 and 3 skip, and the other levels 8..11) and random context logits, so that
  the coder's probabilities are far from uniform. The YCbCr model has the same weights.
* ``source_48x32.png``, ``source_37x23.png``: the RGB images coded (smooth gradients plus
  seeded noise; the odd size exercises padding and cropping).
* ``*.rtaic``: each payload version (1, 2, 3; 4 added by ``--add-version-4``), both sizes,
  plus a version-3 file cut in the middle (progressive), grey (L) and 16-bit grey (I;16)
  inputs, and the YCbCr model.
* ``golden.json``: per file its model, version, mode, size and three sha256 digests: of
  the file, of the decoded latent levels (int32 little-endian, with the shape; a cut
  file's midpoint levels as float64), and
  of the decoded pixels (``np.asarray(image)``, with mode, dtype and shape), decoded with
  ``precision="float32"``.

Versions 1 and 2: today's encoder writes version 3 only. The older payloads are written
with ``arithmetic.encode_planes(planes, ..., version=1 or 2)``, the coder of those layouts
kept beside their decoder, and ``bitstream.pack`` with the header's version byte set to
1 or 2 (the 38-byte header is the same in every version). When these files were made,
each layout was checked against the encoder of the commit that introduced it, run on the
same planes and table: version 1 against 950f5c7, version 2 against 263d6cb, version 3
against 9438b76 (identical payloads), and every header parses with the bitstream module
of 950f5c7 / 263d6cb as far as those read. (Version-3 files of e55f49d..ed63e69, the first
hour of version 3, are not these bytes: 9438b76 split the units without a version bump.)

The generation is deterministic: run again from a copy of this script in an empty folder,
it wrote every file above byte for byte (checkpoints included) on the machine that made
them (x86-64 Intel Xeon, torch 2.13.0, constriction 0.5.0).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rtaic.checkpoint import codec_record, load_networks
from rtaic.codec import Codec
from rtaic.coding import bitstream
from rtaic.coding.arithmetic import encode_planes
from rtaic.coding.bitplanes import to_bitplanes
from rtaic.coding.context import BitContextModel
from rtaic.nn.autoencoder import Architecture, Autoencoder

HERE = Path(__file__).resolve().parent
ARCH = Architecture(channels=(3, 4), align_channels=3, latent_channels=2, latent_stride_log2=2,
                    joint_layers=1, bits=5, lowpass=True)  # fmt: skip
MODELS = {"tiny_rgb.ckpt": ARCH, "tiny_ycbcr.ckpt": replace(ARCH, color_space="ycbcr")}
SOURCES = {"source_48x32.png": (48, 32, 0), "source_37x23.png": (37, 23, 1)}  # width, height, seed


def pixel_digest(image: Image.Image) -> str:
    a = np.ascontiguousarray(np.asarray(image))
    h = hashlib.sha256(f"{image.mode} {a.dtype.str} {a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def levels_digest(levels: torch.Tensor) -> str:
    """Integer levels as int32; a cut file's levels (midpoints of what is known) as float64."""
    a = levels.numpy()
    a = np.ascontiguousarray(a.astype("<f8" if a.dtype.kind == "f" else "<i4"))
    h = hashlib.sha256(f"{a.dtype.str} {a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def golden_codec(path: Path) -> Codec:
    """The codec the golden files are written and decoded with: float32 decoder (bfloat16
    gives other pixels, and only where the CPU has bfloat16 units)."""
    return Codec(load_networks(path), precision="float32")


def decode(codec: Codec, data: bytes) -> tuple[torch.Tensor, Image.Image]:
    """(decoded integer levels, image) through ``Codec.decode``, the levels caught where the
    codec hands them to the networks."""
    seen = []
    synthesize = codec._synthesize

    def catch(levels, *args):
        seen.append(levels.clone())
        return synthesize(levels, *args)

    codec._synthesize = catch
    try:
        image = codec.decompress(data)
    finally:
        del codec._synthesize
    (levels,) = seen
    return levels, image


def make_model(path: Path, arch: Architecture, seed: int = 2) -> None:
    torch.manual_seed(seed)
    ae = Autoencoder(arch)
    cm = BitContextModel(arch.latent_channels, arch.bits)
    with torch.no_grad():
        cm.logits.copy_(torch.randn_like(cm.logits) * 2.0)
    state = {f"autoencoder.{k}": v.contiguous() for k, v in ae.state_dict().items()}
    state |= {f"context_model.{k}": v for k, v in cm.state_dict().items()}
    torch.save({"state_dict": state, "rtaic": codec_record(ae, cm)}, path)


def make_source(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([xx / width, yy / height, 0.5 + 0.3 * np.sin(xx / 3 + yy / 5)], -1)
    img = np.clip(base + rng.normal(0, 0.06, base.shape), 0, 1)
    return Image.fromarray((img * 255).round().astype(np.uint8))


def inputs(source: Image.Image) -> dict[str, Image.Image]:
    """The images coded from one source, by the mode tag of their file names."""
    grey = source.convert("L")
    return {"rgb": source, "L": grey,
            "I16": Image.fromarray(np.asarray(grey).astype(np.uint16) * 256 + 100)}  # fmt: skip


def older_version(codec: Codec, image: Image.Image, data: bytes, version: int) -> bytes:
    """``data`` (a file of ``image`` as today's encoder writes it) as a file of payload
    ``version`` 1, 2 or 3: the whole latent grid coded, in that version's layout."""
    header, _ = bitstream.unpack(data)
    levels = codec.latent_levels(image)
    planes = to_bitplanes(levels, codec.architecture.bits)
    payload, _ = encode_planes(planes, codec.context_model, codec.table, version=version)
    return bitstream.pack(replace(header, version=version, latent_shape=tuple(levels.shape[1:])), payload)


def add_version_4() -> None:
    """Version 4 (2026-12-04): today's encoder's files of both sources, added beside the
    files of the first generation, which stay byte for byte. The golden models' stride
    equals their latent stride, so no latent position lies wholly beyond these images and
    the payloads are version 3's (tests/test_codec.py covers a grid that is cropped)."""
    record = json.loads((HERE / "golden.json").read_text())
    rgb = golden_codec(HERE / "tiny_rgb.ckpt")
    for tag in ("48x32", "37x23"):
        name = f"v4_rgb_{tag}.rtaic"
        if name in record:
            raise SystemExit(f"{name} exists")
        data = rgb.compress(Image.open(HERE / f"source_{tag}.png").convert("RGB"))
        (HERE / name).write_bytes(data)
        header, _ = bitstream.unpack(data)
        levels, image = decode(rgb, data)
        record[name] = {
            "model": "tiny_rgb.ckpt", "version": header.version, "mode": header.mode,
            "color_space": header.color_space, "size": [header.width, header.height],
            "file_sha256": hashlib.sha256(data).hexdigest(),
            "levels_sha256": levels_digest(levels), "pixels_sha256": pixel_digest(image),
        }  # fmt: skip
        print(f"{name:28s} {len(data):5d} bytes  version {header.version}")
    (HERE / "golden.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="overwrite existing golden files")
    parser.add_argument("--add-version-4", action="store_true", help="add the version-4 files only")
    args = parser.parse_args()
    if args.add_version_4:
        torch.set_num_threads(1)
        return add_version_4()
    if (HERE / "golden.json").exists() and not args.force:
        raise SystemExit("tests/golden/golden.json exists: the golden files are made once "
                         "(--force to make a new generation deliberately)")  # fmt: skip
    torch.set_num_threads(1)
    for name, arch in MODELS.items():
        make_model(HERE / name, arch)
    for name, (w, h, seed) in SOURCES.items():
        make_source(w, h, seed).save(HERE / name)
    rgb, ycbcr = golden_codec(HERE / "tiny_rgb.ckpt"), golden_codec(HERE / "tiny_ycbcr.ckpt")
    big = Image.open(HERE / "source_48x32.png").convert("RGB")
    odd = Image.open(HERE / "source_37x23.png").convert("RGB")
    files: dict[str, tuple[str, bytes]] = {}
    for tag, image in (("48x32", big), ("37x23", odd)):
        v4 = rgb.compress(image)
        for version in (1, 2, 3):
            files[f"v{version}_rgb_{tag}.rtaic"] = ("tiny_rgb.ckpt", older_version(rgb, image, v4, version))
        files[f"v4_rgb_{tag}.rtaic"] = ("tiny_rgb.ckpt", v4)
    whole = files["v3_rgb_48x32.rtaic"][1]
    sizes = rgb.cut_sizes(whole)
    files["v3cut_rgb_48x32.rtaic"] = ("tiny_rgb.ckpt", rgb.truncate(whole, sizes[len(sizes) // 2]))
    for tag in ("L", "I16"):
        source = inputs(odd)[tag]
        files[f"v3_{tag}_37x23.rtaic"] = ("tiny_rgb.ckpt", older_version(rgb, source, rgb.compress(source), 3))
    files["v3_ycbcr_48x32.rtaic"] = ("tiny_ycbcr.ckpt", older_version(ycbcr, big, ycbcr.compress(big), 3))

    record = {}
    for name, (model, data) in files.items():
        (HERE / name).write_bytes(data)
        codec = rgb if model == "tiny_rgb.ckpt" else ycbcr
        header, _ = bitstream.unpack(data)
        levels, image = decode(codec, data)
        record[name] = {
            "model": model, "version": header.version, "mode": header.mode,
            "color_space": header.color_space, "size": [header.width, header.height],
            "file_sha256": hashlib.sha256(data).hexdigest(),
            "levels_sha256": levels_digest(levels), "pixels_sha256": pixel_digest(image),
        }  # fmt: skip
    (HERE / "golden.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    for name in sorted(record):
        print(f"{name:28s} {len(files[name][1]):5d} bytes  version {record[name]['version']}")


if __name__ == "__main__":
    main()
