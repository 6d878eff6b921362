"""Where a training step's time goes: data, autoencoder, MS-SSIM, L1, ACR, context model, Adam.

Each part is timed by what the step costs with and without it (forward and backward
together), on the real training module and real crops, so the shares add up to the
measured step:

    python benchmarks/train_profile.py                                   # skimage samples
    python benchmarks/train_profile.py --data ../shared/data/train --model rtaic_small --steps 30

Prints ms per step for each part and its share of the full step; the full step's time is
the reference measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from rtaic.training.acr import acr_penalty
from rtaic.training.losses import distortion_loss

CONF = Path(__file__).resolve().parents[1] / "conf"


def build(model: str, target_bpp: float, crop: int, data: str | None):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        overrides = [f"model={model}", f"target_bpp={target_bpp}", f"data.crop_size={crop}", "logger=none"]
        if data:
            overrides.append(f"data.root={data}")
        cfg = compose("train", overrides=overrides)
    module = instantiate(cfg.model)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return module, datamodule


def step_fn(module, opt, parts: set[str]):
    """One training step with only ``parts`` of the loss (always the autoencoder)."""
    hp = module.hparams

    def step(x: torch.Tensor) -> None:
        out = module.autoencoder(x)
        loss = out.x_hat.mean() * 0.0
        if "msssim" in parts:
            loss = loss + distortion_loss(out.x_hat, x, module.architecture.color_space, module.train_window)[0]
        if "l1" in parts:
            loss = loss + hp.l1_weight * (out.x_hat - x).abs().mean()
        if "acr" in parts:
            loss = loss + module.acr_alpha * acr_penalty(out.q, hp.acr_epsilon)
        if "context" in parts:
            loss = loss + module.estimated_bpp(out.y, x.shape[-2] * x.shape[-1]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if "adam" in parts:
            torch.nn.utils.clip_grad_norm_(module.autoencoder.parameters(), hp.grad_clip)
            opt.step()

    return step


def timed(fn, batches: list[torch.Tensor], warmup: int = 3) -> float:
    for x in batches[:warmup]:
        fn(x)
    t = time.perf_counter()
    for x in batches[warmup:]:
        fn(x)
    return (time.perf_counter() - t) / (len(batches) - warmup) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="rtaic_small")
    ap.add_argument("--target-bpp", type=float, default=0.5)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--data", help="training image folder (default: scikit-image samples)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    module, datamodule = build(args.model, args.target_bpp, args.crop, args.data)
    module.train()
    opt = module.configure_optimizers()[0][0]
    images = datamodule.train_set.images
    for i in range(len(images)):  # decode every image once: a long run reads from the cache
        images[i]
    loader = iter(datamodule.train_dataloader())
    t = time.perf_counter()
    batches = [next(loader) for _ in range(args.steps + 3)]
    data_ms = (time.perf_counter() - t) / len(batches) * 1000

    everything = {"msssim", "l1", "acr", "context", "adam"}
    full = timed(step_fn(module, opt, everything), batches)
    print(f"{args.model}, target {args.target_bpp} bpp, batch {batches[0].shape[0]} of {args.crop} px, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"full step (reference): {full:.1f} ms + data {data_ms:.1f} ms per batch")
    print(f"{'part':<34} {'ms/step':>8} {'share':>7}")
    rows = [("data loading (crops, in process)", data_ms)]
    for part in ("msssim", "l1", "acr", "context", "adam"):
        rows.append((f"{part} (fwd + bwd)", full - timed(step_fn(module, opt, everything - {part}), batches)))
    rows.append(("autoencoder fwd + bwd (the rest)", full - sum(ms for _, ms in rows[1:])))
    total = full + data_ms
    for name, ms in rows:
        print(f"{name:<34} {ms:>8.1f} {100 * ms / total:>6.1f}%")


if __name__ == "__main__":
    main()
