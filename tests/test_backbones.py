"""Backbone registry: every registered backbone builds, classifies and resolves its CAM layers."""

from __future__ import annotations

import pytest
import torch

from sage.models import (
    MissingWeightsError,
    create_backbone,
    get_backbone_spec,
    list_backbones,
    resolve_layers,
)
from sage.models.token_reshape import vit_reshape_transform

PAPER_TORCHVISION = {
    "densenet121", "densenet161", "densenet169", "densenet201", "efficientnet_b0",
    "inception_v3", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "shufflenet_v2_x1_0",
    "squeezenet1_0", "vgg11", "vgg13", "vgg16", "vgg19", "wide_resnet50_2", "wide_resnet101_2",
}  # fmt: skip


def test_registry_holds_the_papers_26_torchvision_cnns_and_the_small_cnn():
    names = set(list_backbones())
    assert names >= PAPER_TORCHVISION
    assert len([n for n in names if get_backbone_spec(n).family == "torchvision"]) == 26
    assert "small_cnn" in names


@pytest.mark.parametrize("name", [*list_backbones(), "timm/vit_tiny_patch16_224", "timm/resnet18"])
def test_backbone_builds_and_resolves_target_layers(name: str):
    spec = get_backbone_spec(name)
    model = create_backbone(name, num_classes=3).eval()
    # Smallest input every family accepts (Inception needs 75, ViT its patch grid).
    size = {"inception_v3": 75}.get(name, 224 if spec.family == "vit" else 64)
    captured = []
    layers = resolve_layers(model, spec.target_layers + spec.stage_layers)
    hook = layers[0].register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        logits = model(torch.randn(2, 3, size, size))
    hook.remove()
    assert logits.shape == (2, 3)
    assert captured, f"default CAM layer of {name} is not on the forward path"
    act = captured[0]
    if spec.reshape_transform is not None:
        act = spec.reshape_transform(model)(act)
    assert act.dim() == 4 and act.shape[0] == 2
    assert resolve_layers(model, [spec.classifier])[0] is not None


def test_vit_reshape_transform_reads_grid_and_prefix_tokens_from_model():
    model = create_backbone("timm/vit_tiny_patch16_224", 2)
    tokens = torch.randn(2, 1 + 14 * 14, 192)
    tokens[:, 0] = 1e6  # the class token must be dropped, not reshaped into the grid
    grid = vit_reshape_transform(model)(tokens)
    assert grid.shape == (2, 192, 14, 14)
    assert grid.abs().max() < 1e5
    assert torch.equal(grid[:, :, 0, 1], tokens[:, 2])


def test_unknown_backbone_names_alternatives():
    with pytest.raises(KeyError, match="resnet18"):
        get_backbone_spec("resnet9000")


def test_missing_pretrained_weights_name_the_expected_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(MissingWeightsError, match=r"resnet18-[0-9a-f]+\.pth"):
        create_backbone("resnet18", 10, pretrained=True)
    with pytest.raises(MissingWeightsError, match=r"nope\.pt"):
        create_backbone("small_cnn", 10, weights=tmp_path / "nope.pt")


def test_weights_file_roundtrip_and_mismatch(tmp_path):
    source = create_backbone("small_cnn", 4)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    loaded = create_backbone("small_cnn", 4, weights=tmp_path / "w.pt")
    assert all(
        torch.equal(a, b)
        for a, b in zip(source.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    with pytest.raises(ValueError, match="do not fit"):
        create_backbone("small_cnn", 7, weights=tmp_path / "w.pt")
