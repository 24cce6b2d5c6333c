"""Every saliency method on every backbone family: shape, finiteness, hooks, modes, targets."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from sage.errors import SageError
from sage.models import create_backbone
from sage.saliency.methods import create_method, list_methods

# Cheap settings for the expensive methods; the defaults are the papers'.
FAST = {
    "scorecam": {"batch_size": 512},
    "ablationcam": {"batch_size": 512, "ratio_channels_to_ablate": 0.25},
    "integrated_gradients": {"n_steps": 4},
    "smoothgrad": {"nt_samples": 2},
}


def _small_vit() -> torch.nn.Module:
    """A ViT at 32x32 input (2x2 patch grid of 16 px): the reshape comes from the model."""
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=4)
    model.sage_backbone = "timm/vit_tiny_patch16_224"
    return model


FAMILIES = {  # family: (model factory, input size giving a feature map of at least 2x2)
    "small_cnn": (lambda: create_backbone("small_cnn", 4), 32),
    "torchvision": (lambda: create_backbone("resnet18", 4), 64),
    "vit": (_small_vit, 32),
}
# FullGrad needs convolution biases; the attention methods need attention blocks
UNSUPPORTED = {("fullgrad", "vit"): "token models"} | {
    (m, f): "needs a model with attention blocks"
    for m in list_methods("attention")
    for f in ("small_cnn", "torchvision")
}


def _hooks(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
        for m in model.modules()
    )


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("name", list_methods())
def test_method_on_family(name, family):
    torch.manual_seed(0)
    factory, size = FAMILIES[family]
    model = factory()
    model.train()
    images = torch.randn(2, 3, size, size)
    method = create_method(name, **FAST.get(name, {}))
    if name == "ground_truth":  # the answer key is handed in per batch (explain does it)
        method.provide(torch.rand(2, size, size) > 0.5)
    if (name, family) in UNSUPPORTED:
        with pytest.raises(SageError, match=UNSUPPORTED[name, family]):
            method(model, images)
        return
    maps = method(model, images)
    assert maps.shape == (2, size, size) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all()
    assert model.training, "the method must restore train mode"
    assert _hooks(model) == 0, "hooks must be released after every call"
    if method.family not in ("baseline", "reference"):
        assert maps.abs().sum() > 0
        assert method.last_logits is not None and method.last_logits.shape == (2, 4)


def test_true_class_targets_differ_from_predicted_and_predicted_is_default():
    torch.manual_seed(0)
    model = create_backbone("small_cnn", 4).eval()
    images = torch.randn(3, 3, 32, 32)
    method = create_method("gradcam")
    predicted = method(model, images)
    pred = method.last_logits.argmax(1)
    assert torch.allclose(method(model, images, pred), predicted)
    other = (pred + 1) % 4
    assert not torch.allclose(method(model, images, other), predicted)


def test_gradcam_raw_map_matches_grad_cam_after_its_normalisation():
    torch.manual_seed(0)
    model = create_backbone("resnet18", 4).eval()
    images = torch.randn(2, 3, 64, 64)
    ours = create_method("gradcam")(model, images, torch.tensor([1, 2]))
    with GradCAM(model, [model.layer4]) as cam:
        ref = cam(images, [ClassifierOutputTarget(1), ClassifierOutputTarget(2)])
    # grad-cam: ReLU + min-max at feature resolution, then OpenCV resize; ours: raw, torch
    # resize. Same map up to interpolation order, so compare after the same normalisation.
    scaled = ours.clamp(min=0)
    scaled = (scaled - scaled.amin((1, 2), keepdim=True)) / (
        scaled.amax((1, 2), keepdim=True) - scaled.amin((1, 2), keepdim=True)
    )
    corr = np.corrcoef(scaled.flatten().numpy(), ref.flatten())[0, 1]
    assert corr > 0.98
    assert np.abs(scaled.numpy() - ref).mean() < 0.05


def test_refinecam_is_the_product_of_scaled_layer_maps():
    torch.manual_seed(0)
    model = create_backbone("resnet18", 4).eval()
    images = torch.randn(2, 3, 64, 64)
    targets = torch.tensor([0, 3])
    refined = create_method("refinecam", target_layers=["layer3", "layer4"])(model, images, targets)
    expected = torch.ones(2, 64, 64)
    for layer in ("layer3", "layer4"):
        m = create_method("gradcam_plusplus", target_layers=[layer])(model, images, targets).clamp(
            min=0
        )
        expected *= m / m.amax((1, 2), keepdim=True)
    assert torch.allclose(refined, expected, atol=1e-6)
    # the default uses the backbone's several stage layers
    assert create_method("refinecam")(model, images, targets).shape == (2, 64, 64)


def test_methods_work_inside_inference_mode_and_do_not_leak_hooks():
    model = create_backbone("small_cnn", 4)
    images = torch.randn(2, 3, 32, 32)
    method = create_method("gradcam")
    with torch.inference_mode():  # as in Lightning's validation loop
        for _ in range(20):
            maps = method(model, images)
    assert torch.isfinite(maps).all() and _hooks(model) == 0


def test_explicit_target_layers_and_errors():
    model = create_backbone("resnet18", 4)
    images = torch.randn(1, 3, 64, 64)
    coarse = create_method("gradcam", target_layers=["layer4"])(model, images)
    fine = create_method("gradcam", target_layers=["layer2"])(model, images)
    assert not torch.allclose(coarse, fine)
    with pytest.raises(ValueError, match="layer9"):
        create_method("gradcam", target_layers=["layer9"])(model, images)
    with pytest.raises(SageError, match="unknown saliency method"):
        create_method("gradcam9000")
    plain = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    with pytest.raises(SageError, match="target_layers"):
        create_method("gradcam")(plain, images)


def test_baselines_are_deterministic_and_model_free():
    model = create_backbone("small_cnn", 4)
    images = torch.randn(2, 3, 8, 10)
    left = create_method("left_half")(model, images)
    assert left[:, :, :5].eq(1).all() and left[:, :, 5:].eq(0).all()
    half = create_method("half")(model, images)
    assert half.sum() == 2 * (0.5 * 78 + 1) and half[:, 0, 0].eq(0).all()
    ones = create_method("ones_but_one")(model, images)
    assert ones.sum() == 2 * (80 - 1) and ones[0, 0, 0] == 0
    assert torch.equal(  # one seeded stream: the n-th call is reproducible
        create_method("random", seed=3)(model, images),
        create_method("random", seed=3)(model, images),
    )
    gauss = create_method("centre_gaussian")(model, torch.randn(1, 3, 9, 9))
    assert gauss[0].argmax() == 40  # the centre pixel of 9x9


@pytest.mark.parametrize(
    "name", ["gradcam", "gradcam_plusplus", "xgradcam", "layercam", "hirescam", "eigengradcam"]
)
def test_partial_backward_gives_grad_cams_full_backward_maps(name):
    """SAGE stops back-propagation at the target layer; the maps must not change."""
    from pytorch_grad_cam.base_cam import BaseCAM

    from sage.saliency.methods.cam import class_targets, release

    torch.manual_seed(0)
    model = create_backbone("resnet18", 4).eval()
    images = torch.randn(3, 3, 64, 64)
    targets = torch.tensor([0, 1, 3])
    method = create_method(name)
    fast_cam, full_cam = method.build(model), method.build(model)
    try:
        with torch.enable_grad():
            fast = fast_cam(images, class_targets(targets))
            full = BaseCAM.forward(full_cam, images, class_targets(targets))  # loss.backward()
    finally:
        release(fast_cam)
        release(full_cam)
    assert torch.allclose(fast, full, rtol=1e-4, atol=1e-7)
