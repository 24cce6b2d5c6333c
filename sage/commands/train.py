"""``sage-train`` / ``python -m sage.commands.train`` / ``python train.py``: train a classifier
(``[model=...] [dataset=...]``, ``-m`` for sweeps)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sage.cli import one_line_errors


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
@one_line_errors
def main(cfg: DictConfig) -> float | None:
    """Train one model; returns ``optimized_metric`` for Hydra sweepers."""
    from sage.train import run  # imported here: --help and config errors answer at once

    metrics = run(cfg)
    return metrics.get(cfg.get("optimized_metric", ""))


if __name__ == "__main__":
    main()
