"""Packaging: the wheel carries the configs and the console scripts, and an installed SAGE runs
outside any checkout (outputs under the working directory, provenance without git).

The installed tests build the wheel from a copy of the source, install it with ``--no-deps``
into a fresh venv that sees this environment's dependencies but not its editable ``sage``,
and run the commands from a folder outside the checkout. Another command is one more test
using the module-scoped ``installed`` fixture (``installed.cli("sage-...", ..., cwd=...)``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

from conftest import TINY_SYNTH
from sage.tracking.run_record import code_version, source_checkout

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("sage-train", "sage-explain", "sage-evaluate", "sage-prepare", "sage-study")
OFFLINE_BUILD = ["--no-deps", "--no-build-isolation", "--no-index", "-q"]
FAST = [*TINY_SYNTH, "debug=fast", "model.input_size=32", "data.batch_size=8"]


# ---------------------------------------------------------------------- in the checkout


@pytest.mark.parametrize(
    ("entry", "job"),
    [
        (["train.py"], "train"),
        (["explain.py"], "explain"),
        (["evaluate.py"], "evaluate"),
        (["-m", "sage.commands.train"], "train"),  # what the study's sweep launches
    ],
)
def test_checkout_entry_points_keep_their_job_name(entry, job):
    """The root scripts only delegate to :mod:`sage.commands`: Hydra still names the job (log
    file, --help title) after the task, and the run dir is ``outputs/runs/<task_name>/``."""
    out = subprocess.run(
        [sys.executable, *entry, "--cfg", "hydra"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"    name: {job}\n" in out.stdout


def test_provenance_in_a_checkout_reads_the_package_location(tmp_path, monkeypatch):
    """The commit is the code's checkout's, whatever the working directory is."""
    monkeypatch.chdir(tmp_path)
    assert source_checkout() == ROOT
    tags = code_version()
    assert tags["sage_version"] == "0.1.0"
    assert len(tags["git_commit"].removesuffix("-dirty")) == 40


# ---------------------------------------------------------------------- installed


@dataclass
class Installed:
    """A venv holding the built SAGE wheel."""

    venv: Path
    wheel: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("SAGE_ROOT", "PYTHONPATH")}
        env["VIRTUAL_ENV"] = str(self.venv)
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def cli(self, *args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
        """Run ``args`` (a console script or ``python``, from the venv) in ``cwd``."""
        exe = self.venv / "bin" / args[0]
        return subprocess.run(
            [str(exe), *args[1:]],
            cwd=cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    # a copy, so the build neither writes build/ into the checkout nor packs stale files from it
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "sage", src / "sage", ignore=shutil.ignore_patterns("__pycache__"))
    dist = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), *OFFLINE_BUILD, "-w", str(dist)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("sage-*.whl")

    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # The dependencies, from this environment: a path line in a .pth is added as it is, its
    # folder's own .pth files are not run, so this environment's editable sage stays unseen.
    purelib = Path(sysconfig.get_path("purelib"))
    (clean_site,) = (venv / "lib").glob("python*/site-packages")
    (clean_site / "sage_test_deps.pth").write_text(f"{purelib}\n")
    done = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return Installed(venv, wheel)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A working directory outside the checkout."""
    assert not tmp_path.resolve().is_relative_to(ROOT)
    return tmp_path


@pytest.mark.slow
def test_wheel_carries_every_config_and_the_console_scripts(installed):
    names = zipfile.ZipFile(installed.wheel).namelist()
    packed = {n.removeprefix("sage/conf/") for n in names if n.startswith("sage/conf/")}
    on_disk = {p.relative_to(ROOT / "sage/conf").as_posix() for p in ROOT.glob("sage/conf/**/*")}
    assert {p for p in on_disk if p.endswith(".yaml")} <= packed
    assert any(n.endswith("/entry_points.txt") for n in names)
    for script in SCRIPTS:
        assert (installed.venv / "bin" / script).is_file(), script


@pytest.mark.slow
def test_installed_package_is_not_the_checkout(installed, work):
    out = installed.cli("python", "-c", "import sage; print(sage.__file__)", cwd=work)
    assert out.returncode == 0, out.stderr[-2000:]
    assert Path(out.stdout.strip()).is_relative_to(installed.venv), out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_console_script_help(installed, work, script):
    out = installed.cli(script, "--help", cwd=work)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip()
    assert not (work / "outputs").exists()  # --help writes nothing


@pytest.mark.slow
def test_prepare_and_train_outside_a_checkout(installed, work):
    prepared = installed.cli(
        "sage-prepare", "dataset=synth_sf3d/full", *TINY_SYNTH, "prepare.progress=false", cwd=work
    )
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    assert "prepared synth-sf3d-full" in prepared.stdout
    assert list((work / "outputs/data").iterdir())

    trained = installed.cli(
        "sage-train",
        *FAST,
        "+trainer.enable_progress_bar=false",
        f"logger.tracking_uri=sqlite:///{work}/outputs/mlflow.db",
        cwd=work,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run_dir,) = (work / "outputs/runs/train").iterdir()
    assert sorted(p.stem.split("-")[0] for p in (run_dir / "checkpoints").glob("*.ckpt")) == [
        "best",
        "last",
    ]
    assert (run_dir / "train.log").is_file()  # Hydra's job name is still the task's

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{work}/outputs/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("sage").experiment_id])
    assert run.info.status == "FINISHED"
    # installed, outside a checkout: the package version, and no commit to make up
    assert run.data.tags["sage_version"] == "0.1.0"
    assert "git_commit" not in run.data.tags


@pytest.mark.slow
def test_explain_images_outside_a_checkout(installed, work):
    """``sage-explain model=<backbone> model.weights=<file> images=<dir>``: no checkpoint, no
    prepared data; the predicted class is explained and the mask sets are skipped."""
    import numpy as np
    import torch
    from PIL import Image

    from sage.models import create_backbone

    torch.manual_seed(0)
    weights = work / "mobilenet_v2.pth"
    torch.save(create_backbone("mobilenet_v2", 3).state_dict(), weights)
    photos = work / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(
            photos / f"p{i}.png"
        )
    out = installed.cli(
        "sage-explain",
        "model=mobilenet_v2",
        f"model.weights={weights}",
        "model.input_size=48",
        f"images={photos}",
        "cam=[gradcam,saliency]",
        "progress=false",
        cwd=work,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (work / "outputs/runs/explain").iterdir()
    assert len((run_dir / "summary.csv").read_text().splitlines()) == 1 + 2 * 3
    assert "alignment" in (run_dir / "skipped_metrics.json").read_text()
    assert (run_dir / "arrays/index.csv").is_file()
