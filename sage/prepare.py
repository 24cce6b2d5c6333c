"""Prepare task: ``python -m sage.prepare dataset=<name>/<variant>`` writes prepared datasets.

Re-running makes a new timestamped run under ``<prepared_root>/runs/`` and moves the
canonical symlink; the previous run is left untouched.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from .cli import one_line_errors
from .data.preparation import prepare_dataset


def run(cfg: DictConfig) -> dict[str, Path]:
    ds = OmegaConf.to_container(cfg.dataset, resolve=True)
    variants = list(cfg.prepare.variants or [ds["variant"]])
    out = prepare_dataset(ds, variants=variants, show_progress=cfg.prepare.progress)
    for variant, path in out.items():
        print(f"prepared {ds['name']}-{variant}: {path} -> {path.resolve()}")
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="prepare")
@one_line_errors
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
