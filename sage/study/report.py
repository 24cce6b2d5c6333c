"""The study's self-contained HTML report: ``outputs/report/index.html`` with its figures.

Figures are copied beside the page (``figures/``) so the directory can be zipped, opened
offline or logged as one MLflow artifact. Every number on the page comes from the findings
(:mod:`sage.study.findings`), every figure from a run of the study.
"""

from __future__ import annotations

import html
import shutil
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

from ..explain.maps import load_maps
from ..plots.tokens import plot_token_grid

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}th{background:#f3f3f3}
img{max-width:100%;border:1px solid #ddd;margin:.3em 0}.fig{display:inline-block;
vertical-align:top;margin-right:1em;max-width:48%}.fig p{font-size:.85em;color:#555}
li{margin:.3em 0}code{background:#f3f3f3;padding:0 .2em}
"""


class _Page:
    def __init__(self, out: Path) -> None:
        self.out, self.parts = out, []
        (out / "figures").mkdir(parents=True, exist_ok=True)

    def h(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def p(self, text: str) -> None:
        self.parts.append(f"<p>{text}</p>")

    def items(self, lines: list[str]) -> None:
        self.parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + "</ul>")

    def table(self, frame: pd.DataFrame, index: bool = True) -> None:
        self.parts.append(frame.to_html(index=index, float_format=lambda v: f"{v:.3f}", na_rep="–"))

    def figure(self, path: Path | None, caption: str) -> None:
        if path is None or not Path(path).is_file():
            self.parts.append(f"<p><em>missing figure: {html.escape(caption)}</em></p>")
            return
        name = f"{len(self.parts):03d}_{Path(path).name}"
        shutil.copy(path, self.out / "figures" / name)
        self.parts.append(
            f'<div class="fig"><img src="figures/{name}" alt="{html.escape(caption)}">'
            f"<p>{html.escape(caption)}</p></div>"
        )

    def write(self, title: str) -> Path:
        page = self.out / "index.html"
        page.write_text(
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            + "\n".join(self.parts)
            + "</body></html>\n"
        )
        return page


def _history(client, run_id: str, key: str, work: Path) -> list[float]:
    """Per-epoch values of ``key``: the run's metric history, else the callback's breakdowns
    table (``val_sage/breakdowns.csv``: per-part numbers are not MLflow scalars)."""
    hist = client.get_metric_history(run_id, key)
    if hist:
        return [m.value for m in sorted(hist, key=lambda m: m.step)]
    work.mkdir(parents=True, exist_ok=True)
    try:
        local = client.download_artifacts(run_id, "val_sage/breakdowns.csv", str(work))
    except Exception:  # a run without the table (callback off, older run): no curve
        return []
    table = pd.read_csv(local)
    return table[table.key == key].sort_values("step").value.tolist()


def _curves(study, runs: dict, path: Path) -> Path | None:
    """SAGE callback metrics per epoch for every trained model (val_sage/gradcam/...)."""
    client = study.client()
    keys = ("val/acc", "val_sage/gradcam/fg_mass", "val_sage/gradcam/saliency_precision/spurious")
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2))
    for (name, variant), run_id in sorted(runs.items()):
        for ax, key in zip(axes, keys, strict=True):
            values = _history(client, run_id, key, path.parent / run_id)
            if values:
                ax.plot(
                    range(1, len(values) + 1),
                    values,
                    label=f"{name}/{variant}",
                    ls="-" if "sf3d" in name else "--",
                )
    for ax, key in zip(axes, keys, strict=True):
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch")
    axes[-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _token_grids(explain_dir: Path, method: str, out: Path) -> list[Path]:
    """4×4 and 8×8 token grids of the first explained image (from explain's arrays)."""
    summary = explain_dir / "summary.csv"
    if not summary.is_file():
        return []
    frame = pd.read_csv(summary)
    frame = frame[frame.method == method]
    if frame.empty:
        return []
    image_id = str(frame.image_id.iloc[0])
    arrays = {k: v[0] for k, v in load_maps(explain_dir, [image_id], method=method).items()}
    whole = arrays["whole"]
    rgb = _image(explain_dir, image_id, whole.shape)
    paths = []
    for grid in ("4x4", "8x8"):
        key = f"tokens_{grid}"
        if key in arrays:
            path = out / f"tokens_{method}_{grid}.png"
            plot_token_grid(rgb, whole, arrays[key], path, f"{method} {image_id} ({grid})")
            paths.append(path)
    return paths


def _image(explain_dir: Path, image_id: str, shape: tuple[int, ...]) -> np.ndarray:
    """The explained image at the map's size (from explain's overlay PNG: left half)."""
    for png in (explain_dir / "overlays").glob(f"*/{image_id}.png"):
        with Image.open(png) as im:
            both = np.asarray(im.convert("RGB"))
        return both[:, : both.shape[1] // 2]
    return np.full((*shape, 3), 128, dtype=np.uint8)


def write_report(findings: dict[str, Any], out: Path, study) -> Path:
    """Write ``out/index.html`` (and ``out/figures/``); return the page's path."""
    if out.exists():
        shutil.rmtree(out)
    page = _Page(out)
    work = out / "_work"  # figures drawn here, copied in by page.figure, then removed
    work.mkdir()
    cfg = study.cfg
    page.p(
        f"SynthDrivers, <code>{cfg.study.model}</code>, size <code>{study.size}</code> "
        f"({study.s.images_per_class} images per class and domain, {study.s.epochs} epochs). "
        f"MLflow: <code>{html.escape(study.tracking_uri)}</code>, experiment "
        f"<code>{study.experiment}</code>; browse with <code>mlflow ui --backend-store-uri "
        f"{html.escape(study.tracking_uri)}</code>. Step times (s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in study.timings.items())
    )
    page.h("Findings (computed from this run's numbers)")
    page.items(findings["lines"] or ["no comparison could be computed"])
    page.h("Models")
    page.p(
        "Columns use the metric names of docs/metrics.md. test/acc: in-domain test accuracy; "
        "cue_acc / shuffled_acc: accuracy on the source "
        "domain's full test images with the sticker as generated / with its colour shuffled "
        "(the direct test of the shortcut); cross_acc_*: accuracy on the other domain "
        "(full images / the same variant); fg_mass (A_fg), saliency_precision/spurious, "
        "pointing_game/fg, arcc: GradCAM on the "
        "source domain's full test images (saliency_precision/spurious = share of the saliency "
        "on the spurious sticker); rfs/rfs: RIVAL10's relative foreground sensitivity; "
        "val_sage/*: the SAGE callback's last epoch on the probe set."
    )
    page.table(findings["models"].drop(columns=["run_id"]).set_index("trained_on"))
    page.h("Cross-domain grids (accuracy; rows = trained on, columns = evaluated on)")
    for source, result in findings["grid_results"].items():
        grid_dir = Path(result.get("output_dir", "")) / "grid"
        page.figure(grid_dir / "heatmap_acc.png", f"trained on {source}: accuracy")
        page.figure(grid_dir / "heatmap_f1_macro.png", f"trained on {source}: macro F1")
    page.h("Training curves (SAGE callback, probe set)")
    page.figure(_curves(study, _runs(findings), work / "curves.png"), "per epoch")
    page.h("Saliency: correct vs error")
    compared = [(k, v) for k, v in findings["explains"].items() if "gradcam_plusplus" in str(v)]
    for (name, variant), ex in compared or list(findings["explains"].items())[:2]:
        d = Path(ex["output_dir"])
        for method in cfg.study.methods:
            mosaic = d / "mosaics" / f"{method}_correct_error.png"
            if mosaic.is_file():
                page.figure(mosaic, f"{name}/{variant}: {method}")
        page.figure(
            d / "mosaics" / "gradcam_spurious_candidates.png",
            f"{name}/{variant}: lowest Δ density on the driver (spurious candidates)",
        )
    _faithfulness_section(page, list(findings["explains"].items()))
    _sanity_section(page, findings)
    page.h("Token grids (4×4 and 8×8) of an example image")
    for (name, variant), ex in (compared or list(findings["explains"].items()))[:2]:
        for path in _token_grids(Path(ex["output_dir"]), "gradcam", work):
            page.figure(path, f"{name}/{variant}: {path.stem}")
    page.h("Confidence-stratified clustering")
    for source, result in findings["grid_results"].items():
        cells = sorted((Path(result.get("output_dir", "")) / "cells").glob("*"))
        drawn = [c for c in cells if (c / "clusters" / "scatter.png").is_file()]
        for cell in drawn[:2]:
            for fig in ("scatter", "bands", "histogram"):
                page.figure(cell / "clusters" / f"{fig}.png", f"{source}: {cell.name} {fig}")
            pooled = cell / "clusters" / "pooled.csv"
            if pooled.is_file():
                page.table(pd.read_csv(pooled), index=False)
    page.h("Divergence between the compared models")
    div = findings.get("divergence") or {}
    if findings.get("verdict"):
        page.p(html.escape(str(findings["verdict"])))
    div_dir = Path(div.get("output_dir", "")) if isinstance(div, dict) else Path()
    for png in sorted(div_dir.rglob("*.png"))[:6] if div_dir.is_dir() else []:
        page.figure(png, png.stem)
    shutil.rmtree(work)
    return page.write("SAGE study on SynthDrivers")


def _faithfulness_section(page: _Page, explains: list) -> None:
    """Per method of the models explained with Deletion/Insertion: the perturbation metrics
    side by side."""
    columns = {
        "road": "ROAD ↑",
        "road/morf": "ROAD MoRF ↓",
        "deletion": "Deletion AUC ↓",
        "insertion": "Insertion AUC ↑",
        "arcc": "ARCC ↑",
    }
    tables = []
    for (name, variant), ex in explains:
        path = Path(ex["output_dir"]) / "metrics.csv"
        if not path.is_file():
            continue
        frame = pd.read_csv(path)
        present = [c for c in columns if c in frame]
        if "deletion" not in present:
            continue
        means = frame.groupby("method", sort=False)[present].mean().rename(columns=columns)
        tables.append((f"{name}/{variant}", means.round(3)))
    if not tables:
        return
    page.h("Faithfulness per method: ROAD next to Deletion / Insertion")
    page.p(
        "Means over the explained test images (full images of the source domain). ROAD removes "
        "pixels by noisy linear imputation (MoRF: most relevant first); Deletion removes the "
        "most relevant pixels first (replaced by the dataset mean) and Insertion adds them to a "
        "blurred image, 25 steps each (Petsiuk et al. 2018); area under the class-probability "
        "curve. Arrows: which direction is better."
    )
    for label, table in tables:
        page.p(f"<b>{html.escape(label)}</b>")
        page.table(table)


def _sanity_section(page: _Page, findings: dict[str, Any]) -> None:
    """The sanity checks of the first compared model: randomisation curves, metric validity."""
    checked = [
        (k, Path(v["output_dir"]))
        for k, v in findings["explains"].items()
        if (Path(v.get("output_dir", "")) / "meta_validity.csv").is_file()
        or (Path(v.get("output_dir", "")) / "randomisation").is_dir()
    ]
    if not checked:
        return
    page.h("Sanity checks: do the maps depend on the model, do the metrics measure anything?")
    for (name, variant), d in checked:
        page.p(
            f"Model-parameter randomisation (Adebayo et al. 2018) of the {name}/{variant} model: "
            "similarity of each method's maps on 80 test images to its maps after re-"
            "initialising the layers from the logits down (cascading) or one at a time "
            "(independent). A method passes when its curve falls; the constant baseline "
            "(ones_but_one) stays at 1 and fails by design."
        )
        for mode in ("cascading", "independent"):
            page.figure(d / "randomisation" / f"mprt_{mode}.png", f"{name}/{variant}: {mode}")
        validity = d / "meta_validity.csv"
        if validity.is_file():
            table = pd.read_csv(validity)
            keep = [
                "metric",
                "direction",
                "mean_ground_truth",
                "mean_method",
                "mean_baseline",
                "best_map",
                "ordered",
                "pair_accuracy",
                "pair_accuracy_lo",
                "pair_accuracy_hi",
                "noise_resilience",
                "reactivity",
            ]
            page.p(
                "Metric validity (meta-evaluation, docs/metrics.md §14): each metric scores the "
                "ground-truth map (the parts that define the activity), the real methods and "
                "trivial baselines. A valid metric orders them ground truth > methods > "
                "baselines (ordered), orders image pairs correctly (pair accuracy with 95 % "
                "bootstrap interval), barely moves when the weights get 1 % noise "
                "(noise_resilience, in units of the metric's spread) and moves when they are "
                "randomised (reactivity). Metrics whose best map is a trivial baseline: "
                + (", ".join(table.loc[table.trivial_first, "metric"]) or "none")
                + "."
            )
            page.table(table[keep].round(3).set_index("metric"))


def _runs(findings: dict[str, Any]) -> dict:
    models = findings["models"]
    return {(r.domain, r.variant): r.run_id for r in models.itertuples()}
