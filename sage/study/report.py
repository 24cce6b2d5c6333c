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
from ..plots.grid import plot_grid_heatmap
from ..plots.style import DPI, WIDE_W, style
from ..plots.tokens import plot_token_grid
from .directions import direction, header
from .report_findings import findings_section, headline_section
from .summary import ACCURACY_COLUMNS, interval_table

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
.tw{overflow-x:auto;max-width:100%;margin:.5em 0}
table{border-collapse:collapse;font-size:.8em}
td,th{border:1px solid #ccc;padding:.2em .4em;text-align:right}
th{background:#f3f3f3;vertical-align:bottom;max-width:7.5em;font-weight:600}
tbody th{text-align:left;max-width:none;white-space:nowrap}td{white-space:nowrap}
img{max-width:100%;border:1px solid #ddd;margin:.3em 0}.fig{display:inline-block;
vertical-align:top;margin-right:1em;max-width:48%}.fig.wide{display:block;max-width:100%}
.fig p{font-size:.85em;color:#555;margin-top:.2em}.note{font-size:.85em;color:#555}
li{margin:.3em 0}code{background:#f3f3f3;padding:0 .2em}
"""

_MARKS = "↑ higher is better, ↓ lower is better, no mark: neither (counts, descriptive values)."


def _breakable(name: str) -> str:
    """``name`` escaped, with a line-break opportunity after each ``/`` and ``_`` (so a long
    metric name wraps inside a narrow header)."""
    return html.escape(name).replace("/", "/<wbr>").replace("_", "_<wbr>")


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(value)
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return "–"
        return f"{value:.{digits}f}"
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return html.escape(str(value))


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

    def table(self, frame: pd.DataFrame, index: bool = True, digits: int = 3) -> None:
        """``frame`` as a table that fits the page: numbers to ``digits`` decimals, headers
        that wrap at ``/`` and ``_``, the direction mark (:mod:`.directions`) in every numeric
        column's header, and a horizontal scroll bar if it is still too wide."""
        heads = [html.escape(str(frame.index.name or ""))] if index else []
        for column in frame.columns:
            numeric = pd.api.types.is_numeric_dtype(frame[column]) and not (
                pd.api.types.is_bool_dtype(frame[column])
            )
            name = header(str(column)) if numeric else str(column)
            heads.append(_breakable(name))
        rows = []
        for label, row in zip(frame.index, frame.itertuples(index=False), strict=True):
            cells = [f"<th>{html.escape(str(label))}</th>"] if index else []
            cells += [f"<td>{_cell(v, digits)}</td>" for v in row]
            rows.append("<tr>" + "".join(cells) + "</tr>")
        self.parts.append(
            '<div class="tw"><table><thead><tr>'
            + "".join(f"<th>{h}</th>" for h in heads)
            + "</tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table></div>"
        )

    def figure(self, path: Path | None, caption: str, wide: bool = False) -> None:
        """Copy the figure beside the page and show it with its caption: in a half-width
        column, or across the page when ``wide`` (mosaics, multi-panel figures)."""
        if path is None or not Path(path).is_file():
            self.parts.append(f"<p><em>missing figure: {html.escape(caption)}</em></p>")
            return
        name = f"{len(self.parts):03d}_{Path(path).name}"
        shutil.copy(path, self.out / "figures" / name)
        cls = "fig wide" if wide else "fig"
        self.parts.append(
            f'<div class="{cls}"><img src="figures/{name}" alt="{html.escape(caption)}">'
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


def _model_label(key: str) -> str:
    """``"synth-sf3d-full"`` → ``"synth-sf3d/full"`` (a domain and variant joined by "-")."""
    name, _, variant = key.rpartition("-")
    return f"{name}/{variant}" if name else key


def cell_label(cell: str) -> str:
    """A grid cell's directory name in words: ``"01-synth-sf3d-full--synth-driver100-full"``
    → ``"trained on synth-sf3d/full, tested on synth-driver100/full"``."""
    body = cell.split("-", 1)[1] if cell[:1].isdigit() and "-" in cell else cell
    source, sep, target = body.partition("--")
    if not sep:
        return cell
    return f"trained on {_model_label(source)}, tested on {_model_label(target)}"


def _domain(source: str) -> str:
    """A grid's key (``"synth_sf3d"``) as the domain's name (``"synth-sf3d"``)."""
    return str(source).replace("_", "-")


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


_CURVES = {
    "val/acc": "validation accuracy",
    "val_sage/gradcam/fg_mass": "GradCAM fg_mass (probe set)",
    "val_sage/gradcam/saliency_precision/spurious": "GradCAM saliency_precision/spurious",
}


def _curves(study, runs: dict, path: Path) -> Path | None:
    """SAGE callback metrics per epoch for every trained model (val_sage/gradcam/...)."""
    client = study.client()
    keys = tuple(_CURVES)
    with style():
        fig, axes = plt.subplots(1, len(keys), figsize=(WIDE_W, 3.6))
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
            mark = direction(key)
            ax.set_title(f"{_CURVES[key]} {mark}".strip())
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.25)
        handles, labels = axes[0].get_legend_handles_labels()
        if labels:
            fig.legend(
                handles,
                labels,
                loc="lower center",
                bbox_to_anchor=(0.5, 1.0),
                ncol=min(4, len(labels)),
                frameon=False,
                title="trained on (solid: synth-sf3d, dashed: other domain)",
            )
        fig.tight_layout()
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
        plt.close(fig)
    return path


def _grid_figures(result: dict, source: str, work: Path) -> list[tuple[Path, str]]:
    """The grid's accuracy and macro-F1 heatmaps, redrawn from its tables (``grid/acc.csv``,
    ``grid/f1_macro.csv``) with short labels and a colour bar; the grid's own PNG when the
    table is missing."""
    grid_dir = Path(result.get("output_dir", "")) / "grid"
    domain = _domain(source)
    out = []
    for metric, name in (("acc", "accuracy"), ("f1_macro", "macro F1")):
        table = grid_dir / f"{metric}.csv"
        path = grid_dir / f"heatmap_{metric}.png"
        if table.is_file():
            path = work / f"heatmap_{source}_{metric}.png"
            plot_grid_heatmap(
                pd.read_csv(table, index_col=0),
                path,
                f"{name}, models trained on {domain}",
                vmin=0.0,
                vmax=1.0,
                label=f"{name} {direction(metric)} (test set)",
            )
        caption = (
            f"{name[0].upper()}{name[1:]} ({direction(metric)}) of each model trained on {domain} "
            "(rows: its variant) on each test set (columns: domain/variant; the shared "
            '"synth-" prefix is left out). Brighter = higher; grey = not evaluated.'
        )
        out.append((path, caption))
    return out


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
            plot_token_grid(rgb, whole, arrays[key], path, f"{method} on {image_id}")
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
        f"{html.escape(study.tracking_uri)}</code>. Step times: at the end of the page."
    )
    headline_section(page, findings, work)
    page.h("Models")
    page.p(
        "Each number with its interval [low, high] (see above). Accuracy — test/acc: in-domain "
        "test images of the model's own variant; cue_acc / shuffled_acc: the source domain's "
        "full test images with the sticker as generated / with its colours shuffled (the same "
        "scenes: the direct test of the shortcut); cross_acc_full / cross_acc_same_variant: "
        "the other domain's full images / its images of the model's own variant."
    )
    page.p(f'<span class="note">Column marks: {_MARKS}</span>')
    page.table(_marked(interval_table(findings, ACCURACY_COLUMNS)))
    page.p(
        "Saliency (GradCAM) — <b>own_variant</b>: on the model's own variant (a seg model on "
        "segmented images: what it sees in its own regime); <b>full_images</b>: on the source "
        "domain's full test images, which a seg or bbox model never saw in training. fg_mass / "
        "bg_mass: share of the saliency on / off the driver; saliency_precision/spurious: share "
        "on the spurious sticker; arcc: ROAD-based faithfulness; rfs/rfs: RIVAL10's relative "
        "foreground sensitivity (> 0: noise on the driver hurts more than on the background)."
    )
    page.table(_marked(interval_table(findings, SALIENCY_TABLE)))
    findings_section(page, findings, work)
    grid_results = findings.get("grid_results") or {}
    page.h("Cross-domain grids (accuracy; rows = trained on, columns = evaluated on)")
    for source, result in grid_results.items():
        for path, caption in _grid_figures(result, source, work):
            page.figure(path, caption)
    page.h("Training curves (SAGE callback, probe set)")
    page.figure(
        _curves(study, _runs(findings), work / "curves.png"),
        "Per epoch, for every trained model (legend: trained on domain/variant): validation "
        "accuracy, and the SAGE callback's GradCAM on its fixed probe set: fg_mass (share of "
        "the saliency on the driver, ↑) and saliency_precision/spurious (share on the spurious "
        "sticker, ↓).",
        wide=True,
    )
    page.h("Saliency: correct vs error")
    explains = findings.get("explains") or {}
    compared = [(k, v) for k, v in explains.items() if "gradcam_plusplus" in str(v)]
    for (name, variant), ex in compared or list(explains.items())[:2]:
        d = Path(ex["output_dir"])
        for method in cfg.study.methods:
            mosaic = d / "mosaics" / f"{method}_correct_error.png"
            if mosaic.is_file():
                page.figure(
                    mosaic,
                    f"{method} maps of the model trained on {name}/{variant}, on its own "
                    "domain's full test images. Rows: true class; left: correct predictions "
                    "(green frame), right: errors (red frame). Colours: the map scaled to "
                    "0 (blue, none) – 1 (red, its maximum); white outline: the driver. Under "
                    "each tile: predicted class, its confidence, fg = fg_mass (share of the "
                    "saliency inside the outline).",
                    wide=True,
                )
        page.figure(
            d / "mosaics" / "gradcam_spurious_candidates.png",
            f"Spurious-feature candidates of the model trained on {name}/{variant}: the test "
            "images whose GradCAM map has the lowest Δ density on the driver (mean saliency "
            "inside minus outside the white outline; D = its value, lowest first), i.e. the "
            "maps that look most at something else.",
            wide=True,
        )
    for (name, variant), ex in (findings.get("own_explains") or {}).items():
        if variant not in cfg.study.compare:
            continue
        page.figure(
            Path(ex["output_dir"]) / "mosaics" / "gradcam_correct_error.png",
            f"GradCAM maps of the model trained on {name}/{variant}, on its OWN variant "
            f"({variant} test images: what it was trained to see). Rows: true class; left: "
            "correct predictions (green frame), right: errors (red frame). Colours: the map "
            "scaled to 0 (blue, none) – 1 (red, its maximum); white outline: the driver. Under "
            "each tile: predicted class, its confidence, fg = fg_mass.",
            wide=True,
        )
    _faithfulness_section(page, list(explains.items()))
    _sanity_section(page, findings)
    page.h("Token grids (4×4 and 8×8) of an example image")
    for (name, variant), ex in (compared or list(explains.items()))[:2]:
        for path in _token_grids(Path(ex["output_dir"]), "gradcam", work):
            grid = path.stem.rsplit("_", 1)[-1]
            page.figure(
                path,
                f"GradCAM tokens ({grid} cells) of one test image, model trained on "
                f"{name}/{variant}. Left: the image with its saliency (0 = none, 1 = max). "
                "Then the share of the saliency in each cell for the whole map, the part on "
                "the foreground (driver) and the part on the background, on one colour scale; "
                "dots: each cell's saliency centroid, area ∝ its share.",
                wide=True,
            )
    page.h("Confidence-stratified clustering")
    for result in grid_results.values():
        cells = sorted((Path(result.get("output_dir", "")) / "cells").glob("*"))
        drawn = [c for c in cells if (c / "clusters" / "scatter.png").is_file()]
        for cell in drawn[:2]:
            where = cell_label(cell.name)
            captions = {
                "scatter": f"{where.capitalize()}: the confidence of every test image by true "
                "class (correct left, ○; errors right, ×), coloured by confidence bin (0 = "
                "lowest; bins within each class and outcome).",
                "bands": f"{where.capitalize()}: the confidence range of each bin per true "
                "class (correct left, errors right and hatched); numbers: images in the bin.",
                "histogram": f"{where.capitalize()}: confidence histograms of the correct "
                "predictions and of the errors, stacked by confidence bin.",
            }
            for fig, caption in captions.items():
                page.figure(cell / "clusters" / f"{fig}.png", caption)
            pooled = cell / "clusters" / "pooled.csv"
            if pooled.is_file():
                page.p(
                    f'<span class="note">{html.escape(where.capitalize())}: per outcome and '
                    "confidence bin, the images (n, share of the outcome), the mean "
                    "confidence, the images left out (excluded) and the saliency masses."
                    "</span>"
                )
                page.table(pd.read_csv(pooled), index=False)
    page.h("Divergence between the compared models")
    div = findings.get("divergence") or {}
    if findings.get("verdict"):
        page.p(html.escape(str(findings["verdict"])))
    # no output_dir (the analysis failed): nothing to show (Path("") would be the cwd)
    out_dir = div.get("output_dir") if isinstance(div, dict) else None
    div_dir = Path(out_dir) if out_dir else None
    for png in sorted(div_dir.rglob("*.png"))[:6] if div_dir and div_dir.is_dir() else []:
        page.figure(png, _divergence_caption(png))
    page.h("Step times")
    page.p(", ".join(f"{k} {v:.0f} s" for k, v in study.timings.items()))
    shutil.rmtree(work)
    return page.write("SAGE study on SynthDrivers")


SALIENCY_TABLE = (
    "fg_mass/own_variant",
    "bg_mass/own_variant",
    "saliency_precision/spurious/own_variant",
    "fg_mass/full_images",
    "bg_mass/full_images",
    "saliency_precision/spurious/full_images",
    "arcc/full_images",
    "rfs/rfs",
)


def _marked(table: pd.DataFrame) -> pd.DataFrame:
    """Interval strings with each column's direction mark in its header."""
    out = table.rename(columns=header)
    out.index.name = "trained on"
    return out


def _divergence_caption(png: Path) -> str:
    """What a figure of the divergence analysis (:mod:`sage.plots.divergence`) shows."""
    stem, pair = png.stem, png.parent.name
    models = " vs ".join(_model_label(k) for k in pair.split("--")) if "--" in pair else ""
    between = f" between {models}" if models else ""
    method = stem.rsplit("_", 1)[-1]
    if png.parent.name == "embedding":
        return (
            f"{stem} saliency maps of both models on the same test images, projected on "
            "their first two principal components (colour: model; ○ correct, × error); a red "
            "segment joins the two maps of an image the models classify differently."
        )
    if stem.startswith("scatter"):
        return (
            f"Per test image{between}: the divergence of the {method} maps (JS(S̃), x) "
            "against the divergence of the predicted class probabilities (JS(pred), y), in "
            "bits; red ×: the predicted classes differ; black line: least-squares fit."
        )
    if stem.startswith("fg_bg"):
        return (
            f"Mean divergence of the {method} maps{between}, split into the part on the "
            "foreground (driver, green) and on the background (grey), per group of images; "
            "'fg x %' = the foreground's share."
        )
    if stem == "flips":
        return (
            f"Predicted classes{between}: rows = the first model's prediction, columns = "
            "the second's; off-diagonal cells (coloured) are images where they disagree."
        )
    if stem == "per_class":
        return (
            f"Per true class{between}: the share of images the models classify differently "
            "(disagreement) and the mean divergences of their predictions (js_pred) and "
            "maps (js_map), in bits."
        )
    return stem.replace("_", " ")


def _faithfulness_section(page: _Page, explains: list) -> None:
    """Per method of the models explained with Deletion/Insertion: the perturbation metrics
    side by side."""
    columns = ("road", "road/morf", "deletion", "insertion", "arcc")  # headers: .directions
    tables = []
    for (name, variant), ex in explains:
        path = Path(ex["output_dir"]) / "metrics.csv"
        if not path.is_file():
            continue
        frame = pd.read_csv(path)
        present = [c for c in columns if c in frame]
        if "deletion" not in present:
            continue
        means = frame.groupby("method", sort=False)[present].mean()
        tables.append((f"{name}/{variant}", means))
    if not tables:
        return
    page.h("Faithfulness per method: ROAD next to Deletion / Insertion")
    page.p(
        "Means over the explained test images (full images of the source domain). ROAD removes "
        "pixels by noisy linear imputation (MoRF: most relevant first); Deletion removes the "
        "most relevant pixels first (replaced by the dataset mean) and Insertion adds them to a "
        "blurred image, 25 steps each (Petsiuk et al. 2018); area under the class-probability "
        "curve; road = ROAD's combined score, road/morf its most-relevant-first curve. "
        f"Column marks: {_MARKS}"
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
        how = {
            "cascading": "layers re-initialised cumulatively from the logits down (x axis: "
            "the deepest layer re-initialised so far)",
            "independent": "one layer re-initialised at a time (x axis: that layer)",
        }
        for mode in ("cascading", "independent"):
            page.figure(
                d / "randomisation" / f"mprt_{mode}.png",
                f"Model trained on {name}/{variant}, {mode} randomisation ({how[mode]}): "
                "per method, the mean similarity (Spearman, SSIM, top-k intersection; 1 = "
                "unchanged) of its maps to the maps of the trained model, band = "
                "interquartile range over images. Lower = the maps depend on the weights "
                "(passes).",
                wide=True,
            )
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
            page.p(f'<span class="note">Column marks: {_MARKS}</span>')
            page.table(table[[c for c in keep if c in table]].set_index("metric"))


def _runs(findings: dict[str, Any]) -> dict:
    models = findings["models"]
    return {(r.domain, r.variant): r.run_id for r in models.itertuples()}
