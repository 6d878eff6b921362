"""The GAN through the training module and its gate, on tiny Hydra configs: the gate's
three states do what they say to the weights, the confusion gradient reaches the
autoencoder, D and the gate are checkpointed and a resume continues in the same state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import probes
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
ALWAYS_ALTERNATE = ["callbacks.adversarial_gate.lower=0.0", "callbacks.adversarial_gate.upper=1.0"]
GATE = "AdversarialGate"


def _probe(name: str, cls: str, **kw) -> list[str]:
    out = [f"+callbacks.{name}._target_=probes.{cls}", f"+callbacks.{name}.name={name}"]
    return out + [f"+callbacks.{name}.{k}={v}" for k, v in kw.items()]


def test_gan_is_off_by_default_and_on_with_the_additive_override(train_cfg):
    plain = train_cfg()
    assert plain.model.get("adversarial") is None and "adversarial_gate" not in plain.callbacks
    assert plain.model._target_ == "rtaic.training.module.RTAICModule"
    on = train_cfg(["+discriminator=multiscale"])
    assert on.model._target_ == "rtaic.training.adversarial_module.AdversarialRTAICModule"
    assert AdversarialConfig(**on.model.adversarial).start_step == 5000
    gate = on.callbacks.adversarial_gate
    assert (gate.lower, gate.upper, gate.momentum) == (0.8, 0.95, 0.8)  # the paper's values
    gan = train_cfg(["experiment=gan"])  # warm-started: the GAN starts at once
    assert gan.model.adversarial.start_step == 0 and gan.model.adversarial.width == 16


def test_each_gate_state_does_what_it_says_to_the_weights(train_cfg):
    # running accuracy forced before each GAN step (steps 1-6): D only, D only, alternate
    # (D's turn first, then G's), G only, G only
    plan = [0.1, 0.1, 0.9, 0.9, 0.99, 0.99]
    cfg = train_cfg(TINY_GAN + ["model.adversarial.start_step=1", "trainer.max_steps=7"]
                    + _probe("gate_steps", "GateSteps", accuracies=str(plan).replace(" ", "")))
    metrics = train(cfg)
    steps = probes.RECORDS["gate_steps"]
    assert [s["state"] for s in steps] == [None, 0, 0, 1, 1, 2, 2]
    assert metrics["skipped_steps"] == 0
    for s in steps:
        d_only = s["state"] == 0 or (s["state"] == 1 and s["step"] == 3)  # D's alternate turn
        if s["state"] is None:  # before start_step: the autoencoder alone
            assert s["autoencoder_changed"] and not s["discriminator_changed"], s
        elif d_only:
            assert not s["autoencoder_changed"] and s["discriminator_changed"], s
        else:  # G's turn, or the generator-only state
            assert s["autoencoder_changed"] and not s["discriminator_changed"], s
    ckpt = torch.load(metrics["last_checkpoint"], weights_only=True)
    assert ckpt["callbacks"][GATE]["counts"] == [2, 2, 2]


def _generator_only_run(train_cfg, ratio: float) -> dict:
    cfg = train_cfg(TINY_GAN + [
        "model.adversarial.start_step=0", "trainer.max_steps=2", f"model.adversarial.balance_ratio={ratio}",
        "callbacks.adversarial_gate.lower=0.0", "callbacks.adversarial_gate.upper=0.1",  # a = 0.5 > U
    ])  # fmt: skip
    metrics = train(cfg)
    state = torch.load(metrics["last_checkpoint"], weights_only=True)["state_dict"]
    return metrics, {k: v for k, v in state.items() if k.startswith("autoencoder.")}


def test_the_balanced_confusion_gradient_reaches_the_autoencoder(train_cfg):
    with_confusion, ae = _generator_only_run(train_cfg, 0.2)
    without, ae_plain = _generator_only_run(train_cfg, 0.0)
    # the same seed, data and pairs: only the confusion term differs
    assert with_confusion["train/adv_scale"] > 0 and without["train/adv_scale"] == 0
    assert with_confusion["train/grad_adv_norm"] > 0
    assert any(not torch.equal(ae[k], ae_plain[k]) for k in ae)


def test_gan_run_checkpoints_discriminator_optimizer_and_schedule(train_cfg):
    metrics = train(train_cfg(TINY_GAN + ALWAYS_ALTERNATE + ["trainer.max_steps=6"]))
    ckpt = torch.load(metrics["last_checkpoint"], weights_only=True)
    assert ckpt["global_step"] == 6  # D's optimizer steps are not counted
    assert any(k.startswith("discriminator.") for k in ckpt["state_dict"])
    assert len(ckpt["optimizer_states"]) == 2 and len(ckpt["lr_schedulers"]) == 2
    schedule = ckpt["callbacks"][GATE]
    # GAN steps 2-5 alternate D, G, D, G: two D steps, and the next turn is D's
    assert schedule["counts"] == [0, 4, 0] and schedule["accuracy"]["updates"] == 4
    assert schedule["discriminator_turn"] is True
    steps = {int(v["step"]) for v in ckpt["optimizer_states"][1]["state"].values()}
    assert steps == {2}  # D's Adam stepped twice
    assert metrics["skipped_steps"] == 0 and torch.isfinite(torch.tensor(metrics["train/bpp"]))
    nets = load_networks(metrics["last_checkpoint"])  # the codec ignores D
    assert not any("discriminator" in k for k in nets.autoencoder.state_dict())


def test_resume_continues_in_the_same_gate_state(train_cfg):
    gan = TINY_GAN + ALWAYS_ALTERNATE + ["model.adversarial.start_step=3"]
    first = train(train_cfg(gan + ["trainer.max_steps=6"]))
    before = torch.load(first["last_checkpoint"], weights_only=True)
    saved = before["callbacks"][GATE]
    # GAN steps 3, 4, 5 took turns D, G, D -> the next turn is G's
    assert saved["counts"] == [0, 3, 0] and saved["discriminator_turn"] is False

    resume = [f"ckpt_path={first['last_checkpoint']}", "trainer.max_steps=8"]
    second = train(train_cfg(gan + resume))
    after = torch.load(second["last_checkpoint"], weights_only=True)
    resumed = after["callbacks"][GATE]
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


def test_a_checkpoint_from_before_the_gate_was_a_callback_resumes_its_state(train_cfg, tmp_path):
    first = train(train_cfg(TINY_GAN + ALWAYS_ALTERNATE + ["trainer.max_steps=5"]))
    old = torch.load(first["last_checkpoint"], weights_only=True)
    old["rtaic_adversarial"] = old["callbacks"].pop(GATE)  # the layout of older checkpoints
    path = tmp_path / "old.ckpt"
    torch.save(old, path)
    second = train(train_cfg(TINY_GAN + ALWAYS_ALTERNATE + [f"ckpt_path={path}", "trainer.max_steps=6"]))
    resumed = torch.load(second["last_checkpoint"], weights_only=True)["callbacks"][GATE]
    assert resumed["counts"] == [0, 4, 0]  # 3 restored + 1, not 1 from a fresh gate


def test_two_process_cpu_ddp_gan_run_keeps_ranks_in_step(tmp_path):
    """Under 2-process DDP every rank takes the same gate decisions and ACR weights: the
    controllers are fed D's accuracy and the code length averaged over the ranks (each
    rank sees other crops). Also the plain DDP smoke test: a codec checkpoint comes out."""
    root = Path(__file__).resolve().parents[2]
    tests = Path(__file__).resolve().parents[1]
    env = {**os.environ, "RTAIC_OUTPUTS": str(tmp_path), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    cmd = [
        sys.executable, "train.py", "debug=fast", "model=rtaic_small", "trainer=ddp",
        "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_steps=6",
        "trainer.val_check_interval=3", "data.crop_size=64", "data.val_crop_size=64",
        *TINY_GAN, "+callbacks.rank_log._target_=probes.RankLog", f"+callbacks.rank_log.out={tmp_path}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (ckpt,) = tmp_path.rglob("last.ckpt")
    state = torch.load(ckpt, weights_only=True)
    assert state["global_step"] == 6 and state["rtaic"]["format"] == 1
    assert sum(state["callbacks"][GATE]["counts"]) == 4
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert len(rank0) == len(rank1) == 6
    assert rank0 == rank1  # alpha, decision and the averaged measurements, step by step
    assert all(s["decision"] is not None for s in rank0[2:]) and len({s["alpha"] for s in rank0}) > 1


def test_a_warm_started_gan_run_exports_a_codec_only_model_with_the_same_bytes(train_cfg, tmp_path):
    from codec_helpers import photo
    from rtaic.cli import main as cli
    from rtaic.codec import load_codec

    plain = train(train_cfg(["trainer.max_steps=3"]))
    init = tmp_path / "plain.ckpt"  # (the GAN run writes its checkpoints in the same folder)
    Path(plain["last_checkpoint"]).rename(init)
    gan = train(train_cfg([
        "experiment=gan", "target_bpp=0.25", f"init_from={init}", "trainer.max_steps=3",
        "model.adversarial.width=4", "model.adversarial.depth=2", *_probe("start", "StartWeights"),
    ]))  # fmt: skip
    # the GAN run started from the plain model's weights (and a fresh discriminator)
    source = torch.load(init, weights_only=True)["state_dict"]
    start = probes.RECORDS["start"]
    assert all(torch.equal(start[k], v) for k, v in source.items() if k.startswith(("autoencoder.", "context_model.")))
    assert any(k.startswith("discriminator.") for k in start)
    trained = torch.load(gan["last_checkpoint"], weights_only=True)
    assert trained["optimizer_states"] and trained["callbacks"][GATE]["counts"] != [0, 0, 0]

    exported = tmp_path / "gan.ckpt"
    assert cli(["export", gan["last_checkpoint"], "-o", str(exported)]) == 0
    small = torch.load(exported, weights_only=True)
    assert set(small) == {"state_dict", "rtaic"}  # no optimizer, scheduler, callback state
    assert not any(k.startswith("discriminator.") for k in small["state_dict"])
    assert {k: v for k, v in trained["state_dict"].items() if not k.startswith("discriminator.")}.keys() >= small["state_dict"].keys()
    image = photo(48, 40)
    full, codec = load_codec(gan["last_checkpoint"]), load_codec(exported)
    data = full.compress(image)
    assert codec.compress(image) == data and codec.fingerprint == full.fingerprint
    assert codec.decompress(data).tobytes() == full.decompress(data).tobytes()
