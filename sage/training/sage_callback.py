"""SageCallback: saliency, fg/bg masses, tokens and metric sets on a probe set at validation.

Every ``every_n_epochs`` validation epochs the callback explains a fixed, class-stratified
probe subset of the validation split (:mod:`sage.training.probe`) with each configured
method and logs to the run's loggers

- scalars ``val_sage/<method>/<name>`` (step = global step, like ``val/acc``), named as
  explain and the grid name them (docs/metrics.md, vocabulary): ``fg_mass``, ``bg_mass``,
  ``fg_mass/correct`` and ``fg_mass/error``, ``zero_maps``, every metric column of the
  selected sets on the whole foreground (``iou/fg``, ``pointing_game/fg``, ``arcc``,
  ``road``, ...), pooled sets (``val_sage/<method>/cose/...``, ``val_sage/rfs/...``),
  ``val_sage/acc`` (the probe's accuracy) and the callback's own wall time
  ``val_sage/seconds`` (logging and artifacts included);
- breakdowns (:mod:`sage.tracking.breakdowns`: per class ``/c<k>``, per named part, the
  ``/correct`` and ``/error`` splits of the other metrics) in the table
  ``val_sage/breakdowns.csv`` (``epoch``, ``step``, ``key``, ``value``; rewritten every probe
  epoch), as scalars too with ``breakdowns=True`` (``tracking.breakdowns=true``);
- artifacts ``val_sage/epoch_<e>/``: a probe mosaic per method (rows = classes, correct then
  error, fg outlined), ``tokens.csv`` (the probe's token table) and ``summary.json`` (every
  number of the epoch, breakdowns included).

Cost (``benchmarks/callback_overhead.py``): the cheap sets (alignment, cosine; the maps,
masses and tokens) run every probe epoch; the sets that run the model on many perturbed inputs
(ROAD/ARCC, faithfulness, COSE, RFS, the catalogue's deletion/insertion, pixel flipping,
faithfulness correlation and robustness, the randomisation checks:
:data:`~sage.metrics.suite.PERTURBATION_SETS`) run every
``slow_every_n_epochs`` epochs and always at the last epoch, so the final model always has
every number. ``slow_every_n_epochs=1`` runs everything every epoch. At the end of fit one
line reports the callback's total time and its share of the fit.

At the end of fit it runs COSE with model perturbations: weight snapshots it saved at
earlier epochs plus a random-weights copy of the architecture, logged as
``val_sage/<method>/cose_models/...`` with the snapshots used in ``val_sage/cose_models.json``.

Inside Lightning's validation loop (which runs under ``torch.inference_mode``) the work runs
with inference mode off and gradients on, the module's train/eval mode restored, every hook
released by the saliency methods, and the global RNG streams (torch, numpy, random) restored
afterwards, so training with and without the callback is identical for a seed.

Distributed training: the callback computes and logs on global rank 0 only (the probe set
is small; other ranks skip it and continue); nothing is gathered.
"""

from __future__ import annotations

import inspect
import json
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from ..data.datamodule import PreparedDataModule, PreparedImages, image_transform
from ..data.prepared import SPLITS
from ..errors import SageError
from ..explain.batch import discriminative_parts
from ..explain.sinks import Columns, PooledResults
from ..explain.sinks.tokens import token_frames
from ..explain.stage import explain_stream
from ..metrics.registry import metric_set
from ..metrics.suite import (
    MASK_NUMBERS,
    NO_MASKS,
    PERTURBATION_SETS,
    check_metric_sets,
    is_pooled,
    mask_free_sets,
    pooled_set,
)
from ..metrics.transforms import sample_transforms
from ..models import create_backbone
from ..plots.probe_mosaic import probe_mosaic
from ..saliency.methods import SaliencyMethod, create_method
from ..tracking.breakdowns import split_breakdowns
from .probe import ProbeSet

# metric columns also broken down per class (besides fg_mass), in the breakdowns table
_PER_CLASS = ("pointing_game/fg", "iou/fg", "arcc")


def _plain(value: Any) -> Any:
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


@contextmanager
def isolated(device: torch.device) -> Iterator[None]:
    """Gradients on, inference mode off, and every global RNG stream restored on exit."""
    devices = [device.index or 0] if device.type == "cuda" else []
    # the legacy global numpy stream is what seed_everything seeds and user code may draw from
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        with (
            torch.random.fork_rng(devices=devices),
            torch.inference_mode(False),
            torch.enable_grad(),
        ):
            yield
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)


def _check_metric_options(metrics: Mapping[str, Any]) -> None:
    """Each set's options against its function's keyword parameters."""
    for name, options in metrics.items():
        if options is not None and not isinstance(options, Mapping):
            raise SageError(f"metrics.{name} must be a mapping of options")
        # pooled sets take their options in the batch function, plain sets in the set itself
        fn = pooled_set(name).batch if is_pooled(name) else metric_set(name)
        params = inspect.signature(fn).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        known = [k for k in params if k != "ctx"]
        unknown = sorted(set(options or {}) - set(known))
        if unknown:
            raise SageError(
                f"metrics.{name}: unknown options {unknown}; "
                f"{name} takes {', '.join(known) or 'no options'}"
            )


def _check_settings(per_class: Any, batch_size: Any, split: Any, grids: Any) -> None:
    for key, value in (("per_class", per_class), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise SageError(f"{key} must be a positive integer, got {value!r}")
    if split not in SPLITS:
        raise SageError(f"split must be one of {SPLITS}, got {split!r}")
    grids = _plain(grids)
    if not all(
        isinstance(g, Sequence) and len(g) == 2 and all(isinstance(x, int) and x > 0 for x in g)
        for g in grids
    ):
        raise SageError(f"grids must be [rows, cols] pairs, got {grids!r}")


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


class SageCallback(pl.Callback):
    """Explains a probe set at validation time and logs SAGE metrics and artifacts.

    Args:
        methods: saliency method names, or ``{name: {param: value}}``.
        metrics: metric sets ``{set: options}`` (default: alignment + ARCC); ``cose`` and
            ``rfs`` are selectable (pooled over the probe set).
        per_class: probe images per class.
        every_n_epochs: explain every N validation epochs (0 turns the callback off).
        grids: token grids.
        seed: probe selection, COSE transforms and the random-weights copy.
        batch_size: probe images per saliency batch.
        artifacts: log the per-epoch mosaic, token table and summary.
        out_dir: where artifacts are written before logging (default: the trainer's
            ``default_root_dir``/val_sage).
        end_cose: run COSE's model-perturbation sensitivity at the end of fit.
        snapshots: earlier-epoch weight snapshots kept for it (evenly spaced over the fit).
        cose_transforms: input transforms sampled for that COSE run.
        split: the split the probe comes from.
        slow_every_n_epochs: run the perturbation sets (ROAD/ARCC, faithfulness, COSE, RFS)
            every N epochs and at the last epoch (1: every probe epoch).
        breakdowns: log the per-class, per-part and correct/error breakdowns as scalars too
            (they always go to ``val_sage/breakdowns.csv``).
    """

    def __init__(
        self,
        methods: Sequence[str] | Mapping[str, Mapping[str, Any]] = ("gradcam",),
        metrics: Mapping[str, Mapping[str, Any] | None] | None = None,
        per_class: int = 3,
        every_n_epochs: int = 1,
        grids: Sequence[Sequence[int]] = ((4, 4), (8, 8)),
        seed: int = 0,
        batch_size: int = 32,
        artifacts: bool = True,
        out_dir: str | Path | None = None,
        end_cose: bool = True,
        snapshots: int = 2,
        cose_transforms: int = 2,
        split: str = "val",
        slow_every_n_epochs: int = 3,
        breakdowns: bool = False,
    ) -> None:
        methods, metrics = _plain(methods), _plain(metrics)
        if isinstance(methods, str):
            methods = [methods]
        if not isinstance(methods, Mapping):
            methods = {m: {} for m in methods}
        if not methods:
            raise SageError("SageCallback needs at least one saliency method")
        self.method_params = {k: dict(v or {}) for k, v in methods.items()}
        self.metrics = {"alignment": {}, "arcc": {}} if metrics is None else dict(metrics)
        # every option is checked here, at construction: train.py builds the callbacks before
        # the MLflow run exists, so a config error costs no run (it used to surface at the
        # first validation epoch, after the run was created, and leave it FAILED)
        check_metric_sets(self.metrics)
        _check_metric_options(self.metrics)
        _check_settings(per_class=per_class, batch_size=batch_size, split=split, grids=grids)
        self.methods: dict[str, SaliencyMethod] = {
            k: create_method(**({"name": k} | p)) for k, p in self.method_params.items()
        }
        self.per_class, self.every_n_epochs, self.seed = int(per_class), int(every_n_epochs), seed
        self.grids = [tuple(int(x) for x in g) for g in _plain(grids)]
        self.batch_size, self.artifacts, self.end_cose = int(batch_size), artifacts, end_cose
        self.out_dir = Path(out_dir) if out_dir else None
        self.n_snapshots, self.cose_transforms, self.split = snapshots, cose_transforms, split
        if int(slow_every_n_epochs) < 1:
            raise SageError(f"slow_every_n_epochs must be >= 1, got {slow_every_n_epochs}")
        self.slow_every_n_epochs = int(slow_every_n_epochs)
        self.breakdowns = bool(breakdowns)
        self._breakdown_rows: list[pd.DataFrame] = []  # every probe epoch's breakdowns
        self._last_epoch: int | None = None
        self._seconds = 0.0  # the callback's own time over the fit
        self._fit_start = 0.0
        self.probe: ProbeSet | None = None
        self._snapshot_epochs: set[int] = set()
        self.snapshot_paths: dict[int, Path] = {}
        self.history: list[dict[str, float]] = []  # logged scalars per probe epoch
        self.skipped_metrics: dict[str, str] = {}  # set or number -> why it is not computed
        self._masks = True

    # ------------------------------------------------------------------ setup

    def _dir(self, trainer: pl.Trainer) -> Path:
        return self.out_dir or Path(trainer.default_root_dir) / "val_sage"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self.every_n_epochs <= 0 or self.probe is not None:
            return
        dm = trainer.datamodule
        if not isinstance(dm, PreparedDataModule):
            raise SageError("SageCallback needs a PreparedDataModule (masks come from it)")
        data = dm.data
        images = PreparedImages(
            data,
            self.split,
            image_transform(dm.image_size, dm.mean, dm.std),
            with_masks=True,
            with_parts=bool(data.part_names),
        )
        with isolated(torch.device("cpu")):
            self.probe = ProbeSet.load(images, self.per_class, self.seed)
        self._data, self._mean, self._std = data, dm.mean, dm.std
        self._lut = discriminative_parts(data, self.probe.frame)
        # masker=none: the stored "mask" is the whole frame, so fg_mass would read 1.0 and the
        # mask sets would score a constant; the probe goes without masks and they are skipped
        self._masks = data.has_masks
        if not data.has_masks:
            self.metrics, self.skipped_metrics = mask_free_sets(
                self.metrics, data.part_names.values()
            )
            self.skipped_metrics |= {n: NO_MASKS for n in MASK_NUMBERS}
            rank_zero_info(f"SAGE callback skips: {', '.join(self.skipped_metrics)} ({NO_MASKS})")
        bounded = bool(trainer.max_epochs and trainer.max_epochs > 0)
        max_epochs = trainer.max_epochs if bounded else 1
        self._last_epoch = max_epochs - 1 if bounded else None
        probe_epochs = [e for e in range(max_epochs - 1) if (e + 1) % self.every_n_epochs == 0]
        if self.end_cose and self.n_snapshots > 0 and probe_epochs:
            picks = np.linspace(0, len(probe_epochs) - 1, min(self.n_snapshots, len(probe_epochs)))
            self._snapshot_epochs = {probe_epochs[round(i)] for i in picks}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._seconds, self._fit_start = 0.0, time.perf_counter()
        if self.probe is None or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if hasattr(logger, "experiment") and hasattr(logger.experiment, "set_tag"):
                logger.experiment.set_tag(logger.run_id, "val_sage/probe", self.probe.digest)
                if self.skipped_metrics:
                    skipped = ", ".join(self.skipped_metrics)
                    logger.experiment.set_tag(logger.run_id, "val_sage/skipped_metrics", skipped)
        if self.artifacts:
            path = self._dir(trainer) / "probe.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"digest": self.probe.digest, "image_ids": self.probe.ids}))
            self._log_artifact(trainer, path, "val_sage")

    # Checkpoint state: the weight snapshots saved so far. A fit resumed from a checkpoint
    # (train.py ckpt_path=, which reuses the run directory) still compares the final model
    # with the snapshots of the epochs before the interruption.
    def state_dict(self) -> dict[str, Any]:
        return {"snapshot_paths": {str(e): str(p) for e, p in self.snapshot_paths.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = {int(e): Path(p) for e, p in state_dict.get("snapshot_paths", {}).items()}
        # a snapshot deleted or left behind in a moved directory is not used
        self.snapshot_paths.update({e: p for e, p in saved.items() if p.is_file()})

    # ------------------------------------------------------------------ per epoch

    def _due(self, trainer: pl.Trainer) -> bool:
        return (
            self.probe is not None
            and not trainer.sanity_checking
            and (trainer.current_epoch + 1) % self.every_n_epochs == 0
            and trainer.is_global_zero
        )

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._due(trainer):
            return
        start = time.perf_counter()
        net = pl_module.net
        epoch = trainer.current_epoch
        out = self._dir(trainer) / f"epoch_{epoch:03d}"
        slow = (epoch + 1) % self.slow_every_n_epochs == 0 or epoch == self._last_epoch
        with isolated(pl_module.device):
            scalars, tables = self.evaluate(
                net, pl_module.device, out if self.artifacts else None, slow=slow
            )
        if epoch in self._snapshot_epochs:
            path = self._dir(trainer) / "snapshots" / f"epoch{epoch:03d}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, path)
            self.snapshot_paths[epoch] = path
        if self.artifacts:
            tables["tokens"].to_csv(out / "tokens.csv", index=False)
            summary = {"epoch": epoch, "probe": self.probe.digest, "metrics": scalars}
            (out / "summary.json").write_text(json.dumps(summary, indent=2))
        headline, breakdowns = split_breakdowns(scalars, self._data.part_names.values())
        self._log_metrics(trainer, scalars if self.breakdowns else headline)
        if self.artifacts:
            self._log_artifact(trainer, out, f"val_sage/epoch_{epoch:03d}")
        self._log_breakdowns(trainer, epoch, breakdowns)
        # the callback's own time, logging included (so it is logged on its own, last)
        seconds = time.perf_counter() - start
        self._seconds += seconds
        self._log_metrics(trainer, {"val_sage/seconds": seconds})
        self.history.append({"epoch": epoch, **scalars, "val_sage/seconds": seconds})

    def evaluate(
        self, net: nn.Module, device: torch.device, out: Path | None = None, slow: bool = True
    ) -> tuple[dict[str, float], dict[str, pd.DataFrame]]:
        """Explain the probe with every method; scalars ``val_sage/...`` and the token table.

        Call inside :func:`isolated` (the callback does). Writes mosaics to ``out`` if given.
        ``slow=False`` leaves out the perturbation sets (the callback's schedule).
        """
        metric_sets = {k: v for k, v in self.metrics.items() if slow or k not in PERTURBATION_SETS}
        probe = self.probe
        if probe is None:
            raise SageError("SageCallback.evaluate before setup: no probe set")
        labels_np = probe.labels.numpy()
        scalars: dict[str, float] = {}
        token_tables = []
        first = True
        for key, method in self.methods.items():
            columns = Columns(minmax=out is not None, as_float=True)
            pooled = PooledResults()
            for item in explain_stream(
                net,
                method,
                key,
                self._batches(),
                device=device,
                grids=self.grids,
                mean=self._mean,
                std=self._std,
                metric_sets=metric_sets,
                pooled_model_level=first,
                part_names=self._data.part_names,
                discriminative=self._lut,
            ):
                columns.add(item)
                pooled.add(item)
                token_tables += token_frames(item)
            cols = columns.arrays()
            minmax = cols.pop("minmax", None)  # maps, not a per-image scalar
            scalars |= self._scalars(key, cols, labels_np)
            scalars |= pooled.flat("val_sage")
            if first:
                scalars["val_sage/acc"] = float((cols["pred"] == labels_np).mean())
            if out is not None:
                self._mosaic(key, cols, minmax, out)
            first = False
        tokens = pd.concat(token_tables, ignore_index=True)
        return {k: v for k, v in scalars.items() if np.isfinite(v)}, {"tokens": tokens}

    def _batches(self, keys: Sequence[str] = ("image", "label", "mask", "parts")) -> Iterator:
        """The probe as batch mappings for :func:`~sage.explain.stage.explain_stream`."""
        probe, n = self.probe, len(self.probe.ids)
        tensors = {"image": probe.images, "label": probe.labels}
        if self._masks:
            tensors["mask"] = probe.masks
        if probe.parts is not None:
            tensors["parts"] = probe.parts
        for s in range(0, n, self.batch_size):
            sl = slice(s, min(s + self.batch_size, n))
            yield {"image_id": probe.ids[sl]} | {k: tensors[k][sl] for k in keys if k in tensors}

    def _scalars(self, key: str, cols: dict[str, np.ndarray], labels: np.ndarray) -> dict:
        prefix = f"val_sage/{key}"
        valid = cols["zero"] < 0.5
        correct = cols["pred"] == labels
        out = {f"{prefix}/zero_maps": float((~valid).sum())}
        names = {"fg_mass": "a_fg", "bg_mass": "a_bg"}
        names |= {c: c for c in cols if c not in ("pred", "conf", "a_fg", "a_bg", "zero")}
        for name, column in names.items():
            values = np.where(valid, cols[column], np.nan)
            _, _, region = name.partition("/")
            # EA_PG / EA_IoU are these means of pointing_game / iou: one name, not two
            out[f"{prefix}/{name}"] = _mean(values)
            if region in ("", "fg"):  # correct/error splits for the driver, not every part
                out[f"{prefix}/{name}/correct"] = _mean(values[correct])
                out[f"{prefix}/{name}/error"] = _mean(values[~correct])
            if name == "fg_mass" or name in _PER_CLASS:
                for k in np.unique(labels):
                    out[f"{prefix}/{name}/c{int(k)}"] = _mean(values[labels == k])
        return out

    def _mosaic(self, key: str, cols: dict, minmax: np.ndarray, out: Path) -> None:
        probe = self.probe
        mean = torch.tensor(self._mean)[:, None, None]
        std = torch.tensor(self._std)[:, None, None]
        rgb = ((probe.images * std + mean).clamp(0, 1) * 255).round().byte()
        probe_mosaic(
            rgb.permute(0, 2, 3, 1).numpy(),
            minmax,
            probe.masks.numpy(),
            probe.labels.numpy(),
            cols["pred"].astype(int),
            cols["a_fg"],
            self._data.classes,
            out / f"mosaic_{key}.png",
            f"{key}: probe set (green correct, red error; white = foreground)",
        )

    # ------------------------------------------------------------------ end of fit

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.probe is None or not trainer.is_global_zero:
            return
        fit = time.perf_counter() - self._fit_start
        cose = 0.0
        if self.end_cose:
            start = time.perf_counter()
            scalars, used = self.model_cose(pl_module.net, pl_module.device)
            path = self._dir(trainer) / "cose_models.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(used, indent=2))
            cose = time.perf_counter() - start
            scalars["val_sage/cose_seconds"] = cose
            self._log_metrics(trainer, scalars)
            self._log_artifact(trainer, path, "val_sage")
        # one line per run, so the user sees what the callback costs
        rank_zero_info(
            f"SAGE callback: {len(self.history)} probe epochs ({len(self.probe.ids)} images, "
            f"{', '.join(self.methods)}), {self._seconds:.1f} s = {self._seconds / fit:.0%} of "
            f"the fit's {fit:.1f} s"
            + (f"; end-of-fit COSE {cose:.1f} s" if self.end_cose else "")
            + " (callbacks.sage.every_n_epochs / slow_every_n_epochs / per_class tune it)"
        )

    def model_cose(self, net: nn.Module, device: torch.device) -> tuple[dict[str, float], dict]:
        """COSE of the final model against earlier snapshots and a random-weights copy."""
        backbone = getattr(net, "sage_backbone", None)
        n_classes = len(self._data.classes)
        models, used = [], {"snapshots": {}, "random_copy": backbone is not None}
        with isolated(device):
            for epoch, path in sorted(self.snapshot_paths.items()):
                if backbone is None:
                    break
                copy = create_backbone(backbone, n_classes)
                copy.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
                models.append(copy.to(device))
                used["snapshots"][f"epoch_{epoch:03d}"] = str(path)
            if backbone is not None:
                torch.manual_seed(self.seed)
                models.append(create_backbone(backbone, n_classes).to(device))
            transforms = sample_transforms(self.cose_transforms, seed=self.seed)
            scalars = {}
            for key, method in self.methods.items():
                # the COSE set reads its transforms and model perturbations from the cache
                cache = {"cose_transforms": transforms, "cose_models": models}
                pooled = PooledResults()
                for item in explain_stream(
                    net,
                    method,
                    key,
                    self._batches(("image", "label", "mask")),
                    cache=cache,
                    device=device,
                    grids=self.grids[:1],
                    mean=self._mean,
                    std=self._std,
                    metric_sets={"cose": {}},
                ):
                    pooled.add(item)
                for metric, value in pooled.scores("val_sage")[f"val_sage/{key}/cose"].items():
                    if np.isfinite(value):
                        scalars[f"val_sage/{key}/cose_models/{metric}"] = value
        return scalars, used

    # ------------------------------------------------------------------ logging

    def _log_breakdowns(self, trainer: pl.Trainer, epoch: int, breakdowns: dict) -> None:
        """Append the epoch's breakdowns to ``val_sage/breakdowns.csv`` and log the table."""
        if not breakdowns:
            return
        frame = pd.DataFrame({"key": list(breakdowns), "value": list(breakdowns.values())})
        self._breakdown_rows.append(frame.assign(epoch=epoch, step=trainer.global_step))
        path = self._dir(trainer) / "breakdowns.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pd.concat(self._breakdown_rows, ignore_index=True)
        table[["epoch", "step", "key", "value"]].to_csv(path, index=False)
        self._log_artifact(trainer, path, "val_sage")

    @staticmethod
    def _log_metrics(trainer: pl.Trainer, scalars: dict[str, float]) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=trainer.global_step)

    @staticmethod
    def _log_artifact(trainer: pl.Trainer, path: Path, artifact_path: str) -> None:
        for logger in trainer.loggers:
            run_id = getattr(logger, "run_id", None)
            client = getattr(logger, "experiment", None)
            if run_id is None or not hasattr(client, "log_artifacts"):
                continue  # loggers without artifacts: the files stay in out_dir
            if path.is_dir():
                client.log_artifacts(run_id, str(path), artifact_path)
            else:
                client.log_artifact(run_id, str(path), artifact_path)
