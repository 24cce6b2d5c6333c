"""Prepare task: ``python -m sage.prepare dataset=<name>/<variant> [masker=...]``.

One masker pass per image writes all configured variants (full, bbox, seg, bboxseg). Re-running
makes a new timestamped run under ``<prepared_root>/runs/`` and moves the canonical symlinks;
earlier runs are left untouched.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from .cli import one_line_errors


def run(cfg: DictConfig) -> dict[str, Path]:
    """Prepare ``cfg.dataset`` in ``cfg.prepare.variants``; return ``{variant: link}``."""
    # Imported here, not at the top: prepare's spawned workers import this module again (as
    # __mp_main__ under ``python -m sage.prepare``) and need none of the readers or splits.
    from .data.preparation import prepare_dataset

    ds = OmegaConf.to_container(cfg.dataset, resolve=True)
    out = prepare_dataset(
        ds,
        variants=list(cfg.prepare.variants),
        masker=OmegaConf.to_container(cfg.masker, resolve=True),
        margin=cfg.prepare.margin,
        fill=list(cfg.prepare.fill),
        batch_size=cfg.prepare.batch_size,
        show_progress=cfg.prepare.progress,
        workers=cfg.prepare.get("workers", "auto"),
    )
    for variant, path in out.items():
        summary = path / "summary.json"
        print(f"prepared {ds['name']}-{variant}: {path} -> {path.resolve()} ({summary})")
    return out


@hydra.main(version_base="1.3", config_path="conf", config_name="prepare")
@one_line_errors
def main(cfg: DictConfig) -> None:
    """Entry point of ``python -m sage.prepare`` and of the ``sage-prepare`` console script."""
    run(cfg)


if __name__ == "__main__":
    main()
