"""A 2-process CPU DDP smoke run through the real entry point."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_two_process_cpu_ddp_run(tmp_path):
    env = {**os.environ, "RTAIC_OUTPUTS": str(tmp_path), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "train.py", "debug=fast", "model=rtaic_small", "trainer=ddp",
        "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_steps=3",
        "data.crop_size=64", "data.val_crop_size=64",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpts = list(tmp_path.rglob("last.ckpt"))
    assert len(ckpts) == 1
    import torch

    state = torch.load(ckpts[0], weights_only=True)
    assert state["global_step"] == 3 and state["rtaic"]["format"] == 1
