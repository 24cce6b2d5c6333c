"""Attributions native to vision transformers, read from the attention maps themselves.

CAMs see a ViT only through a reshape transform of one block's tokens; these methods follow
how the tokens mix, block by block. They apply to any model with standard self-attention
blocks, found from the model (never from hard-coded names): modules with ``num_heads``, an
``attn_drop`` module and timm's ``fused_attn``/``scale``/``qkv`` — timm's ``Attention`` in
ViT, DeiT (distilled too), register-token ViTs, EVA. timm computes attention with the fused
``scaled_dot_product_attention`` kernel, which never materialises the attention
probabilities, so for the call ``fused_attn`` is switched off (the same computation, unfused)
and a forward hook on each ``attn_drop`` captures its input — the (B, heads, N, N)
probabilities (dropout is the identity in eval mode). Hooks are removed and ``fused_attn``
restored after every call, also on errors.

A map is the relevance of the patch tokens for the token(s) the classifier reads — the class
token (with the distillation token, DeiT's second head, when there is one), or every patch
token for average-pooled models — on the model's own patch grid (``num_prefix_tokens``
leading class/distillation/register tokens dropped), bilinearly upsampled to the input.
The patch grid comes from the model and the input size (:func:`model_grid`; models built
with ``dynamic_img_size`` take any size), checked against the token count. Every map is
non-negative, so the family's scoring rule is ``raw``; maps are not scaled (the metrics
normalise them).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import SageError
from .base import SaliencyMethod, register_method

HEAD_FUSIONS = ("mean", "max", "min")


def is_attention(module: nn.Module) -> bool:
    """A standard multi-head self-attention module whose probabilities can be captured."""
    return (
        isinstance(getattr(module, "num_heads", None), int)
        and isinstance(getattr(module, "attn_drop", None), nn.Module)
        and any(hasattr(module, a) for a in ("fused_attn", "scale", "qkv"))
    )


def attention_modules(model: nn.Module, method: str = "this method") -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every attention module of ``model``, in registration order; a
    SageError naming the requirement when there is none."""
    found = [(n, m) for n, m in model.named_modules() if is_attention(m)]
    if not found:
        raise SageError(
            f"{method} needs a model with attention blocks (timm-style self-attention "
            f"modules with num_heads and attn_drop, as in ViT, DeiT, EVA); "
            f"{type(model).__name__} has none: use a CAM or gradient method for it"
        )
    return found


def token_module(model: nn.Module) -> nn.Module:
    """The module holding the patch embedding: the timm model itself, or the one inside a
    wrapper."""
    for module in model.modules():
        if hasattr(module, "patch_embed"):
            return module
    raise SageError(
        f"{type(model).__name__} has no patch_embed: it has no patch-token grid (only ViT-like "
        "models have one)"
    )


def num_prefix_tokens(model: nn.Module) -> int:
    """Leading non-patch tokens (class, distillation, register tokens), from the model."""
    tm = token_module(model)
    n = getattr(tm, "num_prefix_tokens", None)
    if n is None:
        n = int(getattr(tm, "cls_token", None) is not None)
        n += int(getattr(tm, "dist_token", None) is not None)
    return int(n)


def _size(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = tuple(int(v) for v in image_size)[-2:]
    return h, w


def model_grid(model: nn.Module, image_size: int | Sequence[int]) -> tuple[int, int]:
    """``(rows, cols)`` of the model's patch-token grid for inputs of ``image_size`` (an int
    for square inputs, or ``(H, W)``): one cell per ViT token. Models built with
    ``dynamic_img_size`` follow the input (timm's ``dynamic_feat_size``: ``H // patch``, or
    rounded up with ``dynamic_img_pad``); fixed-size models have their ``grid_size``."""
    pe = token_module(model).patch_embed
    size = _size(image_size)
    dynamic = getattr(token_module(model), "dynamic_img_size", False)
    if dynamic and hasattr(pe, "dynamic_feat_size"):
        rows, cols = pe.dynamic_feat_size(size)
        return int(rows), int(cols)
    grid = tuple(getattr(pe, "grid_size", ()) or ())
    if len(grid) == 2:
        return int(grid[0]), int(grid[1])
    patch = getattr(pe, "patch_size", None)
    if patch is not None:
        ph, pw = (patch, patch) if isinstance(patch, int) else patch
        return size[0] // int(ph), size[1] // int(pw)
    raise SageError(f"cannot read the patch grid of {type(model).__name__}")


def resolve_grids(
    grids: Sequence[str | Sequence[int]], model: nn.Module, image_size: int | Sequence[int]
) -> list[tuple[int, int]]:
    """Token grids as ``(rows, cols)`` pairs; the entry ``"model"`` is the model's own patch
    grid at ``image_size`` (:func:`model_grid`: one cell per ViT token)."""
    resolved = []
    for g in grids:
        if isinstance(g, str):
            if g != "model":
                raise SageError(f"a grid is [rows, cols] or 'model', got {g!r}")
            try:
                resolved.append(model_grid(model, image_size))
            except SageError as err:
                raise SageError(f"grids=[model]: {err}") from None
        else:
            resolved.append(tuple(int(v) for v in g))
    return resolved


def patch_grid(model: nn.Module, n_patches: int, image_size: tuple[int, int]) -> tuple[int, int]:
    """The grid of ``n_patches`` patch tokens: :func:`model_grid` when it has that many cells,
    else the factorisation closest to the input's aspect ratio."""
    if n_patches < 1:
        raise SageError(f"the attention has no patch tokens ({n_patches})")
    try:
        rows, cols = model_grid(model, image_size)
        if rows * cols == n_patches:
            return rows, cols
    except SageError:
        pass
    aspect = math.log(image_size[0] / image_size[1])
    divisors = [r for r in range(1, n_patches + 1) if n_patches % r == 0]
    rows = min(divisors, key=lambda r: abs(math.log(r / (n_patches // r)) - aspect))
    return rows, n_patches // rows


def readout_rows(model: nn.Module, n_tokens: int) -> slice:
    """The query tokens the classifier reads: the class token (and DeiT's distillation
    token) for ``global_pool="token"``; the patch tokens for average-pooled models."""
    tm = token_module(model)
    n_prefix = num_prefix_tokens(model)
    pool = getattr(tm, "global_pool", "token" if n_prefix else "avg")
    if pool == "token" and n_prefix:
        return slice(0, 2 if getattr(tm, "dist_token", None) is not None else 1)
    return slice(n_prefix, n_tokens)


def to_map(model: nn.Module, relevance: Tensor, image_size: tuple[int, int]) -> Tensor:
    """(B, N) token relevance → (B, H, W) map: prefix tokens dropped, patch grid upsampled."""
    patches = relevance[:, num_prefix_tokens(model) :]
    rows, cols = patch_grid(model, patches.shape[1], image_size)
    grid = patches.reshape(patches.shape[0], 1, rows, cols).float()
    return F.interpolate(grid, size=image_size, mode="bilinear", align_corners=False)[:, 0]


@contextmanager
def captured_attention(model: nn.Module, method: str) -> Iterator[list[Tensor]]:
    """Within the block, each forward of ``model`` appends every attention block's
    (B, heads, N, N) probabilities, in execution order, to the yielded list (kept in the
    graph, so gradients can be taken with respect to them)."""
    modules = [m for _, m in attention_modules(model, method)]
    fused = [(m, m.fused_attn) for m in modules if hasattr(m, "fused_attn")]
    store: list[Tensor] = []
    handles = []
    try:
        for m, _ in fused:
            m.fused_attn = False
        for m in modules:
            handles.append(m.attn_drop.register_forward_hook(lambda mod, i, o: store.append(o)))
        yield store
    finally:
        for h in handles:
            h.remove()
        for m, was in fused:
            m.fused_attn = was


def check_attention(attns: list[Tensor], n_modules: int, method: str) -> None:
    """All blocks captured, each a square (B, heads, N, N) map over the same N tokens."""
    if len(attns) != n_modules:
        raise SageError(
            f"{method}: captured {len(attns)} attention maps from {n_modules} attention "
            "modules: their forward does not use attn_drop once on the attention probabilities"
        )
    n = attns[0].shape[-1]
    for a in attns:
        if a.dim() != 4 or a.shape[-2:] != (n, n):
            raise SageError(
                f"{method} needs global self-attention over the same tokens in every block; "
                f"got attention maps of shapes {sorted({tuple(x.shape) for x in attns})}"
            )


class AttentionMethod(SaliencyMethod):
    """A method reading the attention probabilities of every block."""

    family = "attention"
    scoring = "raw"  # the maps are non-negative

    def __init__(self) -> None:
        super().__init__(None)

    def attention_forward(
        self, model: nn.Module, images: Tensor, grad: bool
    ) -> tuple[Tensor, list[Tensor]]:
        """Logits and the blocks' attention probabilities (in the graph when ``grad``)."""
        n_modules = len(attention_modules(model, self.name))
        with captured_attention(model, self.name) as attns:
            if grad:  # the input in the graph, so attention has gradients with frozen weights
                logits = model(images.detach().clone().requires_grad_(True))
            else:
                with torch.no_grad():
                    logits = model(images)
        check_attention(attns, n_modules, self.name)
        self.last_logits = logits.detach()
        return logits, list(attns)


def class_score(logits: Tensor, targets: Tensor | None) -> Tensor:
    """Sum over the batch of each image's target logit (predicted class by default); the
    images are independent, so its gradient holds every image's own."""
    if targets is None:
        targets = logits.argmax(1)
    return logits.gather(1, targets.to(logits.device).long()[:, None]).sum()


@register_method("attention_rollout")
class AttentionRolloutMethod(AttentionMethod):
    """Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL
    2020): per block the attention fused over heads (``head_fusion``: mean, max or min), plus
    the identity for the residual connection, rows re-normalised; the product over blocks
    (first block rightmost) gives every token's mixture of input tokens. ``discard_ratio``
    zeroes that share of each block's lowest fused attentions (except the class token's
    attention to itself) before the identity is added, as in J. Gildenblat's vit-explain.
    Class-independent: ``targets`` are ignored.
    """

    def __init__(self, head_fusion: str = "mean", discard_ratio: float = 0.0) -> None:
        super().__init__()
        if head_fusion not in HEAD_FUSIONS:
            raise SageError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
        if not 0 <= discard_ratio < 1:
            raise SageError(f"discard_ratio must be in [0, 1), got {discard_ratio!r}")
        self.head_fusion = head_fusion
        self.discard_ratio = float(discard_ratio)

    def compute(self, model: nn.Module, images: Tensor, targets: Tensor | None) -> Tensor:
        _, attns = self.attention_forward(model, images, grad=False)
        rollout = None
        for attn in attns:
            a = attn.float()
            if self.head_fusion == "mean":
                a = a.mean(1)
            elif self.head_fusion == "max":
                a = a.amax(1)
            else:
                a = a.amin(1)
            b, n, _ = a.shape
            if self.discard_ratio > 0:
                flat = a.reshape(b, n * n).clone()
                k = int(n * n * self.discard_ratio)
                lowest = flat.topk(k, dim=-1, largest=False).indices
                drop = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, lowest, True)
                drop[:, 0] = False  # the class token's attention to itself stays
                a = flat.masked_fill(drop, 0).reshape(b, n, n)
            a = (a + torch.eye(n, device=a.device)) / 2
            a = a / a.sum(-1, keepdim=True)
            rollout = a if rollout is None else a @ rollout
        relevance = rollout[:, readout_rows(model, rollout.shape[-1])].mean(1)
        return to_map(model, relevance, tuple(images.shape[-2:]))


@register_method("transformer_attribution")
class TransformerAttributionMethod(AttentionMethod):
    """Gradient-weighted attention rollout (Chefer, Gur & Wolf, "Generic Attention-model
    Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", ICCV 2021 —
    the gradient × attention rule that replaced the LRP relevances of their CVPR 2021
    "Transformer Interpretability Beyond Attention Visualization"): ``R = I``; per block
    ``R += mean_heads(relu(∇A ⊙ A)) @ R``, ∇A the gradient of the target class's logit;
    the readout token's row of ``R`` over the patch tokens is the map.
    """

    def compute(self, model: nn.Module, images: Tensor, targets: Tensor | None) -> Tensor:
        logits, attns = self.attention_forward(model, images, grad=True)
        grads = torch.autograd.grad(class_score(logits, targets), attns)
        b, _, n, _ = attns[0].shape
        relevance = torch.eye(n, device=images.device).expand(b, n, n)
        for attn, grad in zip(attns, grads, strict=True):
            cam = (grad * attn).detach().float().clamp_min(0).mean(1)
            relevance = relevance + cam @ relevance
        rows = relevance[:, readout_rows(model, n)].mean(1)
        return to_map(model, rows, tuple(images.shape[-2:]))


@register_method("legrad")
class LeGradMethod(AttentionMethod):
    """LeGrad (Bousselham et al., "LeGrad: An Explainability Method for Vision Transformers
    via Feature Formation Sensitivity", arXiv 2404.03214, 2024): each block's output tokens
    are read out by the model's own final norm and classifier head (``forward_head``) as if
    it were the last block, and the gradient of that block's target-class score with respect
    to the block's own attention map, ReLU'd and averaged over heads and over query tokens,
    is its map; the map is the mean over blocks. ``last_blocks``: use only the last n blocks
    (None: all, as the paper's formula; the authors' code uses the last 2 for CLIP models).
    """

    def __init__(self, last_blocks: int | None = None) -> None:
        super().__init__()
        if last_blocks is not None and int(last_blocks) < 1:
            raise SageError(f"last_blocks must be >= 1 or null, got {last_blocks!r}")
        self.last_blocks = None if last_blocks is None else int(last_blocks)

    def compute(self, model: nn.Module, images: Tensor, targets: Tensor | None) -> Tensor:
        attention = attention_modules(model, self.name)
        tm = token_module(model)
        if not callable(getattr(tm, "forward_head", None)):
            raise SageError(
                f"legrad needs the model's classifier head as forward_head (timm models have "
                f"it); {type(tm).__name__} has none"
            )
        norm = getattr(tm, "norm", None)
        norm = nn.Identity() if norm is None else norm
        names = dict(model.named_modules())
        blocks = [names[n.rpartition(".")[0]] for n, _ in attention]  # each module's parent
        outputs: list[Tensor] = []
        handles = [blk.register_forward_hook(lambda m, i, o: outputs.append(o)) for blk in blocks]
        try:
            logits, attns = self.attention_forward(model, images, grad=True)
        finally:
            for h in handles:
                h.remove()
        if len(outputs) != len(attns):
            raise SageError(
                f"legrad: {len(outputs)} block outputs for {len(attns)} attention maps: the "
                "attention modules are not one per block"
            )
        if targets is None:
            targets = logits.argmax(1)
        use = range(len(attns))[-self.last_blocks :] if self.last_blocks else range(len(attns))
        b, _, n, _ = attns[0].shape
        total = torch.zeros(b, n, device=images.device)
        for i in use:
            score = class_score(tm.forward_head(norm(outputs[i])), targets)
            (grad,) = torch.autograd.grad(score, attns[i], retain_graph=True)
            total += grad.detach().float().clamp_min(0).mean(1).mean(1)  # heads, then queries
        return to_map(model, total / len(use), tuple(images.shape[-2:]))
