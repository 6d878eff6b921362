"""Latent refinement (rtaic.coding.refine): a slower encoder, never worse on its own loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codec_helpers import photo
from rtaic.coding.penalty import acr_penalty
from rtaic.coding.quantize import dequantize, quantize, quantize_levels
from rtaic.coding.refine import ACR_EPSILON, refine_latent
from rtaic.metrics import weighted_msssim


def _x(image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255


def _loss(ae, x, y, alpha):
    q = quantize(y.clamp(-1, 1), ae.architecture.bits)
    x_hat = ae.decode(q, x.shape[-2:])
    return float(1 - weighted_msssim(x_hat, x, ae.architecture.color_space).mean() + alpha * acr_penalty(q, ACR_EPSILON))


def test_refinement_keeps_the_best_iterate_and_never_scores_worse(codec):
    ae = codec.networks.autoencoder
    x = _x(photo(72, 56, seed=5))
    with torch.no_grad():
        y = ae.encode(x)
    weights = {k: v.clone() for k, v in ae.state_dict().items()}
    best, losses = refine_latent(ae, x, y, steps=12, lr=3e-3, alpha=0.02)
    assert len(losses) == 13 and losses[0] == pytest.approx(_loss(ae, x, y, 0.02), rel=1e-5)
    assert min(losses) < losses[0]  # the search found something better here
    assert _loss(ae, x, best, 0.02) == pytest.approx(min(losses), rel=1e-5)
    assert not torch.equal(best, y)
    # the networks are untouched, gradients off again
    assert all(torch.equal(v, ae.state_dict()[k]) for k, v in weights.items())
    assert all(not p.requires_grad for p in ae.parameters()) or all(p.requires_grad for p in ae.parameters())
    same, one = refine_latent(ae, x, y, steps=0)
    assert torch.equal(same, y.clamp(-1, 1)) and len(one) == 1


def test_refinement_leaves_tiny_images_and_refuses_bad_steps(codec):
    ae = codec.networks.autoencoder
    x = _x(photo(40, 30))  # a side of 32 px or less: no 5-level MS-SSIM
    y = torch.zeros(1, 4, 4, 5)
    assert refine_latent(ae, x, y, steps=5) == (y, [])
    with pytest.raises(ValueError, match="steps"):
        refine_latent(ae, x, y, steps=-1)


def test_the_codec_writes_the_refined_levels_as_an_ordinary_file(codec):
    image = photo(70, 50, seed=6)
    assert codec.compress(image, refine=0) == codec.compress(image)
    levels = codec.latent_levels(image, refine=8)
    plain, y = codec.latents(image)
    ae, x, alpha = codec.networks.autoencoder, _x(image), codec.networks.acr_alpha
    # what the search finds from the encoder's latent, quantized as the codec does
    found, _ = refine_latent(ae, x, y, steps=8, alpha=alpha)
    assert torch.equal(levels, quantize_levels(found, ae.architecture.bits))
    with torch.no_grad():
        score = {name: _loss(ae, x, dequantize(lv, ae.architecture.bits), 0.015 if alpha is None else alpha)
                 for name, lv in (("refined", levels), ("plain", plain))}  # fmt: skip
    assert score["refined"] <= score["plain"]
    result = codec.encode(image, reconstruct=True, refine=8)
    assert result.timings["refine"] > 0
    decoded = codec.decompress(result.data)
    assert np.array_equal(np.asarray(decoded), np.asarray(result.reconstruction))
    with pytest.raises(ValueError, match="refine"):
        codec.compress(image, refine=-2)
    with pytest.raises(ValueError, match="refine"):
        codec.compress(image, refine=1.5)
