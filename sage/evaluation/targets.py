"""Target datasets of an evaluation grid: ``sage/conf/dataset/<name>`` configs composed with Hydra.

A target is named like a ``dataset=`` override (``synth_driver100/bbox``) and composed with
Hydra's compose API, so it is exactly the config training would use; ``target_overrides``
(Hydra override strings such as ``dataset.synth.images_per_class=20``) apply to every target.
The dataset is then found, or for SynthDrivers prepared on first use, by
:func:`sage.data.ensure.ensure_prepared`, as training does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from ..data.ensure import ensure_prepared
from ..data.prepared import PreparedDataset
from ..errors import SageError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


@dataclass(frozen=True)
class Target:
    """One column of the grid."""

    name: str  # the config name, e.g. synth_driver100/bbox
    label: str  # <dataset>/<variant>, e.g. synth-driver100/bbox (the column header)
    config: dict = field(repr=False)  # the resolved dataset config
    data: PreparedDataset = field(repr=False)


def available_datasets() -> list[str]:
    """Every ``dataset=`` option of ``sage/conf/`` (``<dataset>/<variant>``)."""
    root = CONF_DIR / "dataset"
    return sorted(
        str(p.relative_to(root).with_suffix(""))
        for p in root.rglob("*.yaml")
        if not p.name.startswith("_")
    )


def _compose(overrides: list[str]):
    # Inside @hydra.main Hydra is initialised with the entry point's search path; tests and
    # library callers are not, so compose from the repository's conf/ in a scoped context.
    if GlobalHydra.instance().is_initialized():
        return compose(overrides=overrides)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(overrides=overrides)


def compose_dataset(name: str, paths: Mapping[str, str], overrides: Sequence[str] = ()) -> dict:
    """The resolved ``dataset`` config of option ``name`` with ``overrides`` applied.

    ``paths`` supplies the ``paths.*`` values the dataset config interpolates (``data_dir``).
    """
    try:
        node = _compose([f"+dataset={name}", *overrides])
    except HydraException as err:
        raise SageError(
            f"target {name!r} does not compose ({err}); targets are dataset config names: "
            f"{', '.join(available_datasets())}"
        ) from err
    if "dataset" not in node or "variant" not in node.dataset:
        raise SageError(f"target {name!r} is not a dataset variant config (no dataset.variant)")
    holder = OmegaConf.create(
        {"paths": dict(paths), "dataset": OmegaConf.to_container(node.dataset, resolve=False)}
    )
    return OmegaConf.to_container(holder, resolve=True)["dataset"]


def load_targets(
    names: Sequence[str], paths: Mapping[str, str], overrides: Sequence[str] = ()
) -> list[Target]:
    """Compose, prepare (SynthDrivers) and open every target, in the order given."""
    if not names:
        raise SageError("no targets: e.g. targets=[synth_driver100/bbox,synth_driver100/full]")
    duplicated = sorted({n for n in names if list(names).count(n) > 1})
    if duplicated:
        raise SageError(f"targets listed twice: {duplicated}")
    targets = []
    for name in names:
        ds = compose_dataset(str(name), paths, overrides)
        data = PreparedDataset.open(ensure_prepared(ds))
        targets.append(Target(str(name), f"{ds['name']}/{ds['variant']}", ds, data))
    labels = [t.label for t in targets]
    if len(set(labels)) != len(labels):
        raise SageError(f"two targets resolve to the same dataset variant: {labels}")
    return targets


def target_overrides(cfg: DictConfig) -> list[str]:
    """A task config's ``target_overrides`` (Hydra overrides applied to every target)."""
    return [str(o) for o in cfg.get("target_overrides") or []]


def targets_from_config(cfg: DictConfig, names: Sequence[str]) -> list[Target]:
    """:func:`load_targets` of ``names`` with a task config's paths and ``target_overrides``."""
    paths = {k: str(cfg.paths[k]) for k in ("root_dir", "outputs_dir", "data_dir")}
    return load_targets([str(n) for n in names], paths, target_overrides(cfg))
