"""The SAGE study in one command: every step of the paper's pipeline on SynthDrivers.

``run(cfg)`` (``python -m sage.study [demo.size=tiny]``) runs, in order:

1. generate both SynthDrivers domains and prepare their four variants;
2. a Hydra multirun of ``train.py`` (the SAGE validation callback on) over the variants of
   both domains — joblib-parallel when the launcher is installed;
3. the cross-domain grid in both directions (``evaluate.py``), with confidence clustering
   and GradCAM statistics per cluster;
4. ``explain.py`` for every model (GradCAM, alignment + ARCC + RFS) and, for the compared
   variants (full vs seg), every configured method with every metric set;
5. the divergence analysis between the compared models;
6. findings computed from the numbers, printed and written to ``outputs/report/index.html``.

Training runs as subprocesses (that is what distributes); the other steps run in this
process on configs composed from ``sage/conf/`` exactly as their entry points would. All runs
land in one MLflow experiment and are nested under a ``study-<size>-<model>/...`` parent run,
opened before the first step.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import RunStatus
from omegaconf import DictConfig, OmegaConf

from ..compose import compose_task
from ..data.ensure import ensure_prepared
from ..errors import SageError
from ..tracking.liveness import process_tags
from ..tracking.run_record import source_checkout
from ..tracking.store import prepare_experiment


def _banner(step: str, detail: str = "") -> None:
    print(f"\n=== {step}{': ' + detail if detail else ''}", flush=True)


class Study:
    """State shared by the steps: config, sizes, paths, MLflow experiment and parent run."""

    def __init__(self, cfg: DictConfig) -> None:
        size = str(cfg.demo.size)
        if size not in cfg.sizes:
            raise SageError(f"demo.size must be one of {list(cfg.sizes)}, got {size!r}")
        self.cfg, self.size, self.s = cfg, size, cfg.sizes[size]
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.dir = Path(cfg.paths.outputs_dir) / "study" / f"{self.stamp}-{size}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.root = str(cfg.paths.root_dir)
        # tiny data lives apart: prepared datasets are reused by name, never regenerated
        self.data_dir = str(cfg.paths.data_dir) + ("" if size == "full" else f"-{size}")
        self.experiment = str(cfg.study.experiment) + ("" if size == "full" else f"-{size}")
        self.tracking_uri = str(cfg.logger.tracking_uri)
        self.t0 = time.time()
        # reuse_training: analyse the newest finished training runs instead of training again
        self.since = 0.0 if cfg.study.get("reuse_training") else self.t0
        self.timings: dict[str, float] = {}
        self.common = [
            f"paths.root_dir={self.root}",
            f"paths.data_dir={self.data_dir}",
            f"logger.experiment_name={self.experiment}",
            f"logger.tracking_uri={self.tracking_uri}",
        ]
        self.synth = [f"dataset.synth.images_per_class={self.s.images_per_class}"]
        if self.s.get("n_subjects"):
            self.synth.append(f"dataset.synth.n_subjects={self.s.n_subjects}")

    # ------------------------------------------------------------------ helpers

    def compose(self, task: str, overrides: list[str], name: str) -> DictConfig:
        return compose_task(task, [*self.common, *overrides], output_dir=self.dir / name)

    def timed(self, step: str, fn, *args, **kwargs) -> Any:
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.timings[step] = time.perf_counter() - start
        print(f"--- {step}: {self.timings[step]:.0f} s", flush=True)
        return result

    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(tracking_uri=self.tracking_uri)

    # ------------------------------------------------------------------ steps

    def prepare(self) -> None:
        twins = [
            self.cfg.study.cue_shuffle[d]
            for d in self.cfg.study.directions
            if d in self.cfg.study.cue_shuffle
        ]
        for source in [*self.cfg.study.directions, *twins]:
            cfg = self.compose("train", [f"dataset={source}/full", *self.synth], "prepare")
            path = ensure_prepared(OmegaConf.to_container(cfg.dataset, resolve=True))
            print(f"{source}: {path.parent}/{path.name.rsplit('-', 1)[0]}-{{variants}}")

    @property
    def seeds(self) -> list[int]:
        """Training seeds (``study.seeds``); each trains every model once."""
        seeds = [int(s) for s in self.cfg.study.get("seeds") or [self.cfg.get("seed", 42)]]
        if len(set(seeds)) != len(seeds):
            raise SageError(f"study.seeds has repeated values: {seeds}")
        return seeds

    def train(self) -> dict[tuple[str, str, int], str]:
        """The sweep; returns (dataset name, variant, seed) -> training run id."""
        datasets = [f"{d}/{v}" for d in self.cfg.study.directions for v in self.cfg.study.variants]
        jobs = int(self.cfg.study.parallel_jobs)
        parallel = jobs > 1 and importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher")
        cmd = [
            sys.executable,
            "-m",  # the module, not the checkout's train.py: an installed package has no such file
            "sage.commands.train",
            "-m",
            f"dataset={','.join(datasets)}",
            f"model={self.cfg.study.model}",
            f"trainer.max_epochs={self.s.epochs}",
            f"seed={','.join(map(str, self.seeds))}",
            *self.synth,
            *self.common,
            *[str(o) for o in self.cfg.study.train_overrides],
            *[str(o) for o in self.s.get("train_overrides") or []],
            f"hydra.sweep.dir={self.dir / 'train'}",
            "+trainer.enable_progress_bar=false",
            "+trainer.enable_model_summary=false",
        ]
        env = dict(os.environ, SAGE_ROOT=self.root)
        checkout = source_checkout()
        if checkout is not None:  # the sweep imports the same sage as this process
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(checkout), env.get("PYTHONPATH")])
            )
        if parallel:
            cmd += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]
            env["OMP_NUM_THREADS"] = "1"  # one thread per job: jobs × threads = cores
        n = len(datasets) * len(self.seeds)
        print(("parallel" if parallel else "sequential") + f": {n} trainings")
        print(" ".join(["python", *cmd[1:]]), flush=True)
        log = self.dir / "train.log"
        with open(log, "w") as handle:
            done = subprocess.run(
                cmd, cwd=self.root, env=env, stdout=handle, stderr=subprocess.STDOUT
            )
        if done.returncode:
            tail = log.read_text().splitlines()[-15:]
            raise SageError("training sweep failed (log: {}):\n{}".format(log, "\n".join(tail)))
        return self.training_runs()

    def training_runs(self) -> dict[tuple[str, str, int], str]:
        """The newest finished training run per (dataset, variant, seed) since ``self.since``."""
        client = self.client()
        exp = client.get_experiment_by_name(self.experiment)
        if exp is None:
            raise SageError(f"no MLflow experiment {self.experiment!r} in {self.tracking_uri}")
        runs = client.search_runs(
            [exp.experiment_id], self.since_filter(), order_by=["attributes.start_time DESC"]
        )
        found: dict[tuple[str, str, int], str] = {}
        for r in runs:
            seed = int(r.data.params.get("seed", -1))
            if seed in self.seeds:
                key = (r.data.tags["dataset"], r.data.tags["variant"], seed)
                found.setdefault(key, r.info.run_id)
        return found

    def train_metrics(self, runs: dict[tuple[str, str], str]) -> dict[str, dict[str, float]]:
        """The SAGE callback's last-epoch numbers of each training run, by model label."""
        client = self.client()
        out = {}
        for (name, variant), run_id in runs.items():
            logged = client.get_run(run_id).data.metrics
            out[f"{name}/{variant}"] = {
                "val_sage/fg_mass": logged.get("val_sage/gradcam/fg_mass", float("nan")),
                "val_sage/arcc": logged.get("val_sage/gradcam/arcc", float("nan")),
            }
        return out

    def since_filter(self) -> str:
        """Finished training runs of this study (or, with ``study.reuse_training``, any)."""
        return (
            "tags.stage = 'train' and attributes.status = 'FINISHED' and "
            f"attributes.start_time >= {int(self.since * 1000)}"
        )

    def evaluate(
        self, source: str, target: str, runs: dict[tuple[str, str], str], tag: str = ""
    ) -> dict:
        from ..evaluation import run as evaluate_run

        name = self.dataset_name(source)
        # rows listed in study.variants order, so row i and column i are the same variant
        rows = [runs[(name, v)] for v in self.cfg.study.variants]
        targets = [f"{target}/{v}" for v in self.cfg.study.variants]
        # in-domain test images of every variant: each model's own-variant accuracy per image
        targets += [f"{source}/{v}" for v in self.cfg.study.variants]
        twin = self.cfg.study.cue_shuffle.get(source)
        if twin:  # full images with the sticker colours shuffled (the same scenes)
            targets.append(f"{twin}/full")
        overrides = [
            f"models=[{','.join(rows)}]",
            f"targets=[{','.join(targets)}]",
            self.target_overrides(),
            "saliency.methods=[gradcam]",
            "progress=false",
            # per-cell figures dominate a grid's cost: only the compared variants' own cells
            "cell_figures=[{}]".format(
                ",".join(
                    f'"{name}/{v}|{self.dataset_name(target)}/{v}"' for v in self.cfg.study.compare
                )
            ),
        ]
        if self.s.eval_limit:
            overrides.append(f"limit={self.s.eval_limit}")
        cfg = self.compose("evaluate", overrides, f"evaluate-{source}{tag}")
        result = evaluate_run(cfg)
        result["target_name"] = self.dataset_name(target)
        result["twin_name"] = self.dataset_name(twin) if twin else None
        return result

    def target_overrides(self) -> str:
        """The study's SynthDrivers size settings, applied to every dataset it evaluates on."""
        return "target_overrides=[{}]".format(",".join(f'"{o}"' for o in self.synth))

    def dataset_name(self, config: str) -> str:
        cfg = self.compose("train", [f"dataset={config}/full"], "names")
        return str(cfg.dataset.name)

    def explain(
        self, run_id: str, dataset: str, methods: list[str], metrics: list[str], tag: str = ""
    ) -> dict:
        from ..explain import run as explain_run

        overrides = [
            f"checkpoint={run_id}",
            f"dataset={dataset}",
            f"cam=[{','.join(methods)}]",
            f"metrics=[{','.join(metrics)}]",
            *(
                o
                for o in self.cfg.study.get("metric_overrides") or []
                if o.split("=")[0].split(".")[1] in metrics
            ),
            f"limit={self.s.explain_limit}",
            "overlays=8",
            "progress=false",
            *self.synth,
        ]
        cfg = self.compose("explain", overrides, f"explain-{run_id[:8]}-{len(methods)}m{tag}")
        result = explain_run(cfg)
        result["output_dir"] = str(cfg.paths.output_dir)
        return result

    def divergence(self, runs: list[str], dataset: str) -> dict | None:
        from ..evaluate import run as evaluate_run

        overrides = [
            "mode=divergence",
            f"models=[{','.join(runs)}]",
            f"divergence.dataset={dataset}",
            self.target_overrides(),
            "progress=false",
        ]
        if self.s.eval_limit:
            overrides.append(f"limit={self.s.explain_limit * 2}")
        cfg = self.compose("evaluate", overrides, "divergence")
        result = evaluate_run(cfg)
        result["output_dir"] = str(cfg.paths.output_dir)
        return result

    def open_parent(self) -> str:
        """Create the study's experiment if needed and open its parent run; return its id."""
        exp_id = prepare_experiment(
            self.tracking_uri, self.experiment, self.cfg.logger.get("artifact_location")
        )
        parent = self.client().create_run(
            exp_id,
            # what tells studies apart first: the UI's run-name column is narrow
            run_name=f"study-{self.size}-{self.cfg.study.model}/synthdrivers/{self.stamp}",
            tags={"stage": "study", "demo_size": self.size, **process_tags()},
        )
        return parent.info.run_id

    def close_parent(self, parent_id: str, err: BaseException) -> None:
        """Close a failed study's parent run FAILED, its runs so far nested under it.

        Best effort, while the failure propagates: a store that cannot be written leaves the
        run to the next command's dead-run sweep."""
        client = self.client()
        try:
            self.nest(parent_id)
            client.set_tag(parent_id, "sage.error", f"{type(err).__name__}: {err}"[:5000])
            status = RunStatus.KILLED if isinstance(err, KeyboardInterrupt) else RunStatus.FAILED
            client.set_terminated(parent_id, RunStatus.to_string(status))
        except Exception as close_err:  # never mask the study's own error
            print(f"warning: could not close study run {parent_id}: {close_err}", file=sys.stderr)

    def nest(self, parent_id: str) -> int:
        """Nest every run this study created (and that has no parent) under ``parent_id``."""
        client = self.client()
        exp = client.get_experiment_by_name(self.experiment)
        n = 0
        for r in client.search_runs(
            [exp.experiment_id], f"attributes.start_time >= {int(self.t0 * 1000)}"
        ):
            if r.info.run_id != parent_id and "mlflow.parentRunId" not in r.data.tags:
                client.set_tag(r.info.run_id, "mlflow.parentRunId", parent_id)
                n += 1
        return n


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the whole study; return the findings (also printed and written as HTML).

    The parent run is opened first, so its start time and duration are the study's own
    (it used to be created after the work: a 2.5 s run listed after its children). A study
    that fails closes it FAILED, with the error as its ``sage.error`` tag and the runs made
    so far nested under it.
    """
    study = Study(cfg)
    parent_id = study.open_parent()
    try:
        findings = _run_steps(cfg, study, parent_id)
    except BaseException as err:
        study.close_parent(parent_id, err)
        raise
    return findings


def _run_steps(cfg: DictConfig, study: Study, parent_id: str) -> dict[str, Any]:
    from .evidence import load_seed_evidence
    from .findings import collect_findings, write_findings_json
    from .quantities import Domain
    from .report import write_report
    from .summary import print_summary

    seeds = study.seeds
    _banner("SAGE study", f"size={study.size}, seeds {seeds}, outputs in {study.dir}")
    _banner("1/6 data", "generate SynthDrivers and prepare 4 variants per domain")
    study.timed("data", study.prepare)
    _banner("2/6 training sweep", f"{cfg.study.model}, {study.s.epochs} epochs")
    if cfg.study.get("reuse_training"):
        print("reusing the newest finished training runs of the experiment")
        all_runs = study.training_runs()
    else:
        all_runs = study.timed("training", study.train)
    expected = {
        (study.dataset_name(d), v, seed)
        for d in cfg.study.directions
        for v in cfg.study.variants
        for seed in seeds
    }
    missing = sorted(expected - set(all_runs))
    if missing:
        raise SageError(f"training runs missing for {missing} (see {study.dir / 'train.log'})")
    domains = [
        Domain(
            study.dataset_name(source),
            study.dataset_name(target),
            study.dataset_name(twin) if (twin := cfg.study.cue_shuffle.get(source)) else None,
        )
        for source, target in cfg.study.directions.items()
    ]

    first = next(iter(cfg.study.directions))
    first_name = study.dataset_name(first)
    evidence, grids, explains, first_own = [], {}, {}, {}
    for k, seed in enumerate(seeds):
        runs = {(n, v): rid for (n, v, s), rid in all_runs.items() if s == seed}
        tag = f"-seed{seed}" if len(seeds) > 1 else ""
        _banner(f"3/6 cross-domain grids{tag}", "both directions, in-domain, cue-shuffled")
        seed_grids = {}
        for source, target in cfg.study.directions.items():
            seed_grids[source] = study.timed(
                f"grid {source}{tag}", study.evaluate, source, target, runs, tag
            )
        _banner(f"4/6 explain{tag}", "GradCAM per model on full images and its own variant")
        seed_explains: dict[tuple[str, str], dict] = {}
        own: dict[tuple[str, str], dict] = {}
        for (name, variant), run_id in sorted(runs.items()):
            source = next(d for d in cfg.study.directions if study.dataset_name(d) == name)
            # all methods and metric sets for the compared models of the first seed
            deep = k == 0 and name == first_name and variant in cfg.study.compare
            methods = list(cfg.study.methods) if deep else ["gradcam"]
            metrics = list(cfg.study.metrics) if deep else ["alignment", "arcc", "rfs"]
            if deep and variant == cfg.study.compare[0] and cfg.study.get("sanity"):
                methods += list(cfg.study.get("baselines") or [])
                metrics += list(cfg.study.sanity)
            seed_explains[(name, variant)] = study.timed(
                f"explain {name}/{variant}{tag}",
                study.explain,
                run_id,
                f"{source}/full",
                methods,
                metrics,
            )
            if variant != "full":  # what the model sees in its own regime, labelled as such
                own[(name, variant)] = study.timed(
                    f"explain {name}/{variant} on {variant}{tag}",
                    study.explain,
                    run_id,
                    f"{source}/{variant}",
                    ["gradcam"],
                    ["alignment"],
                    f"-own{tag}",
                )
        if k == 0:
            grids, explains, first_own = seed_grids, seed_explains, own
        evidence.append(
            load_seed_evidence(
                seed,
                runs,
                seed_grids,
                seed_explains,
                own,
                study.train_metrics(runs),
                study.client(),
            )
        )

    _banner("5/6 divergence", f"{first_name}: " + " vs ".join(cfg.study.compare))
    pair = [all_runs[(first_name, v, seeds[0])] for v in cfg.study.compare]
    try:
        divergence = study.timed("divergence", study.divergence, pair, f"{first}/full")
    except Exception as err:
        print(f"divergence analysis failed: {err}", file=sys.stderr)
        divergence = {"error": str(err)}

    _banner("6/6 findings and report")
    findings = collect_findings(
        evidence, domains, compare=list(cfg.study.compare), divergence=divergence
    )
    findings |= {"grids": _grid_tables(grids), "grid_results": grids, "explains": explains}
    findings["own_explains"] = first_own
    client = study.client()
    n_nested = study.nest(parent_id)
    report = write_report(findings, Path(cfg.study.report_dir), study)
    write_findings_json(findings, report.parent / "findings.json")
    for key, value in findings["scalars"].items():
        client.log_metric(parent_id, key, value)
    client.log_artifacts(parent_id, str(report.parent), "report")
    client.set_terminated(parent_id)
    findings["parent_run_id"] = parent_id
    findings["report"] = str(report)
    findings["nested_runs"] = n_nested
    print_summary(findings, study)
    return findings


def _grid_tables(grids: dict[str, dict]) -> dict[str, Any]:
    """Each grid's accuracy table (rows: trained on, columns: tested on)."""
    import pandas as pd

    tables = {}
    for source, result in grids.items():
        path = Path(result.get("output_dir", "")) / "grid" / "acc.csv"
        if path.is_file():
            tables[source] = pd.read_csv(path, index_col=0)
    return tables
