"""The report's figures, one PNG per panel, drawn from the records and the summary.

Curves are averages per quality setting (mean bpp, mean MS-SSIM over the images), the usual way
RD plots are drawn; the per-image summaries in the tables are the more careful numbers.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rtaic.evaluation.names import (  # noqa: E402
    OURS,
    RDOQ_CURVE,
    SPACES,
    curve,
    is_ours,
    label,
    space_label,
    space_name,
)
from rtaic.evaluation.summary import Curves, relative_size  # noqa: E402

# The paper reports BPG 4:2:0 in YCbCr and 4:4:4 in RGB; HEVC stands in for BPG here.
HIDDEN = {"rgb": {"hevc420"}, "ycbcr": {"hevc444"}}
# Our curves in fixed colours (others: matplotlib's cycle).
COLOURS = {OURS: "black", curve("ycbcr"): "dimgray", curve("gan"): "darkred", RDOQ_CURVE: "tab:blue",
           curve("ycbcr_rdoq"): "tab:cyan", curve("refine"): "tab:green", curve("ycbcr_refine"): "tab:olive"}


def _style(codec: str) -> dict:
    ours = is_ours(codec)
    return {"linewidth": 2.5 if ours else 1.4, "marker": "o" if ours else ".", "markersize": 6 if ours else 4,
            "color": COLOURS.get(codec) if ours else None, "zorder": 3 if ours else 2}


def _mean_curve(curves: Curves, codec: str, field: str):
    """(mean x, mean y) per quality setting present for every image."""
    rows = [c for im in curves.images if (c := curves.get(codec, im)) is not None]
    qualities = [q for q in rows[0]["quality"] if all(q in c["quality"] for c in rows)]
    xs, ys = [], []
    for q in qualities:
        xs.append(np.mean([c["bpp_payload"][c["quality"] == q][0] for c in rows]))
        ys.append(np.mean([c[field][c["quality"] == q][0] for c in rows]))
    order = np.argsort(xs)
    return np.array(xs)[order], np.array(ys)[order]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def rd_plot(curves: Curves, space: str, path: Path, max_bpp: float = 2.0) -> Path:
    fig, ax = plt.subplots(figsize=(8, 6))
    for codec in curves.codecs:
        if codec in HIDDEN[space]:
            continue
        x, y = _mean_curve(curves, codec, f"msssim_{space}")
        ax.plot(x, y, label=label(codec), **_style(codec))
    ax.set_xlim(0, max_bpp)
    ax.set_ylim(0.88, 1.0)
    ax.set_xlabel("bits per pixel (header removed), mean over images")
    ax.set_ylabel(f"MS-SSIM ({space_label(space)})")
    ax.set_title(f"Rate-distortion on {len(curves.images)} images, MS-SSIM in {space_name(space)}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def relative_size_plot(curves: Curves, space: str, reference: str, path: Path) -> Path:
    points = list(np.round(np.arange(0.92, 0.9951, 0.0025), 4))
    rel = relative_size(curves, space, points, reference)
    fig, ax = plt.subplots(figsize=(8, 6))
    for codec in curves.codecs:
        if codec in HIDDEN[space]:
            continue
        # Only where every image could be read: a mean over a subset would make false jumps.
        y = [100 * s["mean"] if s["missing"] == 0 else np.nan for s in (rel[codec][str(p)] for p in points)]
        ax.plot(points, y, label=label(codec), **_style(codec))
    ax.axhline(100, color="gray", linewidth=0.8)
    ax.set_xlabel(f"MS-SSIM ({space_label(space)})")
    ax.set_ylabel(f"size relative to {label(reference)} (%), mean of per-image ratios")
    ax.set_title(f"File size at equal MS-SSIM relative to {label(reference)} (header removed)\n"
                 "drawn only where every image's curves reach that MS-SSIM", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    return _save(fig, path)


def timing_plot(summary: dict, which: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 6))
    for codec in summary["codecs"]:
        rows = sorted(summary["timings"][codec], key=lambda r: r["bpp"])
        ax.plot([r["bpp"] for r in rows], [1000 * r[f"{which}_s"] for r in rows],
                label=label(codec), **_style(codec))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("bits per pixel (whole file), mean over images at each quality setting")
    ax.set_ylabel(f"{which} time per image (ms), mean")
    ax.set_title(f"{which.capitalize()} time vs quality\n(one worker per core; encoders on one "
                 "thread where the plugin allows, x265 not)", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def all_plots(records: list[dict], summary: dict, out_dir: Path) -> dict[str, Path]:
    curves = Curves(records)
    figs = {}
    for space in SPACES:
        figs[f"msssim_vs_bpp_{space}"] = rd_plot(curves, space, out_dir / f"msssim_vs_bpp_{space}.png")
        for ref in summary["relative_size"]:
            name = f"relative_size_vs_{ref}_{space}"
            figs[name] = relative_size_plot(curves, space, ref, out_dir / f"{name}.png")
    for which in ("encode", "decode"):
        figs[f"timing_{which}"] = timing_plot(summary, which, out_dir / f"timing_{which}.png")
    return figs
