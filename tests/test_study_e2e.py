"""The README's main command end to end, shrunk: every step runs, the report shows every
figure it names, and the parent run's ``study/*`` metrics are the printed numbers."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from sage.compose import compose_task
from sage.study import run

MICRO = [
    "demo.size=tiny",
    "sizes.tiny.images_per_class=5",
    "sizes.tiny.n_subjects=5",
    "sizes.tiny.epochs=1",
    "sizes.tiny.explain_limit=4",
    "sizes.tiny.eval_limit=8",
    "sizes.tiny.train_overrides=[]",
    "study.parallel_jobs=1",
    "study.methods=[gradcam,layercam,saliency]",
]


@pytest.mark.slow
def test_study_runs_end_to_end(tmp_path, capsys):
    cfg = compose_task("study", [f"paths.root_dir={tmp_path}", *MICRO], output_dir="unused")
    findings = run(cfg)
    printed = capsys.readouterr().out

    page = findings["report"]
    text = Path(page).read_text().replace("<wbr>", "")  # header line-break hints
    assert "missing figure" not in text
    shown = re.findall(r'src="(figures/[^"]+)"', text)
    assert len(shown) >= 10  # heatmaps, curves, mosaics, token grids, clusters, divergence
    assert any("heatmap_" in s and s.endswith("_acc.png") for s in shown)
    for name in (
        "headline_1",
        "forest",
        "correct_error",
        "tokens_gradcam_4x4",
        "tokens_gradcam_8x8",
        "scatter",
        "mprt_cascading",
        "mprt_independent",
    ):
        assert any(name in s for s in shown), name

    assert "Metric validity" in text and "pair_accuracy" in text  # the meta-evaluation table
    assert "deletion ↓" in text and "insertion ↑" in text and "road/morf ↓" in text
    variants = list(cfg.study.variants)
    for result in findings["grid_results"].values():  # row i and column i: the same variant
        acc = pd.read_csv(Path(result["output_dir"]) / "grid" / "acc.csv", index_col=0)
        assert [r.rsplit("/", 1)[1] for r in acc.index] == variants
        assert [c.rsplit("/", 1)[1] for c in acc.columns[: len(variants)]] == variants

    # 8 trainings, 2 grids, 8 explains on full images + 6 on the models' own variants,
    # 1 divergence, nested under one parent run
    assert findings["nested_runs"] == 25
    client = mlflow.MlflowClient(str(cfg.logger.tracking_uri))
    logged = client.get_run(findings["parent_run_id"]).data.metrics
    assert logged == pytest.approx(findings["scalars"]) and logged
    models = findings["models"].set_index("trained_on")
    for key, value in logged.items():  # the printed table is the logged one
        if key.startswith("study/finding/"):
            continue
        _, domain, variant, column = key.split("/", 3)  # columns may hold a slash
        shown_value = models.loc[f"{domain}/{variant}", column]
        assert math.isclose(shown_value, value), key
        if column == "test/acc":
            assert f"{value:.3f} [" in printed
    assert "mlflow ui --backend-store-uri" in printed and str(page) in printed
    assert findings["verdict"]

    # every finding, printed and in the report, carries its interval
    interval = re.compile(r"\[[+-]?\d+\.\d+, [+-]?\d+\.\d+\]")
    assert findings["lines"] and findings["headlines"]
    for line in findings["lines"]:
        assert interval.search(line), line
        assert line in printed
        assert html.escape(line) in text
    assert text.index("Headline findings") < text.index("Cross-domain")
    for h in findings["headlines"]:
        assert html.escape(h["text"]) in text[: text.index("Cross-domain")]
    saved = json.loads((Path(page).parent / "findings.json").read_text())
    assert [f["text"] for f in saved["findings"]] == findings["lines"]
