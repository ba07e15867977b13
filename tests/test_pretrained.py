"""MedicalNet checkpoints and lesionkit encoders: matching, reports and refusals."""

from __future__ import annotations

import re

import pytest
import torch
from monai.networks.nets import resnet10, resnet18

from lesionkit.io import InputError
from lesionkit.pretrained import (
    load_encoder,
    load_medicalnet,
    medicalnet_resnet_args,
    save_encoder,
)

WIDTH = 0.125


def _resnet18(seed: int, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    # widen_factor keeps the test small: names as in the full network, 1/8 of the channels
    options = {"spatial_dims": 3, "n_input_channels": 1, "num_classes": 2, "shortcut_type": "A",
               "widen_factor": WIDTH}
    return resnet18(**{**options, **kwargs})


def _medicalnet_file(path, source: torch.nn.Module):
    """Write a checkpoint laid out as MedicalNet's: module. prefixes, conv_seg head, no fc."""
    state = {f"module.{k}": v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    state["module.conv_seg.0.weight"] = torch.randn(32, int(512 * WIDTH), 3, 3, 3)
    state["module.conv_seg.1.weight"] = torch.ones(32)
    state["module.conv_seg.1.bias"] = torch.zeros(32)
    torch.save({"state_dict": state}, path)
    return path


@pytest.fixture(scope="module")
def source() -> torch.nn.Module:
    model = _resnet18(seed=1)
    with torch.no_grad():  # make running statistics differ from a fresh network's
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-1, 1)
    return model


def test_medicalnet_checkpoint_loads_encoder(tmp_path, source):
    path = _medicalnet_file(tmp_path / "resnet_18_23dataset.pth", source)
    target = _resnet18(seed=2)
    fc_before = target.fc.weight.detach().clone()
    report = load_medicalnet(target, path)

    expected = source.state_dict()
    got = target.state_dict()
    encoder = [k for k in expected if not k.startswith("fc.")]
    for name in encoder:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)
    torch.testing.assert_close(target.fc.weight, fc_before)  # head untouched
    assert set(report.loaded) == set(encoder)
    assert set(report.missing) == {"fc.weight", "fc.bias"}
    assert set(report.dropped) == {"conv_seg.0.weight", "conv_seg.1.weight", "conv_seg.1.bias"}
    assert report.unexpected == ()
    assert report.shape_mismatches == ()
    assert not report.downsample_differs
    assert "missing (fc.*)" in report.summary()


def test_file_matching_nothing_names_the_file(tmp_path):
    path = tmp_path / "other_net.pth"
    torch.save({"state_dict": {"module.encoder.block.weight": torch.zeros(3, 3)}}, path)
    with pytest.raises(InputError, match=re.escape("other_net.pth")):
        load_medicalnet(_resnet18(seed=0), path)


UNPICKLED: list[str] = []


def _record(text: str) -> str:
    UNPICKLED.append(text)
    return text


class _Payload:
    """Runs code when unpickled, as a malicious checkpoint would."""

    def __reduce__(self):
        return _record, ("code ran",)


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match=re.escape("weights.pth")):
        load_medicalnet(_resnet18(seed=0), path)


def test_pickled_objects_are_never_unpickled(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {"conv1.weight": _Payload()}}, path)
    with pytest.raises(InputError, match="unsafe"):
        load_medicalnet(_resnet18(seed=0), path)
    assert UNPICKLED == []


@pytest.mark.parametrize("obj", [torch.zeros(3), [torch.zeros(3)], {"state_dict": {}}])
def test_non_state_dicts_are_refused(tmp_path, obj):
    path = tmp_path / "weights.pth"
    torch.save(obj, path)
    with pytest.raises(InputError, match="expected a state dict"):
        load_medicalnet(_resnet18(seed=0), path)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_medicalnet(_resnet18(seed=0), tmp_path / "absent.pth")


def test_shortcut_type_mismatch_is_reported(tmp_path, source):
    """An A-type (parameter-free shortcut) file into a B-type model leaves the 1x1x1
    shortcut convolutions missing; the B-type file into an A-type model has them unexpected."""
    path = _medicalnet_file(tmp_path / "a.pth", source)
    report = load_medicalnet(_resnet18(seed=0, shortcut_type="B"), path)
    assert report.downsample_differs
    assert "layer2.0.downsample.0.weight" in report.missing
    assert "shortcut_type" in report.summary()

    b_path = _medicalnet_file(tmp_path / "b.pth", _resnet18(seed=3, shortcut_type="B"))
    report = load_medicalnet(_resnet18(seed=0), b_path)
    assert "layer4.0.downsample.1.running_var" in report.unexpected
    assert report.downsample_differs


def test_shape_mismatches_are_reported_and_not_copied(tmp_path, source):
    path = _medicalnet_file(tmp_path / "one_channel.pth", source)
    target = _resnet18(seed=0, n_input_channels=2)  # e.g. T1w + FLAIR
    conv1_before = target.conv1.weight.detach().clone()
    report = load_medicalnet(target, path)
    assert [m.name for m in report.shape_mismatches] == ["conv1.weight"]
    assert report.shape_mismatches[0].file_shape == (8, 1, 7, 7, 7)
    assert report.shape_mismatches[0].model_shape == (8, 2, 7, 7, 7)
    torch.testing.assert_close(target.conv1.weight, conv1_before)
    assert "layer1.0.conv1.weight" in report.loaded
    assert "conv1.weight" not in report.missing

    deeper = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2, shortcut_type="A",
                      widen_factor=WIDTH)
    report = load_medicalnet(deeper, path)  # resnet18 file into resnet10: layer*.1 unexpected
    assert "layer1.1.conv1.weight" in report.unexpected


def test_medicalnet_args_follow_depth():
    assert medicalnet_resnet_args(18)["shortcut_type"] == "A"
    assert medicalnet_resnet_args(50) == {
        "shortcut_type": "B", "bias_downsample": False, "n_input_channels": 1,
    }


def test_encoder_round_trip_through_safetensors(tmp_path, source):
    path = save_encoder(source, tmp_path / "encoder.safetensors")
    target = _resnet18(seed=5)
    report = load_encoder(target, path)
    torch.testing.assert_close(target.layer3[0].conv1.weight, source.layer3[0].conv1.weight)
    assert set(report.missing) == {"fc.weight", "fc.bias"}
    assert report.dropped == ()

    wrapped = torch.nn.Module()
    wrapped.encoder = source
    prefixed = save_encoder(wrapped, tmp_path / "segmenter.safetensors", exclude=("encoder.fc.",))
    assert load_encoder(_resnet18(seed=6), prefixed, prefix="encoder.").loaded == report.loaded
    with pytest.raises(InputError, match=re.escape("segmenter.safetensors")):
        load_encoder(_resnet18(seed=6), prefixed)  # prefix not stripped: nothing matches

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match=re.escape("broken.safetensors")):
        load_encoder(_resnet18(seed=0), broken)
