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
    model = Autoencoder(Architecture(**{**SMALL.to_dict(), "color_space": "ycbcr"}))
    out = model(torch.rand(1, 3, 16, 16))
    assert out.x_hat.shape == (1, 3, 16, 16)


def test_architecture_round_trips_and_rejects_unknown_fields():
    assert Architecture.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(ValueError):
        Architecture.from_dict({**SMALL.to_dict(), "bogus": 1})
    with pytest.raises(ValueError):
        Architecture(color_space="lab")
