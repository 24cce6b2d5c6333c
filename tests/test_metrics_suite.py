"""Metric sets (sage.metrics.suite): shared forwards give the same numbers as the functions."""

from __future__ import annotations

import pytest
import torch

from sage.errors import SageError
from sage.metrics.faithfulness import average_drop, coherency, complexity
from sage.metrics.road import road_scores
from sage.metrics.suite import MetricContext, check_metric_sets, compute_metric_sets
from sage.models import create_backbone
from sage.saliency.methods import create_method


def _context(logits: bool) -> MetricContext:
    torch.manual_seed(0)
    model = create_backbone("small_cnn", num_classes=10, pretrained=False).eval()
    images = torch.randn(4, 3, 64, 64)
    method = create_method("gradcam")
    labels = torch.tensor([0, 1, 2, 3])
    maps = method(model, images, labels)
    fg = torch.zeros(4, 64, 64, dtype=torch.bool)
    fg[:, 16:48, 16:48] = True
    return MetricContext(
        model=model,
        method=method,
        images=images,
        targets=labels,
        labels=labels,
        maps=maps,
        regions={"fg": fg},
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        logits=method.last_logits if logits else None,
    )


def test_sets_equal_the_metric_functions_and_logits_change_nothing():
    sets = {"faithfulness": {}, "arcc": {}, "road": {}}
    with_logits = compute_metric_sets(_context(True), sets)
    ctx = _context(False)
    plain = compute_metric_sets(ctx, sets)
    for key, value in plain.items():
        torch.testing.assert_close(with_logits[key], value, equal_nan=True, msg=key)
    m, x, s, t = ctx.model, ctx.images, ctx.maps, ctx.targets
    torch.testing.assert_close(plain["average_drop"], average_drop(m, x, s, t), equal_nan=True)
    torch.testing.assert_close(
        plain["coherency"], coherency(m, x, s, t, ctx.method), equal_nan=True
    )
    torch.testing.assert_close(plain["complexity"], complexity(s), equal_nan=True)
    torch.testing.assert_close(plain["road"], road_scores(m, x, s, t)["road"], equal_nan=True)


def test_unknown_metric_set_is_named():
    with pytest.raises(SageError, match="unknown metric sets \\['nope'\\]"):
        check_metric_sets({"nope": {}, "alignment": {}})
