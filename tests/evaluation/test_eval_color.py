"""The report's colour metrics: YCbCr as JPEG (Pillow) computes it, and MS-SSIM with the
1:1:1 / 6:1:1 channel weights (the conversion itself: tests/test_color_metrics.py)."""

import numpy as np
import pytest
from PIL import Image
from pytorch_msssim import ms_ssim

from rtaic.color import rgb_to_ycbcr
from rtaic.evaluation.measure import quality_metrics, to_tensor


def test_ycbcr_matches_pillow_jpeg_conversion():
    arr = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    pil = np.asarray(Image.fromarray(arr).convert("YCbCr"), dtype=np.float64) / 255
    ours = rgb_to_ycbcr(to_tensor(Image.fromarray(arr)))[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - pil).max() <= 1.01 / 255  # Pillow rounds to 8 bits


def _smooth(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:176, 0:184] / 40.0
    base = np.stack([np.sin(xx + c) * np.cos(yy - c) for c in range(3)], -1)
    return np.clip(127 + 90 * base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def test_report_metrics_weight_each_channel_as_the_paper_does():
    a = _smooth(0)
    b = a.copy()
    b[..., 2] = np.clip(b[..., 2].astype(int) + np.random.default_rng(1).integers(-25, 26, b.shape[:2]), 0, 255)
    x, y = to_tensor(Image.fromarray(a)), to_tensor(Image.fromarray(b))
    got = quality_metrics(x, y)

    def per_channel(u, v):
        return [float(ms_ssim(u[:, c : c + 1].float(), v[:, c : c + 1].float(), data_range=1.0)) for c in range(3)]

    rgb = per_channel(x, y)
    ycc = per_channel(rgb_to_ycbcr(x), rgb_to_ycbcr(y))
    assert rgb[0] == pytest.approx(1.0) and rgb[2] < 0.99  # only blue was changed
    assert got["msssim_rgb"] == pytest.approx(sum(rgb) / 3, abs=1e-5)
    assert got["msssim_ycbcr"] == pytest.approx(0.75 * ycc[0] + 0.125 * ycc[1] + 0.125 * ycc[2], abs=1e-5)
    mse = ((x - y) ** 2).mean().item()
    assert got["psnr_rgb"] == pytest.approx(10 * np.log10(1 / mse), abs=1e-6)
