"""Shared fixtures: the real Hydra config composed for tiny CPU runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Tests that start train.py or eval.py in a subprocess test the package of this tree (under
# mutmut, the mutated copy in mutants/src), not whatever the environment has installed.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p
)

TINY_OVERRIDES = [
    "model=rtaic_small",
    "logger=none",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "data.crops_per_epoch=16",
    "data.crop_size=64",
    "data.val_crop_size=64",
]


def compose_train(tmp_path: Path, overrides: list[str] | None = None):
    """Compose conf/train.yaml with overrides, as Hydra would for a job in tmp_path."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=TINY_OVERRIDES + (overrides or []),
                      return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg


@pytest.fixture
def train_cfg(tmp_path):
    return lambda overrides=None: compose_train(tmp_path, overrides)


def module_from_config(tmp_path: Path, overrides: list[str] | None = None, **kwargs):
    """The training module as the real config builds it (``model.*`` keys from conf/),
    with ``kwargs`` replacing constructor arguments."""
    from hydra.utils import instantiate

    return instantiate(compose_train(tmp_path, overrides).model, **kwargs)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny untrained checkpoint in the real layout (codec_helpers.make_checkpoint)."""
    from codec_helpers import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="module")
def codec(ckpt):
    from rtaic.codec import load_codec

    return load_codec(ckpt)
