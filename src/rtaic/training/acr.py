"""Adaptive codelength regularization (paper 3.2.4).

    P(q) = alpha_t / (CHW) * sum_chw [ log2|q_chw| + sum_{(x,y) in S} log2|q_chw - q_{c,h-y,w-x}| ]
    S = {(0,1), (1,0), (1,1), (-1,1)}

The penalty pulls the quantized latent towards zero and towards its neighbours, which the
bit-probability model then codes cheaply. The coefficient alpha_t is steered by
:class:`ACRCallback`: measured bits per pixel above the target raise it, below lower it.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl

from rtaic.coding.penalty import NEIGHBOURS, acr_penalty  # noqa: F401 (re-exported)


class ACRCallback(pl.Callback):
    """Feedback loop on alpha: alpha <- clip(alpha * exp(gain * clip(log(bpp / target), +-1))).

    ``bpp`` is a running mean (``momentum``) of the bit-probability model's code length on
    training batches, i.e. what the arithmetic coder would spend, averaged over DDP ranks
    (the module's ``feedback``); the target is the module's ``target_bpp``. alpha lives in
    the module as the buffer ``acr_alpha`` (checkpointed with the weights); the running
    bpp is this callback's state. The values are ``conf/callbacks/default.yaml``'s.
    """

    def __init__(self, gain: float, momentum: float, alpha_min: float, alpha_max: float) -> None:
        if gain <= 0 or not 0.0 <= momentum < 1.0 or not 0 < alpha_min <= alpha_max:
            raise ValueError(f"need gain > 0, 0 <= momentum < 1, 0 < alpha_min <= alpha_max; got "
                             f"{gain}, {momentum}, {alpha_min}, {alpha_max}")
        self.gain, self.momentum = gain, momentum
        self.alpha_min, self.alpha_max = alpha_min, alpha_max
        self.running_bpp: float | None = None

    def update(self, alpha: float, measured_bpp: float, target_bpp: float) -> float:
        """One feedback step; returns the new alpha."""
        if target_bpp <= 0:
            raise ValueError(f"target_bpp must be positive, got {target_bpp}")
        if not math.isfinite(measured_bpp):
            return alpha
        m = self.momentum
        self.running_bpp = (
            measured_bpp if self.running_bpp is None else m * self.running_bpp + (1 - m) * measured_bpp
        )
        error = max(-1.0, min(1.0, math.log(max(self.running_bpp, 1e-9) / target_bpp)))
        return min(self.alpha_max, max(self.alpha_min, alpha * math.exp(self.gain * error)))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.feedback is None:  # a skipped step measured nothing
            return
        new_alpha = self.update(float(pl_module.acr_alpha), pl_module.feedback.bpp, pl_module.target_bpp)
        pl_module.acr_alpha.fill_(new_alpha)
        pl_module.log("train/acr_alpha", new_alpha)
        pl_module.log("train/bpp_running", self.running_bpp)

    def state_dict(self) -> dict:
        return {"running_bpp": self.running_bpp}

    def load_state_dict(self, state_dict: dict) -> None:
        self.running_bpp = state_dict.get("running_bpp")
