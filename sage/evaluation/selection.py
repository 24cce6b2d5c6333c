"""Source models of an evaluation grid: chosen from MLflow or given, never retrained.

Three ways to name them (``models`` in ``sage/conf/evaluate.yaml``):

- ``models: null``: every run of ``select.experiment`` matching ``select.filter`` (default:
  finished training runs), narrowed by ``select.dataset`` / ``select.variant`` /
  ``select.model`` (equality on the run's tags), oldest first; runs lacking the requested
  checkpoint are skipped and listed, not fatal;
- ``models: [<run id>, <path.ckpt>, ...]``: training-run ids (``runs:/<id>`` too) or
  checkpoint files;
- an entry may be a mapping ``{ref: <run id | path>, label: <row label>, backbone: <name>}``
  to name the row or to state the architecture the checkpoint must hold.

The training condition (the row label ``<dataset>/<variant>``) and the architecture the
checkpoint must hold come from the training run's recorded config (its params, then its tags)
or, for a checkpoint file, from the Hydra run directory it sits in
(``<run dir>/.hydra/config.yaml``). A checkpoint holding another architecture, or a run
whose recorded class count differs from the checkpoint's, is a :class:`SageError`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from omegaconf import DictConfig, OmegaConf

from ..errors import SageError
from ..tracking.checkpoints import RUN_ID, resolve_checkpoint
from ..training.classifier import load_classifier


@dataclass
class SourceModel:
    """One row of the grid: a checkpoint and the condition it was trained under."""

    ref: str  # as given: run id or path
    key: str  # stable identity in grid and cell keys: run id, or the checkpoint's abs path
    run_id: str | None
    checkpoint: Path
    backbone: str
    classes: list[str]
    image_size: int | None
    dataset: str | None
    variant: str | None
    label: str = ""
    info: dict = field(default_factory=dict)  # recorded training config, for the run params

    @property
    def slug(self) -> str:
        """File-name-safe row label."""
        return "".join(c if c.isalnum() or c in "-_." else "-" for c in self.label)


def _recorded(run: mlflow.entities.Run) -> dict[str, str | None]:
    """Model name, dataset, variant and class count a training run recorded."""
    params, tags = run.data.params, run.data.tags

    def pick(param: str, tag: str) -> str | None:
        return params.get(param) or tags.get(tag)

    return {
        "model": pick("model/name", "model"),
        "dataset": pick("dataset/name", "dataset"),
        "variant": pick("dataset/variant", "variant"),
        "num_classes": pick("dataset/num_classes", "num_classes"),
    }


def _hydra_config(ckpt: Path) -> dict[str, str | None]:
    """The same facts from the Hydra run directory of a checkpoint file, when there is one."""
    for run_dir in (ckpt.parent.parent, ckpt.parent):
        path = run_dir / ".hydra" / "config.yaml"
        if path.is_file():
            cfg = OmegaConf.load(path)
            return {
                "model": OmegaConf.select(cfg, "model.name"),
                "dataset": OmegaConf.select(cfg, "dataset.name"),
                "variant": OmegaConf.select(cfg, "dataset.variant"),
                "num_classes": OmegaConf.select(cfg, "dataset.num_classes"),
            }
    return {"model": None, "dataset": None, "variant": None, "num_classes": None}


def _entry(entry: object) -> tuple[str, str | None, str | None]:
    if isinstance(entry, str | int):
        return str(entry), None, None
    if isinstance(entry, Mapping) and "ref" in entry:
        return str(entry["ref"]), entry.get("label"), entry.get("backbone")
    raise SageError(
        f"a models entry is a run id, a checkpoint path or {{ref, label, backbone}}; got {entry!r}"
    )


def search_runs(
    tracking_uri: str,
    experiment: str,
    filter_string: str,
    tags: Mapping[str, str | None] | None = None,
    max_runs: int = 1000,
) -> list[str]:
    """Run ids of ``experiment`` matching ``filter_string`` and tag equalities, oldest first."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SageError(f"MLflow experiment {experiment!r} not found in {tracking_uri}")
    clauses = [filter_string] if filter_string else []
    for key, value in (tags or {}).items():
        if value is not None:
            if "'" in str(value):
                raise SageError(f"select.{key} must not contain a quote: {value!r}")
            clauses.append(f"tags.{key} = '{value}'")
    query = " and ".join(clauses)
    try:
        runs = client.search_runs(
            [exp.experiment_id],
            query,
            order_by=["attributes.start_time ASC"],
            max_results=max_runs,
        )
    except mlflow.exceptions.MlflowException as err:
        raise SageError(f"bad select.filter {query!r}: {err.message}") from err
    if not runs:
        raise SageError(
            f"no run of MLflow experiment {experiment!r} matches {query!r} ({tracking_uri}); "
            "train first or pass models=[<run id or .ckpt>, ...]"
        )
    return [r.info.run_id for r in runs]


def load_source(
    ref: str,
    tracking_uri: str,
    which: str,
    dst: Path,
    experiment: str,
    label: str | None = None,
    expect_backbone: str | None = None,
) -> SourceModel:
    """Resolve ``ref`` to a checkpoint and check it against what its training recorded."""
    ckpt, model_run = resolve_checkpoint(ref, tracking_uri, which, dst, experiment)
    is_run = RUN_ID.match(ref) is not None or ref == "latest"
    if is_run:
        run = mlflow.MlflowClient(tracking_uri=tracking_uri).get_run(model_run)
        recorded = _recorded(run)
        where = f"MLflow run {model_run}"
    else:
        recorded = _hydra_config(ckpt)
        where = f"{ckpt.parent.parent / '.hydra' / 'config.yaml'}"
    expected = expect_backbone or recorded["model"]
    # load_classifier rebuilds the network: an architecture mismatch fails here, naming both.
    try:
        _, hparams = load_classifier(ckpt, expect_backbone=expected)
    except SageError as err:
        if expected and expected != expect_backbone:
            raise SageError(f"{err} (the config of {where})") from err
        raise
    classes = list(hparams["class_names"])
    if recorded["num_classes"] is not None and int(recorded["num_classes"]) != len(classes):
        raise SageError(
            f"checkpoint {ckpt} has {len(classes)} classes but {where} records "
            f"num_classes={recorded['num_classes']}"
        )
    if label is None:
        if recorded["dataset"] and recorded["variant"]:
            label = f"{recorded['dataset']}/{recorded['variant']}"
        elif ckpt.parent.name == "checkpoints":
            label = f"{ckpt.parent.parent.name}/{ckpt.stem}"
        else:
            label = ckpt.stem
    return SourceModel(
        ref=ref,
        key=model_run if is_run else str(ckpt.resolve()),
        run_id=model_run if is_run else None,
        checkpoint=ckpt,
        backbone=hparams["backbone"],
        classes=classes,
        image_size=hparams.get("image_size"),
        dataset=recorded["dataset"],
        variant=recorded["variant"],
        label=str(label),
        info={k: v for k, v in recorded.items() if v is not None},
    )


def unique_labels(models: list[SourceModel], explicit: set[int]) -> None:
    """Disambiguate equal row labels: add the backbone, then a short id."""
    for extra in (lambda m: m.backbone, lambda m: f"{m.backbone} {_short(m.key)}"):
        counts = Counter(m.label for m in models)
        for i, m in enumerate(models):
            if counts[m.label] > 1 and i not in explicit:
                base = m.label.split(" [", 1)[0]
                m.label = f"{base} [{extra(m)}]"
    counts = Counter(m.label for m in models)
    clashes = sorted(label for label, n in counts.items() if n > 1)
    if clashes:
        raise SageError(f"two models share the row label(s) {clashes}; give distinct labels")


def _short(key: str) -> str:
    return key[:8] if RUN_ID.match(key) else hashlib.sha1(key.encode()).hexdigest()[:8]


def select_models(
    models: Sequence[object] | None,
    select: Mapping,
    tracking_uri: str,
    which: str,
    dst: Path,
    experiment: str,
) -> tuple[list[SourceModel], list[dict[str, str]]]:
    """The grid's rows in order, and the runs skipped by a filter selection (with reasons)."""
    skipped: list[dict[str, str]] = []
    out: list[SourceModel] = []
    explicit: set[int] = set()
    if models:
        for entry in models:
            ref, label, backbone = _entry(entry)
            if label is not None:
                explicit.add(len(out))
            where = dst / f"{len(out):02d}"  # one download directory per entry
            out.append(load_source(ref, tracking_uri, which, where, experiment, label, backbone))
    else:
        exp_name = select.get("experiment") or experiment
        tags = {k: select.get(k) for k in ("dataset", "variant", "model")}
        ids = search_runs(
            tracking_uri,
            exp_name,
            select.get("filter") or "",
            tags,
            int(select.get("max_runs") or 1000),
        )
        for run_id in ids:
            try:
                out.append(load_source(run_id, tracking_uri, which, dst / run_id, exp_name))
            except SageError as err:
                if f"has no {which} checkpoint" not in str(err):
                    raise
                skipped.append({"run_id": run_id, "reason": str(err)})
        if not out:
            raise SageError(
                f"none of the {len(ids)} selected runs has a {which} checkpoint: {skipped[:3]}"
            )
    keys = Counter(m.key for m in out)
    repeated = sorted(k for k, n in keys.items() if n > 1)
    if repeated:
        raise SageError(f"models listed twice: {repeated}")
    unique_labels(out, explicit)
    return out, skipped


def select_from_config(cfg: DictConfig, out: Path) -> tuple[list[SourceModel], list[dict]]:
    """:func:`select_models` with a task config's ``models``/``select``/``checkpoint_select``
    and logger settings; checkpoints are fetched into ``out/checkpoints``."""
    return select_models(
        OmegaConf.to_container(cfg.models, resolve=True) if cfg.get("models") else None,
        OmegaConf.to_container(cfg.select, resolve=True),
        cfg.logger.tracking_uri,
        cfg.checkpoint_select,
        out / "checkpoints",
        cfg.logger.experiment_name,
    )
