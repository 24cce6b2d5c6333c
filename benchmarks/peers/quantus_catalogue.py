"""The catalogue metrics (docs/metrics.md §12): SAGE vs Quantus 0.6 on the same maps.

Both sides get the whole batch at once (Quantus in numpy, SAGE in torch). Inputs are matched:

- **maps**: SAGE's GradCAM maps in float64 plus a jitter of 1e-6 × the map's maximum (one
  seeded draw, given to both sides) so no two pixels tie: a rectified CAM's plateau at 0 is ordered
  row-major by SAGE and by ``np.argsort`` (unspecified among ties) by Quantus, which would
  make the comparison about tie order rather than the definitions.
- **perturbation baseline**: Quantus ``perturb_baseline=0.0`` on the normalised images is
  SAGE's ``"mean"`` baseline (0 in the normalised input).
- Quantus ``normalise=False`` (its default divides by the maximum of the *whole batch*, which
  changes no ranking but the effective-complexity threshold).

Definitions, read from quantus 0.6.0 ``metrics/complexity``, ``metrics/localisation`` and
``metrics/faithfulness``:

- Sparseness: the same Gini index, after Quantus adds 1e-7 to every |a| (matched up to that).
- EffectiveComplexity: Quantus counts ``|a| > eps``; SAGE returns the fraction of pixels with
  ``|S|/max|S| > eps`` — compared as counts on per-image-max-scaled maps (matched).
- RelevanceRankAccuracy, TopKIntersection: the same without ties (matched by the jitter).
- RegionPerturbation (MoRF, ``patch_size`` r, ``regions_evaluation`` L): Quantus returns the
  drop curve for k = 1..L; SAGE's ``aopc_scores`` the same curve with the k = 0 point and
  ``AOPC = Σ/(L + 1)``. Same definition for r dividing the image (Quantus pads otherwise).
- PixelFlipping: Quantus flips input *values* (C·H·W of them) in order of the map broadcast
  over the channels, ``features_in_step`` at a time, and asserts that this divides H·W — so
  a step of s whole pixels (3·s values) is impossible unless 3 divides H·W. With
  ``features_in_step`` s, its point 3j has flipped 3j·s values = the j·s top pixels (the three
  values of a pixel tie with each other and with nothing else): SAGE's Deletion curve with
  ``pixels_per_step`` s, point j. Quantus evaluates three times as many points (48 forward
  passes to SAGE's 16), which its timing includes. Timed: SAGE's Deletion alone (``kinds``).
- FaithfulnessCorrelation is not compared here: Quantus draws its subsets over C·H·W values
  from numpy's global stream (it agrees with SAGE's on one-channel images and Quantus' own
  subsets: ``tests/test_metrics_catalogue.py``).
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import quantus
import torch

from sage.metrics.complexity import effective_complexity, sparseness
from sage.metrics.mask_ranking import relevance_rank_accuracy, top_k_intersection
from sage.metrics.perturbation_curves import aopc_scores, deletion_insertion_scores

from .common import Agreement, Row, Setup, floor_step, max_abs_diff

TITLES = {
    "sparseness": "sparseness (SAGE Gini vs Quantus Sparseness)",
    "effective_complexity": "effective complexity (SAGE vs Quantus EffectiveComplexity)",
    "rank_accuracy": "relevance rank accuracy (SAGE vs Quantus RelevanceRankAccuracy)",
    "topk_intersection": "top-k intersection (SAGE vs Quantus TopKIntersection)",
    "aopc_morf": "region perturbation MoRF / AOPC (SAGE aopc_scores vs Quantus RegionPerturbation)",
    "deletion": "Deletion curve (SAGE deletion_insertion_scores vs Quantus PixelFlipping)",
}

REGION = 8  # region side (divides the benchmark sizes 32, 64, 224)
STEPS = 16  # perturbation steps of both curves


def compare(setup: Setup) -> list[Row]:
    s = setup
    b, size = s.batch, s.size
    hw = size * size
    gen = torch.Generator().manual_seed(0)
    # float64, so the jitter is resolved everywhere (in float32 it vanishes next to large values)
    raw = s.maps.double()
    peak = raw.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    jitter = torch.rand(raw.shape, generator=gen, dtype=torch.float64).to(raw.device) * 1e-6
    maps = raw + jitter * peak
    masks = s.masks
    k = max(1, round(0.02 * hw))
    per_step = hw // STEPS
    x_np = s.images.detach().cpu().numpy()
    y_np = s.targets.cpu().numpy()
    a_np = maps[:, None].cpu().numpy()
    scaled_np = (maps.abs() / maps.abs().flatten(1).amax(1)[:, None, None])[:, None].cpu().numpy()
    s_np = masks[:, None].cpu().numpy()
    with contextlib.redirect_stdout(io.StringIO()):
        q_sp = quantus.Sparseness(normalise=False, disable_warnings=True)
        q_ec = quantus.EffectiveComplexity(normalise=False, disable_warnings=True)
        q_ra = quantus.RelevanceRankAccuracy(normalise=False, disable_warnings=True)
        q_tk = quantus.TopKIntersection(k=k, normalise=False, disable_warnings=True)
        q_rp = quantus.RegionPerturbation(
            patch_size=REGION,
            order="morf",
            regions_evaluation=STEPS,
            perturb_baseline=0.0,
            normalise=False,
            disable_warnings=True,
        )
        q_pf = quantus.PixelFlipping(
            features_in_step=per_step,
            perturb_baseline=0.0,
            normalise=False,
            disable_warnings=True,
        )

    def q(metric, a_batch, s_batch=None) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = metric(
                model=s.model,
                x_batch=x_np,
                y_batch=y_np,
                a_batch=a_batch,
                s_batch=s_batch,
                channel_first=True,
                device=str(s.device),
            )
        return np.asarray(scores, dtype=np.float64)

    def sage_aopc():
        return aopc_scores(
            s.model,
            s.images,
            maps,
            s.targets,
            0.0,
            1.0,
            region_size=REGION,
            steps=STEPS,
            baseline="mean",
            orders=("morf",),
        )

    def sage_deletion():
        return deletion_insertion_scores(
            s.model,
            s.images,
            maps,
            s.targets,
            0.0,
            1.0,
            pixels_per_step=per_step,
            deletion_baseline="mean",
            kinds=("deletion",),
        )

    steps = {
        "floor": (floor_step(s.model, s.images, s.targets), b),
        "sage_sp": (lambda: sparseness(maps), b),
        "peer_sp": (lambda: q(q_sp, a_np), b),
        "sage_ec": (lambda: effective_complexity(maps), b),
        "peer_ec": (lambda: q(q_ec, scaled_np), b),
        "sage_ra": (lambda: relevance_rank_accuracy(maps, masks), b),
        "peer_ra": (lambda: q(q_ra, a_np, s_np), b),
        "sage_tk": (lambda: top_k_intersection(maps, masks, k), b),
        "peer_tk": (lambda: q(q_tk, a_np, s_np), b),
        "sage_rp": (sage_aopc, b),
        "peer_rp": (lambda: q(q_rp, a_np), b),
        "sage_pf": (sage_deletion, b),
        "peer_pf": (lambda: q(q_pf, a_np), b),
    }
    t = s.plan.time(steps)

    def np_(x: torch.Tensor) -> np.ndarray:
        return x.detach().cpu().double().numpy()

    aopc = sage_aopc()
    rp = q(q_rp, a_np)
    aopc_gap = max_abs_diff(np_(aopc["aopc_morf"]), rp.sum(1) / (STEPS + 1))
    deletion = sage_deletion()
    setting = {"batch": b, "size": size, "peer_images": b}
    specs = [
        (
            "sparseness",
            "Gini of |S|",
            max_abs_diff(np_(sparseness(maps)), q(q_sp, a_np)),
            "matched",
            "Quantus adds 1e-7 to every |a| before the Gini index.",
            {},
        ),
        (
            "effective_complexity",
            "count |S|/max|S| > 1e-5",
            max_abs_diff(np_(effective_complexity(maps)) * hw, q(q_ec, scaled_np)),
            "matched",
            "Quantus given per-image max-scaled |S|; SAGE's fraction × H·W.",
            {},
        ),
        (
            "rank_accuracy",
            "rank accuracy (fg)",
            max_abs_diff(np_(relevance_rank_accuracy(maps, masks)), q(q_ra, a_np, s_np)),
            "matched",
            "No ties (jittered maps).",
            {},
        ),
        (
            "topk_intersection",
            f"top-{k} intersection (fg)",
            max_abs_diff(np_(top_k_intersection(maps, masks, k)), q(q_tk, a_np, s_np)),
            "matched",
            "No ties (jittered maps).",
            {},
        ),
        (
            "aopc_morf",
            f"MoRF drop curve, {STEPS} regions of {REGION}²",
            max_abs_diff(np_(aopc["morf_curve"][:, 1:]), rp),
            "same",
            "Quantus perturb_baseline=0.0 = SAGE 'mean'; AOPC from Quantus' curve Σ/(L+1).",
            {"aopc": aopc_gap},
        ),
        (
            "deletion",
            f"Deletion curve, {STEPS} steps",
            max_abs_diff(np_(deletion["deletion_curve"][:, 1:]), q(q_pf, a_np)[:, 2::3]),
            "same",
            "Quantus flips s input values per step; every third point (3j·s values = j·s whole "
            "pixels, the channels of a pixel tie) is compared. Quantus evaluates 3× the points.",
            {},
        ),
    ]
    keys = {
        "sparseness": "sp",
        "effective_complexity": "ec",
        "rank_accuracy": "ra",
        "topk_intersection": "tk",
        "aopc_morf": "rp",
        "deletion": "pf",
    }
    rows = []
    for key, quantity, gap, definitions, note, extra in specs:
        short = keys[key]
        rows.append(
            Row(
                s.name,
                key,
                TITLES[key],
                t[f"sage_{short}"],
                t[f"peer_{short}"],
                t["floor"],
                Agreement(
                    quantity=quantity,
                    max_abs_diff=gap,
                    n_images=b,
                    definitions=definitions,
                    note=note,
                    extra=extra,
                ),
                setting,
            )
        )
    return rows
