"""The study's findings from constructed per-image evidence: wording follows the interval,
every finding carries one, seeds combine by the t interval."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from sage.study.evidence import SeedEvidence
from sage.study.findings import collect_findings
from sage.study.quantities import Domain

SF, DR, TWIN = "synth-sf3d", "synth-driver100", "synth-sf3d-shuffled"
DOMAINS = [Domain(SF, DR, TWIN), Domain(DR, SF, None)]
N = 40
IDS = [f"img{i:02d}" for i in range(N)]
INTERVAL = re.compile(r"\[[+-]?\d+\.\d+, [+-]?\d+\.\d+\]")


def _hits(k: int, offset: int = 0) -> pd.Series:
    """0/1 per image: ``k`` of the N images right, starting at ``offset`` (wrapping)."""
    v = np.zeros(N)
    v[(np.arange(k) + offset) % N] = 1
    return pd.Series(v, index=IDS)


def _saliency(bg: float, sticker: float, jitter: int) -> pd.DataFrame:
    wobble = 0.02 * np.sin(np.arange(N) + jitter)
    return pd.DataFrame(
        {
            "fg_mass": 1 - bg - wobble,
            "bg_mass": bg + wobble,
            "saliency_precision/spurious": sticker + wobble / 10,
            "arcc": 0.4 + wobble,
        },
        index=IDS,
    )


def evidence(seed: int = 0, full_drop: int = 20, sticker: tuple = (0.06, 0.01)) -> SeedEvidence:
    """Full-trained SF model: 36/40 right with the cue, ``36 − full_drop`` shuffled; the seg
    model: 30/40 both ways but on different images (a real zero difference)."""
    runs = {(d.name, v): f"{d.name}-{v}-{seed}" for d in DOMAINS for v in ("full", "seg")}
    ev = SeedEvidence(seed, runs)
    p = ev.predictions
    p[(f"{SF}/full", f"{SF}/full")] = _hits(36)
    p[(f"{SF}/full", f"{TWIN}/full")] = _hits(36 - full_drop)
    p[(f"{SF}/seg", f"{SF}/full")] = _hits(30)
    p[(f"{SF}/seg", f"{TWIN}/full")] = _hits(30, offset=5)
    p[(f"{SF}/seg", f"{SF}/seg")] = _hits(38)
    p[(f"{SF}/full", f"{DR}/full")] = _hits(12)
    p[(f"{SF}/seg", f"{DR}/seg")] = _hits(28)
    p[(f"{DR}/full", f"{DR}/full")] = _hits(39)
    p[(f"{DR}/seg", f"{DR}/seg")] = _hits(39, offset=3)
    for d in DOMAINS:
        for k, v in enumerate(("full", "seg")):
            bg = 0.7 if v == "full" else 0.5
            ev.saliency[(f"{d.name}/{v}", "full")] = _saliency(bg, sticker[k], k + seed)
            ev.saliency[(f"{d.name}/{v}", "own")] = _saliency(bg - 0.1, sticker[k], k + seed)
            acc_bg = _hits(10 if v == "full" else 30).to_numpy()
            ev.rfs[f"{d.name}/{v}"] = pd.DataFrame(
                {"acc_fg": _hits(30).to_numpy(), "acc_bg": acc_bg}, index=IDS
            )
    return ev


def _by_key(findings: dict) -> dict:
    return {f.key: f for f in findings["findings"]}


def test_findings_state_a_direction_only_where_the_interval_excludes_zero():
    f = collect_findings([evidence()], DOMAINS, divergence={"verdict": "ρ=0.1 [-0.1, 0.3]"})
    found = _by_key(f)
    full = found[f"shortcut/{SF}/full"]
    assert full.direction == 1 and full.diff.value == pytest.approx(0.5)
    assert "it drops by 0.50 [" in full.text and "0.90 [" in full.text
    seg = found[f"shortcut/{SF}/seg"]
    assert seg.diff.value == pytest.approx(0) and seg.diff.low < 0 < seg.diff.high
    assert seg.direction == 0 and "no clear change (difference +0.00 [" in seg.text
    sticker = found[f"sticker/{SF}/full-vs-seg"]
    assert sticker.direction == 1 and "the full-trained model puts more there" in sticker.text
    transfer = found[f"transfer/{SF}/full-vs-seg"]  # 12/40 vs 28/40 on the other domain
    assert transfer.direction == -1 and "the seg-trained model's is higher by 0.40" in transfer.text
    same = found[f"in_domain/{DR}/full-vs-seg"]  # 39/40 both, different images
    assert same.direction == 0 and "no clear difference" in same.text
    # the sticker is a cue only where the domain has a cue-shuffled twin
    assert not [k for k in found if k.startswith(("sticker/" + DR, "shortcut/" + DR))]
    for line in f["lines"]:  # every finding carries an interval
        assert INTERVAL.search(line), line


def test_the_opposite_numbers_give_the_opposite_words():
    f = _by_key(collect_findings([evidence(full_drop=-4, sticker=(0.01, 0.06))], DOMAINS))
    assert f[f"sticker/{SF}/full-vs-seg"].direction == -1
    assert "the seg-trained model puts more there" in f[f"sticker/{SF}/full-vs-seg"].text
    assert "it rises by 0.10" in f[f"shortcut/{SF}/full"].text


def test_headlines_open_with_the_shortcut_and_name_their_numbers():
    f = collect_findings([evidence()], DOMAINS)
    keys = [h["key"] for h in f["headlines"]]
    assert keys[0] == f"shortcut/{SF}/full" and 3 <= len(keys) <= 5
    for h in f["headlines"]:
        assert h["title"].endswith("?") and INTERVAL.search(h["text"])


def test_several_seeds_give_t_intervals_over_seeds():
    f = collect_findings([evidence(0), evidence(1, full_drop=16)], DOMAINS)
    full = _by_key(f)[f"shortcut/{SF}/full"]
    assert full.diff.method == "seeds" and full.diff.n == 2
    assert full.diff.value == pytest.approx(0.45)  # mean of 0.50 and 0.40
    assert f["seeds"] == [0, 1]
    acc = f["intervals"][(f"{SF}/full", "cue_acc")]
    assert acc.method == "seeds" and acc.value == pytest.approx(0.9)


def test_models_table_and_scalars_agree():
    f = collect_findings([evidence()], DOMAINS)
    models = f["models"].set_index("trained_on")
    assert models.loc[f"{SF}/full", "cue_acc"] == pytest.approx(0.9)
    assert models.loc[f"{SF}/full", "bg_mass/own_variant"] == pytest.approx(0.6, abs=0.01)
    assert models.loc[f"{SF}/seg", "test/acc"] == pytest.approx(0.95)
    for key, value in f["scalars"].items():
        if "/finding/" in key:
            continue
        _, domain, variant, column = key.split("/", 3)
        assert models.loc[f"{domain}/{variant}", column] == pytest.approx(value)


def test_compare_two_studies_flags_opposite_directions(tmp_path, capsys):
    from sage.study.compare import main
    from sage.study.findings import write_findings_json

    a = collect_findings([evidence()], DOMAINS)
    b = collect_findings([evidence(1, full_drop=-4, sticker=(0.01, 0.06))], DOMAINS)
    for name, f in (("a", a), ("b", b)):
        write_findings_json(f, tmp_path / f"{name}.json")
    assert main([str(tmp_path / "a.json"), str(tmp_path / "a.json")]) == 0
    capsys.readouterr()
    assert main([str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if f"shortcut/{SF}/full " in line)
    assert "OPPOSITE" in row and "+0.50 [" in row
    assert main([str(tmp_path / "a.json"), str(tmp_path / "missing.json")]) == 2


def test_report_opens_with_the_headlines_and_shows_every_finding(tmp_path):
    import html
    from types import SimpleNamespace

    import mlflow

    from sage.study.report import write_report

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("s", artifact_location=str(tmp_path / "art"))
    ev = evidence()
    for key in ev.runs:  # real runs with a callback history, as the sweep logs them
        run_id = client.create_run(exp).info.run_id
        for step, mass in enumerate((0.2, 0.3)):
            client.log_metric(run_id, "val_sage/gradcam/fg_mass", mass, step=step)
        ev.runs[key] = run_id
    f = collect_findings([ev], DOMAINS, divergence={"verdict": "ρ=0.1 [-0.1, 0.3]"})
    f |= {"grid_results": {}, "explains": {}, "own_explains": {}}
    study = SimpleNamespace(
        client=lambda: client,
        cfg=SimpleNamespace(
            study=SimpleNamespace(compare=["full", "seg"], model="small_cnn", methods=["gradcam"])
        ),
        size="tiny",
        s=SimpleNamespace(images_per_class=5, epochs=1),
        tracking_uri=uri,
        experiment="s",
        timings={"training": 1.0},
    )
    page = write_report(f, tmp_path / "report", study)
    text = page.read_text().replace("<wbr>", "")
    first = text.index("Headline findings")
    assert first < text.index("<h2>Models") < text.index("All findings")
    for h in f["headlines"]:
        assert html.escape(h["text"]) in text[first : text.index("<h2>Models")]
    for line in f["lines"]:
        assert html.escape(line) in text
    assert "cue_acc ↑" in text and "saliency_precision/spurious/full_images ↓" in text
    assert "0.900 [" in text  # the models table shows intervals
    shown = text.split('src="')[1:]
    assert len([s for s in shown if "headline_" in s]) == len(f["headlines"])
    assert not [s for s in shown if "forward" in s]  # nothing picked up from the cwd
    for src in shown:  # every figure the page shows sits beside it
        assert (page.parent / src.split('"')[0]).is_file()


def test_divergence_finding_carries_its_rho_interval(tmp_path):
    pd.DataFrame(
        {
            "behaviour": ["js_pred", "js_pred"],
            "measure": ["js_fg", "js_map"],
            "n": [160, 160],
            "spearman": [0.2, 0.34],
            "spearman_lo": [0.1, 0.19],
            "spearman_hi": [0.3, 0.47],
        }
    ).to_csv(tmp_path / "correlations.csv", index=False)
    div = {"verdict": "supported: ρ=0.34 [0.19, 0.47]", "output_dir": str(tmp_path)}
    found = _by_key(collect_findings([evidence()], DOMAINS, divergence=div))["divergence"]
    assert (found.diff.value, found.diff.low, found.diff.high) == (0.34, 0.19, 0.47)
    assert found.direction == 1 and "ρ=0.34 [0.19, 0.47]" in found.text


def test_reused_grid_cells_give_their_predictions_from_mlflow(tmp_path):
    """A grid rerun with the same key reuses finished cells (no local cell directory): their
    per-image predictions come from the cell runs' artifacts."""
    import mlflow

    from sage.study.evidence import grid_predictions

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.create_experiment("g", artifact_location=str(tmp_path / "art"))
    run_id = client.create_run(exp).info.run_id
    table = tmp_path / "predictions.csv"
    pd.DataFrame({"image_id": ["a", "b"], "correct": [True, False]}).to_csv(table, index=False)
    client.log_artifact(run_id, str(table))
    grid = tmp_path / "evaluate" / "grid"
    grid.mkdir(parents=True)
    cells = {"row": [f"{SF}/full"], "column": [f"{TWIN}/full"], "run_id": [run_id]}
    pd.DataFrame(cells).to_csv(grid / "cells.csv", index=False)
    result = {"output_dir": str(grid.parent)}
    assert grid_predictions(result) == {}  # no client: nothing to read it from
    found = grid_predictions(result, client)[(f"{SF}/full", f"{TWIN}/full")]
    assert found.to_dict() == {"a": 1.0, "b": 0.0}
