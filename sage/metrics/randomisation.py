"""Sanity checks of Adebayo et al., "Sanity checks for saliency maps" (NeurIPS 2018).

**Model-parameter randomisation test (MPRT, §3.1).** A saliency map that explains the model
must change when the model's learned weights are destroyed. The trained model is copied
(``copy.deepcopy``; the trained weights are never touched) and its layers re-initialised:

- ``cascading``: from the logits layer down, layer by layer, each step keeping the layers
  above re-initialised too; the last step re-initialises every layer;
- ``independent``: one layer at a time, all others trained.

At every step the method explains the same images for the same targets (the class explained
on the trained model, kept fixed) and each randomised map is compared with the original by
the similarities of :mod:`sage.metrics.similarity` (Spearman of absolute maps, SSIM, top-k
intersection). High similarity after the weights are gone = the method does not depend on
them (it fails the check, like an edge detector would).

**Layers.** The candidates are the modules holding parameters of their own
(``parameters(recurse=False)``: convolutions, linears, norms; a module with its own
``pos_embed`` too), in **forward order** (the order of their first call on one image, found
with pre-hooks on the copy); modules the forward pass never calls cannot change the map and
are left out. ``layers`` narrows this to dotted module names (a named block is re-initialised
as a whole, ordered by its first parameterised call). The cascade runs this order reversed
(logits first). ``steps`` caps the number of steps: with more layers, ``steps`` evenly
spaced layers of the reversed order are picked, always the first (the logits layer) and the
last (the lowest), and a cascading step still re-initialises every layer above its pick.

**Re-initialisation.** A leaf module's ``reset_parameters()`` (its own initialiser: the
untrained state; a BatchNorm goes back to weight 1, bias 0 and running statistics 0/1), under
``torch.random.fork_rng`` seeded per layer with ``crc32("<seed>/<layer name>")``: the same
layer gets the same random weights in both modes and in every batch, and the global random
state (CPU, and CUDA once initialised) is left as it was. The parameters a module owns beside
children, or without ``reset_parameters`` (a ViT's ``pos_embed``, ``cls_token``), are drawn
from a truncated normal with std 0.02 (timm's init). Without ``layers`` each step
re-initialises only the parameters its module owns; a named ``layers`` entry is
re-initialised as a whole (every parameterised module inside it).

**Data randomisation test (§3.2).** Train a model on permuted labels
(``python train.py data.shuffle_labels=true``) and pass it as ``reference`` (a checkpoint
path, or an MLflow training run id resolved with ``tracking_uri``): the maps of the same
method, images and targets on the reference are compared with the real model's by the same
similarities. A method whose maps look alike on a model that memorised random labels does
not reflect what the model learned. The reference is loaded once per process.

Columns (per image; explain logs their means as ``explain/<method>/<column>``)::

    mprt/cascading/<k>_<layer>/<similarity>     k = 0 (logits layer) ... steps−1
    mprt/independent/<k>_<layer>/<similarity>
    data_randomisation/<similarity>             only with ``reference``

``<layer>`` is the dotted module name (``root`` for the model itself), ``<similarity>`` one of
``spearman``, ``ssim``, ``topk``. :func:`parse_column` reads them back (the figure does).
"""

from __future__ import annotations

import copy
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import SageError
from ..saliency.methods import SaliencyMethod
from .similarity import SIMILARITIES, map_similarities

__all__ = [
    "MODES",
    "Step",
    "cascade_layers",
    "data_randomisation",
    "load_reference",
    "mprt",
    "parse_column",
    "pick_steps",
    "reinitialise",
]

MODES = ("cascading", "independent")
DEFAULT_TRACKING_URI = "sqlite:///outputs/mlflow.db"
_COLUMN = re.compile(
    r"^mprt/(?P<mode>cascading|independent)/(?P<step>\d+)_(?P<layer>[^/]+)/(?P<sim>[^/]+)$"
)


def _owns_parameters(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def _display(name: str) -> str:
    return name or "root"


def forward_order(model: nn.Module, images: Tensor) -> list[str]:
    """Names of the modules with their own parameters, in the order of their first call
    on ``images[:1]`` (eval mode, no gradients); modules never called are left out."""
    order: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if _owns_parameters(module):

            def hook(_m, _args, name=name):
                if name not in order:
                    order.append(name)

            handles.append(module.register_forward_pre_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(images[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return order


def cascade_layers(
    model: nn.Module, images: Tensor, layers: Sequence[str] | None = None
) -> list[str]:
    """The layers to randomise, **logits first** (forward order reversed; module notes)."""
    order = forward_order(model, images)
    if layers is None:
        if not order:
            raise SageError(f"{type(model).__name__} has no parameterised module to randomise")
        return order[::-1]
    first_call = {name: i for i, name in enumerate(order)}
    keyed = []
    for name in layers:
        try:
            module = model.get_submodule(name)
        except AttributeError as err:
            raise SageError(f"randomisation layer {name!r} is not a module of the model") from err
        prefix = f"{name}." if name else ""
        full = (f"{prefix}{sub}" if sub else name for sub, _ in module.named_modules())
        inside = [first_call[f] for f in full if f in first_call]
        if not inside:
            raise SageError(
                f"randomisation layer {name!r} holds no parameters the forward pass uses"
            )
        keyed.append((min(inside), name))
    return [name for _, name in sorted(keyed, reverse=True)]


def pick_steps(n: int, steps: int | None) -> list[int]:
    """Indices into a logits-first list of ``n`` layers: all, or ``steps`` evenly spaced
    ones including the first and the last."""
    if steps is None or steps >= n:
        return list(range(n))
    if steps < 1:
        raise SageError(f"randomisation steps must be at least 1, got {steps}")
    if steps == 1:
        return [0]
    return sorted({round(i * (n - 1) / (steps - 1)) for i in range(steps)})


def layer_seed(seed: int, name: str) -> int:
    return zlib.crc32(f"{seed}/{name}".encode())


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed the CPU (and initialised CUDA) generators inside, restore them afterwards."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    devices = list(range(torch.cuda.device_count())) if cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.manual_seed_all(seed)
        yield


def _reset(module: nn.Module) -> None:
    """Re-initialise the parameters ``module`` owns (a leaf's ``reset_parameters``, else a
    truncated normal, std 0.02, for each of them)."""
    reset = getattr(module, "reset_parameters", None)
    if callable(reset) and next(module.children(), None) is None:
        reset()  # a leaf: its initialiser touches exactly its own parameters and buffers
    else:
        for p in module.parameters(recurse=False):
            nn.init.trunc_normal_(p, std=0.02)


@torch.no_grad()
def reinitialise(model: nn.Module, name: str, seed: int = 0, recurse: bool = True) -> None:
    """Re-initialise the module ``name`` of ``model`` in place, deterministically from
    ``seed`` (module notes): with ``recurse`` every parameterised module inside it, else only
    the parameters it owns. Only call it on a copy."""
    root = model.get_submodule(name)
    modules = [m for _, m in root.named_modules()] if recurse else [root]
    with _seeded(layer_seed(seed, name)):
        for module in modules:
            if _owns_parameters(module):
                _reset(module)


@dataclass(frozen=True)
class Step:
    mode: str
    index: int
    layer: str  # the picked layer (cascading: the lowest one re-initialised so far)

    def column(self, similarity: str) -> str:
        return f"mprt/{self.mode}/{self.index}_{_display(self.layer)}/{similarity}"


def parse_column(column: str) -> tuple[str, int, str, str] | None:
    """``(mode, step, layer, similarity)`` of an MPRT column, else None."""
    m = _COLUMN.match(column)
    if m is None:
        return None
    return m["mode"], int(m["step"]), m["layer"], m["sim"]


def _check_similarities(similarities: Sequence[str]) -> list[str]:
    names = list(similarities)
    unknown = [s for s in names if s not in SIMILARITIES]
    if unknown or not names:
        raise SageError(
            f"randomisation similarities must be among {', '.join(SIMILARITIES)}, got {names}"
        )
    return names


def mprt(
    model: nn.Module,
    method: SaliencyMethod,
    images: Tensor,
    targets: Tensor,
    maps: Tensor | None = None,
    *,
    modes: Sequence[str] = MODES,
    layers: Sequence[str] | None = None,
    steps: int | None = 8,
    similarities: Sequence[str] = tuple(SIMILARITIES),
    topk: float = 10.0,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Model-parameter randomisation columns for one batch (module notes).

    Args:
        model: the trained model (never modified: every randomised model is a copy).
        method: the saliency method, called as ``method(copy, images, targets)``.
        images, targets: the batch and the class explained on the trained model.
        maps: the method's maps on the trained model (computed here when None).
        modes: ``cascading`` and/or ``independent``.
        layers: dotted module names to randomise (None: every parameterised module used).
        steps: at most this many steps per mode (None: one per layer).
        similarities: among ``spearman``, ``ssim``, ``topk``.
        topk: percentage of pixels of the top-k intersection.
        seed: re-initialisation seed.

    Returns:
        ``{column: (B,) float64}``.
    """
    names = _check_similarities(similarities)
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise SageError(f"randomisation modes must be among {MODES}, got {list(modes)}")
    out: dict[str, Tensor] = {}
    if not modes:
        return out
    # Lightning runs validation under inference mode: a copy made there would hold inference
    # tensors, which the saliency methods' backward pass cannot use.
    with torch.inference_mode(False):
        if maps is None:
            maps = method(model, images, targets)
        order: list[str] | None = None
        recurse = layers is not None  # a named block as a whole; else each module's own
        for mode in modes:
            work = copy.deepcopy(model)  # the trained weights are never touched
            if order is None:
                order = cascade_layers(work, images, layers)
                picks = pick_steps(len(order), steps)
            done = 0
            for k, i in enumerate(picks):
                if mode == "cascading":  # every layer from the logits down to this pick
                    for name in order[done : i + 1]:
                        reinitialise(work, name, seed, recurse)
                    done = i + 1
                else:  # this layer alone, restored afterwards
                    layer = work.get_submodule(order[i])
                    saved = copy.deepcopy(layer.state_dict())
                    reinitialise(work, order[i], seed, recurse)
                step = Step(mode, k, order[i])
                sims = map_similarities(maps, method(work, images, targets), names, topk)
                out.update({step.column(s): v for s, v in sims.items()})
                if mode == "independent":
                    layer.load_state_dict(saved)
            del work
    return out


# ---------------------------------------------------------------- data randomisation

_REFERENCES: dict[tuple[str, str, str], tuple[nn.Module, dict]] = {}


def load_reference(
    ref: str | Path, tracking_uri: str | None = None, select: str = "best"
) -> tuple[nn.Module, dict]:
    """The reference classifier (checkpoint path or MLflow run id), loaded once per process.

    ``tracking_uri`` (for run ids): None takes ``$MLFLOW_TRACKING_URI``, else
    ``sqlite:///outputs/mlflow.db`` (the default store relative to the working directory).
    """
    from ..tracking.checkpoints import resolve_checkpoint
    from ..training.classifier import load_classifier

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    key = (str(ref), uri, select)
    if key not in _REFERENCES:
        path, _ = resolve_checkpoint(str(ref), uri, select)
        _REFERENCES[key] = load_classifier(path)
    return _REFERENCES[key]


def data_randomisation(
    model: nn.Module,
    reference: nn.Module,
    method: SaliencyMethod,
    images: Tensor,
    targets: Tensor,
    maps: Tensor | None = None,
    *,
    similarities: Sequence[str] = tuple(SIMILARITIES),
    topk: float = 10.0,
) -> dict[str, Tensor]:
    """``{data_randomisation/<similarity>: (B,)}``: the method's maps on ``reference`` (a
    model trained on shuffled labels) against its maps on ``model``, same targets."""
    names = _check_similarities(similarities)
    with torch.inference_mode(False):
        if maps is None:
            maps = method(model, images, targets)
        n_model, n_ref = _n_outputs(model, images), _n_outputs(reference, images)
        if n_model != n_ref:
            raise SageError(
                f"the data-randomisation reference has {n_ref} classes, the model {n_model}"
            )
        ref_maps = method(reference, images, targets)
    sims = map_similarities(maps, ref_maps, names, topk)
    return {f"data_randomisation/{s}": v for s, v in sims.items()}


def _n_outputs(model: nn.Module, images: Tensor) -> int:
    was_training = model.training
    try:
        with torch.no_grad():
            return int(model.eval()(images[:1]).shape[-1])
    finally:
        model.train(was_training)
