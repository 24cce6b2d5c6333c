"""Backbone registry: every registered backbone builds, classifies and resolves its CAM layers."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import torchvision

from sage.cli import one_line_errors
from sage.models import (
    MissingWeightsError,
    create_backbone,
    get_backbone_spec,
    list_backbones,
    resolve_layers,
)
from sage.models.token_reshape import vit_reshape_transform
from sage.models.weights import WeightsMismatchError
from sage.saliency.methods import create_method

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
    # another architecture's weights: one error naming the file and what does not fit
    with pytest.raises(WeightsMismatchError, match=r"w\.pt do not fit ResNet: .*missing"):
        create_backbone("resnet18", 4, weights=tmp_path / "w.pt")


def _same_weights(a: torch.nn.Module, b: torch.nn.Module, skip: str | None = None) -> bool:
    """Every tensor of ``a`` equals ``b``'s, except those under ``skip`` (a new head)."""
    sa, sb = a.state_dict(), b.state_dict()
    kept = [k for k in sa if skip is None or not k.startswith(skip)]
    return len(kept) > 0 and all(torch.equal(sa[k], sb[k]) for k in kept)


def test_weights_file_with_the_same_class_count_keeps_its_head(tmp_path):
    """The MobileNetV2 bug: its own weights, loaded back, used to get a random head."""
    torch.manual_seed(0)
    source = create_backbone("mobilenet_v2", 7).eval()
    torch.save(source.state_dict(), tmp_path / "own.pt")
    loaded = create_backbone("mobilenet_v2", 7, weights=tmp_path / "own.pt").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(source(x), loaded(x))
    assert _same_weights(source, loaded)


def test_weights_file_with_another_class_count_gets_a_new_head_and_says_so(tmp_path, caplog):
    torch.manual_seed(0)
    source = create_backbone("mobilenet_v2", 7)
    torch.save(source.state_dict(), tmp_path / "seven.pt")
    with caplog.at_level(logging.INFO, logger="sage.models"):
        loaded = create_backbone("mobilenet_v2", 5, weights=tmp_path / "seven.pt")
    assert _same_weights(source, loaded, skip="classifier.1.")  # the body: every weight kept
    assert loaded.classifier[1].out_features == 5
    assert "classifier 'classifier.1' has 7 classes, the model 5" in caplog.text
    assert "seven.pt" in caplog.text


def test_pretrained_imagenet_weights_keep_the_imagenet_head(tmp_path, monkeypatch):
    """model.pretrained=true at 1000 classes predicts ImageNet classes (its head is kept)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    torch.manual_seed(0)
    imagenet = create_backbone("resnet18", 1000).eval()
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    cached = tmp_path / "hub" / "checkpoints" / Path(url).name
    cached.parent.mkdir(parents=True)
    torch.save(imagenet.state_dict(), cached)
    loaded = create_backbone("resnet18", 1000, pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(imagenet(x), loaded(x))


def test_sage_classifier_checkpoint_loads_as_weights(tmp_path):
    """A Lightning checkpoint keeps the network under ``net.``; it loads as model.weights."""
    source = create_backbone("small_cnn", 3)
    state = {f"net.{k}": v for k, v in source.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 4}, tmp_path / "run.ckpt")
    assert _same_weights(source, create_backbone("small_cnn", 3, weights=tmp_path / "run.ckpt"))


def test_weights_mismatch_is_a_user_error_printed_as_one_line(tmp_path, capsys):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    torch.save(create_backbone("small_cnn", 3).state_dict(), tmp_path / "small.pt")

    @one_line_errors
    def task(path):
        create_backbone("vgg11", 3, weights=path)

    for name in ("notes.pt", "small.pt"):
        with pytest.raises(SystemExit):
            task(tmp_path / name)
        err = capsys.readouterr().err
        assert err.startswith("error: ") and name in err and err.count("\n") == 1


# -- timm: no network, any input size ---------------------------------------------------------

HUB_ID = "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection fails and is recorded: a test sees whether one was tried."""
    tried = []

    def refuse(sock, address):
        tried.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(None, address))
    return tried


def test_timm_pretrained_cache_miss_fails_at_once_naming_the_file(
    tmp_path, monkeypatch, no_network
):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(MissingWeightsError) as err:
        create_backbone("timm/vit_tiny_patch16_224", 3, pretrained=True)
    expected = tmp_path / "hf" / "hub" / f"models--{HUB_ID.replace('/', '--')}"
    assert str(expected) in str(err.value) and "model.safetensors" in str(err.value)
    assert no_network == []  # the hub was never tried (it used to retry for a minute)


def test_timm_pretrained_loads_from_the_local_hf_cache_offline(tmp_path, monkeypatch, no_network):
    torch.manual_seed(0)
    imagenet = timm.create_model("vit_tiny_patch16_224").eval()
    snapshot = tmp_path / "hub" / f"models--{HUB_ID.replace('/', '--')}"
    (snapshot / "snapshots" / "abc123").mkdir(parents=True)
    (snapshot / "refs").mkdir()
    (snapshot / "refs" / "main").write_text("abc123")
    torch.save(imagenet.state_dict(), snapshot / "snapshots" / "abc123" / "pytorch_model.bin")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    loaded = create_backbone("timm/vit_tiny_patch16_224", 1000, pretrained=True).eval()
    assert _same_weights(imagenet, loaded)
    new_head = create_backbone("timm/vit_tiny_patch16_224", 3, pretrained=True)
    assert _same_weights(imagenet, new_head, skip="head.") and new_head.head.out_features == 3
    assert no_network == []


def test_importing_sage_models_puts_hugging_face_offline():
    """HF reads HF_HUB_OFFLINE once, at import: sage.models sets it before timm imports HF."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    code = "import sage.models, huggingface_hub.constants as c; print(c.HF_HUB_OFFLINE)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize("size", [96, 224])
def test_vit_at_any_input_size_forwards_and_gradcam_uses_its_token_grid(size):
    """model=timm model.input_size=96: 96/16 = a 6x6 token grid for the CAM reshape."""
    torch.manual_seed(0)
    model = create_backbone("timm/vit_tiny_patch16_224", 3).eval()
    spec = get_backbone_spec("timm/vit_tiny_patch16_224")
    images = torch.randn(2, 3, size, size)
    captured = []
    (layer,) = resolve_layers(model, spec.target_layers)
    hook = layer.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        assert model(images).shape == (2, 3)
    hook.remove()
    grid = spec.reshape_transform(model)(captured[0])
    assert grid.shape == (2, 192, size // 16, size // 16)
    maps = create_method("gradcam")(model, images)
    assert maps.shape == (2, size, size) and torch.isfinite(maps).all()
    # one state dict for every input size: a checkpoint trained at 96 reloads as built anywhere
    create_backbone("timm/vit_tiny_patch16_224", 3).load_state_dict(model.state_dict())
