"""``sage-explain`` / ``python -m sage.commands.explain`` / ``python explain.py``: explain a
checkpoint (``checkpoint=<ckpt | MLflow run id> [cam=[...]]``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sage.cli import one_line_errors


@hydra.main(version_base="1.3", config_path="../conf", config_name="explain")
@one_line_errors
def main(cfg: DictConfig) -> None:
    """Explain one checkpoint and print where the results went."""
    from sage.explain import run  # imported here: --help and config errors answer at once

    for key, value in run(cfg).items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
