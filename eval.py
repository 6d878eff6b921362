"""Kodak evaluation report (paper section 5): ``python eval.py [overrides]``, see conf/eval/eval.yaml.

    python eval.py images.root=../shared/data/kodak checkpoints='[a.ckpt]' logger=wandb

Only config handling lives here: paths are resolved against the launch directory (Hydra does
not change it), Kodak is downloaded when no image folder is given (``images.root=null``), and
the package (rtaic.evaluation.run.evaluate) gets plain arguments.
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from rtaic.data.kodak import download_kodak
from rtaic.evaluation.measure import with_rdoq, with_refine
from rtaic.evaluation.names import OURS, TRUNCATED_CURVE
from rtaic.evaluation.run import evaluate

LOGGERS = ("none", "wandb")  # conf/eval/eval.yaml's logger


def _curve_files(curve: str, paths) -> list[str]:
    """One curve of a mapping: its files, or null for the bundled models of that curve
    (e.g. ``checkpoints={learned_ycbcr: null}``: only the bundled YCbCr curve)."""
    if paths is not None:
        return [to_absolute_path(c) for c in paths]
    from rtaic import zoo

    bundled = zoo.curves()
    if curve not in bundled:
        raise ValueError(f"checkpoints: no bundled models for curve {curve!r} (bundled curves: {sorted(bundled)})")
    return [str(p) for p in bundled[curve]]


def _checkpoints(listed, truncated=None) -> dict[str, list[str]] | list[str]:
    """null: the project's bundled models by curve (rtaic.zoo); a list: those files, one
    curve; a mapping: {curve: files or null for that curve's bundled models} (curves named
    learned or learned_<family>).
    ``truncated`` ({model, fractions}) adds the curve learned_truncated: one model's files
    cut to those fractions of their length (progressive decoding)."""
    if listed is None:
        from rtaic import zoo

        out = {curve: [str(p) for p in paths] for curve, paths in zoo.curves().items()}
    elif OmegaConf.is_dict(listed):
        out = {curve: _curve_files(curve, paths) for curve, paths in listed.items()}
    else:
        out = [to_absolute_path(c) for c in listed]
    if truncated:
        from rtaic import zoo
        from rtaic.sizing import truncated_name

        model = truncated.get("model")
        if model is None:
            path = zoo.default_model()
        elif model in zoo.manifest()["models"]:
            path = zoo.model_path(model)
        else:
            path = Path(to_absolute_path(model))
        if path is None:
            raise ValueError("truncated: no model given and no bundled default model")
        out = dict(out) if isinstance(out, dict) else ({OURS: out} if out else {})
        out[TRUNCATED_CURVE] = [truncated_name(path, float(f)) for f in truncated["fractions"]]
    return out


@hydra.main(version_base="1.3", config_path="conf/eval", config_name="eval")
def main(cfg: DictConfig) -> dict:
    out_dir = HydraConfig.get().runtime.output_dir
    choice = str(cfg.logger).lower()
    if choice not in LOGGERS:
        raise ValueError(f"eval.py supports logger=none or logger=wandb, got {cfg.logger!r}")
    if cfg.images.root:
        root = to_absolute_path(cfg.images.root)
    else:
        cache = to_absolute_path(cfg.images.cache_dir) + "/kodak" if cfg.images.cache_dir else None
        root = download_kodak(cache, base_url=cfg.images.url, progress=cfg.progress)
    logger = None
    if choice == "wandb":
        from rtaic.evaluation.wandb_log import WandbReport

        logger = WandbReport(
            project=cfg.wandb.project, name=cfg.wandb.name, tags=list(cfg.wandb.tags),
            config=OmegaConf.to_container(cfg, resolve=True), dir=out_dir,
        )
    try:
        return evaluate(
            image_root=root,
            out_dir=out_dir,
            cache_path=to_absolute_path(cfg.cache_dir) + "/baselines.jsonl",
            codecs=list(cfg.codecs),
            checkpoints=with_refine(with_rdoq(_checkpoints(cfg.checkpoints, cfg.get("truncated")), cfg.get("rdoq")),
                                    cfg.get("refine"), cfg.get("refine_curves")),
            workers=cfg.workers,
            bpp_points=list(cfg.bpp_points),
            msssim_points=list(cfg.msssim_points),
            reference=cfg.reference,
            loader=cfg.learned_loader,
            logger=logger,
            progress=cfg.progress,
            qualities={k: list(v) for k, v in (cfg.qualities or {}).items()},
            html_sizes=list(cfg.html_sizes) if cfg.html else None,
        )
    finally:
        if logger is not None:
            logger.finish()


if __name__ == "__main__":
    main()
