"""Write the report folder: per-image CSV, summary JSON, Markdown tables, PNG plots.

    records -> per_image.csv
            -> summary (summary.py) -> summary.json, summary.md
            -> plots (plots.py)     -> *.png
            -> optional logger (W&B) gets the same figures and tables
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from rtaic.evaluation import plots
from rtaic.evaluation.measure import Record
from rtaic.evaluation.names import SPACES, label, space_name
from rtaic.evaluation.summary import summarize

FIELDS = list(Record.__dataclass_fields__)


def write_csv(records: list[dict], path: Path) -> None:
    rows = sorted(records, key=lambda r: (r["codec"], r["image"], _num(r["quality"])))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows({k: r[k] for k in FIELDS} for r in rows)


def _num(q: str):
    try:
        return (0, float(q), "")
    except ValueError:
        return (1, 0.0, q)


def _fmt(v, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def _missing(s: dict) -> str:
    return f" ({s['missing']} missing)" if s["missing"] else ""


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def markdown(summary: dict) -> str:
    n = summary["images"]
    ms = list(next(iter(summary["size_at_msssim"]["rgb"].values())))
    bpps = list(next(iter(summary["msssim_at_bpp"]["rgb"].values())))
    out = [f"# Evaluation report ({n} images)", "",
           "Every number is computed per image on its own RD curve, then averaged over the images "
           "where the curve reaches the point; `(k missing)` counts images that could not be "
           "interpolated there (their curve does not reach that point), which are left out of "
           "that mean. Sizes with the header removed unless marked \"file\" (docs/evaluation.md).",
           ""]
    for space in SPACES:
        hidden = plots.HIDDEN[space]
        codecs = [c for c in summary["codecs"] if c not in hidden]
        sz = summary["size_at_msssim"][space]
        out += [f"## Bytes at fixed MS-SSIM ({space_name(space)})", "",
                "Mean file bytes / payload bytes (payload bpp) per image.", ""]
        out += _table(["codec"] + ms, [
            [label(c)] + [f"{_fmt(sz[c][m]['bytes'], '.0f')} / {_fmt(sz[c][m]['payload_bytes'], '.0f')} "
                          f"({_fmt(sz[c][m]['bpp_payload'], '.3f')}){_missing(sz[c][m])}" for m in ms]
            for c in codecs])
        out.append("")
        for ref, rel in summary["relative_size"].items():
            r = rel[space]
            out += [f"## File size relative to {label(ref)} at fixed MS-SSIM ({space_name(space)})", ""]
            out += _table(["codec"] + ms, [
                [label(c)] + [f"{_fmt(None if r[c][m]['mean'] is None else 100 * r[c][m]['mean'], '.1f')}%"
                              f"{_missing(r[c][m])}" for m in ms] for c in codecs])
            out.append("")
        q = summary["msssim_at_bpp"][space]
        out += [f"## MS-SSIM at fixed bpp ({space_name(space)}, payload bpp)", ""]
        out += _table(["codec"] + bpps, [
            [label(c)] + [f"{_fmt(q[c][b]['mean'], '.4f')}{_missing(q[c][b])}" for b in bpps] for c in codecs])
        out.append("")
    cd = summary["ciede2000_at_bpp"]
    out += ["## Mean CIEDE2000 colour error at fixed bpp (payload bpp; lower is better)", ""]
    out += _table(["codec"] + bpps, [
        [label(c)] + [f"{_fmt(cd[c][b]['mean'], '.2f')}{_missing(cd[c][b])}" for b in bpps]
        for c in summary["codecs"]])
    out.append("")
    if summary["colour_at_our_rates"]:
        ref = label(summary["reference"])
        out += [f"## Colour of our models against {ref} at the same bpp (mean CIEDE2000)", "",
                f"Per image at our model's rate, {ref}'s curve interpolated there.", ""]
        out += _table(["model", "bpp", "ours", ref], [
            [Path(q).stem, f"{v['bpp_payload']:.3f}", f"{_fmt(v['ours']['mean'], '.2f')}{_missing(v['ours'])}",
             _fmt(v["reference"]["mean"], ".2f")] for q, v in summary["colour_at_our_rates"].items()])
        out.append("")
    out += ["## BD-rate (payload bits, MS-SSIM in dB, per image then averaged)", ""]
    header, rows = ["codec"], {c: [label(c)] for c in summary["codecs"]}
    for ref, spaces in summary["bd_rate"].items():
        for space, vals in spaces.items():
            header.append(f"vs {label(ref)}, {space_name(space)}")
            for c in summary["codecs"]:
                v = vals[c]
                rows[c].append(f"{_fmt(None if v['mean'] is None else 100 * v['mean'], '+.1f')}%{_missing(v)}")
    out += _table(header, list(rows.values())) + [""]
    out += ["## Timings (mean per image; encode / decode)", ""]
    out += _table(["codec", "settings", "lowest setting", "highest setting"], [
        [label(c), str(len(t)),
         f"{t[0]['quality']}: {1000 * t[0]['encode_s']:.0f} / {1000 * t[0]['decode_s']:.0f} ms",
         f"{t[-1]['quality']}: {1000 * t[-1]['encode_s']:.0f} / {1000 * t[-1]['decode_s']:.0f} ms"]
        for c, t in summary["timings"].items()])
    out += ["", "## Non-monotone points dropped before interpolation", "",
            "A point is dropped when a cheaper point of the same image scores at least as well."]
    out += [""] + _table(["codec"] + [f"{space_name(s)} dropped / points" for s in SPACES], [
        [label(c)] + [f"{summary['dropped'][s][c]['dropped']} / {summary['dropped'][s][c]['points']}"
                      for s in SPACES] for c in summary["codecs"]])
    return "\n".join(out) + "\n"


def write_report(
    records: list[dict], out_dir: Path, bpp_points, msssim_points, reference: str, logger=None
) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(records, out_dir / "per_image.csv")
    summary = summarize(records, bpp_points, msssim_points, reference)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    (out_dir / "summary.md").write_text(markdown(summary))
    figures = plots.all_plots(records, summary, out_dir)
    if logger is not None:
        logger.log_report(summary, figures, out_dir / "per_image.csv", out_dir / "summary.md")
    return summary
