import math

import pytest
import torch

import probes
from rtaic.training.acr import ACRCallback, acr_penalty


def test_penalty_matches_hand_computation():
    eps = 0.5
    q = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])  # one non-zero entry
    # magnitudes: one log2(1.5), three log2(0.5)
    mags = math.log2(1.5) + 3 * math.log2(0.5)
    # neighbour differences q[h, w] - q[h - y, w - x] for S = (0,1),(1,0),(1,1),(-1,1),
    # replicate border: count pairs whose difference is 1 in magnitude
    diffs = 0.0
    grid = q[0, 0]
    for dx, dy in ((0, 1), (1, 0), (1, 1), (-1, 1)):
        for h in range(2):
            for w in range(2):
                hh, ww = min(max(h - dy, 0), 1), min(max(w - dx, 0), 1)
                diffs += math.log2(abs(float(grid[h, w] - grid[hh, ww])) + eps)
    expected = (mags + diffs) / 4
    assert acr_penalty(q, eps).item() == pytest.approx(expected, rel=1e-6)


def test_penalty_matches_the_formula_on_a_batch_of_several_channels():
    """P = mean over images of 1/(CHW) sum_chw [log2(|q| + eps) + sum_S log2(|q - q_shifted| + eps)],
    with the neighbour outside the grid taken as the nearest one inside (difference 0)."""
    import numpy as np

    g = torch.Generator().manual_seed(1)
    q = torch.randint(-3, 4, (2, 3, 4, 5), generator=g).double() / 4
    eps = 0.05
    a = q.numpy()
    n, c, h, w = a.shape
    per_image = []
    for i in range(n):
        total = 0.0
        for ch in range(c):
            for y in range(h):
                for x in range(w):
                    total += np.log2(abs(a[i, ch, y, x]) + eps)
                    for dx, dy in ((0, 1), (1, 0), (1, 1), (-1, 1)):
                        yy, xx = min(max(y - dy, 0), h - 1), min(max(x - dx, 0), w - 1)
                        total += np.log2(abs(a[i, ch, y, x] - a[i, ch, yy, xx]) + eps)
        per_image.append(total / (c * h * w))
    assert per_image[0] != pytest.approx(per_image[1])  # the batch mean is not one image's
    assert acr_penalty(q, eps).item() == pytest.approx(float(np.mean(per_image)), rel=1e-9)


def test_penalty_is_lower_for_smaller_smoother_latents():
    g = torch.Generator().manual_seed(0)
    rough = torch.randn(2, 4, 8, 8, generator=g)
    assert acr_penalty(0.1 * rough, 1e-2) < acr_penalty(rough, 1e-2)
    assert acr_penalty(torch.zeros(2, 4, 8, 8), 1e-2) < acr_penalty(0.1 * rough, 1e-2)


def _acr(gain=0.1, momentum=0.0, alpha_min=1e-5, alpha_max=1e3):
    return ACRCallback(gain=gain, momentum=momentum, alpha_min=alpha_min, alpha_max=alpha_max)


def test_callback_raises_alpha_above_target_and_lowers_it_below():
    # error = log(bpp / target) clipped to +-1; alpha *= exp(gain * error)
    assert _acr().update(1.0, 0.2, 0.1) == pytest.approx(math.exp(0.1 * math.log(2)))
    assert _acr().update(1.0, 0.05, 0.1) == pytest.approx(math.exp(-0.1 * math.log(2)))
    assert _acr().update(1.0, 0.1, 0.1) == pytest.approx(1.0)
    assert _acr().update(2.0, 10.0, 0.1) == pytest.approx(2.0 * math.exp(0.1))  # clipped at +1
    assert _acr().update(2.0, 1e-3, 0.1) == pytest.approx(2.0 * math.exp(-0.1))  # and at -1


def test_callback_is_bounded_and_ignores_nan():
    cb = _acr(gain=1.0, alpha_min=0.5, alpha_max=2.0)
    alpha = 1.0
    for _ in range(50):
        alpha = cb.update(alpha, 10.0, 0.1)
    assert alpha == 2.0
    for _ in range(50):
        alpha = cb.update(alpha, 1e-4, 0.1)
    assert alpha == 0.5
    assert cb.update(0.7, float("nan"), 0.1) == 0.7
    with pytest.raises(ValueError, match="target_bpp must be positive"):
        cb.update(1.0, 0.1, 0.0)
    for bad in (dict(momentum=1.0), dict(momentum=-0.1), dict(gain=0.0), dict(alpha_min=0.0),
                dict(alpha_min=2.0, alpha_max=1.0)):
        with pytest.raises(ValueError, match="need gain > 0"):
            _acr(**bad)
    assert _acr(momentum=0.0, alpha_min=1.0, alpha_max=1.0).update(1.0, 5.0, 0.1) == 1.0  # pinned


def test_running_bpp_has_momentum_and_its_state_round_trips():
    cb = _acr(momentum=0.5)
    cb.update(1.0, 0.3, 0.1)
    assert cb.running_bpp == pytest.approx(0.3)  # the first measurement starts it
    cb.update(1.0, 0.1, 0.1)
    assert cb.running_bpp == pytest.approx(0.2)
    # the running value, not the last measurement, drives alpha
    assert cb.update(1.0, 0.1, 0.1) == pytest.approx(math.exp(0.1 * math.log(1.5)))
    other = _acr(momentum=0.5)
    other.load_state_dict(cb.state_dict())
    assert other.running_bpp == pytest.approx(0.15)


def _trained_run(train_cfg, target: float, steps: int) -> list[tuple[float, float]]:
    """A real run from the bundled 0.25 bpp model (on the sample images at 64 px): the ACR
    callback's running bpp and alpha after each step."""
    from rtaic import zoo
    from rtaic.training.runner import train

    src = zoo.model_path("rgb_bpp0.25")
    train(train_cfg([
        f"init_from={src}", f"+model.architecture_from={src}", f"target_bpp={target}",
        f"trainer.max_steps={steps}", "trainer.val_check_interval=1000", "data.batch_size=8",
        "model.lr=1e-3",  # a short run: the rate rises only as fast as the network learns
        "+callbacks.trace._target_=probes.BppTrace", "+callbacks.trace.name=trace",
    ]))  # fmt: skip
    return list(probes.RECORDS["trace"])


@pytest.mark.parametrize("start_over_target", [2.0, 0.5])
def test_the_feedback_loop_brings_the_rate_to_the_target(train_cfg, start_over_target):
    """From a start 2x above the target and from one 2x below, the running bpp of a short
    real run ends (mean of its last 100 steps) within 15% of target_bpp."""
    start = _trained_run(train_cfg, 0.25, 1)[0][0]  # the model's rate on the first batch
    target = start / start_over_target
    trace = _trained_run(train_cfg, target, 400)
    assert trace[0][0] == pytest.approx(start, rel=1e-4)  # the same first batch and weights
    end = sum(b for b, _ in trace[-100:]) / 100
    assert abs(end / target - 1) < 0.15, (start, target, end)
    alphas = [a for _, a in trace]
    # alpha moved the way the error says: up while above the target, down while below
    assert (max(alphas[:20]) > 1.0) if start_over_target > 1 else (min(alphas[:20]) < 1.0)


def test_the_callback_steers_the_modules_alpha_from_its_feedback(tmp_path):
    from conftest import module_from_config
    from rtaic.training.module import Feedback

    module = module_from_config(tmp_path, ["target_bpp=0.5"])
    cb = _acr(gain=0.1, momentum=0.5)
    module.feedback = None  # a skipped step: nothing measured, nothing changes
    cb.on_train_batch_end(None, module, None, None, 0)
    assert float(module.acr_alpha) == 1.0 and cb.running_bpp is None
    module.feedback = Feedback(bpp=1.0)  # 2x the module's target
    cb.on_train_batch_end(None, module, None, None, 0)
    assert float(module.acr_alpha) == pytest.approx(math.exp(0.1 * math.log(2)))
    assert cb.running_bpp == 1.0
    module.feedback = Feedback(bpp=0.25)  # running (1 + 0.25) / 2 = 0.625 > 0.5: alpha rises
    cb.on_train_batch_end(None, module, None, None, 0)
    assert cb.running_bpp == pytest.approx(0.625)
    assert float(module.acr_alpha) == pytest.approx(math.exp(0.1 * (math.log(2) + math.log(1.25))), rel=1e-6)


def test_a_run_logs_the_callbacks_alpha_and_running_bpp(train_cfg):
    from rtaic.training.runner import train

    metrics = train(train_cfg())
    ckpt = torch.load(metrics["last_checkpoint"], weights_only=False)
    assert metrics["train/acr_alpha"] == pytest.approx(float(ckpt["state_dict"]["acr_alpha"]))
    assert metrics["train/bpp_running"] == pytest.approx(ckpt["callbacks"]["ACRCallback"]["running_bpp"])
