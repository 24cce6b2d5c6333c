"""Scaling out: launcher presets, a parallel local sweep on one SQLite store, CPU DDP training.

The subprocess tests run the real entry point (Hydra launchers and Lightning's DDP re-launch
only exist there) on tiny SynthDrivers prepared once per module.
"""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, read_write

from conftest import CONF_DIR, TINY_SYNTH, compose_config
from sage.data.ensure import ensure_prepared
from sage.errors import SageError
from sage.tracking.store import prepare_experiment, sqlite_path
from sage.training.distributed import check_launch, unrepeated_loader

ROOT = Path(__file__).resolve().parents[1]
FAST = [*TINY_SYNTH, "debug=fast", "model.input_size=32", "data.batch_size=8"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Tiny synth_sf3d, prepared once for every subprocess of this module."""
    root = tmp_path_factory.mktemp("scaling_data")
    cfg = compose_config("train", root, TINY_SYNTH)
    ensure_prepared(OmegaConf.to_container(cfg.dataset, resolve=True))
    return Path(cfg.paths.data_dir)


def _cli(args: list[str], root: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    # one torch thread per process: the jobs/ranks share the machine's cores
    env = {**os.environ, "SAGE_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _runs(root: Path) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root}/outputs/mlflow.db")
    return client.search_runs([client.get_experiment_by_name("sage").experiment_id])


def _hydra_cfg(overrides: list[str]):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


# ---------------------------------------------------------------------- launcher presets


def test_parallel_preset_builds_on_the_joblib_plugin():
    launcher = _hydra_cfg(["hydra/launcher=parallel"]).hydra.launcher
    assert launcher._target_.endswith("JoblibLauncher")
    assert launcher.n_jobs == 2 and launcher.prefer == "processes"  # ours, then the plugin's


def test_slurm_preset_makes_a_valid_sbatch_script(tmp_path, monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="extra [slurm]")
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    cfg = _hydra_cfg(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert params["_target_"].endswith("SlurmLauncher")
    params.pop("_target_")
    params.update(name="train", submitit_folder=str(tmp_path / "submitit"))
    # submitit only builds a Slurm executor where srun exists; a stub is enough to render
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    # the parameter translation of hydra_submitit_launcher's BaseSubmititLauncher.launch
    executor = submitit.AutoExecutor(
        cluster="slurm", folder=params.pop("submitit_folder"), slurm_max_num_timeout=0
    )
    params.pop("max_num_timeout")
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    text = executor._executor._make_submission_file_text("python -u job.py", "%j")
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --time=240",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=32GB",
    ):
        assert line in text, (line, text)


def test_ray_preset_joins_a_running_cluster():
    if importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None:
        pytest.skip("extra [ray] lives in its own environment (cloudpickle<3)")
    launcher = _hydra_cfg(["hydra/launcher=ray_cluster"]).hydra.launcher
    assert launcher.ray.init.address == "auto" and launcher.ray.init.object_store_memory is None


# ---------------------------------------------------------------------- tracking store


@pytest.mark.slow
def test_concurrent_first_use_of_a_sqlite_store_creates_it_once(tmp_path):
    """Without the lock, parallel jobs opening a fresh store race in MLflow's migrations."""
    uri = f"sqlite:///{tmp_path}/fresh/mlflow.db"
    assert sqlite_path(uri) == tmp_path / "fresh/mlflow.db"
    assert sqlite_path("http://127.0.0.1:5000") is None
    with mp.get_context("spawn").Pool(3) as pool:
        ids = pool.starmap(prepare_experiment, [(uri, "sage", None)] * 3)
    assert len(set(ids)) == 1
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert [e.name for e in client.search_experiments()].count("sage") == 1


# ---------------------------------------------------------------------- DDP helpers


def test_unrepeated_loader_gives_every_image_to_exactly_one_rank():
    from torch.utils.data import DataLoader

    loader = DataLoader(list(range(7)), batch_size=2)
    seen = []
    for rank in range(3):
        trainer = SimpleNamespace(world_size=3, global_rank=rank)
        seen += [int(x) for batch in unrepeated_loader(loader, trainer) for x in batch]
    assert sorted(seen) == list(range(7))  # Lightning's DistributedSampler would give 9


def test_script_relaunching_ddp_inside_a_sweep_is_a_clear_error(tmp_path):
    compose_config("train", tmp_path)  # sets HydraConfig, as @hydra.main does
    hydra_cfg = HydraConfig.get()
    with read_write(hydra_cfg):
        hydra_cfg.mode = RunMode.MULTIRUN
    ddp = pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, logger=False)
    with pytest.raises(SageError, match="does not work inside a -m sweep"):
        check_launch(ddp)
    check_launch(pl.Trainer(accelerator="cpu", devices=1, logger=False))  # one process: fine
    with read_write(hydra_cfg):
        hydra_cfg.mode = RunMode.RUN
    check_launch(ddp)  # a single run may re-launch itself


# ---------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_parallel_local_sweep_logs_both_jobs_to_one_sqlite_experiment(tmp_path, data_dir):
    result = _cli(
        [
            "train.py",
            "-m",
            "hydra/launcher=parallel",
            "hydra.launcher.n_jobs=2",
            "seed=1,2",
            *FAST,
            f"paths.data_dir={data_dir}",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "database is locked" not in result.stderr
    runs = _runs(tmp_path)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert sorted(r.data.params["seed"] for r in runs) == ["1", "2"]
    for run in runs:
        assert {"val/acc", "test/acc", "val_sage/gradcam/fg_mass"} <= set(run.data.metrics)
    assert len({r.info.artifact_uri for r in runs}) == 2
    jobs = sorted((tmp_path / "outputs/multiruns/train").glob("*/[01]/checkpoints/last*.ckpt"))
    assert len(jobs) == 2


@pytest.mark.slow
def test_submitit_local_sweep_runs_both_jobs_through_submitit(tmp_path, data_dir):
    """``hydra/launcher=submitit_local``: the submitit launcher's own path (pickled jobs,
    one process each, results read back) on this machine, as on SLURM without sbatch."""
    pytest.importorskip(
        "hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[dev]' (or '.[slurm]')"
    )
    result = _cli(
        [
            "train.py",
            "-m",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10",
            "seed=1,2",
            *FAST,
            f"paths.data_dir={data_dir}",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = _runs(tmp_path)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert sorted(r.data.params["seed"] for r in runs) == ["1", "2"]
    for run in runs:
        assert {"val/acc", "test/acc", "val_sage/gradcam/fg_mass"} <= set(run.data.metrics)
    (sweep,) = (tmp_path / "outputs/multiruns/train").iterdir()
    # submitit ran each job from its pickle and pickled its result back
    assert len(list(sweep.glob(".submitit/*/*_result.pkl"))) == 2
    assert len(list(sweep.glob("[01]/checkpoints/last*.ckpt"))) == 2


@pytest.mark.slow
def test_cpu_ddp_two_processes_make_one_run(tmp_path, data_dir):
    result = _cli(
        [
            "train.py",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            *FAST,
            f"paths.data_dir={data_dir}",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distributed_backend=gloo" in result.stdout + result.stderr
    # epoch-level metrics are reduced over the ranks (no Lightning sync_dist warning)
    assert "sync_dist=True" not in result.stderr
    (run,) = _runs(tmp_path)  # rank 1 logs nothing: exactly one run
    assert run.info.status == "FINISHED"
    metrics = set(run.data.metrics)
    assert {"val/acc", "val/loss", "test/acc", "train/loss"} <= metrics
    assert any(k.startswith("val_sage/gradcam/") for k in metrics)
    assert "val_sage/acc" in metrics
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/outputs/mlflow.db")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config", "figures", "last", "val_sage"} <= artifacts
    assert any(a.startswith("best-epoch") for a in artifacts)
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert figures == {"figures/confusion_val.png", "figures/confusion_test.png"}
    (run_dir,) = (tmp_path / "outputs/runs/train").iterdir()
    assert {p.stem.split("-")[0] for p in (run_dir / "checkpoints").glob("*.ckpt")} == {
        "best",
        "last",
    }
