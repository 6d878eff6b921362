"""Rate-distortion curves of one image: clean-up, interpolation and the Bjontegaard delta rate.

Each codec gives a handful of (rate, quality) points per image. Before reading a curve at a
fixed rate or a fixed quality we keep only its monotone part: sorted by rate, a point is kept
only if it scores strictly better than every cheaper point (a point that costs more bits for no
better quality is dropped, and counted). Between points the curve is read linearly; outside
its range it gives NaN, never an extrapolation.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator


def monotone(rate, quality) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The upper monotone envelope: (rate, quality, kept indices), rate and quality increasing."""
    rate, quality = np.asarray(rate, float), np.asarray(quality, float)
    order = np.lexsort((-quality, rate))  # by rate, the best quality first among equal rates
    kept, best = [], -np.inf
    for i in order:
        # Among equal rates the best quality comes first, so an equal-rate point after a kept
        # one never scores higher: this keeps at most one point per rate.
        if np.isfinite(rate[i]) and np.isfinite(quality[i]) and quality[i] > best:
            kept.append(i)
            best = quality[i]
    idx = np.array(kept, dtype=int)
    return rate[idx], quality[idx], idx


def _interp_within(x: np.ndarray, y: np.ndarray, at) -> np.ndarray:
    """y(at) by linear interpolation over increasing x; NaN outside [x[0], x[-1]]."""
    at = np.atleast_1d(np.asarray(at, float))
    if len(x) == 0:
        return np.full(at.shape, np.nan)
    return np.where((at >= x[0]) & (at <= x[-1]), np.interp(at, x, y), np.nan)


def quality_at_rate(rate, quality, at) -> np.ndarray:
    """Quality read off the monotone curve at each rate in ``at`` (NaN outside its range)."""
    r, q, _ = monotone(rate, quality)
    return _interp_within(r, q, at)


def value_at_rate(rate, quality, value, at) -> np.ndarray:
    """Another measure of the same points (e.g. CIEDE2000) read at each rate in ``at``, along
    the monotone curve of ``quality``, so every summary drops the same points."""
    r, _, keep = monotone(rate, quality)
    return _interp_within(r, np.asarray(value, float)[keep], at)


def rate_at_quality(rate, quality, at) -> np.ndarray:
    """Rate needed for each quality in ``at`` (NaN outside the curve's range)."""
    r, q, _ = monotone(rate, quality)
    return _interp_within(q, r, at)


def msssim_db(m) -> np.ndarray:
    """MS-SSIM on a decibel scale, -10 log10(1 - m): spreads out the crowded top end."""
    return -10.0 * np.log10(np.clip(1.0 - np.asarray(m, float), 1e-12, None))


def bd_rate(ref_rate, ref_quality, rate, quality, db: bool = True) -> float:
    """Average rate difference of a curve against a reference at equal quality, as a fraction.

    Bjontegaard's method with piecewise cubic (PCHIP) interpolation of log-rate over quality,
    integrated over the quality range both curves cover: -0.2 means 20% fewer bits than the
    reference. Quality is MS-SSIM in dB when ``db`` (the usual choice for MS-SSIM). NaN when the
    curves do not overlap or have fewer than two monotone points.
    """
    curves = []
    for r, q in ((ref_rate, ref_quality), (rate, quality)):
        r, q, _ = monotone(r, q)
        keep = r > 0
        r, q = r[keep], q[keep]
        if len(r) < 2:
            return float("nan")
        curves.append((msssim_db(q) if db else q, np.log(r)))
    lo = max(curves[0][0][0], curves[1][0][0])
    hi = min(curves[0][0][-1], curves[1][0][-1])
    if not hi > lo:
        return float("nan")
    area = [PchipInterpolator(x, y).integrate(lo, hi) for x, y in curves]
    return float(np.exp((area[1] - area[0]) / (hi - lo)) - 1.0)
