"""Transformer-native attributions: attention rollout, transformer attribution, LeGrad.

Expected maps are computed here by hand from the model's weights (attention recomputed from
``qkv``, the blocks run step by step), never through the methods' hooks.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from sage.errors import SageError
from sage.models import create_backbone
from sage.saliency.methods import create_method, list_methods
from sage.saliency.methods.transformer import model_grid, num_prefix_tokens, resolve_grids

METHODS = ["attention_rollout", "transformer_attribution", "legrad"]
GRADIENT_METHODS = ["transformer_attribution", "legrad"]


def _vit(**kw) -> torch.nn.Module:
    """A 2-block, 2-head, 16-dim ViT with 16-px patches that takes any input size."""
    args = dict(
        pretrained=False,
        img_size=32,
        patch_size=16,
        depth=2,
        num_heads=2,
        embed_dim=16,
        num_classes=3,
        dynamic_img_size=True,
    )
    torch.manual_seed(0)
    return timm.create_model(kw.pop("name", "vit_tiny_patch16_224"), **(args | kw))


def _hooks(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
        for m in model.modules()
    )


def _fused(model: torch.nn.Module) -> list[bool]:
    return [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]


def _by_hand(model: torch.nn.Module, images: torch.Tensor):
    """Logits, each block's attention probabilities (B, heads, N, N) as graph nodes, and each
    block's output tokens, from a step-by-step forward of timm's ViT."""
    x = model.norm_pre(model._pos_embed(model.patch_embed(images)))
    attns, outs = [], []
    for blk in model.blocks:
        a = blk.attn
        h = blk.norm1(x)
        b, n, c = h.shape
        q, k, v = a.qkv(h).reshape(b, n, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        attn = ((q * a.scale) @ k.transpose(-2, -1)).softmax(-1)
        attns.append(attn)
        mixed = a.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
        x = x + blk.drop_path1(blk.ls1(mixed))
        x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
        outs.append(x)
    return model.forward_head(model.norm(x)), attns, outs


def _upsample(tokens: np.ndarray, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    t = torch.as_tensor(tokens, dtype=torch.float32).reshape(-1, 1, *grid)
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[:, 0]


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
def test_rollout_is_the_product_of_the_blocks_attention(head_fusion):
    model = _vit().eval()
    images = torch.randn(2, 3, 48, 32)  # 3x2 patch grid: rows and columns not swapped
    with torch.no_grad():
        logits, attns, _ = _by_hand(model, images)
    n = attns[0].shape[-1]
    assert n == 1 + 6
    fuse = {"mean": np.mean, "max": np.max, "min": np.min}[head_fusion]
    rollout = np.eye(n)
    for attn in attns:
        a = (fuse(attn.numpy().astype(np.float64), axis=1) + np.eye(n)) / 2
        a = a / a.sum(-1, keepdims=True)
        rollout = a @ rollout
    expected = _upsample(rollout[:, 0, 1:], (3, 2), (48, 32))

    method = create_method("attention_rollout", head_fusion=head_fusion)
    maps = method(model, images)
    assert maps.shape == (2, 48, 32)
    assert torch.allclose(maps, expected, atol=1e-5)
    assert torch.allclose(method.last_logits, logits, atol=1e-5)
    assert method.family == "attention" and method.scoring == "raw"


def test_rollout_discard_ratio_drops_the_lowest_attention():
    model = _vit().eval()
    images = torch.randn(2, 3, 32, 32)
    plain = create_method("attention_rollout")(model, images)
    with torch.no_grad():
        _, attns, _ = _by_hand(model, images)
    n = attns[0].shape[-1]
    rollout = np.stack([np.eye(n)] * 2)
    for attn in attns:
        a = attn.numpy().astype(np.float64).mean(1).reshape(2, -1)
        for row in a:  # the lowest 30 % of each image's fused attention, except entry (0, 0)
            lowest = np.argsort(row, kind="stable")[: int(n * n * 0.3)]
            row[lowest[lowest != 0]] = 0
        a = (a.reshape(2, n, n) + np.eye(n)) / 2
        rollout = (a / a.sum(-1, keepdims=True)) @ rollout
    expected = _upsample(rollout[:, 0, 1:], (2, 2), (32, 32))
    maps = create_method("attention_rollout", discard_ratio=0.3)(model, images)
    assert torch.allclose(maps, expected, atol=1e-5)
    assert not torch.allclose(maps, plain)


def test_transformer_attribution_is_the_gradient_weighted_rollout():
    model = _vit().eval()
    images = torch.randn(2, 3, 32, 48)
    targets = torch.tensor([2, 0])
    logits, attns, _ = _by_hand(model, images)
    score = logits.gather(1, targets[:, None]).sum()
    grads = torch.autograd.grad(score, attns)
    n = attns[0].shape[-1]
    relevance = np.stack([np.eye(n)] * 2)
    for attn, grad in zip(attns, grads, strict=True):
        cam = np.clip(grad.numpy() * attn.detach().numpy(), 0, None).mean(1)
        relevance = relevance + cam @ relevance
    expected = _upsample(relevance[:, 0, 1:], (2, 3), (32, 48))
    maps = create_method("transformer_attribution")(model, images, targets)
    assert torch.allclose(maps, expected, atol=1e-6)


def test_legrad_is_the_mean_over_blocks_of_each_blocks_own_readout_gradient():
    model = _vit().eval()
    images = torch.randn(2, 3, 48, 48)
    targets = torch.tensor([1, 1])
    _, attns, outs = _by_hand(model, images)
    per_block = []
    for attn, out in zip(attns, outs, strict=True):
        score = model.forward_head(model.norm(out)).gather(1, targets[:, None]).sum()
        (grad,) = torch.autograd.grad(score, attn, retain_graph=True)
        per_block.append(grad.clamp_min(0).mean(1).mean(1)[:, 1:].numpy())
    expected = _upsample(np.mean(per_block, axis=0), (3, 3), (48, 48))
    assert torch.allclose(create_method("legrad")(model, images, targets), expected, atol=1e-7)
    last = _upsample(per_block[-1], (3, 3), (48, 48))
    assert torch.allclose(
        create_method("legrad", last_blocks=1)(model, images, targets), last, atol=1e-7
    )


@pytest.mark.parametrize("size", [32, 48])
@pytest.mark.parametrize("name", METHODS)
def test_methods_on_a_timm_vit_any_size(name, size):
    model = _vit()
    model.train()
    fused = _fused(model)
    images = torch.randn(3, 3, size, size)
    method = create_method(name)
    maps = method(model, images)
    assert maps.shape == (3, size, size) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and (maps >= 0).all() and maps.abs().sum() > 0
    assert method.last_logits.shape == (3, 3)
    assert model.training, "train mode restored"
    assert _hooks(model) == 0, "hooks released after every call"
    assert _fused(model) == fused, "fused_attn restored"
    assert not any(p.grad is not None for p in model.parameters()), "no parameter gradients"
    assert name in list_methods("attention")


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_gradient_methods_follow_the_target_class_and_default_to_the_prediction(name):
    model = _vit().eval()
    images = torch.randn(2, 3, 32, 32)
    method = create_method(name)
    predicted = method(model, images)
    pred = method.last_logits.argmax(1)
    assert torch.allclose(method(model, images, pred), predicted)
    assert not torch.allclose(method(model, images, (pred + 1) % 3), predicted)


@pytest.mark.parametrize(
    "kw, prefix",
    [
        ({"name": "deit_tiny_distilled_patch16_224"}, 2),  # class + distillation token
        ({"reg_tokens": 4}, 5),  # class + 4 register tokens
        ({"class_token": False, "global_pool": "avg"}, 0),  # average-pooled, no prefix
    ],
)
def test_prefix_tokens_come_from_the_model(kw, prefix):
    model = _vit(**kw)
    assert num_prefix_tokens(model) == prefix
    images = torch.randn(2, 3, 48, 32)
    for name in METHODS:
        maps = create_method(name)(model, images)
        assert maps.shape == (2, 48, 32) and torch.isfinite(maps).all()
        assert maps.abs().sum() > 0 and _hooks(model) == 0


def test_methods_work_inside_inference_mode():
    model = _vit()
    with torch.inference_mode():  # as in Lightning's validation loop
        images = torch.randn(2, 3, 32, 32)
        for name in METHODS:
            assert torch.isfinite(create_method(name)(model, images)).all()
    assert _hooks(model) == 0


def test_model_grid_is_one_cell_per_token():
    assert model_grid(_vit(), 48) == (3, 3)
    assert model_grid(_vit(), (48, 32)) == (3, 2)
    fixed = _vit(dynamic_img_size=False)
    assert model_grid(fixed, 32) == (2, 2)


def test_a_cnn_is_a_clear_error_and_options_are_checked():
    model = create_backbone("small_cnn", 4)
    for name in METHODS:
        with pytest.raises(SageError, match="needs a model with attention blocks"):
            create_method(name)(model, torch.randn(1, 3, 32, 32))
        assert _hooks(model) == 0
    with pytest.raises(SageError, match="head_fusion"):
        create_method("attention_rollout", head_fusion="median")
    with pytest.raises(SageError, match="discard_ratio"):
        create_method("attention_rollout", discard_ratio=1.0)
    with pytest.raises(SageError, match="last_blocks"):
        create_method("legrad", last_blocks=0)


def test_grids_resolve_model_to_the_token_grid():
    assert resolve_grids(["model", [4, 4]], _vit(), 48) == [(3, 3), (4, 4)]
    with pytest.raises(SageError, match=r"grids=\[model\].*patch-token grid"):
        resolve_grids(["model"], create_backbone("small_cnn", 4), 32)
    with pytest.raises(SageError, match="'model'"):
        resolve_grids(["modle"], _vit(), 48)
