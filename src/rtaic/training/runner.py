"""Builds everything a training job needs from a composed Hydra config and runs it.

The entry point ``train.py`` only composes the config; this keeps the job testable with
``hydra.compose`` (tests call :func:`train` directly).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rtaic.color import from_space, to_space

log = logging.getLogger(__name__)


def _group_name() -> str | None:
    """The sweep (multirun) or run folder name: W&B groups the runs of one sweep."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    folder = hc.sweep.dir if hc.mode == RunMode.MULTIRUN else hc.run.dir
    return Path(folder).name


def _instantiate_all(node: DictConfig | None, **kwargs) -> list:
    if not node:
        return []
    return [instantiate(v, **kwargs) for v in node.values() if v is not None and "_target_" in v]


def _kept_latent_channels(source: dict, width: int) -> torch.Tensor | None:
    """When the target's latent is narrower: the source channels its decoder reads most
    (norm of the weights that read each channel), in their original order; else None."""
    read = source.get("autoencoder.decoder.joint.0.weight")
    if read is None or read.shape[1] <= width:
        return None
    strength = _per_latent_channel("decoder.joint.0.weight", read).flatten(1).norm(dim=1)
    low = source.get("autoencoder.decoder.lowpass.weight")
    if low is not None:
        strength = strength + _per_latent_channel("decoder.lowpass.weight", low).flatten(1).norm(dim=1)
    return strength.argsort(descending=True)[:width].sort().values


def _per_latent_channel(name: str, weight: torch.Tensor) -> torch.Tensor:
    """A decoder weight that reads the latent, as a view with the latent channels first:
    Conv2d weights keep them in dimension 1, the linear path's patch form (a transposed
    conv, the one latent reader with kernels wider than 1x1 there) in dimension 0."""
    patch = name.endswith("decoder.lowpass.weight") and weight.shape[-1] > 1
    return weight if patch else weight.transpose(0, 1)


def lowpass_as_patch(name: str, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """A low-pass path's 1x1 weight as the patch form's weight that computes the same:
    the encoder's average over a stride x stride cell is a constant kernel of 1/stride^2;
    the decoder's bilinear upsampling of a 1x1 conv is a transposed conv whose 2*stride
    taps are the triangle 1 - |t + 1/2 - stride| / stride (see Decoder.linear)."""
    if "decoder." not in name:  # (careful: "autoencoder.decoder." contains "encoder.")
        return weight.expand(-1, -1, stride, stride) / stride**2
    t = torch.arange(2 * stride, dtype=weight.dtype)
    tri = 1 - (t + 0.5 - stride).abs() / stride
    return weight[..., 0, 0].transpose(0, 1)[:, :, None, None] * (tri[:, None] * tri[None, :])


# Latent-width tensors of the autoencoder: (name, dimension of the latent channels). A wider
# target duplicates source channels along these (see warm_start_state, widen="duplicate").
_LATENT_WRITERS = ("autoencoder.encoder.joint.", "autoencoder.encoder.lowpass.")
_LATENT_READERS = ("autoencoder.decoder.joint.0.weight", "autoencoder.decoder.lowpass.weight")


# The layers that read the image or paint the output: a change of the network's colour
# space is an affine map on their channel axis, folded into their weights and biases.
_IMAGE_READERS = ("autoencoder.encoder.lowpass", "autoencoder.encoder.down.0.0", "autoencoder.encoder.extract.0.0")
_IMAGE_WRITERS = ("autoencoder.decoder.out", "autoencoder.decoder.lowpass")


def _affine_between(source: str, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, p) with x_source = P x_target + p for images in the named colour spaces."""
    basis = torch.cat([torch.zeros(1, 3), torch.eye(3)]).to(torch.float64).view(4, 3, 1, 1)
    mapped = to_space(from_space(basis, target), source).view(4, 3)  # target -> RGB -> source
    offset = mapped[0]
    return (mapped[1:] - offset).T, offset


def state_in_color_space(state: dict, source: str, target: str) -> dict:
    """A model's state rewritten to work in another colour space and compute the same.

    The network reads and paints images in its colour space; an RGB model becomes a YCbCr
    one (or back) by folding the affine colour map into the first layers that read the
    image and the last ones that paint it. Exact except where a convolution's zero
    padding reads beyond the image border (the padded zeros mean another colour there),
    so a YCbCr model can start from a better-trained RGB one at its quality.
    """
    if source == target:
        return dict(state)
    P, p = _affine_between(source, target)  # x_source = P x_target + p
    Q, q = _affine_between(target, source)  # x_target = Q x_source + q
    centre = torch.full((3,), 0.5, dtype=torch.float64)  # the linear path reads image - 0.5
    out = dict(state)
    for layer in _IMAGE_READERS:
        w, b = state.get(f"{layer}.weight"), state.get(f"{layer}.bias")
        if w is None:
            continue
        w64 = w.to(torch.float64)
        shift = p - centre + P @ centre if layer.endswith("lowpass") else p
        out[f"{layer}.weight"] = torch.einsum("ojhw,ji->oihw", w64, P).to(w.dtype)
        out[f"{layer}.bias"] = (b.to(torch.float64) + torch.einsum("ojhw,j->o", w64, shift)).to(b.dtype)
    for layer in _IMAGE_WRITERS:
        w, b = state.get(f"{layer}.weight"), state.get(f"{layer}.bias")
        if w is None:
            continue
        w64 = w.to(torch.float64)
        if layer.endswith("lowpass") and w.shape[-1] > 1:  # the patch form, transposed: (in, out, k, k)
            out[f"{layer}.weight"] = torch.einsum("ij,cjhw->cihw", Q, w64).to(w.dtype)
            out[f"{layer}.bias"] = (Q @ b.to(torch.float64)).to(b.dtype)
            continue
        out[f"{layer}.weight"] = torch.einsum("ij,jchw->ichw", Q, w64).to(w.dtype)
        bias = Q @ b.to(torch.float64)
        if layer.endswith(".out"):  # the decoder adds 0.5 after this layer
            bias = bias + Q @ centre + q - centre
        out[f"{layer}.bias"] = bias.to(b.dtype)
    return out


def _duplicate_channels(state: dict, source: dict, width: int, noise: float, seed: int) -> list[str]:
    """Fill latent channels n..width of ``state`` with copies of the source's most read
    channels (net2wider). The encoder rows are copied, plus ``noise`` x their mean
    magnitude to break the symmetry; each original's decoder weights are shared equally
    by it and its copies, so while the copies' q equal the originals' the model computes
    what the source did. Returns the names changed."""
    read = source["autoencoder.decoder.joint.0.weight"]
    n = read.shape[1]
    order = read.transpose(0, 1).flatten(1).norm(dim=1).argsort(descending=True)
    picks = [int(order[k % n]) for k in range(width - n)]  # copy j = n + k of channel picks[k]
    shares = {i: 1 + picks.count(i) for i in set(picks)}
    g = torch.Generator().manual_seed(seed)
    changed = []
    for name in source:  # the source's values are in state's first n channels by now
        t = state.get(name)
        if t is None:
            continue
        if name.startswith(_LATENT_WRITERS) and source[name].shape[0] == n and t.shape[0] == width:
            for k, i in enumerate(picks):
                row = t[i].clone()
                t[n + k] = row + noise * row.abs().mean() * torch.randn(row.shape, generator=g)
            changed.append(name)
        elif name in _LATENT_READERS:
            t = _per_latent_channel(name, t)  # a view: writing it writes state
            if _per_latent_channel(name, source[name]).shape[0] != n or t.shape[0] != width:
                continue
            s = t[:n].clone()
            for i, c in shares.items():
                t[i] = s[i] / c
            for k, i in enumerate(picks):
                t[n + k] = s[i] / shares[i]
            changed.append(name)
    return changed


def warm_start_state(
    source: dict,
    target: dict,
    widen: str = "zero",
    seed: int = 0,
    transposed: frozenset[str] | set[str] = frozenset(),
) -> tuple[dict, list[str]]:
    """The target's state with every tensor it shares with ``source`` copied over.

    This is how a model starts from another one of a different rate or design (a rate
    ladder; plain -> GAN; a model without the low-pass path -> one with it):
    - same name and shape: copied;
    - same name, shapes differing in one dimension (the latent width of another rate): a
      wider target gets the source's channels first and keeps its fresh initialisation
      for the rest, except weights that read the extra channels, which start at zero (the
      model then computes what the source did); a narrower one keeps the channels the
      source's decoder reads most;
    - same name, target at least as large in every dimension (a wider design: more
      channels per scale, a wider joint): the source fills the leading slice, the fresh
      output channels keep their initialisation and the weights that read the fresh input
      channels start at zero, so the wider model computes what the source did (net2wider
      with zero reads). ``transposed`` names the ConvTranspose2d weights, whose input
      channels are dimension 0 (dimension 1 for every other weight);
    - autoencoder tensors the source lacks (layers added to a path) start at zero, so
      the warm-started model computes what the source computed;
    - the context model's table is copied only whole (its layout follows the width).
    ``widen="duplicate"`` fills a wider latent with copies of the source's most read
    channels instead (see _duplicate_channels): the fresh channels of "zero" start as
    noise that costs bits and that the decoder has yet to learn to read.
    Returns the new state and the names not copied whole.
    """
    if widen not in ("zero", "duplicate"):
        raise ValueError(f"widen must be 'zero' or 'duplicate', got {widen!r}")
    state = {k: v.clone() for k, v in target.items()}
    width = target.get("autoencoder.decoder.joint.0.weight")
    kept = _kept_latent_channels(source, width.shape[1]) if width is not None else None
    partial = []
    for name, t in target.items():
        s = source.get(name)
        if s is not None and s.shape == t.shape:
            state[name] = s.to(t.dtype)
            continue
        partial.append(name)
        if s is not None and ".lowpass.weight" in name and s.shape[-1] == 1 and t.shape[-1] > 1:
            stride = t.shape[-1] // 2 if "decoder." in name else t.shape[-1]
            s = lowpass_as_patch(name, s, stride)  # the low-pass path -> its patch form
            if s.shape == t.shape:
                state[name] = s.to(t.dtype).contiguous()
                continue
        if s is None:
            if name.startswith("autoencoder.") and t.is_floating_point():
                state[name] = torch.zeros_like(t)
            continue
        differ = [d for d in range(t.dim()) if s.dim() == t.dim() and s.shape[d] != t.shape[d]]
        if not differ or not name.startswith("autoencoder."):
            continue
        if len(differ) == 1 and s.shape[differ[0]] > t.shape[differ[0]]:
            d = differ[0]
            picked = kept if kept is not None and len(kept) == t.shape[d] else torch.arange(t.shape[d])
            state[name] = s.index_select(d, picked).to(t.dtype)
            continue
        if any(s.shape[d] > t.shape[d] for d in differ):
            continue  # narrower in one dimension and wider in another: keep the fresh one
        reads = 0 if name in transposed else 1
        if t.dim() > 1 and t.shape[reads] > s.shape[reads]:  # reads channels the source lacks
            state[name].narrow(reads, s.shape[reads], t.shape[reads] - s.shape[reads]).zero_()
        leading = state[name]
        for d in differ:
            leading = leading.narrow(d, 0, s.shape[d])
        leading.copy_(s)
    wide = width is not None and "autoencoder.decoder.joint.0.weight" in source
    if widen == "duplicate" and wide and source["autoencoder.decoder.joint.0.weight"].shape[1] < width.shape[1]:
        _duplicate_channels(state, source, width.shape[1], noise=1e-2, seed=seed)
    return state, partial


def _color_space_of(checkpoint: dict) -> str | None:
    """The colour space a training or exported checkpoint's network works in."""
    for record in (checkpoint.get("rtaic"), checkpoint.get("hyper_parameters")):
        if isinstance(record, dict) and isinstance(record.get("architecture"), dict):
            return record["architecture"].get("color_space", "rgb")
    return None


def load_warm_start(model: pl.LightningModule, path: str, widen: str = "zero", seed: int = 0) -> None:
    """Initialise weights from another checkpoint (see :func:`warm_start_state`)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    source = checkpoint["state_dict"]
    space = _color_space_of(checkpoint)
    target_space = model.architecture.color_space if hasattr(model, "architecture") else space
    if space is not None and target_space is not None and space != target_space:
        source = state_in_color_space(source, space, target_space)
        log.info("warm start: %s model rewritten to work in %s", space, target_space)
    transposed = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.ConvTranspose2d)}
    state, partial = warm_start_state(source, model.state_dict(), widen, seed, transposed)
    model.load_state_dict(state)
    log.info("warm start from %s (%d tensors not copied whole: %s)", path, len(partial), partial)


def train(cfg: DictConfig) -> dict:
    """Fit the model; returns the final callback metrics as floats."""
    pl.seed_everything(cfg.seed, workers=True)
    if not cfg.get("cpu_onednn", True):
        # oneDNN (mkldnn) runs the networks' convolutions ~3x faster than PyTorch's own CPU
        # kernels here; the MS-SSIM filter, which it runs badly, is kept off it in
        # rtaic.metrics whatever this says. Off: benchmarks/train_throughput.py --no-onednn.
        torch.backends.mkldnn.enabled = False
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    if cfg.get("init_from"):
        load_warm_start(model, cfg.init_from, cfg.get("init_widen", "zero"), cfg.seed)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    group = _group_name()
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        extra = {"group": group} if name == "wandb" and group else {}
        loggers.append(instantiate(node, **extra))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    finally:
        if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
            import wandb

            wandb.finish()
            # finish() can return before the offline run's transaction log is flushed
            # (seen in CI: a header-only .wandb file); teardown waits for the writer.
            wandb.teardown()
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics["skipped_steps"] = int(model.skipped_steps)
    ckpt_cb = trainer.checkpoint_callback
    if ckpt_cb is not None:
        metrics["last_checkpoint"] = getattr(ckpt_cb, "last_model_path", "")
        metrics["best_checkpoint"] = getattr(ckpt_cb, "best_model_path", "")
    log.info("final metrics: %s", metrics)
    return metrics
