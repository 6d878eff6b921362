import math

import pytest
import torch

from rtaic.training.adversarial import (
    AdversarialConfig,
    AdversarialSchedule,
    GateState,
    RunningAccuracy,
    balance_gradients,
    batch_accuracy,
    confusion_loss,
    discriminator_loss,
    make_pairs,
)


# ---------------------------------------------------------------- pairs
def test_labels_follow_the_swap_and_both_orders_occur():
    target = torch.arange(16.0).view(16, 1, 1, 1).expand(16, 3, 5, 7).contiguous()
    recon = -target - 1  # distinct from every target value
    pair, labels = make_pairs(target, recon, torch.Generator().manual_seed(0))
    assert pair.shape == (16, 6, 5, 7)
    for i in range(16):
        first, second = pair[i, :3], pair[i, 3:]
        if labels[i] == 1:
            assert torch.equal(first, target[i]) and torch.equal(second, recon[i])
        else:
            assert labels[i] == 0
            assert torch.equal(first, recon[i]) and torch.equal(second, target[i])
    assert 0 < labels.sum() < 16


def test_swap_is_reproducible_with_a_seeded_generator():
    x, y = torch.zeros(32, 3, 2, 2), torch.ones(32, 3, 2, 2)
    _, a = make_pairs(x, y, torch.Generator().manual_seed(3))
    _, b = make_pairs(x, y, torch.Generator().manual_seed(3))
    _, c = make_pairs(x, y, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_swap_is_fair():
    x, y = torch.zeros(4000, 1, 1, 1), torch.ones(4000, 1, 1, 1)
    _, labels = make_pairs(x, y, torch.Generator().manual_seed(0))
    assert abs(labels.mean().item() - 0.5) < 0.03


def test_pair_passes_gradient_to_the_reconstruction():
    recon = torch.rand(4, 3, 3, 3, requires_grad=True)
    pair, _ = make_pairs(torch.rand(4, 3, 3, 3), recon, torch.Generator().manual_seed(0))
    pair.sum().backward()
    torch.testing.assert_close(recon.grad, torch.ones_like(recon))


def test_losses_and_accuracy():
    logits = torch.tensor([3.0, -2.0, 1.0, -1.0])
    labels = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert batch_accuracy(logits, labels) == 0.75
    # confusion is D's loss with the labels flipped
    torch.testing.assert_close(
        confusion_loss(logits, labels), discriminator_loss(logits, 1 - labels)
    )
    assert discriminator_loss(logits, labels) < confusion_loss(logits, labels)


# ---------------------------------------------------------------- running accuracy
def test_running_accuracy_with_momentum_exact_values():
    acc = RunningAccuracy(momentum=0.8)
    assert acc.value == 0.5
    assert acc.update(1.0) == pytest.approx(0.6)  # 0.8 * 0.5 + 0.2 * 1
    assert acc.update(1.0) == pytest.approx(0.68)
    assert acc.update(0.0) == pytest.approx(0.544)
    assert acc.update(0.5) == pytest.approx(0.5352)
    assert acc.updates == 4


def test_running_accuracy_converges_to_a_constant_input():
    acc = RunningAccuracy(momentum=0.8)
    for _ in range(100):
        acc.update(0.9)
    assert acc.value == pytest.approx(0.9, abs=1e-9)


# ---------------------------------------------------------------- schedule
def _schedule_at(a: float) -> AdversarialSchedule:
    s = AdversarialSchedule(lower=0.8, upper=0.95, momentum=0.8)
    s.accuracy.value = a
    return s


def test_below_lower_bound_trains_the_discriminator_only():
    s = _schedule_at(0.79)
    for _ in range(3):
        d = s.decide()
        assert (d.state, d.train_discriminator, d.confuse_generator) == (
            GateState.DISCRIMINATOR,
            True,
            False,
        )


def test_above_upper_bound_confuses_only_and_freezes_d():
    s = _schedule_at(0.951)
    for _ in range(3):
        d = s.decide()
        assert (d.state, d.train_discriminator, d.confuse_generator) == (
            GateState.GENERATOR,
            False,
            True,
        )


@pytest.mark.parametrize("a", [0.8, 0.9, 0.95])  # both bounds are inside the band
def test_inside_the_band_alternates_starting_with_d(a):
    s = _schedule_at(a)
    steps = [s.decide() for _ in range(5)]
    assert all(d.state is GateState.ALTERNATE for d in steps)
    assert [d.train_discriminator for d in steps] == [True, False, True, False, True]
    assert [d.confuse_generator for d in steps] == [False, True, False, True, False]


def test_alternation_turn_survives_leaving_the_band():
    s = _schedule_at(0.9)
    assert s.decide().train_discriminator  # D's turn taken
    s.accuracy.value = 0.99
    s.decide()  # GENERATOR state, does not touch the turn
    s.accuracy.value = 0.9
    assert s.decide().confuse_generator  # so the next alternate step is G's


def test_peek_changes_nothing_and_commit_counts_and_passes_the_turn():
    s = _schedule_at(0.9)
    first = s.peek()
    assert s.peek() == first and first.train_discriminator and s.counts == [0, 0, 0]
    s.commit(first)
    assert s.counts == [0, 1, 0] and s.peek().confuse_generator  # G's turn now
    s.accuracy.value = 0.1
    s.commit(s.peek())  # the D-only state counts but leaves the alternation's turn
    assert s.counts == [1, 1, 0] and s.discriminator_turn is False


def test_accuracy_drives_the_state_through_updates_and_counts():
    s = AdversarialSchedule(lower=0.8, upper=0.95, momentum=0.8)
    seen = []
    for batch in [1.0] * 12 + [0.75, 0.0, 0.0]:
        seen.append(s.decide().state)
        s.update(batch)
    # 0.5, 0.6, 0.68, 0.744, 0.7952 | 0.83616 ... 0.94631 | 0.95705, 0.96564 | 0.92251 | 0.73801
    assert seen[:5] == [GateState.DISCRIMINATOR] * 5
    assert seen[5:11] == [GateState.ALTERNATE] * 6
    assert seen[11:13] == [GateState.GENERATOR] * 2
    assert seen[13] is GateState.ALTERNATE and seen[14] is GateState.DISCRIMINATOR
    assert s.counts == [6, 7, 2]


def test_schedule_state_round_trips_through_state_dict():
    s = AdversarialSchedule(lower=0.8, upper=0.95, momentum=0.8)
    for batch in [1.0] * 7:
        s.decide()
        s.update(batch)
    state = s.state_dict()
    restored = AdversarialSchedule(lower=0.8, upper=0.95, momentum=0.8)
    restored.load_state_dict(state)
    assert restored.state_dict() == state
    # the continuation is identical, including the alternation turn
    for batch in [1.0, 0.9, 0.3, 1.0, 1.0]:
        assert restored.decide() == s.decide()
        assert restored.update(batch) == s.update(batch)
    assert restored.counts == s.counts


def test_state_dict_is_plain_data():
    """The checkpoint stores it with torch.load(weights_only=True)."""
    import io

    s = AdversarialSchedule(0.8, 0.95, 0.8)
    buf = io.BytesIO()
    torch.save(s.state_dict(), buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True) == s.state_dict()


def test_bad_bounds_are_rejected():
    with pytest.raises(ValueError):
        AdversarialSchedule(lower=0.95, upper=0.8, momentum=0.8)


# ---------------------------------------------------------------- balancing
def test_balanced_confusion_gradient_has_ratio_times_the_reconstruction_norm():
    """Toy generator -> x_hat; both gradients measured at x_hat, the confusion one applied as
    the module applies it: <x_hat, scale * g_adv> added to the loss before one backward."""
    torch.manual_seed(0)
    gen = torch.nn.Conv2d(3, 3, 3, padding=1)
    disc = torch.nn.Sequential(torch.nn.Conv2d(6, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(1))
    x = torch.rand(4, 3, 9, 11)
    x_hat = gen(x)
    rec_loss = (x_hat - x).pow(2).mean()
    pair, labels = make_pairs(x, x_hat, torch.Generator().manual_seed(0))
    adv_loss = 1000.0 * confusion_loss(disc(pair).squeeze(1), labels)  # wildly out of scale
    (g_rec,) = torch.autograd.grad(rec_loss, x_hat, retain_graph=True)
    (g_adv,) = torch.autograd.grad(adv_loss, x_hat, retain_graph=True)
    b = balance_gradients(g_rec, g_adv, ratio=0.3)

    assert b.adv_norm == pytest.approx(g_adv.norm().item())
    assert (b.scale * g_adv).norm().item() == pytest.approx(0.3 * g_rec.norm().item(), rel=1e-5)

    # the generator's weights get the gradient of rec + scale * adv (D's weights none)
    gen.zero_grad()
    (rec_loss + (x_hat * (b.scale * g_adv)).sum()).backward(retain_graph=True)
    mixed = gen.weight.grad.clone()
    assert all(p.grad is None for p in disc.parameters())  # D untouched by G's step
    gen.zero_grad()
    (rec_loss + b.scale * adv_loss).backward(inputs=list(gen.parameters()))
    torch.testing.assert_close(mixed, gen.weight.grad)


@pytest.mark.parametrize("ratio", [0.0, 1.0, 2.5])
def test_balance_ratio(ratio):
    g_rec = torch.tensor([3.0, 4.0])  # norm 5
    g_adv = torch.tensor([0.0, 100.0])
    b = balance_gradients(g_rec, g_adv, ratio)
    assert b.scale == pytest.approx(ratio * 5 / 100) and b.adv_norm == pytest.approx(100)
    assert (b.scale * g_adv).norm().item() == pytest.approx(ratio * 5)


@pytest.mark.parametrize(
    "g_rec, g_adv",
    [
        (torch.zeros(3), torch.ones(3)),
        (torch.ones(3), torch.zeros(3)),
        (torch.ones(3), torch.full((3,), math.nan)),
        (torch.ones(3), torch.full((3,), math.inf)),
    ],
)
def test_degenerate_norms_give_no_confusion_signal(g_rec, g_adv):
    b = balance_gradients(g_rec, g_adv, ratio=1.0)
    assert b.scale == 0.0


# ---------------------------------------------------------------- config
def test_what_the_real_config_builds_has_the_yaml_values(tmp_path):
    """The YAML is the one source of the values: compose conf/ with the GAN, build the
    module and the callbacks, and compare with the files' numbers."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from conftest import CONF, compose_train
    from rtaic.training.acr import ACRCallback
    from rtaic.training.adversarial_module import AdversarialGate, AdversarialRTAICModule

    cfg = compose_train(tmp_path, ["+discriminator=multiscale", "target_bpp=0.5"])
    disc = OmegaConf.load(CONF / "discriminator" / "multiscale.yaml")
    callbacks = OmegaConf.load(CONF / "callbacks" / "default.yaml")
    model = OmegaConf.load(CONF / "model" / "rtaic_small.yaml")
    module = instantiate(cfg.model)
    assert isinstance(module, AdversarialRTAICModule)
    assert module.adversarial.start_step == disc.model.adversarial.start_step == 5000
    assert module.adversarial.balance_ratio == disc.model.adversarial.balance_ratio
    assert list(module.hparams.lr_milestones) == list(model.lr_milestones) == [20000, 30000]
    assert module.target_bpp == 0.5 and module.architecture.color_space == "rgb"
    built = {type(cb): cb for cb in (instantiate(v) for v in cfg.callbacks.values() if v)}
    acr, gate = built[ACRCallback], built[AdversarialGate]
    assert (acr.gain, acr.momentum) == (callbacks.acr.gain, callbacks.acr.momentum) == (0.1, 0.5)
    g = disc.callbacks.adversarial_gate
    assert (gate.schedule.lower, gate.schedule.upper, gate.schedule.accuracy.momentum) == (g.lower, g.upper, g.momentum)
    # no Python default can disagree with the files: the constructors require the values
    with pytest.raises(TypeError):
        ACRCallback()
    with pytest.raises(TypeError):
        AdversarialConfig(width=4)
    with pytest.raises(TypeError):
        AdversarialSchedule()


def test_adversarial_config_validates():
    keys = dict(start_step=0, width=4, depth=2, max_width=8, balance_ratio=0.2, lr=1e-4,
                betas=[0.5, 0.999], lr_milestones=[10], lr_gamma=0.2)
    cfg = AdversarialConfig(**keys)
    assert cfg.betas == (0.5, 0.999) and cfg.lr_milestones == (10,)
    with pytest.raises(ValueError):
        AdversarialConfig(**{**keys, "balance_ratio": -1})
    with pytest.raises(ValueError):
        AdversarialConfig(**{**keys, "start_step": -1})
    with pytest.raises(TypeError):
        AdversarialConfig(**keys, typo=1)
