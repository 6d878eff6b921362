"""Progressive files and exact sizes on Kodak (bitstream version 3).

Per image, with one model (the bundled default unless --model):
  * bytes of the whole file in version 2 and version 3 (same latent, same table);
  * the file cut to 25/50/75% of its length (the longest valid cut within): it must decode
    to the full image size; MS-SSIM (RGB) of each cut and of the whole file;
  * the truncated curve (those cuts + the whole file) against the zoo's curve (the bundled
    RGB models, or --curve models): per-image BD-rate (payload bits, MS-SSIM in dB, as
    eval.py's summary), averaged over the images where the curves overlap;
  * --size targets (default 10, 20, 40 KB): the file rtaic compress --size writes
    (rtaic.sizing.fit_to_size over the zoo's models): size / target, MS-SSIM, the model;
  * how fine the cut points are: the largest gap between consecutive cuts above 20% and
    50% of the file (relative to the longer cut), and how many targets from 20% to 100% of
    the file (801 evenly spaced) the longest cut within misses by more than 3%.

    nice python benchmarks/progressive.py --kodak ../shared/data/kodak --json out.json

Prints one line per image and a summary; --json keeps everything.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rtaic import zoo
from rtaic.codec import load_codec
from rtaic.coding.arithmetic import encode_planes, single_thread
from rtaic.coding.bitstream import HEADER_SIZE
from rtaic.evaluation import rd
from rtaic.evaluation.measure import to_tensor
from rtaic.metrics import weighted_msssim
from rtaic.sizing import fit_to_size, parse_size, zoo_models

FRACTIONS = (0.25, 0.5, 0.75)


def msssim(original: torch.Tensor, image: Image.Image) -> float:
    return float(weighted_msssim(original.float(), to_tensor(image.convert("RGB")).float(), "rgb")[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kodak", default="../shared/data/kodak")
    ap.add_argument("--model", help="model file or bundled name (default: the bundled default)")
    ap.add_argument("--curve", nargs="*", help="models of the reference curve (default: the zoo's RGB "
                                               "models, else every bundled model)")  # fmt: skip
    ap.add_argument("--sizes", nargs="*", default=["10KB", "20KB", "40KB"])
    ap.add_argument("--limit", type=int, default=0, help="first N images only")
    ap.add_argument("--json", help="write every number here")
    args = ap.parse_args()
    torch.set_num_threads(1)

    model = str(zoo.resolve(args.model)) if args.model else str(zoo.default_model())
    codec = load_codec(model)
    curve = [str(zoo.resolve(m)) for m in args.curve] if args.curve else (
        [str(p) for p in zoo.curves().get("learned", [])] or [str(p) for p in zoo.all_models()])
    curve_codecs = {m: (codec if m == model else load_codec(m)) for m in curve}
    sizes = [parse_size(s) for s in args.sizes]
    size_models = [str(p) for p in zoo_models()]
    print(f"model {Path(model).name}; reference curve {[Path(m).name for m in curve]}; "
          f"--size models {[Path(m).name for m in size_models]}", flush=True)

    paths = sorted(Path(args.kodak).glob("*.png"))[: args.limit or None]
    rows = []
    t0 = time.perf_counter()
    for path in paths:
        image = Image.open(path).convert("RGB")
        original = to_tensor(image)
        pixels = image.width * image.height
        row = {"image": path.name}
        # whole files, version 2 and version 3
        prog = codec.encode_progressive(image)
        with single_thread():
            v2_payload, _ = encode_planes(prog.planes, codec.context_model, codec.table, version=2)
        row["v2_bytes"], row["v3_bytes"] = HEADER_SIZE + len(v2_payload), prog.size()
        assert prog.data() == codec.compress(image)
        # cuts at fractions of the whole file, decoded for real
        cuts = []
        for f in (*FRACTIONS, 1.0):
            units = prog.cut_for(int(f * prog.size()))
            data = prog.data(units)
            decoded = codec.decompress(data)
            assert decoded.size == image.size, (path.name, f)
            cuts.append({"fraction": f, "bytes": len(data), "msssim": msssim(original, decoded)})
        row["cuts"] = cuts
        lengths = np.array([prog.size(k) for k in prog.cuts()])
        gaps = (lengths[1:] - lengths[:-1]) / lengths[1:]
        targets = np.linspace(0.2, 1.0, 801) * lengths[-1]
        got = lengths[np.searchsorted(lengths, targets, side="right") - 1]
        row["gaps"] = {"above_20pct": float(gaps[lengths[1:] >= 0.2 * lengths[-1]].max()),
                       "above_50pct": float(gaps[lengths[1:] >= 0.5 * lengths[-1]].max()),
                       "targets_missed_by_3pct": float(np.mean(got < 0.97 * targets)), "cuts": len(lengths)}  # fmt: skip
        scores = [c["msssim"] for c in cuts]
        row["rises"] = all(b > a for a, b in zip(scores, scores[1:], strict=False))
        # BD-rate of the truncated curve against the reference curve (payload bpp)
        ref = []
        for c in curve_codecs.values():
            data = c.compress(image)
            ref.append((8 * (len(data) - HEADER_SIZE) / pixels, msssim(original, c.decompress(data))))
        row["curve"] = [{"model": Path(m).name, "bpp_payload": r, "msssim": q} for m, (r, q) in zip(curve, ref, strict=True)]
        trunc = [(8 * (c["bytes"] - HEADER_SIZE) / pixels, c["msssim"]) for c in cuts]
        row["bd_rate"] = rd.bd_rate(*zip(*ref, strict=True), *zip(*trunc, strict=True))
        # --size
        row["sizes"] = []
        for target in sizes:
            choice = fit_to_size(image, target)
            decoded = load_codec(choice.model).decompress(choice.data) if choice.model not in curve_codecs \
                else curve_codecs[choice.model].decompress(choice.data)  # fmt: skip
            best_whole = max(c.whole_bytes for c in choice.candidates)
            row["sizes"].append({"target": target, "bytes": len(choice.data), "ratio": len(choice.data) / target,
                                 "model": Path(choice.model).name, "whole": choice.whole,
                                 "reachable": best_whole >= math.ceil(0.97 * target),
                                 "msssim": msssim(original, decoded)})  # fmt: skip
        rows.append(row)
        print(f"{path.name}: v2 {row['v2_bytes']} v3 {row['v3_bytes']} B ({100 * (row['v3_bytes'] / row['v2_bytes'] - 1):+.2f}%) | "
              + " ".join(f"{int(100 * c['fraction'])}%:{c['bytes']}B {c['msssim']:.4f}" for c in cuts)
              + f" | BD {100 * row['bd_rate']:+.1f}% | "
              + " ".join(f"{s['target'] // 1000}KB:{s['ratio']:.3f}{'' if s['reachable'] else '(unreachable)'}" for s in row["sizes"]),
              flush=True)  # fmt: skip

    v2 = sum(r["v2_bytes"] for r in rows)
    v3 = sum(r["v3_bytes"] for r in rows)
    per = np.array([r["v3_bytes"] / r["v2_bytes"] - 1 for r in rows])
    bd = np.array([r["bd_rate"] for r in rows], float)
    summary = {
        "images": len(rows), "model": Path(model).name, "curve": [Path(m).name for m in curve],
        "v2_bytes": v2, "v3_bytes": v3, "v3_vs_v2_total": v3 / v2 - 1,
        "v3_vs_v2_per_image": {"mean": float(per.mean()), "min": float(per.min()), "max": float(per.max())},
        "msssim_mean": {str(f): float(np.mean([r["cuts"][i]["msssim"] for r in rows])) for i, f in enumerate((*FRACTIONS, 1.0))},
        "msssim_min": {str(f): float(np.min([r["cuts"][i]["msssim"] for r in rows])) for i, f in enumerate((*FRACTIONS, 1.0))},
        "cut_bytes_over_whole_mean": {str(f): float(np.mean([r["cuts"][i]["bytes"] / r["v3_bytes"] for r in rows]))
                                      for i, f in enumerate((*FRACTIONS, 1.0))},
        "msssim_rises_with_length": sum(r["rises"] for r in rows),
        "cut_gaps": {"max_above_20pct": max(r["gaps"]["above_20pct"] for r in rows),
                     "max_above_50pct": max(r["gaps"]["above_50pct"] for r in rows),
                     "targets_missed_by_3pct": float(np.mean([r["gaps"]["targets_missed_by_3pct"] for r in rows])),
                     "cuts_per_file_mean": float(np.mean([r["gaps"]["cuts"] for r in rows]))},
        "bd_rate_truncated_vs_curve": {"mean": float(np.nanmean(bd)) if np.isfinite(bd).any() else None,
                                       "n": int(np.isfinite(bd).sum())},
        "sizes": {},
        "seconds": time.perf_counter() - t0,
    }  # fmt: skip
    for j, target in enumerate(sizes):
        s = [r["sizes"][j] for r in rows]
        if not s:
            continue
        ok = [x for x in s if x["reachable"]]
        summary["sizes"][str(target)] = {
            "max_ratio": max(x["ratio"] for x in s), "min_ratio": min(x["ratio"] for x in s),
            "all_at_or_under": all(x["bytes"] <= target for x in s),
            "within_3pct": sum(x["ratio"] >= 0.97 for x in s), "reachable": len(ok),
            "min_ratio_reachable": min((x["ratio"] for x in ok), default=None),
            "msssim_mean": float(np.mean([x["msssim"] for x in s])),
            "models": sorted({x["model"] for x in s}),
        }  # fmt: skip
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "images": rows}, indent=1))


if __name__ == "__main__":
    main()
