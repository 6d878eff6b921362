"""Colour spaces (rtaic.color) and the metrics built on them (rtaic.metrics)."""

import pytest
import torch

from rtaic import color
from rtaic.color import CHANNEL_WEIGHTS, from_space, rgb_to_ycbcr, to_space, ycbcr_to_rgb
from rtaic.metrics import msssim_window, psnr, weighted_msssim


def test_ycbcr_of_known_colours():
    rgb = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [0.5, 0.5, 0.5]], dtype=torch.float64)
    got = rgb_to_ycbcr(rgb.T.reshape(3, 5, 1)).reshape(3, 5).T
    # JFIF/BT.601 full range: Y = .299R + .587G + .114B, Cb = .5 + (B - Y) / 1.772,
    # Cr = .5 + (R - Y) / 1.402.
    y = rgb @ torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
    want = torch.stack([y, 0.5 + (rgb[:, 2] - y) / 1.772, 0.5 + (rgb[:, 0] - y) / 1.402], 1)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    torch.testing.assert_close(got[3], torch.tensor([1.0, 0.5, 0.5], dtype=torch.float64))
    assert color.LUMA == (0.299, 0.587, 0.114)  # the luma row, as a plain tuple (imageio)


def test_ycbcr_round_trip():
    x = torch.rand(2, 3, 5, 7)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-6)
    x64 = x.double()  # in float64 the matrices are inverse to rounding
    torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(x64)), x64, atol=1e-12, rtol=0)
    # the inverse on its own: mid-grey with chroma 0.5 is grey; Cr above 0.5 is red
    grey = ycbcr_to_rgb(torch.tensor([0.5, 0.5, 0.5]).view(3, 1, 1)).flatten()
    torch.testing.assert_close(grey, torch.full((3,), 0.5), atol=1e-6, rtol=0)
    red = ycbcr_to_rgb(torch.tensor([0.299, 0.5 - 0.299 / 1.772, 1.0]).view(3, 1, 1)).flatten()
    torch.testing.assert_close(red, torch.tensor([1.0, 0.0, 0.0]), atol=1e-6, rtol=0)


def test_conversion_keeps_the_input_dtype_and_device():
    for dtype in (torch.float32, torch.float64):
        x = torch.rand(3, 4, 4, dtype=dtype)
        assert rgb_to_ycbcr(x).dtype == dtype and ycbcr_to_rgb(x).dtype == dtype
    # "meta" tensors (shapes, no data) stand in for a GPU: no constant may stay on the CPU.
    x = torch.rand(1, 3, 4, 4, device="meta")
    assert rgb_to_ycbcr(x).device.type == "meta" and ycbcr_to_rgb(x).device.type == "meta"


def test_colour_spaces_by_name():
    assert color.COLOR_SPACES == ("rgb", "ycbcr")
    assert color.COLOR_SPACE_NAMES == {"rgb": "RGB", "ycbcr": "YCbCr"}
    x = torch.rand(1, 3, 4, 4)
    assert to_space(x, "rgb") is x and from_space(x, "rgb") is x
    torch.testing.assert_close(to_space(x, "ycbcr"), rgb_to_ycbcr(x))
    torch.testing.assert_close(from_space(x, "ycbcr"), ycbcr_to_rgb(x))
    assert color.check_color_space("ycbcr") == "ycbcr"
    for fn in (to_space, from_space):
        with pytest.raises(ValueError, match="unknown colour space 'lab'; expected one of"):
            fn(x, "lab")


def test_weights():
    # The paper's weighting: RGB channels equal, YCbCr luma six times each chroma channel.
    assert CHANNEL_WEIGHTS["rgb"] == (1 / 3, 1 / 3, 1 / 3)
    assert CHANNEL_WEIGHTS["ycbcr"] == (0.75, 0.125, 0.125)
    assert set(CHANNEL_WEIGHTS) == set(color.COLOR_SPACES)


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


@pytest.mark.parametrize("onednn", [True, False])
@pytest.mark.parametrize("space", ["rgb", "ycbcr"])
def test_training_gradient_is_the_plain_autograd_gradient(space, onednn):
    """The metric differentiates its own graph with oneDNN off: same values, same gradients."""
    from pytorch_msssim import ms_ssim

    from rtaic.color import to_space

    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 128, 128, generator=g)
    x_hat = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1).requires_grad_()
    with torch.backends.mkldnn.flags(enabled=onednn):
        score = weighted_msssim(x_hat, x, space, 7)
        (grad,) = torch.autograd.grad((score * torch.tensor([1.0, 2.0])).sum(), x_hat)

    ref_in = x_hat.detach().clone().requires_grad_()
    a, b = to_space(ref_in, space), to_space(x, space)
    per_channel = [ms_ssim(a[:, c : c + 1], b[:, c : c + 1], data_range=1.0, size_average=False,
                           win_size=7) for c in range(3)]  # fmt: skip
    ref = sum(w * s for w, s in zip(CHANNEL_WEIGHTS[space], per_channel, strict=True))
    (ref_grad,) = torch.autograd.grad((ref * torch.tensor([1.0, 2.0])).sum(), ref_in)
    assert torch.allclose(score, ref.detach(), atol=1e-6)
    assert torch.allclose(grad, ref_grad, rtol=1e-4, atol=1e-7)
    assert grad.abs().sum() > 0
    # gradients reach whichever input asks for them
    target = x.clone().requires_grad_()
    (g_target,) = torch.autograd.grad(weighted_msssim(x_hat.detach(), target, space, 7).sum(), target)
    assert g_target.shape == x.shape and g_target.abs().sum() > 0


def test_training_gradient_can_be_taken_twice():
    """The GAN's balancing differentiates the loss once with retain_graph, then again."""
    x = torch.rand(1, 3, 128, 128)
    x_hat = (x * 0.9).requires_grad_()
    loss = 1 - weighted_msssim(x_hat, x, "rgb", 7).sum()
    (first,) = torch.autograd.grad(loss, x_hat, retain_graph=True)
    loss.backward()
    assert torch.allclose(first, x_hat.grad)


def test_ciede2000_is_the_per_image_mean_colour_difference():
    from rtaic.metrics import ciede2000

    black, white = torch.zeros(1, 3, 4, 6), torch.ones(1, 3, 4, 6)
    half = black.clone()
    half[..., :3] = 1.0
    # black vs white: L* 0 vs 100 at mean L* 50, where CIEDE2000's S_L is 1: exactly 100
    got = ciede2000(torch.cat([black, black, white]), torch.cat([black, white, half]))
    torch.testing.assert_close(got, torch.tensor([0.0, 100.0, 50.0]), atol=1e-3, rtol=0)
    # a hue shift that keeps each channel's structure: red -> orange-brown is many units
    red, brown = torch.tensor([0.8, 0.1, 0.1]), torch.tensor([0.6, 0.3, 0.1])
    assert ciede2000(red.view(1, 3, 1, 1), brown.view(1, 3, 1, 1))[0] > 10
    with pytest.raises(ValueError):
        ciede2000(black, black[:, :1])
