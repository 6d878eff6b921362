"""What quantization done right gains: RDOQ at encode time and quantization-aware finetuning.

For every image and every plain model (default: the bundled RGB models, rtaic.zoo.curves()
["learned"]: not legacy, not YCbCr, not GAN; for a finetuned one, the plain model it was
finetuned from), real files are written and decoded:

  * plain      the model, plain encoder (the reference curve);
  * rdoq       the model, RDOQ at each --lambdas value (rtaic.coding.rdoq);
  * finetuned  its finetuned checkpoint (experiment=finetune_quantized; default: the bundled
               one, manifest "finetuned_from"), plain encoder;
  * both       the finetuned checkpoint with RDOQ.

Each variant's curve (its models in order of rate) is compared with the plain curve per
image by BD-rate (the eval package's rtaic.evaluation.rd.bd_rate: RGB MS-SSIM in dB
against whole-file bits, as written), then averaged over the images where the curves
overlap. Encode and decode times are measured per file on one torch thread: RDOQ costs
encode time only. A finetuned checkpoint pairs with the plain model of the same
architecture (the stage keeps it); a model without one enters the finetuned and both
curves as itself (plain, and with RDOQ).

    nice python benchmarks/quantization_gain.py --kodak ../shared/data/kodak
    nice python benchmarks/quantization_gain.py --kodak ../shared/data/val/bsds --limit 20 \\
        --finetuned outputs/finetune_quantized/runs/*/checkpoints/last.ckpt

--kodak takes any folder of PNG / JPEG images (tune lambda on val, never on Kodak). The last
line is ``BD-rate vs plain: finetuned X%, rdoq Y%, both Z%`` (rdoq and both at the first
--lambdas value; n/a where there is nothing to compare).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rtaic import zoo
from rtaic.codec import DEFAULT_RDOQ, load_codec
from rtaic.evaluation import rd
from rtaic.evaluation.measure import to_tensor
from rtaic.metrics import weighted_msssim


def msssim(original: torch.Tensor, image: Image.Image) -> float:
    return float(weighted_msssim(original.float(), to_tensor(image.convert("RGB")).float(), "rgb")[0])


def measure(codec, image: Image.Image, original: torch.Tensor, rdoq: float | None) -> dict:
    """One real file: bits per pixel of the whole file, RGB MS-SSIM, encode / decode ms."""
    t0 = time.perf_counter()
    data = codec.compress(image, rdoq=rdoq)
    t1 = time.perf_counter()
    decoded = codec.decompress(data)
    t2 = time.perf_counter()
    return {"bpp": 8 * len(data) / (image.width * image.height), "bytes": len(data),
            "msssim": msssim(original, decoded), "encode_ms": 1000 * (t1 - t0),
            "decode_ms": 1000 * (t2 - t1)}  # fmt: skip


def pair_finetuned(models: list[str], finetuned: list[str]) -> dict[str, str]:
    """{plain model: its finetuned checkpoint}, by architecture (unique among the models)."""
    from rtaic.checkpoint import load_networks

    arch = {m: load_networks(m).autoencoder.architecture for m in models}
    out = {}
    for f in finetuned:
        a = load_networks(f).autoencoder.architecture
        match = [m for m in models if arch[m] == a]
        if len(match) != 1:
            raise SystemExit(f"{f}: {'no' if not match else 'more than one'} plain model has its "
                             f"architecture (give --model explicitly)")  # fmt: skip
        if match[0] in out:
            raise SystemExit(f"{f}: a second finetuned checkpoint for {Path(match[0]).name}")
        out[match[0]] = f
    return out


def bd(rows: list[dict], models: list[str], variant: str) -> float:
    """Mean over images of the BD-rate of ``variant`` against ``plain`` (NaN if none)."""
    values = []
    for row in rows:
        ref = [row[m]["plain"] for m in models if "plain" in row[m]]
        new = [row[m][variant] for m in models if variant in row[m]]
        if len(new) < 2:
            continue
        values.append(rd.bd_rate([r["bpp"] for r in ref], [r["msssim"] for r in ref],
                                 [r["bpp"] for r in new], [r["msssim"] for r in new]))  # fmt: skip
    values = np.asarray(values, float)
    ok = np.isfinite(values)
    return float(values[ok].mean()) if ok.any() else float("nan")


def pct(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{100 * v:+.2f}%"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kodak", default="../shared/data/kodak", help="folder of images (PNG, JPEG)")
    ap.add_argument("--model", nargs="*", help="plain models, files or bundled names (default: the "
                                               "bundled RGB models)")  # fmt: skip
    ap.add_argument("--finetuned", nargs="*", default=[], help="finetuned checkpoints, one per plain "
                    "model at most (paired by architecture; default: the bundled finetuned models, "
                    "paired by the manifest)")  # fmt: skip
    ap.add_argument("--lambdas", nargs="*", type=float, default=[DEFAULT_RDOQ],
                    help=f"RDOQ lambdas (default {DEFAULT_RDOQ}); the first is the headline one")
    ap.add_argument("--limit", type=int, default=0, help="first N images only")
    ap.add_argument("--json", help="write every number here")
    args = ap.parse_args()
    torch.set_num_threads(1)

    # the bundled finetuned models stand in the "learned" curve for the plain ones they replace
    bundled_pairs = {str(zoo.model_path(p)): str(zoo.model_path(f)) for p, f in zoo.finetuned_versions().items()}
    plain_of = {f: p for p, f in bundled_pairs.items()}
    models = [str(zoo.resolve(m)) for m in args.model] if args.model else [
        plain_of.get(str(p), str(p)) for p in zoo.curves().get("learned", [])]
    if len(models) < 2:
        raise SystemExit("need at least two plain models for a curve (--model ...)")
    lambdas = [lam for lam in args.lambdas if lam > 0]
    if not lambdas:
        raise SystemExit("--lambdas: give at least one lambda > 0")
    finetuned = (pair_finetuned(models, args.finetuned) if args.finetuned else
                 {m: f for m, f in bundled_pairs.items() if m in models})  # fmt: skip
    codecs = {m: load_codec(m) for m in models}
    tuned = {m: load_codec(f) for m, f in finetuned.items()}
    print(f"models {[Path(m).name for m in models]}; lambdas {lambdas}; finetuned "
          f"{ {Path(m).name: f for m, f in finetuned.items()} or 'none'}", flush=True)  # fmt: skip
    if not finetuned:
        print("no finetuned checkpoints given (--finetuned): finetuned and both are n/a")
    elif len(finetuned) < len(models):
        print(f"finetuned checkpoints for {len(finetuned)} of {len(models)} models: the others "
              "enter the finetuned and both curves unchanged")  # fmt: skip

    paths = sorted(p for p in Path(args.kodak).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    paths = paths[: args.limit or None]
    if not paths:
        raise SystemExit(f"no images in {args.kodak}")
    warm = Image.open(paths[0]).convert("RGB").crop((0, 0, 64, 64))
    for c in [*codecs.values(), *tuned.values()]:  # one-time setup out of the timings
        c.decompress(c.compress(warm, rdoq=lambdas[0]))
    rows = []
    t0 = time.perf_counter()
    for path in paths:
        image = Image.open(path).convert("RGB")
        original = to_tensor(image)
        row = {"image": path.name}
        for m in models:
            r = row[m] = {"plain": measure(codecs[m], image, original, None)}
            for lam in lambdas:
                r[f"rdoq{lam:g}"] = measure(codecs[m], image, original, lam)
            if m in tuned:
                r["finetuned"] = measure(tuned[m], image, original, None)
                r["both"] = measure(tuned[m], image, original, lambdas[0])
            elif tuned:  # a model without a finetuned checkpoint stays itself in those curves
                r["finetuned"], r["both"] = r["plain"], r[f"rdoq{lambdas[0]:g}"]
        rows.append(row)
        line = " | ".join(
            f"{Path(m).stem}: {row[m]['plain']['bytes']} B {row[m]['plain']['msssim']:.4f} -> rdoq "
            f"{row[m][f'rdoq{lambdas[0]:g}']['bytes']} B {row[m][f'rdoq{lambdas[0]:g}']['msssim']:.4f}"
            for m in models)  # fmt: skip
        print(f"{path.name}: {line}", flush=True)

    summary = {"images": len(rows), "models": [Path(m).name for m in models], "lambdas": lambdas,
               "finetuned": {Path(m).name: f for m, f in finetuned.items()}, "bd_rate": {},
               "encode_ms": {}, "decode_ms": {}}  # fmt: skip
    variants = ["plain", *(f"rdoq{lam:g}" for lam in lambdas)] + (["finetuned", "both"] if finetuned else [])
    for v in variants[1:]:
        summary["bd_rate"][v] = bd(rows, models, v)
    print(f"\n{len(rows)} images, BD-rate against the plain models (RGB MS-SSIM dB vs file bits):")
    for v, value in summary["bd_rate"].items():
        print(f"  {v:>12}: {pct(value)}")
    print("encode / decode ms per image (one thread), by model:")
    for m in models:
        name = Path(m).stem
        for v in variants:
            if v in ("finetuned", "both") and m not in tuned:
                continue
            runs = [row[m][v] for row in rows if v in row[m]]
            if not runs:
                continue
            enc = float(np.mean([r["encode_ms"] for r in runs]))
            dec = float(np.mean([r["decode_ms"] for r in runs]))
            summary["encode_ms"].setdefault(name, {})[v] = enc
            summary["decode_ms"].setdefault(name, {})[v] = dec
            size = float(np.mean([r["bytes"] for r in runs]))
            ms = float(np.mean([r["msssim"] for r in runs]))
            print(f"  {name:>16} {v:>12}: encode {enc:7.1f} ms, decode {dec:7.1f} ms, "
                  f"{size:9.1f} B, MS-SSIM {ms:.4f}")  # fmt: skip
    head = f"rdoq{lambdas[0]:g}"
    added = [summary["encode_ms"][Path(m).stem][head] - summary["encode_ms"][Path(m).stem]["plain"] for m in models]
    summary["rdoq_added_encode_ms"] = float(np.mean(added))
    print(f"RDOQ (lambda {lambdas[0]:g}) adds {np.mean(added):.1f} ms of encode time per image on "
          f"average (per model: {', '.join(f'{a:.0f}' for a in added)} ms); decoding is unchanged")
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    fin = summary["bd_rate"].get("finetuned", float("nan"))
    both = summary["bd_rate"].get("both", float("nan"))
    print(f"BD-rate vs plain: finetuned {pct(fin)}, rdoq {pct(summary['bd_rate'][head])}, both {pct(both)}")


if __name__ == "__main__":
    main()
