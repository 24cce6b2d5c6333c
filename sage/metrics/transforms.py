"""Input transforms of COSE with exact inverses on saliency maps (COSE §3.1.1).

COSE (Daroya, Sun, Maji, 2023) perturbs inputs with the "natural" TrivialAugmentWide
operations (shear, posterize, solarize, invert removed) plus flips, blur and smooth, each
either of fixed magnitude or one of 31 linearly spaced magnitudes with a random sign
(61 signed values, the paper's "discrete, linearly spaced set of 61 magnitudes"):

- photometric ``H`` (change colours, never move pixels, so ``h⁻¹`` on the map is the
  identity): ``brightness``, ``contrast``, ``color`` (saturation), ``sharpness`` with factor
  ``1 + m``, ``m ∈ ±[0, 0.99]``; ``autocontrast``; ``equalize``; ``blur``; ``smooth``;
- geometric ``G`` (move pixels; the map of ``g(x)`` is brought back with ``g⁻¹`` before
  comparison, ``Φ(f, x) ≈ g⁻¹(Φ(f, g(x)))``): ``translate_x`` / ``translate_y``
  (``±[0, 32]`` px at 224 px), ``rotate`` (``±[0, 135]``°, counter-clockwise for positive
  magnitudes, about the image centre), ``flip_lr``, ``flip_ud``.

Every transform acts on a whole batch at once: ``apply`` takes images in **pixel space**
``(B, C, H, W)`` (float in [0, 1], or uint8) and returns the same dtype; ``invert_map``
takes maps ``(B, H, W)`` computed on the transformed images and returns ``(maps_back,
valid)`` where ``valid`` ``(B, H, W)`` bool marks the pixels whose saliency is known after
the inversion: pixels that left the image under a translation or rotation (and so were
filled in) are invalid and are excluded from SSIM (:mod:`sage.metrics.ssim`).

Implementation notes (with the reference code ``cvl-umass/COSE`` for comparison):

- Photometric operations use ``torchvision.transforms.v2.functional`` (the tensor versions
  of the PIL operations the reference calls through TrivialAugmentWide). ``blur`` and
  ``smooth`` are PIL's ``ImageFilter.BLUR`` (5×5 ring of ones / 16) and
  ``ImageFilter.SMOOTH`` (3×3, centre 5, / 13), which torchvision does not have: they are
  convolutions here, leaving the outer 2 (blur) / 1 (smooth) pixels unfiltered exactly like
  PIL, in float arithmetic (uint8 input is rounded back).
- Translations are **integer** pixel shifts (the reference uses ``int(magnitude)`` pixels):
  the magnitude is given in pixels at 224 px and scaled with the image,
  ``shift = round(m · W / 224)`` (``H`` for y); positive moves the content right / down.
  Shifts are done by slicing, so image and map inverses are exact and the validity mask is
  exactly the band of pixels whose content left the image.
- Rotations use ``v2.functional.rotate`` (bilinear on images by default; the reference's
  TrivialAugment uses nearest, selectable with ``interpolation="nearest"``), fill outside
  with ``fill`` (0 = black, as the reference). The map is rotated back by ``−m`` with bilinear
  interpolation (the reference uses ``skimage.transform.rotate``, also order 1); its validity
  mask is a ones image sent forward and back the same way and kept where it is still 1, i.e.
  pixels whose interpolation never touched the outside (the reference's warped "ones mask").
- Flips are their own exact inverses; every pixel stays valid.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import Tensor
from torchvision.transforms import InterpolationMode

__all__ = [
    "GEOMETRIC",
    "NUM_MAGNITUDE_BINS",
    "PHOTOMETRIC",
    "REFERENCE_SIZE",
    "TRANSFORMS",
    "Transform",
    "TransformSpec",
    "all_transforms",
    "make_transform",
    "sample_transforms",
]

Kind = Literal["photometric", "geometric"]

#: Image side at which translation magnitudes are expressed (COSE / TrivialAugmentWide).
REFERENCE_SIZE = 224
#: TrivialAugmentWide's number of magnitude bins per sign.
NUM_MAGNITUDE_BINS = 31

# A ones-image value that survived two bilinear resamplings without touching the outside.
_VALID_EPS = 1e-3


@dataclass(frozen=True)
class TransformSpec:
    """One registered operation: its kind and the magnitude range it is sampled from.

    ``max_magnitude`` is None for fixed operations (flip, equalize, ...); otherwise
    magnitudes are ``linspace(0, max_magnitude, NUM_MAGNITUDE_BINS)`` with either sign.
    """

    name: str
    kind: Kind
    max_magnitude: float | None = None
    unit: str = ""

    @property
    def signed(self) -> bool:
        return self.max_magnitude is not None


# ------------------------------------------------------------------------------ kernels


def _as_float(images: Tensor) -> tuple[Tensor, torch.dtype]:
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    dtype = images.dtype
    if dtype == torch.uint8:
        return images.float() / 255.0, dtype
    if not images.is_floating_point():
        raise TypeError(f"images must be float in [0, 1] or uint8, got {dtype}")
    return images, dtype


def _back(images: Tensor, dtype: torch.dtype) -> Tensor:
    if dtype == torch.uint8:
        return (images * 255.0).round().clamp(0, 255).to(torch.uint8)
    return images.to(dtype)


def _pil_filter(images: Tensor, kernel: Sequence[Sequence[float]], scale: float) -> Tensor:
    """PIL ``ImageFilter.Kernel`` semantics: interior convolved, border of radius r copied."""
    x, dtype = _as_float(images)
    k = torch.tensor(kernel, dtype=x.dtype, device=x.device) / scale
    r = k.shape[0] // 2
    b, c, h, w = x.shape
    if h <= 2 * r or w <= 2 * r:
        return images.clone()
    inner = F.conv2d(x.reshape(b * c, 1, h, w), k.flip(0, 1)[None, None]).view(b, c, h - 2 * r, -1)
    out = x.clone()
    out[..., r : h - r, r : w - r] = inner
    return _back(out.clamp(0, 1), dtype)


_BLUR = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]
_SMOOTH = [[1, 1, 1], [1, 5, 1], [1, 1, 1]]


def _shift(x: Tensor, dx: int, dy: int, fill: float) -> Tensor:
    """Move the content of ``x`` (..., H, W) by (dx, dy) pixels (right / down), fill the rest."""
    h, w = x.shape[-2:]
    out = torch.full_like(x, fill)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = x[..., ys, xs]
    return out


def _translation(t: Transform, h: int, w: int) -> tuple[int, int]:
    if t.name == "translate_x":
        return round(t.magnitude * w / REFERENCE_SIZE), 0
    return 0, round(t.magnitude * h / REFERENCE_SIZE)


def _rotate(x: Tensor, angle: float, interpolation: str, fill: float) -> Tensor:
    mode = InterpolationMode(interpolation)
    return TF.rotate(x, angle, interpolation=mode, fill=[float(fill)] * x.shape[-3])


_PHOTOMETRIC_OPS: dict[str, Callable[[Tensor, float], Tensor]] = {
    "brightness": lambda x, m: TF.adjust_brightness(x, 1.0 + m),
    "contrast": lambda x, m: TF.adjust_contrast(x, 1.0 + m),
    "color": lambda x, m: TF.adjust_saturation(x, 1.0 + m),
    "sharpness": lambda x, m: TF.adjust_sharpness(x, 1.0 + m),
    "autocontrast": lambda x, m: TF.autocontrast(x),
    "equalize": lambda x, m: TF.equalize(x),
    "blur": lambda x, m: _pil_filter(x, _BLUR, 16.0),
    "smooth": lambda x, m: _pil_filter(x, _SMOOTH, 13.0),
}

#: The registry, in COSE's order (geometric first, as in its postprocessing script).
TRANSFORMS: dict[str, TransformSpec] = {
    s.name: s
    for s in (
        TransformSpec("translate_x", "geometric", 32.0, "px@224"),
        TransformSpec("translate_y", "geometric", 32.0, "px@224"),
        TransformSpec("rotate", "geometric", 135.0, "deg"),
        TransformSpec("flip_lr", "geometric"),
        TransformSpec("flip_ud", "geometric"),
        TransformSpec("brightness", "photometric", 0.99),
        TransformSpec("color", "photometric", 0.99),
        TransformSpec("contrast", "photometric", 0.99),
        TransformSpec("sharpness", "photometric", 0.99),
        TransformSpec("autocontrast", "photometric"),
        TransformSpec("equalize", "photometric"),
        TransformSpec("blur", "photometric"),
        TransformSpec("smooth", "photometric"),
    )
}
GEOMETRIC: tuple[str, ...] = tuple(n for n, s in TRANSFORMS.items() if s.kind == "geometric")
PHOTOMETRIC: tuple[str, ...] = tuple(n for n, s in TRANSFORMS.items() if s.kind == "photometric")


@dataclass(frozen=True)
class Transform:
    """One parameterised transform, applied to a whole batch at once.

    Attributes:
        name: registry name (:data:`TRANSFORMS`).
        kind: ``"photometric"`` or ``"geometric"`` (None: taken from the registry).
        magnitude: signed magnitude (factor ``1 + m`` for brightness/contrast/color/
            sharpness; pixels at 224 px for translations; degrees for rotation; 0 for
            fixed operations).
        interpolation: image interpolation for ``rotate`` (``"bilinear"`` or ``"nearest"``).
        fill: pixel value given to image pixels that come from outside (translate/rotate).
    """

    name: str
    kind: Kind | None = None
    magnitude: float = 0.0
    interpolation: str = "bilinear"
    fill: float = 0.0

    def __post_init__(self) -> None:
        spec = TRANSFORMS.get(self.name)
        if spec is None:
            raise ValueError(f"unknown transform {self.name!r}; available: {', '.join(TRANSFORMS)}")
        if self.kind is None:
            object.__setattr__(self, "kind", spec.kind)
        elif self.kind != spec.kind:
            raise ValueError(f"{self.name} is {spec.kind}, not {self.kind}")
        if spec.max_magnitude is not None and abs(self.magnitude) > spec.max_magnitude + 1e-9:
            raise ValueError(
                f"{self.name} magnitude {self.magnitude} outside ±{spec.max_magnitude}"
            )

    @property
    def label(self) -> str:
        """A readable identifier, e.g. ``rotate(-45)`` or ``flip_lr``."""
        return f"{self.name}({self.magnitude:+.4g})" if TRANSFORMS[self.name].signed else self.name

    # -------------------------------------------------------------- images (pixel space)

    def apply(self, images: Tensor) -> Tensor:
        """Transform a batch of pixel-space images ``(B, C, H, W)`` (float [0, 1] or uint8).

        Geometric transforms also work on any channel count (e.g. maps as ``(B, 1, H, W)``).
        """
        x, dtype = _as_float(images)
        if self.kind == "photometric":
            if self.name in ("blur", "smooth"):
                return _PHOTOMETRIC_OPS[self.name](images, self.magnitude)
            return _back(_PHOTOMETRIC_OPS[self.name](x, self.magnitude), dtype)
        return _back(self._geometric(x, inverse=False, fill=self.fill, image=True), dtype)

    # ------------------------------------------------------------------------ maps

    def apply_map(self, maps: Tensor) -> Tensor:
        """The forward transform on maps ``(B, H, W)`` (identity for photometric ones).

        Outside pixels are filled with 0; mainly for tests and visualisation: a map that
        follows the image exactly satisfies ``invert_map(apply_map(M)) == M`` on valid pixels.
        """
        self._check_maps(maps)
        if self.kind == "photometric":
            return maps.clone()
        return self._geometric(maps[:, None].float(), inverse=False, fill=0.0, image=False)[:, 0]

    def invert_map(self, maps: Tensor) -> tuple[Tensor, Tensor]:
        """Bring maps of transformed images back to the original frame.

        Args:
            maps: ``(B, H, W)`` saliency of ``apply(images)``.

        Returns:
            ``(maps_back, valid)``: ``maps_back`` ``(B, H, W)`` float (0 on invalid pixels)
            and ``valid`` ``(B, H, W)`` bool, False where the original pixel's content left
            the image (translate/rotate). Photometric transforms: ``(maps, all True)``.
        """
        self._check_maps(maps)
        b, h, w = maps.shape
        if self.kind == "photometric" or self.name in ("flip_lr", "flip_ud"):
            valid = torch.ones(maps.shape, dtype=torch.bool, device=maps.device)
            if self.kind == "photometric":
                return maps.clone(), valid
            return self._geometric(maps[:, None], inverse=True, fill=0.0, image=False)[:, 0], valid
        back = self._geometric(maps[:, None].float(), inverse=True, fill=0.0, image=False)[:, 0]
        return back, self.valid_mask(h, w, maps.device).expand(b, h, w).clone()

    def valid_mask(self, height: int, width: int, device=None) -> Tensor:
        """``(H, W)`` bool: pixels whose saliency survives ``invert_map`` (see module doc)."""
        ones = torch.ones(1, 1, height, width, device=device)
        if self.kind == "photometric" or self.name in ("flip_lr", "flip_ud"):
            return ones[0, 0].bool()
        if self.name.startswith("translate"):
            # Integer shifts are exact: forward-then-back of ones is the inverse shift of ones.
            back = self._geometric(ones, inverse=True, fill=0.0, image=False)
            return back[0, 0] > 0.5
        fwd = self._geometric(ones, inverse=False, fill=0.0, image=False)
        back = self._geometric(fwd, inverse=True, fill=0.0, image=False)
        return back[0, 0] >= 1 - _VALID_EPS

    # ------------------------------------------------------------------------ internals

    @staticmethod
    def _check_maps(maps: Tensor) -> None:
        if maps.dim() != 3:
            raise ValueError(f"maps must be (B, H, W), got {tuple(maps.shape)}")

    def _geometric(self, x: Tensor, inverse: bool, fill: float, image: bool) -> Tensor:
        h, w = x.shape[-2:]
        if self.name == "flip_lr":
            return x.flip(-1)
        if self.name == "flip_ud":
            return x.flip(-2)
        if self.name.startswith("translate"):
            dx, dy = _translation(self, h, w)
            if inverse:
                dx, dy = -dx, -dy
            return _shift(x, dx, dy, fill)
        if self.name == "rotate":
            angle = -self.magnitude if inverse else self.magnitude
            mode = self.interpolation if image else "bilinear"
            return _rotate(x, angle, mode, fill)
        raise AssertionError(self.name)  # pragma: no cover


def make_transform(name: str, magnitude: float = 0.0, **kwargs) -> Transform:
    """Build transform ``name`` with a signed ``magnitude`` (kind from the registry)."""
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; available: {', '.join(TRANSFORMS)}")
    return Transform(name, TRANSFORMS[name].kind, float(magnitude), **kwargs)


def _signed_magnitudes(spec: TransformSpec, num_bins: int) -> list[float]:
    assert spec.max_magnitude is not None
    mags = torch.linspace(0.0, spec.max_magnitude, num_bins, dtype=torch.float64).tolist()
    return [s * m for s in (1.0, -1.0) for m in mags if m != 0.0]


def sample_transforms(
    n: int,
    seed: int = 0,
    names: Iterable[str] | None = None,
    num_bins: int = NUM_MAGNITUDE_BINS,
    **kwargs,
) -> list[Transform]:
    """A deterministic COSE transform set: ``n`` signed magnitudes per parameterised operation.

    As COSE's reference (``explain.py``, ``mag_per_transform``): for every operation with a
    magnitude range, ``n`` distinct values drawn without replacement from the
    ``2·(num_bins − 1)`` non-zero signed magnitudes ``±linspace(0, max, num_bins)``; every
    fixed operation (flips, autocontrast, equalize, blur, smooth) once. The draw for each
    operation uses its own stream seeded by ``(seed, name)``, so the set is the same on every
    run and adding or removing an operation does not change the others.

    Args:
        n: magnitudes per parameterised operation (1 ≤ n ≤ 2·(num_bins − 1)).
        seed: the seed.
        names: operations to include (default: all of :data:`TRANSFORMS`, registry order).
        num_bins: magnitude bins per sign (TrivialAugmentWide: 31).
        **kwargs: passed to :class:`Transform` (``interpolation``, ``fill``).
    """
    names = list(TRANSFORMS) if names is None else list(names)
    out: list[Transform] = []
    for name in names:
        spec = TRANSFORMS.get(name)
        if spec is None:
            raise ValueError(f"unknown transform {name!r}; available: {', '.join(TRANSFORMS)}")
        if not spec.signed:
            out.append(Transform(name, spec.kind, 0.0, **kwargs))
            continue
        pool = _signed_magnitudes(spec, num_bins)
        if not 1 <= n <= len(pool):
            raise ValueError(f"n must be in [1, {len(pool)}] for {name}, got {n}")
        rng = random.Random(f"{seed}:{name}")
        for m in rng.sample(pool, n):
            out.append(Transform(name, spec.kind, float(m), **kwargs))
    return out


def all_transforms(num_bins: int = NUM_MAGNITUDE_BINS, **kwargs) -> list[Transform]:
    """Every registered operation at every non-zero signed magnitude (the full COSE grid)."""
    out: list[Transform] = []
    for name, spec in TRANSFORMS.items():
        mags = _signed_magnitudes(spec, num_bins) if spec.signed else [0.0]
        out.extend(Transform(name, spec.kind, float(m), **kwargs) for m in mags)
    return out
