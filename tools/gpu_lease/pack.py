"""Prepare a lease of the workplace's GPU machine (the `device` tool) for the model zoo.

What travels there is the working tree (tracked files plus untracked, not ignored ones)
and the ignored paths a call names in `carry`, 64 MiB in all; nothing can be downloaded
there. So:

- ``pack``: the ignored folder ``.gpu/`` gets the wheels the device's Python 3.12 lacks
  (hydra-core, omegaconf, antlr4-python3-runtime, pytorch-msssim, constriction: its
  package list has torch, Lightning, scikit-image), the device script, and a training
  set that fits: BSDS500 train as it is (29 MB of JPEG), and the photos and SIPI images
  as 640 px centre crops in JPEG q92 4:4:4 (16 MB instead of 126 MB of PNG; the zoo draws
  crops uniformly by image, so these 94 images give 19% of the crops either way), plus
  the 32 val images the zoo validates on.
- ``slim``: the bundled models other than the ones being trained leave the index (and
  are ignored) so that the tree is ~11 MB instead of ~50 MB; ``restore`` puts them back.
  Nothing on disk changes.

Then: ``run(command="bash .gpu/run.sh MEMBER...", carry=[".gpu"], timeout_s=570)`` and
``python tools/gpu_lease/pack.py restore``; unpack ``phase2.tgz`` (or ``phase1.tgz``).
See docs/training.md, "Reproducing the zoo".
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / ".gpu"
WHEELS = ["constriction==0.5.0", "hydra-core==1.3.2", "omegaconf==2.3.0", "pytorch-msssim==1.0.0"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]  # fmt: skip
MARK = "# gpu_lease slim (python tools/gpu_lease/pack.py restore removes this block)"


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, cwd=ROOT)


def _exclude() -> None:
    exclude = ROOT / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.is_file() else []
    if "/.gpu/" not in lines:
        exclude.write_text("\n".join([*lines, "/.gpu/"]) + "\n")


def pack_images(src: Path, dst: Path, crop: int, quality: int) -> None:
    """Centre crops of at most ``crop`` px a side, JPEG at ``quality`` without chroma
    subsampling."""
    from PIL import Image

    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.iterdir()):
        if p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".ppm"):
            continue
        im = Image.open(p).convert("RGB")
        w, h = im.size
        cw, ch = min(w, crop), min(h, crop)
        left, top = (w - cw) // 2, (h - ch) // 2
        im.crop((left, top, left + cw, top + ch)).save(
            dst / f"{p.stem}.jpg", quality=quality, subsampling=0
        )


def pack(args: argparse.Namespace) -> None:
    _exclude()
    data = Path(args.data).resolve()
    whl = PACK / "whl"
    whl.mkdir(parents=True, exist_ok=True)
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    _run(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.12", "--implementation", "cp", *plat, "-d", str(whl), *WHEELS)  # fmt: skip
    # antlr4-python3-runtime 4.9.3 (hydra's parser) exists only as an sdist: build its wheel
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "antlr4-python3-runtime==4.9.3",
        "-w",
        str(whl),
    )
    train = PACK / "data" / "train"
    shutil.copytree(data / "train" / "bsds", train / "bsds", dirs_exist_ok=True)
    for sub in ("photos", "sipi"):
        if (data / "train" / sub).is_dir():
            pack_images(data / "train" / sub, train / sub, args.crop, args.quality)
    val = PACK / "data" / "val" / "bsds"
    val.mkdir(parents=True, exist_ok=True)
    for p in sorted((data / "val" / "bsds").iterdir())[: args.val_images]:
        shutil.copy(p, val / p.name)
    shutil.copy(Path(__file__).with_name("run.sh"), PACK / "run.sh")
    size = sum(f.stat().st_size for f in PACK.rglob("*") if f.is_file())
    print(f"{PACK}: {size / 2**20:.1f} MiB")


def _tree_mib() -> float:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=ROOT, check=True, capture_output=True).stdout  # fmt: skip
    files = {f for f in out.decode().split("\0") if f}
    return sum((ROOT / f).stat().st_size for f in files if (ROOT / f).is_file()) / 2**20


def slim(args: argparse.Namespace) -> None:
    gitignore = ROOT / ".gitignore"
    if MARK in gitignore.read_text():
        raise SystemExit("already slim: run restore first")
    keep = {f"src/rtaic/models/{m}.ckpt" for m in args.keep}
    tracked = subprocess.run(["git", "ls-files", "src/rtaic/models/*.ckpt", "docs/*.png"], cwd=ROOT,
                             check=True, capture_output=True, text=True).stdout.split()  # fmt: skip
    drop = [f for f in tracked if f not in keep]
    with gitignore.open("a") as f:
        f.write("\n".join(["", MARK, *drop, ""]))
    _run("git", "rm", "-q", "--cached", *drop)
    print(f"{len(drop)} files out of the index; the tree that travels: {_tree_mib():.1f} MiB")


def restore(args: argparse.Namespace) -> None:
    gitignore = ROOT / ".gitignore"
    text = gitignore.read_text()
    if MARK in text:
        gitignore.write_text(text[: text.index(MARK)].rstrip("\n") + "\n")
    _run("git", "reset", "-q", "HEAD", "--", "src/rtaic/models", "docs")
    print(f"restored; the tree: {_tree_mib():.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="wheels, device script and training set into .gpu/")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--crop", type=int, default=640)
    p.add_argument("--quality", type=int, default=92)
    p.add_argument("--val-images", type=int, default=32)
    s = sub.add_parser("slim", help="only these bundled models travel")
    s.add_argument("--keep", nargs="+", required=True, metavar="MODEL")
    sub.add_parser("restore", help="undo slim")
    args = ap.parse_args()
    {"pack": pack, "slim": slim, "restore": restore}[args.cmd](args)


if __name__ == "__main__":
    main()
