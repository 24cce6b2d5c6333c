"""``sage-evaluate`` / ``python -m sage.commands.evaluate`` / ``python evaluate.py``: the
cross-domain grid (``[models=[...] | select.dataset=...] targets=[...]``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sage.cli import one_line_errors


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
@one_line_errors
def main(cfg: DictConfig) -> None:
    """Run the grid (or another ``mode=``) and print its table and result paths."""
    from sage.evaluate import run  # imported here: --help and config errors answer at once

    result = run(cfg)
    print()
    print(result.pop("table"))
    print()
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
