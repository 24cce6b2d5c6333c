"""ROAD (4 percentiles) and ARCC: SAGE's vectorised metrics vs pytorch-grad-cam's.

Both sides score the same maps: SAGE's GradCAM maps ReLU'd (as grad-cam's CAMs are), given to
grad-cam min-max scaled (its input convention) and to SAGE raw (SAGE scales them itself, to
the same values). Percentiles 20/40/60/80, softmax probability of the explained class.

- ROAD. SAGE: :func:`sage.metrics.road.road_scores` (all ``B × 2 × 4`` perturbed images
  imputed at once by multigrid-preconditioned CG, then batched forwards). grad-cam:
  ``ROADCombined`` (per image, channel and percentile a scipy ``spsolve``; the clean forward
  repeated for every percentile), on the first ``road_images`` images.
- ARCC. SAGE: ``road_scores`` + :func:`~sage.metrics.faithfulness.coherency` +
  :func:`~sage.metrics.faithfulness.complexity` + :func:`~sage.metrics.road.arcc`. grad-cam:
  ``metrics.arcc.ARCC`` with a GradCAM ``base_method``.

Matched options for the agreement (both are options, not changes of definition):
- noise 0 on both sides: grad-cam's ROAD classes build ``NoisyLinearImputer()`` with its
  default noise 0.01 (random, so no per-image agreement is possible); it is replaced for the
  duration of the grad-cam calls by the same imputer with noise 0;
- ARCC passes one target list to ROAD (scores: softmax) and to the coherency CAM, so with
  ``ClassifierOutputSoftmaxTarget`` the recomputed CAM would explain the softmax
  probability; the base method is wrapped to explain the class logit, as SAGE (and the
  original maps) do;
- SAGE's coherency gets the ReLU'd SAGE GradCAM as its method, as grad-cam's CAMs are ReLU'd
  (SAGE's default min-max scales the raw recomputed map).
What remains different: the imputation solver (SAGE's CG to tol 1e-4 vs an exact sparse
solve), grad-cam's Pearson (ddof 1, +1e-8 in the denominator), and the recomputed coherency
map (grad-cam ReLUs and scales it on the CAM grid before its OpenCV resize).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import numpy as np
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.metrics import road as gc_road
from pytorch_grad_cam.metrics.arcc import ARCC, Coherency, Complexity
from pytorch_grad_cam.utils.model_targets import (
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
)

from sage.metrics.faithfulness import coherency, complexity
from sage.metrics.road import arcc, road_scores
from sage.models import get_backbone_spec, resolve_layers
from sage.saliency.methods import create_method
from sage.saliency.methods.base import reshape_for
from sage.saliency.normalize import minmax

from .common import Agreement, Row, Setup, floor_step, max_abs_diff

PERCENTILES = (20, 40, 60, 80)
TITLE_ROAD = "ROAD combined, 4 percentiles (SAGE road_scores vs grad-cam ROADCombined)"
TITLE_ARCC = "ARCC (SAGE road_scores+coherency+complexity vs grad-cam metrics/arcc.py)"


class _ZeroNoiseImputer(gc_road.NoisyLinearImputer):
    """grad-cam's imputer with noise 0 (its ROAD classes construct the default 0.01 one)."""

    def __init__(self, noise: float = 0.01, weighting=None) -> None:
        super().__init__(noise=0.0)


@contextlib.contextmanager
def zero_noise_gradcam() -> Iterator[None]:
    original = gc_road.NoisyLinearImputer
    gc_road.NoisyLinearImputer = _ZeroNoiseImputer
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's sparse-efficiency warnings, per image
            yield
    finally:
        gc_road.NoisyLinearImputer = original


def compare(setup: Setup, road_images: int) -> list[Row]:
    s = setup
    model, images, targets = s.model, s.images, s.targets
    relu_maps = s.maps.clamp_min(0)
    k = min(road_images, s.batch)
    scaled = minmax(relu_maps)[0].cpu().numpy()
    soft = [ClassifierOutputSoftmaxTarget(int(c)) for c in targets[:k]]
    layers = resolve_layers(model, list(get_backbone_spec(s.name).target_layers))
    reshape = reshape_for(model)
    method = create_method("gradcam")

    def relu_method(m, x, t):
        return method(m, x, t).clamp_min(0)

    out: dict[str, object] = {}

    def sage_road() -> None:
        out["road"] = road_scores(model, images, relu_maps, targets, PERCENTILES, noise=0.0)

    def peer_road() -> None:
        with zero_noise_gradcam():
            out["gc_road"] = gc_road.ROADCombined(list(PERCENTILES))(
                images[:k], scaled[:k], soft, model
            )

    def sage_arcc() -> None:
        road = road_scores(model, images, relu_maps, targets, PERCENTILES, noise=0.0)
        coh = coherency(model, images, relu_maps, targets, relu_method)
        com = complexity(relu_maps)
        out["arcc"] = arcc(road["road"], coh, com)
        out["coh"], out["com"] = coh, com

    def peer_arcc() -> None:
        with (
            GradCAM(model=model, target_layers=layers, reshape_transform=reshape) as cam,
            zero_noise_gradcam(),
        ):

            def on_logit(input_tensor, targets):  # the CAM of the class logit, as SAGE's
                return cam(input_tensor, [ClassifierOutputTarget(t.category) for t in targets])

            out["gc_arcc"] = ARCC(on_logit, list(PERCENTILES))(images[:k], scaled[:k], soft, model)

    steps = {
        "floor": (floor_step(model, images, targets), s.batch),
        "sage_road": (sage_road, s.batch),
        "peer_road": (peer_road, k),
        "sage_arcc": (sage_arcc, s.batch),
        "peer_arcc": (peer_arcc, k),
    }
    t = s.plan.time(steps)

    # grad-cam's ARCC parts once more, untimed, to say where an ARCC gap would come from
    gc_com = Complexity()(scaled[:k])
    with GradCAM(model=model, target_layers=layers, reshape_transform=reshape) as cam:
        logit_targets = [ClassifierOutputTarget(int(c)) for c in targets[:k]]
        gc_coh = Coherency()(images[:k], scaled[:k], logit_targets, model, cam)
    road_gap = max_abs_diff(out["road"]["road"][:k].cpu().numpy(), out["gc_road"])
    setting = {
        "batch": s.batch,
        "size": s.size,
        "peer_images": k,
        "percentiles": PERCENTILES,
        "noise": 0.0,
    }
    road_row = Row(
        s.name,
        "road",
        TITLE_ROAD,
        t["sage_road"],
        t["peer_road"],
        t["floor"],
        Agreement(
            quantity="ROAD",
            max_abs_diff=road_gap,
            n_images=k,
            definitions="matched",
            note="same definition and maps; noise 0 on both sides (grad-cam's default 0.01 "
            "is random); left: SAGE's CG imputation tolerance vs grad-cam's exact spsolve.",
        ),
        setting,
    )
    coh_gap = max_abs_diff(out["coh"][:k].cpu().numpy(), gc_coh)
    com_gap = max_abs_diff(out["com"][:k].cpu().numpy(), gc_com)
    arcc_row = Row(
        s.name,
        "arcc",
        TITLE_ARCC,
        t["sage_arcc"],
        t["peer_arcc"],
        t["floor"],
        Agreement(
            quantity="ARCC",
            max_abs_diff=max_abs_diff(out["arcc"][:k].cpu().numpy(), out["gc_arcc"]),
            n_images=k,
            definitions="matched",
            note="noise 0; grad-cam's base method explains the class logit (its ARCC passes "
            "the softmax ROAD targets to the CAM too); SAGE's coherency on the ReLU'd map. "
            f"Parts: coherency {coh_gap:.1g} (grad-cam Pearson ddof 1 + 1e-8, CAM resized "
            f"after ReLU), complexity {com_gap:.1g}, ROAD {road_gap:.1g}.",
            extra={"coherency": coh_gap, "complexity": com_gap},
        ),
        setting,
    )
    out_mean = float(np.nanmean(out["arcc"].cpu().numpy()))
    arcc_row.setting = {**setting, "arcc_mean_sage": out_mean}
    return [road_row, arcc_row]
