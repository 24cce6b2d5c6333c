"""The cross-domain grid as a sweep: ``mode=cells`` jobs in parallel, ``mode=assemble`` once,
giving the grid a single-process ``evaluate.py`` gives (same key, same matrices)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from conftest import TINY_SYNTH
from sage.compose import compose_task
from sage.errors import SageError
from sage.evaluate import run as evaluate_run
from sage.train import run as train_run

ROOT = Path(__file__).resolve().parents[1]
FAST_TRAIN = [
    *TINY_SYNTH,
    "debug=fast",
    "model.input_size=32",
    "data.batch_size=8",
    "callbacks=model_checkpoint",
]
TARGET_OVERRIDES = "target_overrides=[" + ",".join(f"'{o}'" for o in TINY_SYNTH) + "]"
QUIET = ["progress=false", "clustering.thumbnails=0"]
METRICS = ("acc", "f1_macro", "ece", "auc_macro", "support")


def _evaluate(root: Path, name: str, *overrides: str) -> dict:
    cfg = compose_task(
        "evaluate", [f"paths.root_dir={root}", *overrides], output_dir=root / "evaluate" / name
    )
    return evaluate_run(cfg)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """Two 1-epoch models (synth_sf3d bbox and seg) in one MLflow store."""
    root = tmp_path_factory.mktemp("study")
    for variant in ("bbox", "seg"):
        cfg = compose_task(
            "train",
            [f"paths.root_dir={root}", *FAST_TRAIN, f"dataset=synth_sf3d/{variant}"],
            output_dir=root / f"train_{variant}",
        )
        train_run(cfg)
    return root


def test_cells_and_assemble_need_a_grid_name(study):
    for mode in ("cells", "assemble"):
        with pytest.raises(SageError, match=f"mode={mode} needs grid_name"):
            _evaluate(study, f"noname_{mode}", f"mode={mode}")
    with pytest.raises(SageError, match="no finished cell runs with grid_name='nothing'"):
        _evaluate(study, "nothing", "mode=assemble", "grid_name=nothing")


@pytest.mark.slow
def test_parallel_cell_jobs_assemble_into_the_single_process_grid(study):
    targets = "targets=[synth_driver100/bbox,synth_driver100/full]"
    single = _evaluate(study, "single", targets, TARGET_OVERRIDES, *QUIET)

    # one job per target column, two at a time (joblib), each evaluating both models
    result = subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            "-m",
            "hydra/launcher=parallel",
            "hydra.launcher.n_jobs=2",
            "mode=cells",
            "grid_name=g1",
            "targets=[synth_driver100/bbox],[synth_driver100/full]",
            TARGET_OVERRIDES,
            *QUIET,
        ],
        cwd=ROOT,
        env={**os.environ, "SAGE_ROOT": str(study), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    assembled = _evaluate(study, "assembled", "mode=assemble", "grid_name=g1")
    assert (assembled["assembled"], assembled["missing"], assembled["cells"]) == (4, 0, 4)
    # the identity of the same models x targets x settings: the single run's parent is reused
    assert assembled["grid_key"] == single["grid_key"]
    assert assembled["parent_run_id"] == single["parent_run_id"]
    single_dir, assembled_dir = (Path(r["output_dir"]) / "grid" for r in (single, assembled))
    for metric in METRICS:
        pd.testing.assert_frame_equal(
            pd.read_csv(assembled_dir / f"{metric}.csv", index_col=0),
            pd.read_csv(single_dir / f"{metric}.csv", index_col=0),
            check_exact=False,
            rtol=1e-9,
        )
    assert assembled["table"] == single["table"]

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{study}/outputs/mlflow.db")
    exp = client.get_experiment_by_name("sage").experiment_id
    cells = client.search_runs([exp], "tags.grid_name = 'g1' and tags.level = 'cell'")
    assert len(cells) == 4 and all(c.info.status == "FINISHED" for c in cells)
    for cell in cells:  # nested under the grid, like the cells of a single-process run
        assert cell.data.tags["mlflow.parentRunId"] == assembled["parent_run_id"]
        assert cell.data.tags["grid_key"] == assembled["grid_key"]

    # a rerun of a cell job finds its finished cells; other settings are another grid
    again = _evaluate(
        study, "again", "mode=cells", "grid_name=g1", "targets=[synth_driver100/bbox]",
        TARGET_OVERRIDES, *QUIET,
    )  # fmt: skip
    assert (again["evaluated"], again["skipped"]) == (0, 2)
    _evaluate(
        study, "limited", "mode=cells", "grid_name=g1", "targets=[synth_driver100/bbox]",
        TARGET_OVERRIDES, "limit=3", *QUIET,
    )  # fmt: skip
    with pytest.raises(SageError, match="2 different settings"):
        _evaluate(study, "mixed", "mode=assemble", "grid_name=g1")
