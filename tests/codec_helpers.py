"""Test helpers for the codec: tiny untrained checkpoints in the real checkpoint layout.

Imported by tests/coding, tests/test_codec.py and tests/test_cli.py (tests/ is on sys.path
through tests/conftest.py). Untrained weights are enough: the codec must be exact for any
weights; the context logits are randomised so that the probabilities are non-trivial.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rtaic.checkpoint import codec_record
from rtaic.coding.context import BitContextModel
from rtaic.nn.autoencoder import Architecture, Autoencoder

# 3 scales, stride 8, 4 latent channels: a 48x40 image takes milliseconds.
TINY = Architecture(channels=(8, 12, 16), align_channels=16, latent_channels=4, bits=5, lowpass=True)


def make_checkpoint(path: Path, arch: Architecture = TINY, seed: int = 0) -> Path:
    """Write a checkpoint as the training system does (state_dict prefixes + rtaic record)."""
    torch.manual_seed(seed)
    ae = Autoencoder(arch)
    cm = BitContextModel(arch.latent_channels, arch.bits)
    with torch.no_grad():
        for p in ae.parameters():  # larger weights: latents that use several planes
            p.mul_(3.0)
        cm.logits.copy_(torch.randn_like(cm.logits) * 2.0)
    state = {f"autoencoder.{k}": v for k, v in ae.state_dict().items()}
    state.update({f"context_model.{k}": v for k, v in cm.state_dict().items()})
    ckpt = {
        "epoch": 0,  # some of Lightning's own keys, as plain types; the codec ignores them
        "global_step": 1,
        "hyper_parameters": {"architecture": arch.to_dict(), "target_bpp": 0.25},
        "state_dict": state,
        "rtaic": codec_record(ae, cm),
    }
    torch.save(ckpt, path)
    return path


def photo(width: int = 48, height: int = 40, seed: int = 0) -> Image.Image:
    """A smooth RGB test image with some texture (not noise, not flat)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / max(width, 1), yy / max(height, 1), 0.5 + 0.3 * np.sin(xx / 3)], -1)
    img = np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1)
    return Image.fromarray((img * 255).round().astype(np.uint8))
