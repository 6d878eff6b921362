"""Train an rtaic model: `python train.py model=rtaic target_bpp=0.1` (add -m to sweep)."""

import hydra
from omegaconf import DictConfig

from rtaic.training.runner import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
