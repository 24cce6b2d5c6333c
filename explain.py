"""Explain a checkpoint: ``python explain.py checkpoint=<ckpt | MLflow run id> [cam=[...]]``."""

import hydra
from omegaconf import DictConfig

from sage.cli import one_line_errors
from sage.explain import run


@hydra.main(version_base="1.3", config_path="sage/conf", config_name="explain")
@one_line_errors
def main(cfg: DictConfig) -> None:
    for key, value in run(cfg).items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
