"""What a checkpoint must carry to rebuild the codec without the training stack.

A Lightning checkpoint of the training module is a dict; besides Lightning's own keys it
holds ``checkpoint["rtaic"]`` (plain types only, no pickled classes):

    {"format": 1,
     "architecture": Architecture.to_dict(),
     "probability_table": [int, ...]}      # BitContextModel.probability_table()

and in ``checkpoint["state_dict"]`` the weights under the prefixes ``autoencoder.`` and
``context_model.`` (other prefixes, such as ``discriminator.``, are ignored here).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from rtaic.coding.context import BitContextModel
from rtaic.nn.autoencoder import Architecture, Autoencoder

FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or not an rtaic model."""


def codec_record(autoencoder: Autoencoder, context_model: BitContextModel) -> dict:
    """The ``checkpoint["rtaic"]`` entry for these networks."""
    return {
        "format": FORMAT,
        "architecture": autoencoder.architecture.to_dict(),
        "probability_table": context_model.probability_table().tolist(),
    }


@dataclass
class CodecNetworks:
    autoencoder: Autoencoder
    context_model: BitContextModel
    probability_table: np.ndarray  # int64, units of 2**-16
    acr_alpha: float | None = None  # the trained ACR coefficient, when recorded (refinement)


def _sub_state(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def load_networks(path: str | os.PathLike) -> CodecNetworks:
    """Rebuild the autoencoder and bit-probability model from a training checkpoint."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from e
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save: a zip, or a legacy pickle
        raise CheckpointError(f"{path} is not a model checkpoint (a .ckpt file written by "
                              "torch.save; or give a bundled model's name)")  # fmt: skip
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from e
    record = ckpt.get("rtaic") if isinstance(ckpt, dict) else None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an rtaic checkpoint (format {FORMAT})")
    try:
        arch = Architecture.from_dict(record["architecture"])
        autoencoder = Autoencoder(arch)
        context_model = BitContextModel(arch.latent_channels, arch.bits)
        state = ckpt["state_dict"]
        autoencoder.load_state_dict(_sub_state(state, "autoencoder."))
        context_model.load_state_dict(_sub_state(state, "context_model."))
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"{path}: not a usable rtaic checkpoint: {first}") from e
    table = np.asarray(record["probability_table"], dtype=np.int64)
    if table.shape != (context_model.num_contexts,):
        raise CheckpointError(f"{path}: probability table has the wrong size")
    alpha = state.get("acr_alpha")
    alpha = float(alpha) if isinstance(alpha, torch.Tensor) and alpha.numel() == 1 else None
    return CodecNetworks(autoencoder.eval(), context_model.eval(), table, alpha)


def export_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> CodecNetworks:
    """Write only what the codec needs (weights of the autoencoder and context model, and
    the record) from a training checkpoint: no optimizer state, no discriminator.

    The ACR coefficient ``acr_alpha`` goes along (the codec reads it only to refine latents,
    rtaic.coding.refine): training that
    starts again from the export (the model zoo on a new machine) would otherwise restart
    it at 1.0, some 30-100x the trained value, and the rate and quality collapse within
    a hundred steps before the feedback loop catches up."""
    nets = load_networks(src)
    state = {f"autoencoder.{k}": v for k, v in nets.autoencoder.state_dict().items()}
    state |= {f"context_model.{k}": v for k, v in nets.context_model.state_dict().items()}
    if nets.acr_alpha is not None:
        state["acr_alpha"] = torch.tensor(nets.acr_alpha)
    record = {
        "format": FORMAT,
        "architecture": nets.autoencoder.architecture.to_dict(),
        "probability_table": nets.probability_table.tolist(),
    }
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    torch.save({"state_dict": state, "rtaic": record}, dst)
    return nets
