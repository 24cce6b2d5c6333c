"""Cross-domain grid: ``python evaluate.py [models=[...] | select.dataset=...] targets=[...]``."""

import hydra
from omegaconf import DictConfig

from sage.cli import one_line_errors
from sage.evaluation import run


@hydra.main(version_base="1.3", config_path="sage/conf", config_name="evaluate")
@one_line_errors
def main(cfg: DictConfig) -> None:
    result = run(cfg)
    print()
    print(result.pop("table"))
    print()
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
