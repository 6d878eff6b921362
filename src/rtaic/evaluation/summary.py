"""The paper's summaries (section 5.2), each computed per image and then averaged.

Every number is read off an image's own RD curve (rd.py) and only then averaged over the images
where that curve reaches the point; how many images could not be read ("missing") is kept next
to every average, because a mean over a subset is not comparable with a mean over all images.
Rates are header-free (payload) bits unless a field says "file".
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from rtaic.evaluation import rd
from rtaic.evaluation.names import OURS, SPACES, is_ours, label


def _quality_order(q: str):
    try:
        return (0, float(q), q)
    except ValueError:
        return (1, 0.0, q)


class Curves:
    """Per (codec, image) arrays of the records, in quality-setting order."""

    def __init__(self, records: list[dict]):
        grouped = defaultdict(list)
        for r in records:
            grouped[(r["codec"], r["image"])].append(r)
        self.curves = {}
        for key, rows in grouped.items():
            rows.sort(key=lambda r: _quality_order(r["quality"]))
            self.curves[key] = {k: np.array([r[k] for r in rows]) for k in rows[0]}
        order = list(dict.fromkeys(r["codec"] for r in records))
        self.codecs = sorted(order, key=lambda c: not is_ours(c))  # ours first, then as configured
        self.images = sorted({r["image"] for r in records})

    def get(self, codec: str, image: str) -> dict | None:
        return self.curves.get((codec, image))


def _stat(values) -> dict:
    v = np.asarray(values, float)
    ok = np.isfinite(v)
    return {"mean": float(v[ok].mean()) if ok.any() else None, "n": int(ok.sum()),
            "missing": int((~ok).sum())}


def msssim_at_bpp(curves: Curves, space: str, points: list[float]) -> dict:
    out = {}
    for codec in curves.codecs:
        per_image = np.array([
            rd.quality_at_rate(c["bpp_payload"], c[f"msssim_{space}"], points)
            for im in curves.images if (c := curves.get(codec, im)) is not None
        ]).reshape(-1, len(points))
        out[codec] = {str(p): _stat(per_image[:, j]) for j, p in enumerate(points)}
    return out


def ciede2000_at_bpp(curves: Curves, points: list[float]) -> dict:
    """Mean CIEDE2000 at fixed payload bpp (along each image's RGB MS-SSIM curve)."""
    out = {}
    for codec in curves.codecs:
        per_image = np.array([
            rd.value_at_rate(c["bpp_payload"], c["msssim_rgb"], c["ciede2000"], points)
            for im in curves.images if (c := curves.get(codec, im)) is not None
        ]).reshape(-1, len(points))
        out[codec] = {str(p): _stat(per_image[:, j]) for j, p in enumerate(points)}
    return out


def colour_at_our_rates(curves: Curves, reference: str) -> dict:
    """Per model of ours (every curve of ours): its mean CIEDE2000 and the reference's at
    the same payload bpp, interpolated per image (images where the reference's curve does
    not reach it are missing from both means)."""
    out = {}
    for codec in (c for c in curves.codecs if is_ours(c)):
        for im in curves.images:
            c, ref = curves.get(codec, im), curves.get(reference, im)
            if c is None:
                continue
            ref_at = (rd.value_at_rate(ref["bpp_payload"], ref["msssim_rgb"], ref["ciede2000"], c["bpp_payload"])
                      if ref is not None else np.full(len(c["quality"]), np.nan))  # fmt: skip
            for q, bpp, ours, theirs in zip(c["quality"], c["bpp_payload"], c["ciede2000"], ref_at, strict=True):
                row = out.setdefault(str(q), {"bpp": [], "ours": [], "reference": []})
                row["bpp"].append(bpp)
                row["ours"].append(ours if np.isfinite(theirs) else np.nan)
                row["reference"].append(theirs)
    return {q: {"bpp_payload": float(np.mean(r["bpp"])), "ours": _stat(r["ours"]),
                "reference": _stat(r["reference"])} for q, r in out.items()}  # fmt: skip


def _rates_at(curves: Curves, codec: str, space: str, points, field: str) -> np.ndarray:
    """(images, points) bpp of ``field`` needed for each MS-SSIM point; NaN where unreachable."""
    rows = []
    for im in curves.images:
        c = curves.get(codec, im)
        if c is None:
            rows.append(np.full(len(points), np.nan))
            continue
        # Monotonicity is judged on the payload curve; the file curve uses the same points.
        _, _, keep = rd.monotone(c["bpp_payload"], c[f"msssim_{space}"])
        rows.append(rd.rate_at_quality(c[field][keep], c[f"msssim_{space}"][keep], points))
    return np.array(rows).reshape(-1, len(points))


def size_at_msssim(curves: Curves, space: str, points: list[float]) -> dict:
    pixels = np.array([_pixels(curves, im) for im in curves.images], float)[:, None]
    out = {}
    for codec in curves.codecs:
        payload = _rates_at(curves, codec, space, points, "bpp_payload")
        file = _rates_at(curves, codec, space, points, "bpp")
        out[codec] = {}
        for j, p in enumerate(points):
            s = _stat(payload[:, j])
            s.update(
                bpp_payload=s.pop("mean"),
                bpp=_stat(file[:, j])["mean"],
                payload_bytes=_stat(payload[:, j] * pixels[:, 0] / 8)["mean"],
                bytes=_stat(file[:, j] * pixels[:, 0] / 8)["mean"],
            )
            out[codec][str(p)] = s
    return out


def _pixels(curves: Curves, image: str) -> int:
    for (_, im), c in curves.curves.items():
        if im == image:
            return int(c["width"][0] * c["height"][0])
    raise KeyError(image)


def relative_size(curves: Curves, space: str, points: list[float], reference: str) -> dict:
    """Per image, payload size / the reference's payload size at equal MS-SSIM, then averaged."""
    ref = _rates_at(curves, reference, space, points, "bpp_payload")
    out = {}
    for codec in curves.codecs:
        ratio = _rates_at(curves, codec, space, points, "bpp_payload") / ref
        out[codec] = {str(p): _stat(ratio[:, j]) for j, p in enumerate(points)}
    return out


def bd_rates(curves: Curves, space: str, reference: str) -> dict:
    """Per image BD-rate (payload bits, MS-SSIM in dB) against ``reference``, then averaged."""
    out = {}
    for codec in curves.codecs:
        values = []
        for im in curves.images:
            a, b = curves.get(reference, im), curves.get(codec, im)
            if a is None or b is None:
                values.append(np.nan)
                continue
            values.append(rd.bd_rate(a["bpp_payload"], a[f"msssim_{space}"],
                                     b["bpp_payload"], b[f"msssim_{space}"]))
        out[codec] = _stat(values)
    return out


def timings(curves: Curves) -> dict:
    """Mean encode and decode time per quality setting, with the mean bpp it produced."""
    out = {}
    for codec in curves.codecs:
        rows = [c for im in curves.images if (c := curves.get(codec, im)) is not None]
        qualities = sorted({q for c in rows for q in c["quality"]}, key=_quality_order)
        out[codec] = []
        for q in qualities:
            sel = [(c, np.flatnonzero(c["quality"] == q)) for c in rows]
            vals = {f: np.concatenate([c[f][i] for c, i in sel]) for f in ("bpp", "encode_s", "decode_s")}
            out[codec].append({"quality": str(q), "n": len(vals["bpp"]),
                               **{f: float(v.mean()) for f, v in vals.items()}})
    return out


def dropped(curves: Curves, space: str) -> dict:
    """Which points the monotone clean-up removed, per codec."""
    out = {}
    for codec in curves.codecs:
        which, total = [], 0
        for im in curves.images:
            c = curves.get(codec, im)
            if c is None:
                continue
            _, _, keep = rd.monotone(c["bpp_payload"], c[f"msssim_{space}"])
            total += len(c["quality"])
            which += [f"{im} q={c['quality'][i]}" for i in sorted(set(range(len(c["quality"]))) - set(keep))]
        out[codec] = {"points": total, "dropped": len(which), "which": which}
    return out


def summarize(records: list[dict], bpp_points, msssim_points, reference: str) -> dict:
    curves = Curves(records)
    refs = [r for r in (reference, OURS) if r in curves.codecs]
    return {
        "images": len(curves.images),
        "codecs": curves.codecs,
        "labels": {c: label(c) for c in curves.codecs},
        "reference": reference,
        "rate": "bpp_payload: bits per pixel with each format's header removed (docs/evaluation.md)",
        "msssim_at_bpp": {s: msssim_at_bpp(curves, s, bpp_points) for s in SPACES},
        "ciede2000_at_bpp": ciede2000_at_bpp(curves, bpp_points),
        "colour_at_our_rates": colour_at_our_rates(curves, reference),
        "size_at_msssim": {s: size_at_msssim(curves, s, msssim_points) for s in SPACES},
        "relative_size": {ref: {s: relative_size(curves, s, msssim_points, ref) for s in SPACES} for ref in refs},
        "bd_rate": {ref: {s: bd_rates(curves, s, ref) for s in SPACES} for ref in refs},
        "timings": timings(curves),
        "dropped": {s: dropped(curves, s) for s in SPACES},
    }
