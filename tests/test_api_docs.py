"""The Python API (sage/api.py) and its guide (docs/api.md).

Every ```python block of docs/api.md (those marked ``no-run`` aside) runs, in order, in one
namespace, so the guide cannot rot; the direct tests pin what the guide promises: per-image
shapes, the same numbers as the metric functions, clear errors for a missing method or mask.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from sage import api
from sage.errors import SageError

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```\s*$", re.DOTALL | re.MULTILINE)

B, SIZE = 3, 32


def doc_blocks() -> list[tuple[int, str]]:
    """``(line, code)`` of every runnable python block of docs/api.md, in order."""
    text = DOC.read_text(encoding="utf-8")
    blocks = []
    for m in FENCE.finditer(text):
        if "no-run" in m.group(1).split():
            continue
        blocks.append((text.count("\n", 0, m.start()) + 1, m.group(2)))
    return blocks


def test_doc_examples_run() -> None:
    blocks = doc_blocks()
    assert len(blocks) >= 8, "docs/api.md lost its examples"
    namespace: dict = {"__name__": "docs_api"}
    for line, code in blocks:
        try:
            exec(compile(code, f"{DOC}:{line}", "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"docs/api.md block at line {line} failed: {err!r}") from err


def test_doc_fences_are_runnable_or_marked() -> None:
    """Every fence tagged python is either run or explicitly ``no-run`` (no typo'd tags)."""
    text = DOC.read_text(encoding="utf-8")
    tags = {m.group(1).strip() for m in FENCE.finditer(text)}
    assert tags <= {"", "no-run"}, tags


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    model = api.create_backbone("small_cnn", 5)
    images = torch.randn(B, 3, SIZE, SIZE)
    labels = torch.tensor([0, 1, 2])
    masks = torch.zeros(B, SIZE, SIZE, dtype=torch.bool)
    masks[:, 8:24, 4:20] = True
    gradcam = api.create_method("gradcam")
    maps = gradcam(model, images, labels)
    return model, images, labels, masks, gradcam, maps


def test_explain_shapes_and_method_equivalence(batch) -> None:
    model, images, labels, _, gradcam, maps = batch
    assert maps.shape == (B, SIZE, SIZE)
    assert torch.equal(api.explain(model, images, "gradcam", labels), maps)
    assert torch.equal(api.explain(model, images, gradcam, labels), maps)
    raw = api.explain(model, images, "gradcam", labels, scoring="raw")
    assert raw.shape == maps.shape
    with pytest.raises(SageError, match="by name"):
        api.explain(model, images, gradcam, labels, scoring="raw")
    with pytest.raises(SageError, match="saliency method"):
        api.explain(model, images, "gradcamm", labels)


def test_per_image_metrics(batch) -> None:
    from sage.saliency.normalize import normalize_batch

    model, images, labels, masks, gradcam, maps = batch
    a_fg = api.fg_mass(maps, masks)
    assert a_fg.shape == (B,)
    assert torch.equal(a_fg, normalize_batch(maps, masks).a_fg)
    align = api.alignment(maps, masks)
    assert set(align) >= {"iou", "pointing_game", "average_precision"}
    assert all(v.shape == (B,) for v in align.values())
    regions = api.alignment(maps, {"fg": masks, "bg": ~masks})
    assert torch.equal(regions["iou/fg"], align["iou"]) and "iou/bg" in regions
    faith = api.faithfulness(model, images, labels, maps, gradcam)
    assert set(faith) == {
        "average_drop",
        "increase_in_confidence",
        "coherency",
        "complexity",
        "adcc",
    }
    assert all(v.shape == (B,) for v in faith.values())
    by_name = api.faithfulness(model, images, labels, maps, "gradcam")
    torch.testing.assert_close(by_name, faith, equal_nan=True)
    a = api.arcc(model, images, labels, maps, gradcam)
    assert set(a) == {"arcc", "road", "coherency", "complexity"}
    torch.testing.assert_close(a["coherency"], faith["coherency"], equal_nan=True)


def test_road_equals_road_scores(batch) -> None:
    from sage.metrics.road import road_scores

    model, images, labels, _, _, maps = batch
    via_api = api.road(model, images, labels, maps, percentiles=(30, 70), seed=3)
    direct = road_scores(model, images, maps, labels, percentiles=(30, 70), seed=3)
    assert set(via_api) == {"road", "morf", "lerf"}
    for k, v in via_api.items():
        assert v.shape == (B,)
        torch.testing.assert_close(v, direct[k], equal_nan=True)
    # the registered set through evaluate: the same numbers under the pipeline's column names
    cols = api.evaluate("road", model, images, labels, maps, percentiles=(30, 70), seed=3)
    torch.testing.assert_close(cols["road"], direct["road"], equal_nan=True)
    torch.testing.assert_close(cols["road/morf"], direct["morf"], equal_nan=True)


def test_evaluate_needs_method_where_a_set_reruns_it(batch) -> None:
    model, images, labels, masks, gradcam, maps = batch
    for name in ("faithfulness", "arcc"):
        with pytest.raises(SageError, match=rf"{name}'.*method="):
            api.evaluate(name, model, images, labels, maps, masks)
    # a set that only calls the method deep inside (max-sensitivity) fails the same way
    with pytest.raises(SageError, match="method="):
        api.evaluate(
            "robustness",
            model,
            images,
            labels,
            maps,
            infidelity_samples=1,
            sensitivity_samples=1,
        )
    # sets that never run it need no method; with one, the re-running sets work
    assert api.evaluate("sparseness", model, images, labels, maps)["sparseness"].shape == (B,)
    cols = api.evaluate("faithfulness", model, images, labels, maps, method=gradcam)
    assert cols["coherency"].shape == (B,)


def test_evaluate_masks_and_targets(batch) -> None:
    model, images, labels, masks, gradcam, maps = batch
    with pytest.raises(SageError, match="masks="):
        api.evaluate("alignment", model, images, labels, maps)
    cols = api.evaluate("alignment", model, images, labels, maps, masks, method=gradcam)
    torch.testing.assert_close(cols["iou/fg"], api.alignment(maps, masks)["iou"], equal_nan=True)
    with pytest.raises(ValueError, match="binary"):
        api.evaluate("alignment", model, images, labels, maps, masks.float() * 0.5)
    with pytest.raises(SageError, match="unknown metric sets"):
        api.evaluate("roadd", model, images, labels, maps)
    # maps=None: computed with the method; targets=None: the predicted classes
    pred = model.eval()(images).argmax(1)
    auto = api.evaluate("sparseness", model, images, None, None, method="gradcam")
    given = api.evaluate("sparseness", model, images, pred, gradcam(model, images, pred))
    torch.testing.assert_close(auto, given)


def test_callable_method(batch) -> None:
    """A plain callable (a Captum or grad-cam wrapper) serves as the method everywhere."""
    model, images, labels, masks, gradcam, maps = batch

    def method(m, x, y):
        return gradcam(m, x, y)

    faith = api.faithfulness(model, images, labels, maps, method)
    ref = api.faithfulness(model, images, labels, maps, gradcam)
    torch.testing.assert_close(faith, ref, equal_nan=True)
    cols = api.evaluate("alignment", model, images, labels, maps, masks, method=method)
    assert cols["iou/fg"].shape == (B,)
