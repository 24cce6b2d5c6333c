"""Compose a task's config (``sage/conf/<task>.yaml`` + overrides) outside ``@hydra.main``.

The study runner and the tests run tasks in-process on configs composed this way; the
``hydra`` node is resolved first (so ``${hydra:...}`` interpolations work) and then removed,
as inside a Hydra app.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from . import cli  # noqa: F401  (registers the ${sage_root:} resolver)

CONF_DIR = Path(__file__).resolve().parent / "conf"


def compose_task(
    name: str, overrides: Sequence[str] = (), output_dir: str | Path | None = None
) -> DictConfig:
    """``sage/conf/<name>.yaml`` with ``overrides``; ``paths.output_dir`` set when given (an
    explicit ``paths.output_dir=`` among the overrides wins)."""
    extra = [f"paths.output_dir={output_dir}"] if output_dir is not None else []
    if GlobalHydra.instance().is_initialized():  # e.g. a previous compose that raised
        GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(name, overrides=[*extra, *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # lets ${hydra:...} interpolations resolve
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
