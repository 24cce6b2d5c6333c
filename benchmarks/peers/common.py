"""What every comparison shares: the benchmark batch, the floor step and the result row.

The batch is rendered by SynthDrivers (the project's own generator, no download): real-looking
cabin images with exact, irregular foreground masks (driver, hands, held object), so the
localisation metrics see masks of varying size and shape rather than a centred square. The
models have random weights (nothing to download; the cost of a forward pass does not depend on
the weights, and agreement is about the definitions, not about good maps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from timing import Timing, interleaved, ratio
from torch import Tensor, nn

from sage.data.synth import FOREGROUND_IDS, make_style, render
from sage.data.synth.activities import ACTIVITIES
from sage.models import create_backbone, get_backbone_spec
from sage.saliency.methods import create_method

NUM_CLASSES = 10


@dataclass
class Plan:
    """How every group of steps is timed (:func:`timing.interleaved`'s options)."""

    repeats: int
    warmup: int = 1
    min_time: float = 0.05
    budget: float = 0.0
    max_repeats: int | None = None
    device: torch.device | None = None

    def time(self, steps) -> dict[str, Timing]:
        return interleaved(
            steps,
            self.repeats,
            self.warmup,
            self.min_time,
            self.device,
            self.budget,
            self.max_repeats,
        )


@dataclass
class Setup:
    """One model and one batch, shared by the comparisons of that model."""

    name: str  # backbone name
    model: nn.Module
    images: Tensor  # (B, 3, S, S) normalised, on device
    masks: Tensor  # (B, S, S) bool foreground, on device
    targets: Tensor  # (B,) explained classes (the predicted ones)
    maps: Tensor  # (B, S, S) SAGE GradCAM raw maps
    device: torch.device
    plan: Plan

    @property
    def batch(self) -> int:
        return self.images.shape[0]

    @property
    def size(self) -> int:
        return self.images.shape[-1]


def synth_batch(
    n: int, size: int, mean: tuple[float, ...], std: tuple[float, ...], seed: int = 0
) -> tuple[Tensor, Tensor]:
    """``n`` SynthDrivers images (normalised with ``mean``/``std``) and foreground masks.

    Activities cycle through the ten classes; one style (subject + cabin look) per image.
    """
    rng = np.random.default_rng(seed)
    activities = sorted(ACTIVITIES)
    images, masks = [], []
    for i in range(n):
        image, parts = render(
            rng, activities[i % len(activities)], make_style("synth-sf3d", rng), size
        )
        images.append(image)
        masks.append(np.isin(parts, FOREGROUND_IDS))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    return x.contiguous(), torch.from_numpy(np.stack(masks))


def calibrate_batchnorm(model: nn.Module, images: Tensor) -> None:
    """Set every BatchNorm's running statistics to those of ``images`` (one forward).

    With torch's default initialisation, running mean 0 and variance 1 leave activations
    un-normalised in eval mode; for efficientnet_b0 they vanish on the way and the output is
    exactly constant (every gradient map and ROAD score would be 0, every agreement vacuous).
    Calibrated statistics keep the weights random but the model's output input-dependent.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: the statistics of exactly this batch
    model.train()
    with torch.no_grad():
        model(images)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()


def make_model(name: str, device: torch.device, size: int, seed: int = 0) -> nn.Module:
    """Backbone ``name`` with random weights (seeded), 10 classes, on ``device``, eval mode,
    BatchNorm statistics calibrated on 16 other SynthDrivers images of side ``size``."""
    torch.manual_seed(seed)
    model = create_backbone(name, NUM_CLASSES).to(device)
    spec = get_backbone_spec(name)
    calibration, _ = synth_batch(16, size, spec.mean, spec.std, seed=seed + 100)
    calibrate_batchnorm(model, calibration.to(device))
    return model


def make_setup(
    name: str,
    batch: int,
    size: int,
    device: torch.device,
    plan: Plan,
    model: nn.Module | None = None,
) -> Setup:
    """The model (random weights), a SynthDrivers batch, predicted classes, GradCAM maps."""
    model = model if model is not None else make_model(name, device, size)
    spec = get_backbone_spec(name)
    images, masks = synth_batch(batch, size, spec.mean, spec.std)
    images, masks = images.to(device), masks.to(device)
    with torch.no_grad():
        targets = model(images).argmax(1)
    maps = create_method("gradcam")(model, images, targets)
    return Setup(name, model, images, masks, targets, maps, device, plan)


def floor_step(model: nn.Module, images: Tensor, targets: Tensor):
    """The physical floor of a gradient CAM: one plain forward + backward of the target logits
    (to every parameter, as a training step or grad-cam does)."""

    def floor() -> None:
        model.zero_grad(set_to_none=True)
        logits = model(images)
        logits.gather(1, targets[:, None]).sum().backward()

    return floor


def max_abs_diff(a: Any, b: Any) -> float:
    """Max |a − b| over the entries where both are finite; NaN where exactly one is NaN counts
    as a disagreement (inf), so a skip on one side only is never hidden."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"cannot compare {x.shape} with {y.shape}")
    nan_x, nan_y = np.isnan(x), np.isnan(y)
    if bool((nan_x ^ nan_y).any()):
        return math.inf
    both = ~nan_x
    return float(np.abs(x[both] - y[both]).max()) if both.any() else math.nan


@dataclass
class Agreement:
    """Max |SAGE − peer| of one per-image quantity on the images both ran."""

    quantity: str
    max_abs_diff: float | None
    n_images: int
    definitions: str  # "same", "matched" (peer options set to SAGE's definition) or "differ"
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)  # other measured gaps, named

    def to_dict(self) -> dict[str, Any]:
        return {
            "quantity": self.quantity,
            "max_abs_diff": self.max_abs_diff,
            "n_images": self.n_images,
            "definitions": self.definitions,
            "note": self.note,
            "extra": self.extra,
        }


@dataclass
class Row:
    """One comparison on one model: SAGE, the peer and the floor, measured interleaved."""

    model: str
    key: str  # stable identifier, e.g. "road"
    title: str  # what SAGE runs vs what the peer runs
    sage: Timing | None
    peer: Timing | None
    floor: Timing | None
    agreement: Agreement | None
    setting: dict[str, Any] = field(default_factory=dict)  # batch, size, images, options
    error: str | None = None
    skipped: str | None = None  # not measured on purpose (e.g. --skip-training without data)
    # rows that are not a timing of two functions (the callback) give their ratio directly
    direct: dict[str, Any] | None = None

    def ratios(self) -> dict[str, dict[str, float] | None]:
        if self.direct is not None:
            return self.direct.get("ratios", {})
        return {
            "sage_over_peer": ratio(self.sage, self.peer) if self.sage and self.peer else None,
            "sage_over_floor": ratio(self.sage, self.floor) if self.sage and self.floor else None,
            "peer_over_floor": ratio(self.peer, self.floor) if self.peer and self.floor else None,
        }

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "key": self.key, "title": self.title}
        out["setting"] = self.setting
        if self.error is not None or self.skipped is not None:
            out["error" if self.error is not None else "skipped"] = self.error or self.skipped
            return out
        for name in ("sage", "peer", "floor"):
            t = getattr(self, name)
            out[name] = t.to_dict() if t is not None else None
        out["ratios"] = self.ratios()
        out["agreement"] = self.agreement.to_dict() if self.agreement else None
        if self.direct is not None:
            out["direct"] = self.direct
        return out


def failed_row(model: str, key: str, title: str, err: BaseException) -> Row:
    """A comparison that raised: recorded in the report (never a silent hole)."""
    return Row(model, key, title, None, None, None, None, error=f"{type(err).__name__}: {err}")
