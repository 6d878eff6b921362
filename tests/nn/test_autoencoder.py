import pytest
import torch

from rtaic.nn.autoencoder import Architecture, Autoencoder, latent_channels_for

SMALL = Architecture(channels=(4, 8, 8, 8, 8, 8), align_channels=8, latent_channels=5)


@pytest.mark.parametrize("size", [(1, 1), (7, 3), (65, 257), (32, 32), (33, 47)])
def test_any_size_round_trips_in_shape(size):
    model = Autoencoder(SMALL).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        out = model(x)
    assert out.x_hat.shape == x.shape
    h, w = (-(-s // SMALL.stride) * SMALL.stride // SMALL.latent_stride for s in size)
    assert out.q.shape == (2, 5, h, w)
    assert out.y.abs().max() < 1
    assert torch.all((out.q * 32 - torch.round(out.q * 32)).abs() < 1e-5)


def test_scale_count_and_stride_follow_the_architecture():
    a = Architecture(channels=(4,) * 6, align_channels=8, latent_channels=3, latent_stride_log2=3)
    assert a.scales == 6 and a.stride == 32 and a.latent_stride == 8
    assert len(Autoencoder(a).encoder.down) == 5


def test_latent_width_follows_the_total_to_target_ratio():
    # channels = ratio * target * stride^2 / B
    assert latent_channels_for(0.5, 4, 3, 6) == round(4 * 0.5 * 64 / 6)
    assert latent_channels_for(0.1, 4, 3, 6) == 4
    assert latent_channels_for(0.01, 4, 3, 6) == 1


def test_ycbcr_model_reconstructs_in_rgb():
    """The networks of a YCbCr model see YCbCr and produce YCbCr; the model converts both
    ways (BT.601 full range, as JPEG: Y = 0.299 R + 0.587 G + 0.114 B, Cb and Cr centred on
    0.5). With the decoder's output layer set to a constant YCbCr colour, the
    reconstruction is that colour in RGB."""
    model = Autoencoder(Architecture(**{**SMALL.to_dict(), "color_space": "ycbcr"})).eval()
    x = torch.rand(1, 3, 16, 16, dtype=torch.float32)
    seen = []
    model.encoder.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    r, g, b = x[0]
    expected = torch.stack([0.299 * r + 0.587 * g + 0.114 * b,
                            0.5 - 0.168736 * r - 0.331264 * g + 0.5 * b,
                            0.5 + 0.5 * r - 0.418688 * g - 0.081312 * b])  # fmt: skip
    # red, green, blue, white, black and grey as YCbCr (offsets applied)
    colours = {(1.0, 0.0, 0.0): (0.299, 0.331264, 1.0), (0.0, 1.0, 0.0): (0.587, 0.168736, 0.081312),
               (0.0, 0.0, 1.0): (0.114, 1.0, 0.418688), (1.0, 1.0, 1.0): (1.0, 0.5, 0.5),
               (0.0, 0.0, 0.0): (0.0, 0.5, 0.5), (0.5, 0.5, 0.5): (0.5, 0.5, 0.5)}  # fmt: skip
    with torch.no_grad():
        model.decoder.out.weight.zero_()
        for rgb, ycc in colours.items():
            model.decoder.out.bias.copy_(torch.tensor(ycc) - 0.5)  # the decoder adds 0.5
            out = model(x)
            assert torch.allclose(seen[-1][0, :, :16, :16], expected, atol=1e-5)
            assert out.x_hat.shape == x.shape
            want = torch.tensor(rgb).view(3, 1, 1).expand(3, 16, 16)
            assert torch.allclose(out.x_hat[0], want, atol=1e-5), (rgb, out.x_hat[0, :, 0, 0])


def test_architecture_round_trips_and_rejects_unknown_fields():
    assert Architecture.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(ValueError):
        Architecture.from_dict({**SMALL.to_dict(), "bogus": 1})
    with pytest.raises(ValueError):
        Architecture(color_space="lab")


def test_records_without_the_lowpass_field_rebuild_the_network_they_describe():
    """Checkpoints written before the low-pass path existed have no such weights."""
    old = SMALL.to_dict()
    assert "lowpass" not in old  # written as before the field existed: same fingerprint
    arch = Architecture.from_dict(old)
    assert arch.lowpass is False
    assert not any("lowpass" in k for k in Autoencoder(arch).state_dict())
    new = Autoencoder(Architecture(**{**old, "lowpass": True})).state_dict()
    assert {k for k in new if "lowpass" in k} == {
        "encoder.lowpass.weight", "encoder.lowpass.bias", "decoder.lowpass.weight", "decoder.lowpass.bias"}


def test_lowpass_path_carries_the_mean_colour_of_each_latent_cell_linearly():
    """Pyramid off (its last layers zero): the latent is tanh of a 1x1 map of the cell
    means, and the decoder's output is 0.5 + the bilinear upsampling of a 1x1 map of q."""
    arch = Architecture(**{**SMALL.to_dict(), "lowpass": True})
    model = Autoencoder(arch)
    with torch.no_grad():
        for layer in (model.encoder.joint[-1], model.decoder.out):
            layer.weight.zero_()
            layer.bias.zero_()
    x = torch.rand(2, 3, 64, 96)
    s = arch.latent_stride
    cells = torch.nn.functional.avg_pool2d(x - 0.5, s)
    w, b = model.encoder.lowpass.weight[:, :, 0, 0], model.encoder.lowpass.bias
    expected_y = torch.tanh(torch.einsum("oc,nchw->nohw", w, cells) + b[:, None, None])
    y = model.encode(x)
    torch.testing.assert_close(y, expected_y)
    wd, bd = model.decoder.lowpass.weight[:, :, 0, 0], model.decoder.lowpass.bias
    low = torch.einsum("oc,nchw->nohw", wd, y) + bd[:, None, None]
    expected = 0.5 + torch.nn.functional.interpolate(low, scale_factor=s, mode="bilinear")
    torch.testing.assert_close(model.decode(y, (64, 96)), expected)


@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (1, 21, 1, 1), (1, 3, 7, 2)])
def test_lapped_synthesis_is_the_cropped_transposed_convolution(shape):
    """The patch form's matmul-and-quadrants synthesis equals the transposed convolution
    it stands for (padded by one replicated cell, cropped to the cells), values and
    gradients, for any latent size, 1x1 included."""
    import torch.nn.functional as F

    from rtaic.nn.decoder import lapped_synthesis

    torch.manual_seed(0)
    s = 4
    q = torch.randn(*shape, requires_grad=True)
    weight = torch.randn(shape[1], 3, 2 * s, 2 * s, requires_grad=True)
    bias = torch.randn(3, requires_grad=True)
    got = lapped_synthesis(q, weight, bias, s)
    full = F.conv_transpose2d(F.pad(q, (1, 1, 1, 1), mode="replicate"), weight, bias, stride=s)
    c = s + s // 2
    want = full[..., c : c + shape[2] * s, c : c + shape[3] * s]
    torch.testing.assert_close(got, want)
    g = torch.randn_like(want)
    grads = torch.autograd.grad((got * g).sum(), (q, weight, bias))
    for a, b in zip(grads, torch.autograd.grad((want * g).sum(), (q, weight, bias)), strict=True):
        torch.testing.assert_close(a, b)
