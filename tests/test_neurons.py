"""Neural-feature attribution (RIVAL10 §6): unit Grad-CAM, the top-k search, the held-out
check, empty-region bookkeeping, and ``explain.py mode=neurons`` end to end."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from conftest import TINY_SYNTH
from sage.errors import SageError
from sage.explain import run as explain_run
from sage.models import create_backbone
from sage.neurons import (
    UnitGradCAM,
    collect_activations,
    heldout_scores,
    max_binarise,
    resolve_regions,
    search_units,
    unit_gradcam,
    unit_iou,
)
from sage.neurons.report import summary_table
from sage.neurons.search import pack_units, top_k_per_unit
from sage.saliency.methods import create_method
from sage.train import run as train_run

SIZE = 16
SQUARE, BLUE = 1, 2  # part ids
REGIONS = {"square": SQUARE, "blue": BLUE}


class Squares(Dataset):
    """Noise images (every channel in [0, 0.3]) with a pure red square (part 1) and, in class 0
    images with an even index only, a pure blue square (part 2); class = index parity."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            image = torch.rand(3, SIZE, SIZE, generator=g) * 0.3
            parts = torch.zeros(SIZE, SIZE, dtype=torch.uint8)
            label = i % 2
            side = int(torch.randint(3, 7, (1,), generator=g))
            y, x = (int(v) for v in torch.randint(0, SIZE // 2 - side + 1, (2,), generator=g))
            image[:, y : y + side, x : x + side] = torch.tensor([1.0, 0, 0])[:, None, None]
            parts[y : y + side, x : x + side] = SQUARE
            if label == 0 and i % 4 == 0:  # blue square in the lower half (no overlap)
                image[:, SIZE - 5 : SIZE - 1, x : x + 4] = torch.tensor([0, 0, 1.0])[:, None, None]
                parts[SIZE - 5 : SIZE - 1, x : x + 4] = BLUE
            self.items.append(
                {
                    "image": image,
                    "label": label,
                    "image_id": f"img{seed}_{i:03d}",
                    "mask": parts > 0,
                    "parts": parts,
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class Detectors(nn.Module):
    """1x1 conv units: 0 fires exactly on red pixels, 1 on blue ones, 2 follows the green
    noise, 3 is constant; global average pool; a linear head."""

    def __init__(self, n_out: int = 2) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 4, 1)
        with torch.no_grad():
            conv.weight.copy_(
                torch.tensor(
                    [[1.0, -1, -1], [-1, -1, 1], [0, 1, 0], [0, 0, 0]]  # r, g, b per unit
                )[:, :, None, None]
            )
            conv.bias.copy_(torch.tensor([-0.5, -0.5, 0.0, 1.0]))
        self.features = nn.Sequential(conv, nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def _engine(model: nn.Module, **kw) -> UnitGradCAM:
    return UnitGradCAM(model, target_layers=["features"], feature_layer="pool", **kw)


def test_search_finds_the_square_unit_and_it_holds_on_heldout_images():
    model, train, held = Detectors(), Squares(24, seed=0), Squares(12, seed=1)
    table = collect_activations(model, train, REGIONS, feature_layer="pool", batch_size=5)
    assert table.acts.shape == (24, 4)
    assert (table.area[:, 0] > 0).all()  # every image has its red square
    pairs = search_units(_engine(model), train, table, REGIONS, [0, 1], top_k=4, batch_size=5)
    found = {(p.label, p.region): p for p in pairs}
    square = found[0, "square"]
    assert square.best_unit == 0 and square.train_iou == pytest.approx(1.0)
    assert square.top.shape == (4, 4) and square.n_skipped_empty == 0
    # the noise and constant units do not line up with the square
    assert square.scores[2] < 0.5 and square.scores[3] < 0.5
    blue = found[0, "blue"]
    assert blue.best_unit == 1 and blue.train_iou == pytest.approx(1.0)
    assert blue.n_eligible == 6 and blue.n_skipped_empty == 6  # class 0: 12 images, 6 with blue
    assert not found[1, "blue"].ok and found[1, "blue"].n_skipped_empty == 12
    assert found[1, "blue"].best_unit is None

    candidates = {(p.label, p.region): p.best_unit for p in pairs if p.ok}
    scores, counts = heldout_scores(
        _engine(model), held, range(len(held)), REGIONS, candidates, batch_size=5
    )
    on_square = scores[scores.region == "square"]
    assert len(on_square) == 12 and np.allclose(on_square.iou, 1.0)
    assert (on_square.unit == 0).all() and (on_square.activation > 0).all()
    assert np.allclose(scores[scores.region == "blue"].iou, 1.0)

    summary = summary_table(pairs, scores, counts, ["a", "b"], ["A", "B"]).set_index(
        ["class", "region"]
    )
    row = summary.loc["a", "square"]
    assert row.best_unit == 0 and row.heldout_iou_mean == pytest.approx(1.0)
    assert row["heldout_share_above_0.5"] == 1.0 and row.n_heldout == 6
    assert summary.loc["a", "blue"].n_heldout == 3
    assert summary.loc["a", "blue"].n_skipped_empty == 3  # held-out class-0 images w/o blue
    assert summary.loc["b", "blue"].status == "no_train_image_with_region"
    assert summary.loc["b", "blue"].n_skipped_empty == 6
    assert pd.isna(summary.loc["b", "blue"].best_unit)


class IdentityHead(nn.Module):
    """conv-ReLU-conv, average pool, a linear head fixed to the identity (logit c = unit c)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1, stride=2)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4, 4)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.eye(4))
            self.classifier.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def test_unit_gradcam_equals_class_gradcam_when_the_head_is_the_identity():
    torch.manual_seed(0)
    model = IdentityHead()
    images = torch.randn(3, 3, 12, 12)
    # the target layer sits below a conv, so the unit gradient is not just the pooling's
    unit_maps = unit_gradcam(model, images, [0, 1, 2, 3], ["features.1"], "pool")
    gradcam = create_method("gradcam", target_layers=["features.1"], scoring="raw")
    for c in range(4):
        class_maps = gradcam(model, images, torch.full((3,), c))
        torch.testing.assert_close(unit_maps[:, c], class_maps, atol=1e-6, rtol=1e-4)


def test_unit_gradcam_defaults_match_class_gradcam_on_a_registered_backbone():
    torch.manual_seed(0)
    model = create_backbone("small_cnn", 128)  # head: 128 -> 128
    with torch.no_grad():
        model.classifier.weight.copy_(torch.eye(128))
        model.classifier.bias.zero_()
    images = torch.randn(2, 3, 32, 32)
    units = torch.tensor([[5, 70], [70, 3]])  # a different pair of units per image
    engine = UnitGradCAM(model.eval())  # default layers: features.3 / classifier input
    with engine.forward(images) as fwd:
        maps = fwd.cams(units)
    gradcam = create_method("gradcam", scoring="raw")
    for j in range(2):
        torch.testing.assert_close(
            maps[:, j], gradcam(model, images, units[:, j]), atol=1e-6, rtol=1e-4
        )


def test_chunked_and_unbatched_unit_gradients_agree():
    model, images = Detectors(), torch.stack([Squares(3, seed=2)[i]["image"] for i in range(3)])
    units = torch.tensor([[0, 1, 2, 3], [3, 2, -1, -1], [1, -1, 0, 2]])
    with _engine(model).forward(images) as fwd:
        whole = fwd.cams(units)
    with _engine(model, max_elements=1).forward(images) as fwd:  # one unit per chunk
        assert fwd.rows_per_chunk == 1
        chunked = torch.cat([cams for _, cams in fwd.chunks(units)], dim=1)
        fwd._batched = False  # the per-row fallback for ops without a batching rule
        rows = fwd.cams(units)
    torch.testing.assert_close(chunked, whole)
    torch.testing.assert_close(rows, whole)
    assert (whole[1, 2:] == 0).all()  # padding gives zero maps


def test_binarisation_and_iou_edge_cases():
    maps = torch.zeros(1, 3, 4, 4)
    maps[0, 0, :2, :2] = 2.0
    maps[0, 0, 3, 3] = 0.9  # below 0.5 * max: not in the binary map
    maps[0, 1] = -1.0  # nothing positive: empty binary map
    maps[0, 2, 0, 0] = float("nan")
    b, finite = max_binarise(maps)
    assert b[0, 0].sum() == 4 and not b[0, 1].any() and finite.tolist() == [[True, True, False]]
    masks = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    masks[0, 0, :2, :] = True
    iou = unit_iou(maps, masks)
    assert iou[0, 0, 0] == pytest.approx(0.5) and iou[0, 0, 1] == 0  # empty region: 0
    assert iou[0, 1, 0] == 0 and torch.isnan(iou[0, 2]).all()


def test_packing_and_top_k():
    image = torch.tensor([4, 1, 4, 1, 9, 4])
    unit = torch.tensor([2, 0, 7, 3, 1, 5])
    images, table, pos = pack_units(image, unit)
    assert images.tolist() == [1, 4, 9] and table.shape == (3, 3)
    assert table[pos[:, 0], pos[:, 1]].tolist() == unit.tolist()
    assert (table[2, 1:] == -1).all()
    acts = torch.tensor([[1.0, 5], [3, 4], [2, 6], [9, 0]])
    top = top_k_per_unit(acts, torch.tensor([True, True, True, False]), 2)
    assert top.tolist() == [[1, 2], [2, 0]]  # the ineligible row 3 is never chosen


def test_regions_are_resolved_by_name():
    names = {0: "background", 1: "head", 2: "object"}
    assert resolve_regions(names, None) == {"head": 1, "object": 2}
    assert resolve_regions(names, ["fg", "object"]) == {"fg": None, "object": 2}
    with pytest.raises(SageError, match=r"unknown region 'hand'.*head, object, fg"):
        resolve_regions(names, ["hand"])


# --------------------------------------------------------------------- explain.py mode=neurons


@pytest.fixture
def checkpoint(compose_cfg, tmp_path) -> Path:
    fast = [*TINY_SYNTH, "debug=fast", "model.input_size=32", "data.batch_size=8"]
    train_run(compose_cfg("train", fast))
    return next((tmp_path / "run" / "checkpoints").glob("last*.ckpt"))


def test_explain_mode_neurons_end_to_end(compose_cfg, checkpoint, tmp_path):
    cfg = compose_cfg(
        "explain",
        [
            f"checkpoint={checkpoint}",
            "mode=neurons",
            "progress=false",
            "neurons.classes=[c1,Drinking]",
            "neurons.regions=[right_hand,object,fg]",
            "neurons.top_k=3",
            "neurons.batch_size=4",
            "neurons.mosaic_images=2",
        ],
    )
    result = explain_run(cfg)
    out = Path(cfg.paths.output_dir)
    table = pd.read_csv(out / "neurons_table.csv")
    assert list(table[["class", "region"]].itertuples(index=False, name=None)) == [
        (c, r) for c in ("c1", "c6") for r in ("right_hand", "object", "fg")
    ]
    assert {
        "best_unit",
        "train_iou",
        "heldout_iou_mean",
        "heldout_share_above_0.5",
        "n_heldout",
        "n_skipped_empty",
    } <= set(table.columns)
    ok = table[table.status == "ok"]
    assert len(ok) and ok.best_unit.between(0, 127).all()
    assert ok.train_iou.between(0, 1).all() and ok.heldout_iou_mean.between(0, 1).all()
    assert (out / "neurons_table.png").stat().st_size > 0
    for row in ok.itertuples(index=False):
        assert (out / "generalisation" / f"{row[0]}_{row.region}.png").stat().st_size > 0
        assert (out / "mosaics" / f"{row[0]}_{row.region}.png").stat().st_size > 0
    units = pd.read_csv(out / "neurons_units.csv")
    assert len(units) == 128 * len(table[table.status != "no_train_image_with_region"])

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/outputs/mlflow.db")
    run = client.get_run(result["run_id"])
    assert run.data.tags["mode"] == "neurons" and run.data.tags["stage"] == "explain"
    row = ok.iloc[0]
    key = f"neurons/{row['class']}/{row.region}/heldout_iou"
    assert run.data.metrics[key] == pytest.approx(row.heldout_iou_mean)
    listed = {a.path for a in client.list_artifacts(run.info.run_id, "neurons")}
    assert {"neurons/neurons_table.csv", "neurons/mosaics", "neurons/generalisation"} <= listed


def test_explain_rejects_an_unknown_mode(compose_cfg, tmp_path):
    cfg = compose_cfg("explain", ["checkpoint=x.ckpt", "mode=units"])
    with pytest.raises(SageError, match="mode must be 'maps' or 'neurons'"):
        explain_run(cfg)
