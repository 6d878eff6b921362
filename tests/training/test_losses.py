"""The distortion loss: MS-SSIM alone barely sees a colour offset; the L1 term does."""

import torch

from rtaic.training.losses import distortion_loss


def _image(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, 96, 96, generator=g) * 0.6 + 0.2


def test_l1_term_adds_weighted_mean_absolute_error():
    x = _image()
    x_hat = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    plain, score = distortion_loss(x_hat, x, "rgb")
    mixed, score2 = distortion_loss(x_hat, x, "rgb", l1_weight=2.0)
    torch.testing.assert_close(plain, 1 - score.mean())
    torch.testing.assert_close(score, score2)
    torch.testing.assert_close(mixed - plain, 2.0 * (x_hat - x).abs().mean())


def test_l1_term_pulls_a_colour_offset_back():
    x = _image(1)
    x_hat = x.clone()
    x_hat[:, 0] += 0.1  # red cast
    x_hat.requires_grad_(True)
    loss, _ = distortion_loss(x_hat, x, "rgb", l1_weight=1.0)
    (grad,) = torch.autograd.grad(loss, x_hat)
    # the gradient on the shifted channel points down everywhere (descent removes the cast)
    assert (grad[:, 0] > 0).float().mean() > 0.99
    plain, _ = distortion_loss(x_hat, x, "rgb")
    assert loss.item() > plain.item() + 0.03
