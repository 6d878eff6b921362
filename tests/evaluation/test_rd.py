"""Per-image RD curves: monotone clean-up, interpolation and BD-rate against hand-worked answers."""

import math
import warnings

import numpy as np
import pytest

from rtaic.evaluation import rd


def test_monotone_drops_points_that_cost_more_for_no_gain():
    rate = [0.4, 0.1, 0.2, 0.3, 0.5, 0.25]
    quality = [0.96, 0.90, 0.94, 0.93, 0.97, 0.94]
    r, q, kept = rd.monotone(rate, quality)
    # Sorted by rate: 0.1/.90, 0.2/.94, 0.25/.94 (no gain), 0.3/.93 (worse), 0.4/.96, 0.5/.97.
    assert r.tolist() == [0.1, 0.2, 0.4, 0.5]
    assert q.tolist() == [0.90, 0.94, 0.96, 0.97]
    assert sorted(kept.tolist()) == [0, 1, 2, 4]


def test_monotone_keeps_the_better_of_two_equal_rates():
    r, q, _ = rd.monotone([1.0, 1.0, 2.0], [0.8, 0.9, 0.95])
    assert r.tolist() == [1.0, 2.0] and q.tolist() == [0.9, 0.95]


def test_quality_at_rate_by_hand():
    rate, quality = [0.25, 0.5, 1.0], [0.90, 0.95, 0.99]
    got = rd.quality_at_rate(rate, quality, [0.25, 0.375, 0.75, 1.0, 0.2, 1.1])
    # 0.375 is halfway 0.25..0.5 -> 0.925; 0.75 halfway 0.5..1.0 -> 0.97; outside -> NaN.
    np.testing.assert_allclose(got[:4], [0.90, 0.925, 0.97, 0.99])
    assert np.isnan(got[4]) and np.isnan(got[5])


def test_rate_at_quality_by_hand_after_dropping_a_non_monotone_point():
    rate = [0.2, 0.4, 0.6, 1.0]
    quality = [0.90, 0.96, 0.95, 0.98]  # 0.6 bpp scores worse than 0.4 bpp: dropped
    got = rd.rate_at_quality(rate, quality, [0.93, 0.97, 0.98, 0.985])
    # 0.93 is halfway .90..0.96 -> 0.3; 0.97 halfway .96..0.98 on 0.4..1.0 -> 0.7.
    np.testing.assert_allclose(got[:3], [0.3, 0.7, 1.0])
    assert np.isnan(got[3])


def test_bd_rate_constant_ratio_is_that_ratio():
    # The test codec needs exactly half the bits of the reference at every quality: -50%.
    d = np.array([30.0, 33.0, 36.0, 40.0])
    ref = np.exp(0.2 * d - 5)
    assert rd.bd_rate(ref, d, 0.5 * ref, d, db=False) == pytest.approx(-0.5, abs=1e-12)


def test_bd_rate_worked_example_with_different_slopes():
    # Reference: ln r = 0.1 D over D in [10, 16]; test: ln r = 0.1 D + 0.05 (D - 12) over
    # [11, 17]. Overlap [11, 16]; the log-rate gap 0.05 (D - 12) averages to
    # 0.05 * ((11 + 16) / 2 - 12) = 0.075 there, so BD-rate = e^0.075 - 1 = +7.788%.
    d_ref = np.array([10.0, 12.0, 14.0, 16.0])
    d_test = np.array([11.0, 13.0, 15.0, 17.0])
    ref = np.exp(0.1 * d_ref)
    test = np.exp(0.1 * d_test + 0.05 * (d_test - 12))
    assert rd.bd_rate(ref, d_ref, test, d_test, db=False) == pytest.approx(math.exp(0.075) - 1, rel=1e-9)
    # Swapping the roles inverts the average log ratio.
    assert rd.bd_rate(test, d_test, ref, d_ref, db=False) == pytest.approx(math.exp(-0.075) - 1, rel=1e-9)


def test_bd_rate_on_msssim_db_and_no_overlap():
    m = np.array([0.9, 0.95, 0.98, 0.99])
    r = np.array([0.2, 0.4, 0.8, 1.2])
    assert rd.msssim_db(0.99) == pytest.approx(20.0)
    assert rd.bd_rate(r, m, r * 1.25, m) == pytest.approx(0.25)
    assert math.isnan(rd.bd_rate(r, m, r, [0.991, 0.993, 0.995, 0.997]))  # disjoint ranges


# -- BD-rate where the interpolation is not exact ------------------------------------------
#
# An independent PCHIP (Fritsch and Carlson's monotone piecewise cubic Hermite interpolation,
# with the one-sided three-point end slopes that scipy also uses), integrated numerically.


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, m = np.diff(x), np.diff(y) / np.diff(x)
    if len(x) == 2:
        return np.full(2, m[0])
    d = np.zeros(len(x))
    for k in range(1, len(x) - 1):
        if m[k - 1] * m[k] > 0:  # a weighted harmonic mean; 0 at a local extremum
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / m[k - 1] + w2 / m[k])

    def end(h0, h1, m0, m1):
        e = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(e) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(e) > 3 * abs(m0):
            return 3 * m0
        return e

    d[0], d[-1] = end(h[0], h[1], m[0], m[1]), end(h[-1], h[-2], m[-1], m[-2])
    return d


def _pchip(x: np.ndarray, y: np.ndarray, at: np.ndarray) -> np.ndarray:
    d = _pchip_slopes(x, y)
    k = np.clip(np.searchsorted(x, at, side="right") - 1, 0, len(x) - 2)
    h = x[k + 1] - x[k]
    t = (at - x[k]) / h
    return ((2 * t**3 - 3 * t**2 + 1) * y[k] + (t**3 - 2 * t**2 + t) * h * d[k]
            + (-2 * t**3 + 3 * t**2) * y[k + 1] + (t**3 - t**2) * h * d[k + 1])  # fmt: skip


def _bd_by_dense_integral(ref_rate, ref_m, rate, m, interpolate, n=400_001) -> float:
    """exp(mean over the overlap of ln r_test - ln r_ref, at equal MS-SSIM dB) - 1, the mean
    taken with the trapezoid rule on n points: for piecewise cubics of these slopes the rule's
    error, (hi - lo) h^2 max|f''| / 12, is below 1e-9 here."""
    a, b = rd.msssim_db(ref_m), rd.msssim_db(m)
    lo, hi = max(a[0], b[0]), min(a[-1], b[-1])
    d = np.linspace(lo, hi, n)
    gap = interpolate(b, np.log(rate), d) - interpolate(a, np.log(ref_rate), d)
    mean = (gap[0] / 2 + gap[1:-1].sum() + gap[-1] / 2) / (n - 1)
    return math.exp(mean) - 1


# Two codecs whose size ratio changes along the curve (0.58 to 0.8 at the test codec's
# points) and whose points sit at different, unevenly spaced qualities.
REF_RATE = np.array([0.15, 0.3, 0.6, 1.2, 2.0])
REF_M = np.array([0.90, 0.94, 0.97, 0.985, 0.992])
TEST_RATE = np.array([0.1, 0.22, 0.5, 0.9, 1.6])
TEST_M = np.array([0.91, 0.95, 0.975, 0.988, 0.993])


def test_bd_rate_matches_an_independent_pchip_integral_on_msssim_db():
    want = _bd_by_dense_integral(REF_RATE, REF_M, TEST_RATE, TEST_M, _pchip)
    # MS-SSIM in dB is the default, and the answer is PCHIP's: linear interpolation of the
    # same points gives a BD-rate 0.27 percentage points away, 10^5 times the tolerance here.
    assert rd.bd_rate(REF_RATE, REF_M, TEST_RATE, TEST_M) == pytest.approx(want, abs=1e-8)
    linear = _bd_by_dense_integral(REF_RATE, REF_M, TEST_RATE, TEST_M, lambda x, y, at: np.interp(at, x, y))
    assert abs(linear - want) > 2e-3
    assert -0.4 < want < -0.3  # sanity: the test codec needs about a third fewer bits
    # The same on a plain quality scale (db=False) is a different number, also PCHIP's.
    plain = rd.bd_rate(REF_RATE, REF_M, TEST_RATE, TEST_M, db=False)
    assert abs(plain - want) > 1e-3
    a, b = np.log(REF_RATE), np.log(TEST_RATE)
    d = np.linspace(TEST_M[0], REF_M[-1], 400_001)
    gap = _pchip(TEST_M, b, d) - _pchip(REF_M, a, d)
    assert plain == pytest.approx(math.exp((gap[0] / 2 + gap[1:-1].sum() + gap[-1] / 2) / (len(d) - 1)) - 1,
                                  abs=1e-8)


def test_bd_rate_of_two_point_curves_is_linear_and_computed():
    # Two points are enough (PCHIP through two points is the line): a constant ratio of 0.8.
    m = np.array([0.95, 0.99])
    assert rd.bd_rate([0.5, 1.0], m, [0.4, 0.8], m) == pytest.approx(-0.2, abs=1e-12)
    assert math.isnan(rd.bd_rate([0.5], [0.95], [0.4, 0.8], m))  # one point: no curve


def test_bd_rate_ignores_points_without_bits():
    # A zero-rate point (a file that is all header) has no log-rate: it is left out.
    m = np.array([0.9, 0.95, 0.98, 0.99])
    r = np.array([0.2, 0.4, 0.8, 1.2])
    with_zero = rd.bd_rate(np.r_[0.0, r], np.r_[0.85, m], r * 1.25, m)
    assert with_zero == pytest.approx(0.25, abs=1e-12)


def test_bd_rate_of_curves_that_only_touch_is_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(rd.bd_rate([0.2, 0.4], [0.90, 0.95], [0.4, 0.8], [0.95, 0.99]))


def test_a_perfect_score_is_a_finite_db_value():
    # 1 - MS-SSIM is floored at 1e-12 (120 dB): a lossless point stays on the curve.
    assert rd.msssim_db([1.0, 0.9]).tolist() == pytest.approx([120.0, 10.0])


def test_missing_values_read_as_nan():
    # Records with a missing rate or quality (None) lose that point, never the curve.
    r, q, kept = rd.monotone([0.1, None, 0.3, 0.4], [0.90, 0.95, None, 0.97])
    assert r.tolist() == [0.1, 0.4] and q.tolist() == [0.90, 0.97] and kept.tolist() == [0, 3]
    got = rd.value_at_rate([0.1, 0.2, 0.4], [0.9, 0.95, 0.97], [1.0, None, 3.0], [0.1, 0.3, 0.4])
    assert got[0] == 1.0 and math.isnan(got[1]) and got[2] == 3.0
    assert math.isnan(rd.msssim_db([None])[0])
    got = rd.quality_at_rate([0.25, 0.5], [0.90, 0.95], [None, 0.375])  # a missing point to read
    assert math.isnan(got[0]) and got[1] == pytest.approx(0.925)


def test_a_curve_with_no_valid_point_reads_nan_everywhere():
    r, q, kept = rd.monotone([np.nan, 0.2], [0.9, np.inf])
    assert (len(r), len(q), len(kept)) == (0, 0, 0)
    got = rd.quality_at_rate([np.nan], [0.9], [0.1, 0.2, 0.3])
    assert got.shape == (3,) and np.isnan(got).all()
    assert rd.rate_at_quality([], [], 0.95).shape == (1,)
