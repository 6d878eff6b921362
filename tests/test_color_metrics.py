import pytest
import torch

from rtaic.color import CHANNEL_WEIGHTS, rgb_to_ycbcr, ycbcr_to_rgb
from rtaic.metrics import msssim_window, psnr, weighted_msssim


def test_ycbcr_matches_bt601_reference_values():
    rgb = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    ycc = rgb_to_ycbcr(rgb).flatten()
    assert ycc.tolist() == pytest.approx([0.299, 0.5 - 0.168736, 1.0], abs=1e-5)
    white = rgb_to_ycbcr(torch.ones(3, 1, 1)).flatten()
    assert white.tolist() == pytest.approx([1.0, 0.5, 0.5], abs=1e-6)


def test_ycbcr_round_trip():
    x = torch.rand(2, 3, 5, 7)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-6)


def test_weights():
    assert CHANNEL_WEIGHTS["ycbcr"] == (0.75, 0.125, 0.125)
    assert sum(CHANNEL_WEIGHTS["rgb"]) == pytest.approx(1.0)


def test_window_adapts_to_crop_size():
    assert msssim_window(512) == 11
    assert msssim_window(161) == 11
    assert msssim_window(128) == 7
    with pytest.raises(ValueError):
        msssim_window(32)


def test_weighted_msssim_weights_luma_six_to_one():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 192, 192, generator=g)
    assert weighted_msssim(x, x, "ycbcr").item() == pytest.approx(1.0, abs=1e-5)
    # damage only chroma (in YCbCr): the YCbCr score loses 1/4 at most, RGB far more
    ycc = rgb_to_ycbcr(x)
    noisy = ycc.clone()
    noisy[:, 1:] += 0.2 * torch.randn(1, 2, 192, 192, generator=g)
    y = ycbcr_to_rgb(noisy)
    s_ycc = weighted_msssim(y, x, "ycbcr").item()
    assert s_ycc > 0.75 - 1e-4
    assert weighted_msssim(y, x, "rgb").item() < s_ycc


def test_psnr():
    x = torch.zeros(1, 3, 4, 4)
    assert psnr(x + 0.1, x).item() == pytest.approx(20.0, abs=1e-4)
