"""The paper's summaries on hand-made curves whose answers are worked out in the comments."""

import pytest

from rtaic.evaluation.summary import summarize

PIXELS = 100 * 80
HEADER = 10  # bytes, for every file below


def _records(codec, image, points):
    out = []
    for q, (bpp, m) in enumerate(points):
        payload = bpp * PIXELS / 8
        out.append({
            "codec": codec, "quality": str(10 * (q + 1)), "image": image, "sha256": image,
            "width": 100, "height": 80, "file_bytes": payload + HEADER, "header_bytes": HEADER,
            "bpp": 8 * (payload + HEADER) / PIXELS, "bpp_payload": bpp,
            "msssim_rgb": m, "msssim_ycbcr": m, "psnr_rgb": 30.0, "psnr_y": 30.0,
            "ciede2000": 100 * (1 - m), "encode_s": 0.01 * (q + 1), "decode_s": 0.001,
        })
    return out


@pytest.fixture(scope="module")
def summary():
    records = (
        _records("jpeg420", "a.png", [(0.2, 0.90), (0.4, 0.95), (0.8, 0.99)])
        # webp needs half of JPEG's bits on a.png; its 0.3 bpp point (0.94) is worse than its
        # 0.2 bpp point (0.95), so it is dropped.
        + _records("webp", "a.png", [(0.1, 0.90), (0.2, 0.95), (0.3, 0.94), (0.4, 0.99)])
        + _records("jpeg420", "b.png", [(0.3, 0.92), (0.6, 0.96), (1.2, 0.98)])
        # ... and 80% of JPEG's bits on b.png, whose curves stop at 0.98.
        + _records("webp", "b.png", [(0.24, 0.92), (0.48, 0.96), (0.96, 0.98)])
    )
    return summarize(records, bpp_points=[0.4, 2.0], msssim_points=[0.95, 0.99], reference="jpeg420")


def test_relative_size_is_a_mean_of_per_image_ratios(summary):
    rel = summary["relative_size"]["jpeg420"]["rgb"]["webp"]
    assert rel["0.95"] == {"mean": pytest.approx((0.5 + 0.8) / 2), "n": 2, "missing": 0}
    # At 0.99 only a.png reaches: b.png is counted as missing, not averaged in.
    assert rel["0.99"] == {"mean": pytest.approx(0.5), "n": 1, "missing": 1}


def test_size_at_msssim_in_bytes(summary):
    s = summary["size_at_msssim"]["rgb"]["jpeg420"]["0.95"]
    # a.png: 0.4 bpp -> 400 bytes; b.png: 0.95 is 3/4 of the way .92 -> .96, so
    # 0.3 + 0.75 * 0.3 = 0.525 bpp -> 525 bytes. Mean 462.5 payload bytes, +10 header.
    assert s["payload_bytes"] == pytest.approx(462.5)
    assert s["bytes"] == pytest.approx(472.5)
    assert s["bpp_payload"] == pytest.approx(0.4625)
    assert (s["n"], s["missing"]) == (2, 0)


def test_msssim_at_bpp(summary):
    m = summary["msssim_at_bpp"]["rgb"]["webp"]
    # a.png at 0.4 bpp: 0.99. b.png: 0.4 is 2/3 of the way 0.24 -> 0.48: 0.92 + 0.04 * 2/3.
    assert m["0.4"]["mean"] == pytest.approx((0.99 + 0.92 + 0.04 * 2 / 3) / 2)
    assert m["2.0"] == {"mean": None, "n": 0, "missing": 2}


def test_bd_rate_per_image_then_mean(summary):
    # a.png: half of JPEG's bits (-50%); b.png: 80% (-20%); the mean of the two, not the
    # BD-rate of mean curves.
    assert summary["bd_rate"]["jpeg420"]["rgb"]["webp"] == {"mean": pytest.approx((-0.5 - 0.2) / 2),
                                                            "n": 2, "missing": 0}


def test_bd_rate_reads_each_colour_spaces_own_msssim():
    jpeg = _records("jpeg420", "a.png", [(0.1, 0.85), (0.2, 0.90), (0.4, 0.95), (0.8, 0.99)])
    webp = _records("webp", "a.png", [(0.1, 0.90), (0.2, 0.95), (0.4, 0.99)])
    for r, m in zip(webp, (0.85, 0.90, 0.95), strict=True):
        r["msssim_ycbcr"] = m  # in YCbCr WebP is JPEG's curve point for point
    bd = summarize(jpeg + webp, [0.2], [0.9], "jpeg420")["bd_rate"]["jpeg420"]
    # RGB: at every point WebP needs half of JPEG's bits; YCbCr: the same bits. (Not exactly
    # -50% and 0: JPEG's extra point changes its interpolation's slopes a little.)
    assert bd["rgb"]["webp"]["mean"] == pytest.approx(-0.5, abs=0.005)
    assert bd["ycbcr"]["webp"]["mean"] == pytest.approx(0.0, abs=0.005)


def test_dropped_points_and_timings(summary):
    d = summary["dropped"]["rgb"]["webp"]
    assert (d["points"], d["dropped"], d["which"]) == (7, 1, ["a.png q=30"])
    assert summary["dropped"]["rgb"]["jpeg420"]["dropped"] == 0
    t = {row["quality"]: row for row in summary["timings"]["webp"]}
    assert t["40"]["n"] == 1 and t["10"]["n"] == 2
    assert t["20"]["encode_s"] == pytest.approx(0.02)


def test_ciede2000_at_bpp_is_read_along_the_monotone_curve_per_image(summary):
    c = summary["ciede2000_at_bpp"]
    # CIEDE2000 = 100 (1 - MS-SSIM) here. JPEG at 0.4: a.png 5.0 (a point); b.png between
    # (0.3, 8) and (0.6, 4): 8 - 4/3 = 6.667. WebP: a.png 1.0 (its dropped 0.3 point, 6.0,
    # is not used); b.png between (0.24, 8) and (0.48, 4): 8 - 4 * 0.16 / 0.24 = 5.333.
    assert c["jpeg420"]["0.4"]["mean"] == pytest.approx((5.0 + 8 - 4 / 3) / 2)
    assert c["webp"]["0.4"]["mean"] == pytest.approx((1.0 + 8 - 4 * 0.16 / 0.24) / 2)
    assert c["webp"]["2.0"] == {"mean": None, "n": 0, "missing": 2}


def test_colour_of_each_model_against_the_reference_at_the_model_rate():
    jpeg = _records("jpeg420", "a.png", [(0.2, 0.90), (0.4, 0.95)]) + _records(
        "jpeg420", "b.png", [(0.2, 0.90), (0.6, 0.98)])
    ours = [
        dict(r, codec="learned", quality=q)
        for q, pts in (("low.ckpt", [(0.3, 0.93)]), ("high.ckpt", [(0.5, 0.97)]))
        for r in _records("x", "a.png", pts) + _records("x", "b.png", pts)
    ]
    ours[0]["ciede2000"] = 2.0  # low.ckpt on a.png; 7.0 on b.png
    got = summarize(jpeg + ours, [0.4], [0.95], "jpeg420")["colour_at_our_rates"]
    # low.ckpt at 0.3 bpp: JPEG a.png halfway 10 -> 5 = 7.5; b.png a quarter 10 -> 2 = 8.0
    assert got["low.ckpt"]["ours"]["mean"] == pytest.approx((2.0 + 7.0) / 2)
    assert got["low.ckpt"]["reference"]["mean"] == pytest.approx((7.5 + 8.0) / 2)
    assert got["low.ckpt"]["bpp_payload"] == pytest.approx(0.3)
    # high.ckpt at 0.5: beyond JPEG's a.png curve (missing there, and left out of ours too)
    assert got["high.ckpt"]["reference"] == {"mean": pytest.approx(2 + 8 * 0.25), "n": 1, "missing": 1}
    assert got["high.ckpt"]["ours"]["mean"] == pytest.approx(3.0)


def test_several_curves_of_ours_are_kept_apart_and_labelled():
    jpeg = _records("jpeg420", "a.png", [(0.2, 0.90), (0.4, 0.95)])
    rgb = [dict(r, codec="learned", quality="rgb.ckpt") for r in _records("x", "a.png", [(0.3, 0.93)])]
    ycc = [dict(r, codec="learned_ycbcr", quality="ycc.ckpt") for r in _records("x", "a.png", [(0.25, 0.91)])]
    s = summarize(jpeg + ycc + rgb, [0.3], [0.92], "jpeg420")
    assert s["codecs"] == ["learned_ycbcr", "learned", "jpeg420"] or s["codecs"] == ["learned", "learned_ycbcr", "jpeg420"]
    assert s["labels"]["learned_ycbcr"] == "Ours (rtaic, YCbCr)" and s["labels"]["learned"] == "Ours (rtaic)"
    assert s["msssim_at_bpp"]["rgb"]["learned"]["0.3"]["mean"] == pytest.approx(0.93)
    assert s["msssim_at_bpp"]["rgb"]["learned_ycbcr"]["0.3"]["n"] == 0  # its one point is at 0.25
    assert set(s["colour_at_our_rates"]) == {"rgb.ckpt", "ycc.ckpt"}
