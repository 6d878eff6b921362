"""experiment=finetune_quantized: frozen encoder, decoder + context model trained on the
latents the codec makes (hard quantizer, RDOQ), ordinary codec checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from codec_helpers import TINY, make_checkpoint, photo
from conftest import module_from_config
from rtaic.checkpoint import load_networks
from rtaic.codec import load_codec
from rtaic.coding.quantize import dequantize, quantize_levels
from rtaic.coding.rdoq import channel_weights, rdoq_levels
from rtaic.training.module import RTAICModule
from rtaic.training.runner import train


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.parametrize("lam", [0.0, 0.05])
def test_finetune_leaves_the_encoder_untouched_and_trains_decoder_and_context(train_cfg, tmp_path, lam):
    source = make_checkpoint(tmp_path / "source.ckpt", seed=1)
    cfg = train_cfg(["experiment=finetune_quantized", f"init_from={source}",
                     f"model.finetune_rdoq={lam}", "trainer.max_steps=3"])  # fmt: skip
    assert cfg.model.freeze_encoder and cfg.callbacks.get("acr") is None
    metrics = train(cfg)
    last = Path(metrics["last_checkpoint"])
    before, after = _state(source), _state(last)
    encoder = [k for k in before if k.startswith("autoencoder.encoder.")]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)  # bit-identical
    decoder = [k for k in before if k.startswith("autoencoder.decoder.")]
    assert any(not torch.equal(before[k], after[k]) for k in decoder)
    assert not torch.equal(before["context_model.logits"], after["context_model.logits"])
    # an ordinary codec checkpoint of the same network: exportable, loadable, decodable
    nets = load_networks(last)
    assert nets.autoencoder.architecture == TINY
    codec = load_codec(last)
    image = photo(40, 32)
    assert codec.decompress(codec.compress(image, rdoq=lam or None)).size == image.size
    assert metrics["skipped_steps"] == 0 and np.isfinite(metrics["val/msssim"])


def test_finetune_needs_a_checkpoint_to_start_from(train_cfg):
    cfg = train_cfg(["experiment=finetune_quantized"])
    with pytest.raises(Exception, match="init_from=CKPT"):  # Hydra wraps the module's error
        train(cfg)


def _module(tmp_path, **kw) -> RTAICModule:
    source = make_checkpoint(tmp_path / "m.ckpt", seed=2)
    module = module_from_config(tmp_path, architecture_from=str(source), **kw)
    module.load_state_dict(_state(source), strict=False)
    return module


def test_the_frozen_encoder_gets_no_gradient_and_is_not_optimized(tmp_path):
    module = _module(tmp_path, freeze_encoder=True)
    assert module.architecture == TINY
    assert not any(p.requires_grad for p in module.autoencoder.encoder.parameters())
    [opt], _ = module.configure_optimizers()
    optimized = {id(p) for group in opt.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in module.autoencoder.decoder.parameters()} | {
        id(p) for p in module.context_model.parameters()}
    x = torch.rand(2, 3, 64, 64)
    r = module.quantized_losses(x)
    (r.rec + r.bpp).backward()
    assert all(p.grad is None for p in module.autoencoder.encoder.parameters())
    assert all(p.grad is not None for p in module.autoencoder.decoder.parameters())
    assert module.context_model.logits.grad is not None
    # the default keeps the whole autoencoder trainable
    plain = _module(tmp_path)
    assert all(p.requires_grad for p in plain.autoencoder.parameters())


def test_inference_latents_are_the_codecs(tmp_path):
    """What the finetune trains on is what the codec codes: hard quantizer, and RDOQ with
    the module's own context model and decoder weights."""
    module = _module(tmp_path, freeze_encoder=True, finetune_rdoq=0.5).eval()
    x = torch.rand(2, 3, 32, 40)
    y, levels, q = module.inference_latents(x)
    plain = quantize_levels(module.autoencoder.encode(x), TINY.bits)
    cm = module.context_model
    expected = rdoq_levels(plain, y, cm, cm.probability_table(), 0.5, channel_weights(module.autoencoder))
    assert torch.equal(levels, expected) and not torch.equal(levels, plain)
    assert torch.equal(q, dequantize(levels, TINY.bits))
    # and with finetune_rdoq 0, the plain quantizer's levels
    module.hparams.finetune_rdoq = 0.0
    assert torch.equal(module.inference_latents(x)[1], plain)


def test_rdoq_share_codes_the_first_part_of_the_batch_with_rdoq_and_the_rest_plain(tmp_path):
    module = _module(tmp_path, freeze_encoder=True, finetune_rdoq=0.5, finetune_rdoq_share=0.5).eval()
    x = torch.rand(4, 3, 32, 40)
    y, levels, _ = module.inference_latents(x)
    plain = quantize_levels(module.autoencoder.encode(x), TINY.bits)
    cm = module.context_model
    first = rdoq_levels(plain[:2], y[:2], cm, cm.probability_table(), 0.5, channel_weights(module.autoencoder))
    assert torch.equal(levels[:2], first) and not torch.equal(levels[:2], plain[:2])
    assert torch.equal(levels[2:], plain[2:])
    with pytest.raises(Exception, match="finetune_rdoq_share must be in"):  # Hydra wraps it
        _module(tmp_path, freeze_encoder=True, finetune_rdoq=0.5, finetune_rdoq_share=1.5)
