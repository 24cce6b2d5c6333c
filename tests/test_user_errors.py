"""Config typos are one clear line, not a stack trace: unknown target layers, saliency-method
names and options, metric-set and backbone names are SageErrors that list the valid names and
suggest the closest one; the CLI wrapper prints them as ``error: ...``.

(A typo in a Hydra config group, ``cam=[gradcm]`` or ``metrics=[alignmnt]``, is caught by
Hydra itself before SAGE runs: it prints ``Could not load 'cam/gradcm'`` and the search path.)
"""

from __future__ import annotations

import pytest
import torch

from sage.cli import one_line_errors
from sage.errors import SageError, UnknownNameError
from sage.metrics.suite import check_metric_sets
from sage.models import create_backbone, get_backbone_spec, resolve_layers
from sage.saliency.methods import create_method


@pytest.fixture(scope="module")
def resnet():
    return create_backbone("resnet18", 3).eval()


def test_unknown_target_layer_names_the_valid_children(resnet):
    with pytest.raises(SageError) as err:
        resolve_layers(resnet, ["layer5"])
    msg = str(err.value)
    assert "'layer5' not found in ResNet" in msg and "did you mean 'layer4'?" in msg
    assert "conv1, bn1, relu, maxpool, layer1, layer2, layer3, layer4, avgpool, fc" in msg
    assert isinstance(err.value, ValueError)  # as before, for callers catching ValueError


def test_unknown_nested_target_layer_names_the_failing_parent(resnet):
    with pytest.raises(SageError, match=r"layer4\.1 has no 'conv9' \(did you mean 'conv2'\?\)"):
        resolve_layers(resnet, ["layer4.1.conv9"])
    with pytest.raises(SageError, match=r"layer4 has no '5'; its children: 0\.\.1"):
        resolve_layers(resnet, ["layer4.5"])
    with pytest.raises(SageError, match="is a Parameter, not a module"):
        resolve_layers(resnet, ["conv1.weight"])


def test_unknown_target_layer_in_a_method_call_is_a_sage_error(resnet):
    method = create_method("gradcam", target_layers=["layer4.1.bn9"])
    with pytest.raises(SageError, match=r"'layer4\.1\.bn9' not found.*did you mean 'bn2'"):
        method(resnet, torch.randn(1, 3, 64, 64))


def test_mistyped_saliency_method_suggests_the_closest():
    with pytest.raises(SageError, match=r"unknown saliency method 'gradcm' \(did you mean "):
        create_method("gradcm")
    with pytest.raises(SageError, match="did you mean 'gradcam_plusplus'"):
        create_method("gradcam_plus_plus")


def test_mistyped_saliency_method_option_is_named_at_creation():
    with pytest.raises(SageError, match=r"'gradcam': unknown option\(s\) \['target_layer'\]"):
        create_method("gradcam", target_layer=["layer4"])
    with pytest.raises(SageError, match=r"'scorecam'.*batchsize.*its parameters: .*batch_size"):
        create_method("scorecam", batchsize=8)


def test_mistyped_metric_set_suggests_the_closest():
    with pytest.raises(SageError, match=r"\['alignmnt'\] \(did you mean 'alignment'\?\)"):
        check_metric_sets({"alignmnt": {}})


def test_unknown_backbone_is_a_sage_error_and_still_a_key_error():
    with pytest.raises(UnknownNameError) as err:
        get_backbone_spec("resnet19")
    assert isinstance(err.value, SageError) and isinstance(err.value, KeyError)
    assert str(err.value).startswith("unknown backbone 'resnet19' (did you mean 'resnet18'")
    with pytest.raises(SageError, match=r"timm model .* \(did you mean 'vit_tiny_patch16_224'"):
        get_backbone_spec("timm/vit_tiny_patch16_2244")


@pytest.mark.parametrize(
    "typo",
    [
        lambda: create_method("gradcm"),
        lambda: check_metric_sets({"alignmnt": {}}),
        lambda: get_backbone_spec("resnet19"),
        lambda: resolve_layers(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1)), ["conv"]),
    ],
)
def test_cli_prints_each_typo_as_one_error_line(typo, capsys):
    with pytest.raises(SystemExit) as exit_:
        one_line_errors(typo)()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown") or err.startswith("error: layer")
    assert err.count("\n") == 1 and "Traceback" not in err
