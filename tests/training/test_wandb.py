"""The default logger: an offline W&B run with the resolved config, tags, metrics, images."""


def test_offline_wandb_run_is_written(train_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    from rtaic.training.runner import train

    cfg = train_cfg(["logger=wandb", "model.val_images_logged=2", "target_bpp=0.5"])
    train(cfg)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    record = next(runs[0].glob("run-*.wandb")).read_bytes()
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
