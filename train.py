"""Train a classifier: ``python train.py [model=...] [dataset=...]`` (``-m`` for sweeps)."""

import hydra
from omegaconf import DictConfig

from sage.cli import one_line_errors
from sage.train import run


@hydra.main(version_base="1.3", config_path="sage/conf", config_name="train")
@one_line_errors
def main(cfg: DictConfig) -> float | None:
    metrics = run(cfg)
    return metrics.get(cfg.get("optimized_metric", ""))


if __name__ == "__main__":
    main()
