"""Per-image RD curves: monotone clean-up, interpolation and BD-rate against hand-worked answers."""

import math

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
