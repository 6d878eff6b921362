"""Send the finished report to Weights & Biases: the same figures and tables as on disk.

Offline unless the environment says ``WANDB_MODE=online`` (or any other mode explicitly), so a
report never leaves the machine by accident; sync an offline run with ``wandb sync``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path


class WandbReport:
    def __init__(self, project: str, name: str | None, config: dict, dir: str, tags=()):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=project, name=name, config=config, dir=dir, tags=list(tags),
                              job_type="eval", mode=os.environ.get("WANDB_MODE") or "offline")

    def log_report(self, summary: dict, figures: dict[str, Path], per_image: Path, markdown: Path) -> None:
        wandb = self.wandb
        log = {f"eval/{name}": wandb.Image(str(path)) for name, path in figures.items()}
        with open(per_image) as f:
            rows = list(csv.reader(f))
        log["eval/per_image"] = wandb.Table(columns=rows[0], data=rows[1:])
        for ref, spaces in summary["bd_rate"].items():
            for space, vals in spaces.items():
                for codec, v in vals.items():
                    if v["mean"] is not None:
                        self.run.summary[f"eval/bd_rate_vs_{ref}/{space}/{codec}"] = v["mean"]
        log["eval/summary"] = wandb.Html(f"<pre>{markdown.read_text()}</pre>")
        self.run.log(log)

    def log_comparison(self, rows: list[dict]) -> None:
        """report.html's comparison as a table: one row per (image, target size, codec) with
        the decode, its crop and its difference image (the PNGs beside report.html)."""
        from PIL import Image

        wandb = self.wandb
        columns = ["image", "target_bpp", "codec", "setting", "bytes", "bpp", "msssim_rgb", "psnr_rgb",
                   "ciede2000", "decoded", "crop", "original_crop", "difference"]
        table = wandb.Table(columns=columns)
        for r in rows:
            with Image.open(r["picture"]) as im:
                crop = im.crop(r["crop_box"])
            with Image.open(r["original"]) as im:
                original_crop = im.crop(r["crop_box"])
            table.add_data(r["image"], r["target_bpp"], r["label"], r["setting"], r["bytes"], r["bpp"],
                           r["msssim_rgb"], r["psnr_rgb"], r["ciede2000"], wandb.Image(str(r["picture"])),
                           wandb.Image(crop), wandb.Image(original_crop), wandb.Image(str(r["difference"])))
        self.run.log({"eval/comparison": table})

    def finish(self) -> None:
        self.run.finish()
