"""The report's presentation: direction marks from one table, tables that fit the page,
figure text legible at the size the report shows it, captions in words."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from sage.metrics.directions import arrow
from sage.plots import clusters, divergence, grid, tokens
from sage.plots.overlay import SALIENCY_BAR, correct_error_mosaic
from sage.plots.style import HALF_PX, HALF_W, WIDE_PX, WIDE_W, shown_pt
from sage.plots.tile_sheet import _footer
from sage.study.directions import DIRECTION, direction, header
from sage.study.report import _Page, cell_label

# ------------------------------------------------------------------ directions


def test_direction_marks_follow_docs_metrics():
    assert header("test/acc") == "test/acc ↑"
    assert header("fg_mass") == "fg_mass ↑"
    assert header("bg_mass") == "bg_mass ↓"
    assert header("saliency_precision/spurious") == "saliency_precision/spurious ↓"
    assert header("arcc") == "arcc ↑"
    assert header("rfs/rfs") == "rfs/rfs ↑"
    assert header("noise_resilience") == "noise_resilience ↓"
    # stage and method prefixes name where, not what
    assert header("val_sage/fg_mass") == "val_sage/fg_mass ↑"
    assert header("gradcam/bg_mass") == "gradcam/bg_mass ↓"
    assert header("explain/gradcam/deletion") == "explain/gradcam/deletion ↓"
    # counts and descriptive values: no mark
    for name in ("n", "share", "js_pred", "bin", "mean_method", "pair_accuracy_lo"):
        assert header(name) == name


def test_direction_table_agrees_with_the_metric_sets():
    for name, mark in DIRECTION.items():
        if arrow(name):  # the metric sets' own table knows this name
            assert mark == arrow(name), name
    assert direction("iou/spurious") == "↓"  # falls back to the metric sets' table


# ------------------------------------------------------------------ the page


def test_tables_fit_the_page_with_marks_and_three_decimals(tmp_path):
    page = _Page(tmp_path)
    frame = pd.DataFrame(
        {"trained_on": ["a/full"], "test/acc": [0.95123], "n": [12], "ok": [True]}
    ).set_index("trained_on")
    frame["bg_mass"] = np.nan
    page.table(frame)
    html = page.parts[-1]
    assert html.startswith('<div class="tw">')  # scrolls sideways rather than overflow
    assert "test/<wbr>acc ↑" in html and "bg_<wbr>mass ↓" in html
    assert "<th>n</th>" in html  # a count: no mark
    assert "<td>0.951</td>" in html and "<td>12</td>" in html and "<td>yes</td>" in html
    assert "<td>–</td>" in html


def test_cell_names_become_words():
    assert (
        cell_label("01-synth-sf3d-full--synth-driver100-full")
        == "trained on synth-sf3d/full, tested on synth-driver100/full"
    )
    assert (
        cell_label("06-synth-sf3d-full--synth-sf3d-shuffled-full")
        == "trained on synth-sf3d/full, tested on synth-sf3d-shuffled/full"
    )
    assert cell_label("weird") == "weird"


# ------------------------------------------------------------------ legible figures


@pytest.fixture
def drawn(monkeypatch):
    """Every figure saved: (width in inches, smallest font size of its visible text)."""
    seen: list[tuple[float, float]] = []
    save = Figure.savefig

    def record(fig, *args, **kwargs):
        fig.canvas.draw()
        sizes = [
            t.get_fontsize()
            for t in fig.findobj(matplotlib.text.Text)
            if t.get_visible() and t.get_text().strip()
        ]
        seen.append((fig.get_figwidth(), min(sizes)))
        # every image drawn in colour (heatmap, overlay) has a colour bar beside it
        images = [a for a in fig.axes if a.images or a.collections]
        bars = [a for a in fig.axes if a.get_label() == "<colorbar>"]
        heat = [a for a in images if any(i.get_cmap().name != "gray" for i in a.images)]
        assert not heat or bars, "a heatmap without a colour bar"
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return seen


def _legible(seen, shown_px):
    for width, smallest in seen:
        assert shown_pt(smallest, width, shown_px) >= 8.5, (width, smallest)


def test_half_width_figures_are_legible_in_a_report_column(tmp_path, drawn):
    names = [f"synth-{d}/{v}" for d in ("a", "b") for v in ("full", "bbox", "seg")]
    matrix = pd.DataFrame(np.random.default_rng(0).random((4, 6)), names[:4], names)
    grid.plot_grid_heatmap(matrix, tmp_path / "g.png", "Accuracy (test)")
    classes = [f"c{k}" for k in range(10)]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "true_idx": rng.integers(0, 10, 80),
            "confidence": rng.random(80),
            "outcome": rng.choice(["correct", "error"], 80),
            "bin": rng.integers(0, 4, 80),
        }
    )
    clusters.plot_cluster_scatter(frame, classes, tmp_path / "s.png", "t")
    clusters.plot_cluster_histograms(frame, tmp_path / "h.png", "t")
    flips = pd.DataFrame(rng.integers(0, 9, (10, 10)), classes, classes)
    divergence.plot_flip_matrix(flips, tmp_path / "f.png", "a", "b", "a vs b")
    divergence.plot_divergence_scatter(
        rng.random(30), rng.random(30), rng.random(30) > 0.5, tmp_path / "d.png", title="x"
    )
    assert len(drawn) == 5
    assert all(width <= HALF_W + 1e-9 for width, _ in drawn)
    _legible(drawn, HALF_PX)


def test_token_grid_is_legible_across_the_page(tmp_path, drawn):
    image = np.zeros((32, 32, 3), np.uint8)
    pdf = np.full((32, 32), 1 / 1024)
    toks = np.zeros((3, 4, 4, 6))
    toks[..., 0] = 1 / 16
    tokens.plot_token_grid(image, pdf, toks, tmp_path / "t.png", "gradcam on x")
    ((width, _),) = drawn
    assert width <= WIDE_W + 1e-9
    _legible(drawn, WIDE_PX)


def test_grid_labels_drop_only_a_prefix_every_label_shares():
    assert grid.common_prefix(["synth-a/full", "synth-b/seg"]) == "synth-"
    assert grid.common_prefix(["a/full", "b/seg"]) == ""


# ------------------------------------------------------------------ mosaics


def test_correct_error_mosaic_explains_its_tiles_under_them(tmp_path):
    tile = np.full((16, 16, 3), 128, dtype=np.uint8)
    tiles = {"c0": {"correct": [(tile, "c0 0.90 fg 0.30")], "error": []}}
    bare = correct_error_mosaic(tiles, tmp_path / "a.png", "t", 1, legend="", colorbar=None)
    full = correct_error_mosaic(tiles, tmp_path / "b.png", "t", 1)
    with Image.open(bare) as a, Image.open(full) as b:
        sheet_a, sheet_b = np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB"))
    assert sheet_b.shape[1] == sheet_a.shape[1]  # the legend wraps, it does not widen
    extra = sheet_b[sheet_a.shape[0] :]
    assert extra.shape[0] > 40  # colour bar + wrapped legend lines
    red = (extra[..., 0] > 200) & (extra[..., 1] < 60) & (extra[..., 2] < 60)
    assert red.any()  # the jet bar's top end
    footer = _footer(sheet_a.shape[1], "x", SALIENCY_BAR)
    assert footer.shape[1] == sheet_a.shape[1]


def test_finding_figures_are_legible(tmp_path, drawn):
    from sage.plots.intervals import finding_panel, forest
    from sage.stats import Interval

    a = Interval(0.91, 0.86, 0.95, 160, "bootstrap")
    b = Interval(0.67, 0.60, 0.74, 160, "bootstrap")
    diff = Interval(0.24, 0.18, 0.31, 160, "bootstrap")
    finding_panel(a, b, diff, ("sticker as generated", "shuffled"), "Q?", tmp_path / "p.png")
    _legible(drawn, HALF_PX)
    assert drawn[0][0] <= HALF_W
    forest([(f"finding/{k}", diff) for k in range(20)], tmp_path / "f.png", "all")
    _legible(drawn[1:], WIDE_PX)
