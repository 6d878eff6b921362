"""The GAN inside the training module, on tiny Hydra configs: it runs, checkpoints D, its
optimizer and the schedule, and a resume continues in the same gate state."""

from __future__ import annotations

import pytest
import torch

from rtaic.checkpoint import load_networks
from rtaic.training.adversarial import AdversarialConfig
from rtaic.training.runner import train

TINY_GAN = [
    "+discriminator=multiscale",
    "model.adversarial.width=4",
    "model.adversarial.depth=2",
    "model.adversarial.start_step=2",
]
# lower=0, upper=1: every GAN step is in the alternate band, so the D/G turn is observable
ALWAYS_ALTERNATE = ["model.adversarial.lower=0.0", "model.adversarial.upper=1.0"]


def test_gan_is_off_by_default_and_on_with_the_additive_override(train_cfg):
    assert train_cfg().model.get("adversarial") is None
    on = train_cfg(["+discriminator=multiscale"]).model.adversarial
    assert AdversarialConfig(**on).upper == 0.95


def test_gan_run_checkpoints_discriminator_optimizer_and_schedule(train_cfg, tmp_path):
    metrics = train(train_cfg(TINY_GAN + ALWAYS_ALTERNATE + ["trainer.max_steps=6"]))
    ckpt = torch.load(metrics["last_checkpoint"], weights_only=True)
    assert ckpt["global_step"] == 6  # D's optimizer steps are not counted
    assert any(k.startswith("discriminator.") for k in ckpt["state_dict"])
    assert len(ckpt["optimizer_states"]) == 2 and len(ckpt["lr_schedulers"]) == 2
    schedule = ckpt["rtaic_adversarial"]
    assert sum(schedule["counts"]) == 4 == schedule["accuracy"]["updates"]  # from step 2 on
    assert metrics["skipped_steps"] == 0 and torch.isfinite(torch.tensor(metrics["train/bpp"]))
    load_networks(metrics["last_checkpoint"])  # the codec ignores D
    # the last step (5) was a confusion step: balanced at x_hat, D untouched
    assert schedule["counts"] == [0, 4, 0] and metrics["train/d_step"] == 0
    applied = metrics["train/adv_scale"] * metrics["train/grad_adv_norm"]
    assert applied == pytest.approx(0.2 * metrics["train/grad_rec_norm"], rel=1e-4)
    assert metrics["train/grad_rec_norm"] > 0 and metrics["train/d_grad_norm"] == 0


def test_resume_continues_in_the_same_gate_state(train_cfg):
    gan = TINY_GAN + ALWAYS_ALTERNATE + ["model.adversarial.start_step=3"]
    first = train(train_cfg(gan + ["trainer.max_steps=6"]))
    before = torch.load(first["last_checkpoint"], weights_only=True)
    saved = before["rtaic_adversarial"]
    # GAN steps 3, 4, 5 took turns D, G, D -> the next turn is G's
    assert saved["counts"] == [0, 3, 0] and saved["discriminator_turn"] is False

    resume = [f"ckpt_path={first['last_checkpoint']}", "trainer.max_steps=8"]
    second = train(train_cfg(gan + resume))
    after = torch.load(second["last_checkpoint"], weights_only=True)
    resumed = after["rtaic_adversarial"]
    # steps 6, 7 continue with G, D; a fresh schedule would have run D, G from count 0
    assert resumed["counts"] == [0, 5, 0] and resumed["discriminator_turn"] is False
    assert resumed["accuracy"]["updates"] == 5
    m = 0.8
    a = resumed["accuracy"]["value"]
    # a = m^2 a_saved + (1 - m)(m b_6 + b_7) with batch accuracies b in {0, .5, 1}
    rest = (a - m * m * saved["accuracy"]["value"]) / (1 - m)
    assert any(abs(rest - (m * b6 + b7)) < 1e-5 for b6 in (0, 0.5, 1) for b7 in (0, 0.5, 1))
    # D and its optimizer came back from the checkpoint: one more D step on top
    steps = lambda c: {int(v["step"]) for v in c["optimizer_states"][1]["state"].values()}  # noqa: E731
    assert steps(before) == {2} and steps(after) == {3}


@pytest.mark.slow
def test_two_process_cpu_ddp_gan_run_keeps_ranks_in_step(tmp_path):
    """The GAN step (one backward per step, D idle in some steps) runs under 2-process DDP.
    Gate decisions agree across ranks because D's batch accuracy is averaged over them."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "RTAIC_OUTPUTS": str(tmp_path), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "train.py", "debug=fast", "model=rtaic_small", "trainer=ddp",
        "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_steps=6",
        "trainer.val_check_interval=3",
        "data.crop_size=64", "data.val_crop_size=64", *TINY_GAN,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (ckpt,) = tmp_path.rglob("last.ckpt")
    state = torch.load(ckpt, weights_only=True)
    assert state["global_step"] == 6 and sum(state["rtaic_adversarial"]["counts"]) == 4
