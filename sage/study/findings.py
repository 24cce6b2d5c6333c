"""The study's findings, computed from what its runs logged (never written in advance).

Gathers, per trained model, the in-domain test accuracy, the cross-domain accuracies from the
grids, the SAGE callback's last-epoch GradCAM masses, and explain's A_fg, saliency mass on the
spurious sticker, ARCC and RFS; then states the comparisons the SAGE paper makes (full- vs
seg/bboxseg-trained: background mass, shortcut mass, transfer, RFS) with the words chosen by
the numbers' signs.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..evaluation.grid import markdown_table

# Columns are the quantities' names of docs/metrics.md (vocabulary): explain's GradCAM numbers
# without their stage prefix, the training run's with theirs (test/, val_sage/). The sticker
# mass is saliency_precision/spurious (the saliency share on the spurious part). The
# accuracies on chosen grid targets (cue_acc, shuffled_acc, cross_acc_*) are the study's own.
STICKER = "saliency_precision/spurious"
_EXPLAIN = {
    "fg_mass": "explain/gradcam/fg_mass",
    STICKER: f"explain/gradcam/{STICKER}",
    "pointing_game/fg": "explain/gradcam/pointing_game/fg",
    "arcc": "explain/gradcam/arcc",
    "rfs/rfs": "explain/rfs/rfs",
}
_TRAIN = {
    "test/acc": "test/acc",
    "val_sage/fg_mass": "val_sage/gradcam/fg_mass",
    "val_sage/arcc": "val_sage/gradcam/arcc",
}


_SCALARS = (
    "test/acc",
    "cue_acc",
    "shuffled_acc",
    "fg_mass",
    STICKER,
    "arcc",
    "rfs/rfs",
    "cross_acc_full",
    "cross_acc_same_variant",
)


def _grid_acc(result: dict) -> pd.DataFrame | None:
    path = Path(result.get("output_dir", "")) / "grid" / "acc.csv"
    return pd.read_csv(path, index_col=0) if path.is_file() else None


def _cmp(a: float, b: float, more: str = "more", less: str = "less") -> str:
    if not (math.isfinite(a) and math.isfinite(b)):
        return "cannot be compared (missing values)"
    if np.isclose(a, b, atol=1e-3):
        return "about the same as"
    return f"{more} than" if a > b else f"{less} than"


def _move(before: float, after: float) -> str:
    """'falls from 0.71 to 0.50' / 'rises ...' / 'stays at 0.80', from the numbers."""
    if not (math.isfinite(before) and math.isfinite(after)):
        return "cannot be compared (missing values)"
    if np.isclose(before, after, atol=0.01):  # ~1 test image in 100: no change worth a word
        return f"stays at {after:.2f}"
    return f"{'falls' if after < before else 'rises'} from {before:.2f} to {after:.2f}"


def collect_findings(study, runs, grids, explains, divergence) -> dict[str, Any]:
    """Tables, findings lines and scalars of the study (see module docstring)."""
    client = study.client()
    rows = []
    for (name, variant), run_id in sorted(runs.items()):
        metrics = client.get_run(run_id).data.metrics
        row = {"trained_on": f"{name}/{variant}", "domain": name, "variant": variant}
        row |= {k: metrics.get(m, np.nan) for k, m in _TRAIN.items()}
        ex = explains.get((name, variant), {})
        row |= {k: ex.get(m, np.nan) for k, m in _EXPLAIN.items()}
        row["run_id"] = run_id
        rows.append(row)
    models = pd.DataFrame(rows)
    grid_tables = {}
    for source, result in grids.items():
        acc = _grid_acc(result)
        if acc is None:
            continue
        grid_tables[source] = acc
        for label in acc.index:
            idx = models.index[models.trained_on == label]
            if not len(idx):
                continue
            name, variant = label.rsplit("/", 1)
            target = result.get("target_name")
            cross = [c for c in acc.columns if c.startswith(f"{target}/")] if target else []
            cross = cross or [c for c in acc.columns if not c.startswith(f"{name}")]
            for key, want in (("cross_acc_full", "full"), ("cross_acc_same_variant", variant)):
                col = next((c for c in cross if c.endswith(f"/{want}")), None)
                if col is not None:
                    models.loc[idx, key] = float(acc.loc[label, col])
            twin = result.get("twin_name")
            if twin and f"{name}/full" in acc.columns and f"{twin}/full" in acc.columns:
                models.loc[idx, "cue_acc"] = float(acc.loc[label, f"{name}/full"])
                models.loc[idx, "shuffled_acc"] = float(acc.loc[label, f"{twin}/full"])

    lines = []
    for name, group in models.groupby("domain", sort=False):
        by = group.set_index("variant")
        if "full" not in by.index:
            continue
        full = by.loc["full"]
        others = [o for o in ("seg", "bboxseg") if o in by.index]
        if "shuffled_acc" in by.columns and math.isfinite(full.get("shuffled_acc", np.nan)):
            rest = "; ".join(
                f"the {o}-trained model's {_move(by.loc[o].cue_acc, by.loc[o].shuffled_acc)}"
                for o in others
            )
            lines.append(
                f"{name}: with the sticker colours shuffled (same scenes), the full-trained "
                f"model's accuracy on full test images {_move(full.cue_acc, full.shuffled_acc)}"
                + (f"; {rest}." if rest else ".")
            )
        # the sticker is a cue only where the domain has one (its cue-shuffled twin exists)
        has_cue = math.isfinite(full.get("shuffled_acc", np.nan))
        for other in others:
            o = by.loc[other]
            sticker = (
                f"the full-trained model puts {full[STICKER]:.3f} of its GradCAM mass on the "
                f"spurious sticker, {_cmp(full[STICKER], o[STICKER])} the {other}-trained "
                f"model ({o[STICKER]:.3f}); "
                if has_cue
                else ""
            )
            lines.append(
                f"{name}: {sticker}background mass 1−A_fg full "
                f"{1 - full.fg_mass:.2f} vs {other} {1 - o.fg_mass:.2f} "
                f"({_cmp(1 - full.fg_mass, 1 - o.fg_mass)})."
            )
            if "cross_acc_full" in by.columns and "cross_acc_same_variant" in by.columns:
                lines.append(
                    f"{name}: on the other domain the full-trained model reaches accuracy "
                    f"{full.cross_acc_full:.2f} (full images), "
                    f"{_cmp(full.cross_acc_full, o.cross_acc_same_variant, 'higher', 'lower')} "
                    f"the {other}-trained model on {other} images "
                    f"({o.cross_acc_same_variant:.2f}; {o.cross_acc_full:.2f} on full images); "
                    f"in-domain test accuracy {full['test/acc']:.2f} vs {o['test/acc']:.2f}."
                )
            lines.append(
                f"{name}: RFS (robustness to background vs foreground noise) full "
                f"{full['rfs/rfs']:.2f} vs {other} {o['rfs/rfs']:.2f} "
                f"({_cmp(full['rfs/rfs'], o['rfs/rfs'], 'higher', 'lower')})."
            )
    verdict = None
    if isinstance(divergence, dict):
        verdict = divergence.get("verdict") or divergence.get("error")
        if verdict:
            lines.append(f"divergence ({' vs '.join(study.cfg.study.compare)}): {verdict}")
    scalars = {}
    for _, r in models.iterrows():
        for key in _SCALARS:
            value = r.get(key, np.nan)
            if isinstance(value, float | int) and math.isfinite(value):
                scalars[f"study/{r.domain}/{r.variant}/{key}"] = float(value)
    return {
        "models": models,
        "grids": grid_tables,
        "lines": lines,
        "verdict": verdict,
        "divergence": divergence,
        "explains": explains,
        "grid_results": grids,
        "scalars": scalars,
    }


def print_summary(findings: dict[str, Any], study) -> None:
    """The study's closing summary on stdout."""
    uri = study.tracking_uri
    print("\n" + "=" * 78)
    print(f"SAGE study ({study.size}) finished in {time_text(study)}")
    print(
        f"MLflow store: {uri}  (experiment {study.experiment!r}, parent run "
        f"{findings['parent_run_id']}, {findings['nested_runs']} nested runs)"
    )
    print(f"Browse it:    {sys.executable} -m mlflow ui --backend-store-uri {uri}")
    print(f"Report:       {findings['report']}")
    for source, acc in findings["grids"].items():
        print(f"\nCross-domain accuracy, trained on {source} (rows) -> targets (columns):")
        print(markdown_table(acc))
    cols = ["trained_on", "test/acc", "shuffled_acc", "cross_acc_full", "cross_acc_same_variant"]
    cols += ["fg_mass", STICKER, "arcc", "rfs/rfs"]
    models = findings["models"]
    print("\nPer model (GradCAM on the source domain's full test images; RFS per model):")
    table = models[[c for c in cols if c in models]].set_index("trained_on")
    print(markdown_table(table, corner="trained on"))
    print("\nFindings (computed from the numbers above):")
    for line in findings["lines"]:
        print(f"- {line}")
    print("=" * 78)


def time_text(study) -> str:
    seconds = time.time() - study.t0
    return f"{seconds / 60:.1f} min"
