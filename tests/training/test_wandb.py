"""The default logger: an offline W&B run with the resolved config, tags, metrics, images."""


def _read_when_flushed(run_dir, last_needle, timeout_s=30.0):
    """The run's transaction log once it holds ``last_needle`` (or whatever it holds by then)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        record = next(run_dir.glob("run-*.wandb")).read_bytes()
        if last_needle in record or time.monotonic() > deadline:
            return record
        time.sleep(0.5)


def test_offline_wandb_run_is_written(train_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    from rtaic.training.runner import train

    cfg = train_cfg(["logger=wandb", "callbacks.reconstructions.images=2", "target_bpp=0.5"])
    train(cfg)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    record = _read_when_flushed(runs[0], b"val/reconstructions")
    for needle in (b'"model:rtaic_small"', b'"target_bpp:0.5"', b'"color_space:rgb"',
                   b"architecture", b"train/acr_alpha", b"train/bpp", b"val/msssim",
                   b"val/reconstructions"):
        assert needle in record, needle
    import numpy as np
    from PIL import Image

    pngs = list((runs[0] / "files" / "media" / "images").rglob("*.png"))
    assert pngs
    pixels = np.asarray(Image.open(pngs[0]).convert("RGB"))
    assert pixels.shape[1] == 2 * pixels.shape[0]  # original | reconstruction
    assert pixels.max() > 50 and pixels.std() > 5  # not a black (unscaled float) image
