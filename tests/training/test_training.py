"""Real Lightning training on tiny configs: smoke run, loss falls, NaN steps, resume."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import probes
from conftest import module_from_config
from rtaic.checkpoint import load_networks
from rtaic.training.runner import train


def test_train_smoke_leaves_a_codec_checkpoint(train_cfg, tmp_path):
    metrics = train(train_cfg())
    last = Path(metrics["last_checkpoint"])
    assert last.is_file() and last.parent == tmp_path / "checkpoints"
    nets = load_networks(last)
    assert nets.autoencoder.architecture.latent_channels == round(4 * 0.25 * 64 / 6)
    assert nets.probability_table.shape == (nets.context_model.num_contexts,)
    assert np.isfinite(metrics["train/bpp"]) and metrics["skipped_steps"] == 0


def _one_image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images" / "nested"
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:96, 0:96]
    img = np.stack([xx * 2, yy * 2, (xx + yy)], -1).clip(0, 255).astype(np.uint8)
    Image.fromarray(img).save(folder / "a.png")
    return tmp_path / "images"


def test_loss_falls_in_a_short_run(train_cfg, tmp_path):
    root = _one_image_folder(tmp_path)
    cfg = train_cfg([
        "logger=csv", f"data.root={root}", f"data.val_root={root}", "trainer.max_steps=60",
        "trainer.val_check_interval=60", "data.crops_per_epoch=200", "model.lr=2e-3",
        # the linear low-pass path reproduces these colour ramps from the first step (MS-SSIM
        # 0.74 at init), which leaves nothing to learn: this test watches the deep path learn
        "model.architecture.lowpass=false",
    ])
    train(cfg)
    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    ms = [float(r["train/msssim"]) for r in rows if r.get("train/msssim")]
    assert len(ms) >= 50
    assert np.mean(ms[-10:]) > np.mean(ms[:10]) + 0.05


class _Batches(Dataset):
    def __init__(self, nan_at: set[int], n: int = 4):
        self.nan_at, self.n = nan_at, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(i))
        return x * float("nan") if i in self.nan_at else x


def _module(tmp_path, **kw):
    arch = ["model.architecture.channels=[4,8,8,8,8,8]", "model.architecture.align_channels=8"]
    return module_from_config(tmp_path, arch, **kw)


def _fit(module, dataset, **trainer_kw):
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, **trainer_kw)
    trainer.fit(module, DataLoader(dataset, batch_size=1))
    return trainer


def test_nan_batches_skip_the_step_and_leave_weights_untouched(tmp_path):
    module = _module(tmp_path)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    _fit(module, _Batches(nan_at={0, 1, 2, 3}))
    assert int(module.skipped_steps) == 4
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k != "skipped_steps")


def test_a_nan_batch_among_good_ones_is_counted_and_training_goes_on(tmp_path):
    module = _module(tmp_path)
    trainer = _fit(module, _Batches(nan_at={1}))
    assert int(module.skipped_steps) == 1 and trainer.global_step == 3
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_a_non_finite_gradient_of_a_finite_loss_skips_the_step(tmp_path):
    module = _module(tmp_path)
    weight = module.autoencoder.decoder.out.weight
    poisoned = {"steps": 0}

    def nan_once(grad):  # the first step's gradient only
        poisoned["steps"] += 1
        return grad * float("nan") if poisoned["steps"] == 1 else grad

    weight.register_hook(nan_once)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = _fit(module, _Batches(nan_at=set(), n=1))
    assert poisoned["steps"] == 1 and int(module.skipped_steps) == 1 and trainer.global_step == 0
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k != "skipped_steps")
    assert module.feedback is None  # the controllers get nothing from a skipped step
    trainer = _fit(module, _Batches(nan_at=set(), n=1))  # the next step trains
    assert trainer.global_step == 1 and int(module.skipped_steps) == 1
    assert not torch.equal(before["autoencoder.decoder.out.weight"], module.autoencoder.decoder.out.weight)


def test_persistent_divergence_stops_training(tmp_path):
    module = _module(tmp_path, max_consecutive_skips=2)
    with pytest.raises(FloatingPointError, match="diverged"):
        _fit(module, _Batches(nan_at={0, 1, 2, 3}))


def test_resume_continues_from_last_checkpoint(train_cfg, tmp_path):
    first = train(train_cfg())
    ckpt = torch.load(first["last_checkpoint"], weights_only=False)
    alpha = float(ckpt["state_dict"]["acr_alpha"])
    running = ckpt["callbacks"]["ACRCallback"]["running_bpp"]
    assert alpha != 1.0 and running > 0  # the ACR callback moved alpha and measured the rate
    probe = ["+callbacks.start._target_=probes.StartState", "+callbacks.start.name=start"]
    second = train(train_cfg([f"ckpt_path={first['last_checkpoint']}", "trainer.max_steps=6"] + probe))
    # the resumed run starts from the saved alpha and running bpp, at the saved step
    assert probes.RECORDS["start"] == [pytest.approx(alpha), pytest.approx(running), 4]
    resumed = torch.load(second["last_checkpoint"], weights_only=False)
    assert resumed["global_step"] == 6 and ckpt["global_step"] == 4
    # the probe tells a fresh start apart: alpha 1, no running bpp, step 0
    fresh = train(train_cfg(["trainer.max_steps=2"] + probe))
    assert probes.RECORDS["start"] == [1.0, None, 0] and fresh["skipped_steps"] == 0
