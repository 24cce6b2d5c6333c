"""Benchmark: what SAGE's vectorised ROAD costs against the model's forward passes and grad-cam.

For one batch on one model, measured in one run (ratios, not absolute times; steps are
interleaved within each repeat, and each step's fastest repeat is compared, so bursts of
background load do not decide the ratios):

- floor: the 8 forward passes ROAD cannot avoid (2 orders × 4 percentiles) of the batch, under
  ``no_grad``, no imputation;
- SAGE: :func:`sage.metrics.road.road_scores` (noise 0, percentiles 20/40/60/80), total and the
  share spent imputing (the solver of :mod:`sage.metrics.road_imputation`); it
  also runs the clean forward pass — and again given the clean logits (``logits=``, as the
  pipeline can pass the saliency method's), which skips that pass;
- grad-cam: ``ROADCombined`` (noise 0, same percentiles) on the first ``--gradcam-images``
  images (it solves one sparse system per image, channel and percentile with scipy, and runs
  the clean forward 8 times), reported per image;
- agreement: the max |difference| of ROAD / MoRF / LeRF between SAGE and grad-cam on the
  images both ran.

Maps are the model's own GradCAM maps (SAGE ``gradcam``), ReLU'd as grad-cam's are.

Usage: python benchmarks/road_speed.py [--model resnet18] [--batch 16] [--size 224]
       [--repeats 3] [--gradcam-images 2]
Writes outputs/benchmarks/road_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from pytorch_grad_cam.metrics import road as gc_road
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

import sage.metrics.road as sage_road
from sage.models import create_backbone
from sage.saliency.methods import create_method
from sage.saliency.normalize import minmax

PERCENTILES = (20, 40, 60, 80)


class _ZeroNoiseImputer(gc_road.NoisyLinearImputer):
    """grad-cam's imputer with noise 0 (its ROAD classes construct the default 0.01 one)."""

    def __init__(self, noise: float = 0.01, weighting=None) -> None:
        super().__init__(noise=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gradcam-images", type=int, default=2)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--out", default="outputs/benchmarks")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = create_backbone(args.model, args.num_classes).eval()
    images = torch.randn(args.batch, 3, args.size, args.size)
    with torch.no_grad():
        targets = model(images).argmax(1)
    maps = create_method("gradcam")(model, images, targets).clamp_min(0)
    n_pert = 2 * len(PERCENTILES)

    def floor() -> None:
        with torch.no_grad():
            for _ in range(n_pert):
                model(images)

    impute_time = [0.0]
    real_impute = sage_road.impute_into  # what road_scores calls per window of images

    def timed_impute(*a, **k):
        start = time.perf_counter()
        out = real_impute(*a, **k)
        impute_time[0] += time.perf_counter() - start
        return out

    sage_road.impute_into = timed_impute
    sage_out: dict[str, torch.Tensor] = {}

    def sage() -> None:
        impute_time[0] = 0.0
        sage_out.update(sage_road.road_scores(model, images, maps, targets, PERCENTILES, noise=0.0))

    with torch.no_grad():
        clean_logits = model(images)

    def sage_with_logits() -> None:  # the pipeline has the saliency method's logits at hand
        sage_road.road_scores(
            model, images, maps, targets, PERCENTILES, noise=0.0, logits=clean_logits
        )

    floor()  # warm-up
    sage()
    rows: dict[str, list[float]] = {"floor": [], "sage": [], "sage_impute": [], "sage_logits": []}
    for _ in range(args.repeats):
        start = time.perf_counter()
        floor()
        rows["floor"].append(time.perf_counter() - start)
        start = time.perf_counter()
        sage()
        rows["sage"].append(time.perf_counter() - start)
        rows["sage_impute"].append(impute_time[0])
        start = time.perf_counter()
        sage_with_logits()
        rows["sage_logits"].append(time.perf_counter() - start)
    sage_road.impute_into = real_impute

    # grad-cam on the first images (slow: timed once)
    k = min(args.gradcam_images, args.batch)
    scaled = minmax(maps[:k])[0].numpy()
    gc_targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in targets[:k]]
    original = gc_road.NoisyLinearImputer
    gc_road.NoisyLinearImputer = _ZeroNoiseImputer
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            gc_morf = gc_road.ROADMostRelevantFirstAverage(list(PERCENTILES))(
                images[:k], scaled, gc_targets, model
            )
            gc_lerf = gc_road.ROADLeastRelevantFirstAverage(list(PERCENTILES))(
                images[:k], scaled, gc_targets, model
            )
            gc_time = time.perf_counter() - start
    finally:
        gc_road.NoisyLinearImputer = original
    gc_road_scores = (gc_lerf - gc_morf) / 2  # = ROADCombined, without running it twice
    diff = {
        "road": float(np.abs(sage_out["road"][:k].numpy() - gc_road_scores).max()),
        "morf": float(np.abs(sage_out["morf"][:k].numpy() - gc_morf).max()),
        "lerf": float(np.abs(sage_out["lerf"][:k].numpy() - gc_lerf).max()),
    }

    # Ratios of the fastest repeat of each step: background load only ever adds time, so the
    # minimum is the least disturbed measurement (medians are kept in the JSON).
    med = {name: statistics.median(v) for name, v in rows.items()}
    best = {name: min(v) for name, v in rows.items()}
    per_image = {name: v / args.batch for name, v in best.items()}
    per_image["gradcam"] = gc_time / k
    ratios = {
        "sage / floor": best["sage"] / best["floor"],
        "sage imputation / floor": best["sage_impute"] / best["floor"],
        "sage with logits / floor": best["sage_logits"] / best["floor"],
        "grad-cam / floor": per_image["gradcam"] / per_image["floor"],
        "grad-cam / sage": per_image["gradcam"] / per_image["sage"],
    }
    ratios_median = {
        "sage / floor": med["sage"] / med["floor"],
        "sage imputation / floor": med["sage_impute"] / med["floor"],
        "sage with logits / floor": med["sage_logits"] / med["floor"],
    }
    meta = {
        "model": args.model,
        "batch": args.batch,
        "size": args.size,
        "repeats": args.repeats,
        "gradcam_images": k,
        "percentiles": list(PERCENTILES),
        "threads": torch.get_num_threads(),
        "device": "cpu",
        "road_mean_sage": float(sage_out["road"].mean()),
    }
    result = {
        "meta": meta,
        "seconds_min": best,
        "seconds_median": med,
        "seconds_all": rows,
        "gradcam_seconds": gc_time,
        "per_image_s": per_image,
        "ratios": ratios,
        "ratios_of_medians": ratios_median,
        "max_abs_diff_vs_gradcam": diff,
        "targets": {"sage / floor": 1.5, "sage imputation / floor": 0.5},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "road_speed.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# ROAD speed: {args.model}, batch {args.batch}, {args.size}px, "
        f"{meta['threads']} threads, percentiles {list(PERCENTILES)}, noise 0",
        "",
        "| step | per image s (fastest of repeats) | × floor |",
        "|---|---|---|",
        f"| floor: {n_pert} forward passes, no imputation | {per_image['floor']:.4f} | 1.00 |",
        f"| SAGE road_scores (total) | {per_image['sage']:.4f} | {ratios['sage / floor']:.2f} |",
        f"| of which imputation | {per_image['sage_impute']:.4f} "
        f"| {ratios['sage imputation / floor']:.2f} |",
        f"| SAGE road_scores given the clean logits | {per_image['sage_logits']:.4f} "
        f"| {ratios['sage with logits / floor']:.2f} |",
        f"| grad-cam ROAD MoRF+LeRF ({k} images) | {per_image['gradcam']:.4f} "
        f"| {ratios['grad-cam / floor']:.2f} |",
        "",
        f"grad-cam ÷ SAGE per image: {ratios['grad-cam / sage']:.1f}×. "
        f"Targets: SAGE ≤ 1.5× floor, imputation ≤ 0.5× floor. Ratios of medians: SAGE "
        f"{ratios_median['sage / floor']:.2f}, imputation "
        f"{ratios_median['sage imputation / floor']:.2f}, given logits "
        f"{ratios_median['sage with logits / floor']:.2f}.",
        "",
        f"Max |SAGE − grad-cam| on the {k} shared images (noise 0): ROAD {diff['road']:.2e}, "
        f"MoRF {diff['morf']:.2e}, LeRF {diff['lerf']:.2e}.",
    ]
    (out / "road_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
