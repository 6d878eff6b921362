"""Training throughput of the model configs on this machine.

Prints, per model config: FLOPs per megapixel (forward, encoder + decoder), parameters,
and real Lightning training steps/s and images/s at a given batch of crops, with the
machine's matmul GFLOP/s measured in the same run as the reference.

    python benchmarks/train_throughput.py                 # rtaic and rtaic_small, batch 8 of 128x128
    python benchmarks/train_throughput.py --models rtaic_small --steps 40 --batch 8 --crop 128
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

CONF = Path(__file__).resolve().parents[1] / "conf"


class _Crops(Dataset):
    def __init__(self, n: int, crop: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.data = torch.rand(64, 3, crop, crop, generator=g)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.data[i % len(self.data)]


class _Timer(pl.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.steps = warmup, None, None, 0

    def on_train_batch_end(self, trainer, *args) -> None:
        self.steps += 1
        if self.steps == self.warmup:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def model_for(name: str, crop: int, target_bpp: float):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}", f"target_bpp={target_bpp}",
                                          f"data.crop_size={crop}", "logger=none"])
    return instantiate(cfg.model)


def matmul_gflops(n: int = 1024, reps: int = 10) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["rtaic", "rtaic_small"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--target-bpp", type=float, default=0.25)
    ap.add_argument("--no-onednn", dest="onednn", action="store_false",
                    help="turn oneDNN off (train.yaml's cpu_onednn=false)")  # fmt: skip
    args = ap.parse_args()
    torch.backends.mkldnn.enabled = args.onednn

    ref = matmul_gflops()
    print(f"oneDNN {'on' if args.onednn else 'off'}")
    print(f"reference: float32 matmul 1024^2 = {ref:.1f} GFLOP/s, torch threads {torch.get_num_threads()}")
    print(f"{'model':<12} {'GFLOP/Mpx':>10} {'params':>10} {'steps/s':>8} {'images/s':>9} "
          f"{'train GFLOP/s':>14} {'of matmul':>10}")
    for name in args.models:
        module = model_for(name, args.crop, args.target_bpp)
        x = torch.rand(1, 3, 512, 768)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            module.autoencoder(x)
        gflop_mpx = fc.get_total_flops() / 1e9 / (512 * 768 / 1e6)
        params = sum(p.numel() for p in module.autoencoder.parameters())
        timer = _Timer(args.warmup)
        trainer = pl.Trainer(accelerator="cpu", max_steps=args.steps + args.warmup, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, callbacks=[timer], limit_val_batches=0)
        loader = DataLoader(_Crops(args.batch * (args.steps + args.warmup), args.crop),
                            batch_size=args.batch)
        trainer.fit(module, loader)
        steps_s = args.steps / (timer.end - timer.start)
        # training FLOPs ~ 3 x forward (forward + backward), per step
        train_gflops = 3 * gflop_mpx * args.batch * args.crop**2 / 1e6 * steps_s
        print(f"{name:<12} {gflop_mpx:>10.1f} {params:>10,} {steps_s:>8.2f} {steps_s * args.batch:>9.1f} "
              f"{train_gflops:>14.1f} {train_gflops / ref:>10.2f}")


if __name__ == "__main__":
    main()
