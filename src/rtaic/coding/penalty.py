"""The ACR penalty (paper 3.2.4): the differentiable rate proxy on the quantized latent.

    P(q) = 1 / (CHW) * sum_chw [ log2|q_chw| + sum_{(x,y) in S} log2|q_chw - q_{c,h-y,w-x}| ]
    S = {(0,1), (1,0), (1,1), (-1,1)}

Pure torch, so that the encoder's latent refinement (rtaic.coding.refine) can use it
without the training stack; training weighs it by the steered alpha_t
(rtaic.training.acr).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (-1, 1))  # (x, y) offsets of the paper's set S


def acr_penalty(q: torch.Tensor, eps: float) -> torch.Tensor:
    """Mean over the batch of the per-image penalty, without alpha; ``eps`` (the model's
    ``acr_epsilon``) keeps log2 finite at 0."""
    n, c, h, w = q.shape
    total = torch.log2(q.abs() + eps).flatten(1).sum(1)
    padded = F.pad(q, (1, 1, 1, 1), mode="replicate")  # border differences are 0: log2(eps)
    for dx, dy in NEIGHBOURS:
        shifted = padded[..., 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]  # q[c, h - y, w - x]
        total = total + torch.log2((q - shifted).abs() + eps).flatten(1).sum(1)
    return (total / (c * h * w)).mean()
