import pytest
import torch

from rtaic.nn.discriminator import MultiscaleDiscriminator


@pytest.mark.parametrize("size", [(65, 257), (33, 47), (1, 1), (64, 64)])
def test_accepts_any_size_and_returns_one_logit_per_pair(size):
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(width=4, depth=4)
    out = d(torch.rand(2, 6, *size))
    assert out.shape == (2,)
    assert torch.isfinite(out).all()


def test_logit_is_mean_of_one_branch_per_depth():
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(width=4, depth=3)
    pair = torch.rand(3, 6, 33, 47)
    branches = d.branch_outputs(pair)
    assert branches.shape == (3, 3)
    torch.testing.assert_close(d(pair), branches.mean(dim=1))
    # each branch is its own function of the input (not one scalar repeated)
    assert not torch.allclose(branches[:, 0], branches[:, 1])


def test_width_and_depth_are_configurable():
    d = MultiscaleDiscriminator(width=8, depth=5, max_width=32)
    assert d.depth == 5
    outs = [b[0].out_channels for b in d.blocks]
    assert outs == [8, 16, 32, 32, 32]
    assert d.stem[0].in_channels == 6


def test_swapping_the_pair_flips_the_logit():
    """Antisymmetric by construction: P(first is real) = 1 - P(second is real)."""
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(width=4, depth=3)
    a, b = torch.rand(2, 3, 17, 23), torch.rand(2, 3, 17, 23)
    ab, ba = d(torch.cat([a, b], 1)), d(torch.cat([b, a], 1))
    torch.testing.assert_close(ab, -ba)
    assert (ab.abs() > 0).all()
    torch.testing.assert_close(d(torch.cat([a, a], 1)), torch.zeros(2))


def test_rejects_single_image():
    with pytest.raises(ValueError, match="pair"):
        MultiscaleDiscriminator(width=4, depth=2)(torch.rand(1, 3, 8, 8))


def test_learns_which_image_is_the_target():
    """A few steps on a trivial pairing (target vs blurred copy) get well above chance."""
    from rtaic.training.adversarial import batch_accuracy, discriminator_loss, make_pairs

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    d = MultiscaleDiscriminator(width=8, depth=2)
    opt = torch.optim.Adam(d.parameters(), lr=3e-3)
    for _ in range(60):
        x = torch.rand(8, 3, 9, 11)
        recon = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
        pair, labels = make_pairs(x, recon, g)
        loss = discriminator_loss(d(pair), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.rand(64, 3, 9, 11)
    pair, labels = make_pairs(x, torch.nn.functional.avg_pool2d(x, 3, 1, 1), g)
    with torch.no_grad():
        assert batch_accuracy(d(pair), labels) > 0.85
