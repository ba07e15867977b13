"""Transfer arms: segmentation pretraining of the ResNet encoder, and initialisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import brain_mask, write_image
from lesionkit.bids import write_dataset_description
from lesionkit.models import build_network
from lesionkit.pretrained import save_encoder
from lesionkit.tasks.task import ImageSpec
from lesionkit.transfer import ResNetSegmenter, initialise, pretrain_encoder

TINY = {"widen_factor": 0.25}


@pytest.mark.parametrize("name", ["resnet10", "resnet18", "resnet50"])
def test_segmenter_gives_one_logit_per_input_voxel(name: str) -> None:
    segmenter = ResNetSegmenter(build_network(name, 1, 2, **TINY))
    x = torch.randn(2, 1, 18, 21, 16)
    assert segmenter(x).shape == (2, 1, 18, 21, 16)


def _segmentation_dataset(root: Path, subjects: int = 2) -> Path:
    """Tiny FLAIR images, each with a bright blob that is its lesion mask."""
    rng = np.random.default_rng(3)
    write_dataset_description(root, "tiny segmentation dataset")
    mask = brain_mask()
    for number in range(1, subjects + 1):
        subject = f"{number:02d}"
        lesion = np.zeros(mask.shape, np.float32)
        corner = rng.integers(4, 9, size=3)
        lesion[tuple(slice(c, c + 3) for c in corner)] = 1.0
        flair = (1.0 + 0.1 * rng.standard_normal(mask.shape) + 2.0 * lesion) * mask
        write_image(root, subject, ImageSpec("flair", "FLAIR"), flair)
        write_image(root, subject, ImageSpec("b", "mask", derivatives="phantom",
                                             entities=(("desc", "brain"),)), mask * 1.0)
        write_image(root, subject, ImageSpec("l", "mask", derivatives="phantom",
                                             entities=(("label", "lesion"),)), lesion)
    return root


def test_pretrain_writes_an_encoder_that_fits_the_classifier(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    data = _segmentation_dataset(tmp_path / "seg")
    path = pretrain_encoder(data, tmp_path / "enc.safetensors", "resnet10", TINY, epochs=1,
                            patch_size=8, patches_per_subject=2, progress=False)
    state = load_file(str(path))
    classifier = build_network("resnet10", 1, 2, **TINY)
    expected = {k: v.shape for k, v in classifier.state_dict().items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in state.items()} == expected
    fresh = build_network("resnet10", 1, 2, **TINY).state_dict()
    assert not torch.equal(state["conv1.weight"], fresh["conv1.weight"])  # trained, not fresh
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["Subjects"] == 2 and sidecar["Suffix"] == "FLAIR"
    assert np.isfinite(sidecar["FinalTrainLoss"])


def test_pretrain_refuses_a_dataset_without_lesions(tmp_path: Path) -> None:
    from lesionkit.io import InputError

    root = tmp_path / "empty"
    write_dataset_description(root, "no lesions")
    write_image(root, "01", ImageSpec("flair", "FLAIR"), brain_mask() * 1.0)
    with pytest.raises(InputError, match="label-lesion_mask"):
        pretrain_encoder(root, tmp_path / "enc.safetensors", "resnet10", TINY, progress=False)


def test_scratch_arm_leaves_the_network_alone() -> None:
    network = build_network("resnet10", 1, 2, **TINY)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    assert initialise(network, "scratch") is None
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())


def test_unknown_arm_or_missing_weights_are_refused() -> None:
    network = build_network("resnet10", 1, 2, **TINY)
    with pytest.raises(ValueError, match="unknown transfer arm"):
        initialise(network, "imagenet")
    with pytest.raises(ValueError, match="weights file"):
        initialise(network, "segmentation")


def test_segmentation_arm_loads_the_encoder_and_keeps_a_fresh_head(tmp_path: Path) -> None:
    source = build_network("resnet10", 1, 2, **TINY)
    torch.nn.init.normal_(source.conv1.weight)
    path = save_encoder(source, tmp_path / "enc.safetensors")
    target = build_network("resnet10", 1, 2, **TINY)
    head = target.fc.weight.clone()
    report = initialise(target, "segmentation", path)
    assert "conv1.weight" in report.loaded and "fc.weight" in report.missing
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    assert torch.equal(target.layer4[0].conv1.weight, source.layer4[0].conv1.weight)
    assert torch.equal(target.fc.weight, head)


def test_medicalnet_arm_loads_a_checkpoint_in_medicalnet_format(tmp_path: Path) -> None:
    source = build_network("resnet10", 1, 2)  # shortcut B, as MedicalNet's ResNet-10
    torch.nn.init.normal_(source.conv1.weight)
    state = {f"module.{k}": v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    state["module.conv_seg.0.weight"] = torch.zeros(32, 512, 2, 2, 2)  # segmentation head
    path = tmp_path / "resnet_10.pth"
    torch.save({"state_dict": state}, path)
    target = build_network("resnet10", 1, 2)
    report = initialise(target, "medicalnet", path)
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    assert report.dropped == ("conv_seg.0.weight",) and not report.unexpected


def test_a_pretrained_file_that_matches_nothing_is_refused(tmp_path: Path) -> None:
    from lesionkit.io import InputError

    path = save_encoder(torch.nn.Linear(3, 2), tmp_path / "other.safetensors")
    with pytest.raises(InputError, match="found none"):
        initialise(build_network("resnet10", 1, 2, **TINY), "segmentation", path)


def test_medicalnet_geometry_loads_without_shortcut_differences(tmp_path: Path) -> None:
    """conv1 stride 2 and bias-free B shortcuts, as MedicalNet's ResNet-10."""
    source = build_network("resnet10", 1, 2, conv1_t_stride=2, bias_downsample=False)
    assert source.conv1.stride == (2, 2, 2)
    state = {f"module.{k}": v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    path = tmp_path / "resnet_10_23dataset.pth"
    torch.save({"state_dict": state}, path)
    target = build_network("resnet10", 1, 2, conv1_t_stride=2, bias_downsample=False)
    report = initialise(target, "medicalnet", path)
    assert not report.downsample_differs and not report.shape_mismatches
    assert {k.split(".")[0] for k in report.missing} == {"fc"}
