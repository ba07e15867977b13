"""Per-lesion features: cached once under derivatives, invalidated by settings, version and
sources, carried by training examples and passed to the network at prediction."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import TOY_LESION_TASK, write_task_dataset
from lesionkit.bids import BIDSDataset
from lesionkit.infer import predict
from lesionkit.io import load_volume
from lesionkit.lesion_features import cache_path, crop_margin, subject_features
from lesionkit.tasks.strategies import ClassBalancedBatches
from lesionkit.tasks.task import LesionFeatures
from lesionkit.training import train

CALLS: list[int] = []
SEEN: dict[str, list[int]] = {"train": [], "eval": []}


def toy_features(images: dict[str, np.ndarray], mask: np.ndarray, spacing: tuple,
                 scale: float = 1.0) -> dict[str, float]:
    """Mean and maximum of the image inside the lesion, times ``scale``, and its voxels."""
    CALLS.append(1)
    inside = images["image"][0][mask]
    return {"mean": scale * float(inside.mean()), "max": scale * float(inside.max()),
            "voxels": float(mask.sum())}


def toy_version() -> str:
    return "1.0"


def other_version() -> str:
    return "2.0"


class ToyNet(nn.Module):
    """Pooled patch and the features, concatenated into a linear head; refuses to run
    without features, and records how many rows it scored in each mode."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.head = nn.Linear(in_channels + 3, out_channels)

    def forward(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        SEEN["train" if self.training else "eval"].append(len(features))
        return self.head(torch.cat([x.mean((2, 3, 4)), features / 100.0], 1))


def toy_network(in_channels: int, out_channels: int, **_: object) -> nn.Module:
    return ToyNet(in_channels, out_channels)


FEATURES = LesionFeatures("toy", toy_features, toy_version, settings={"scale": 1.0})
TASK = replace(TOY_LESION_TASK, lesion_features=FEATURES, network_factory=toy_network,
               batch_size=3)


def test_features_are_cached_reused_and_invalidated(tmp_path: Path) -> None:
    data = write_task_dataset(tmp_path / "bids", TASK, subjects=1)
    dataset = BIDSDataset(data)
    CALLS.clear()
    first = subject_features(dataset, "01", TASK)
    assert sorted(first) == [1, 2, 3, 4] and len(CALLS) == 4
    path = cache_path(data, "01", "toy")
    assert path.is_file() and path.parts[-4] == "lesionkit-features"
    assert list(pd.read_csv(path, sep="\t").columns) == ["label", "mean", "max", "voxels"]
    again = subject_features(dataset, "01", TASK)
    assert len(CALLS) == 4  # read from the cache
    np.testing.assert_array_equal(again[2], first[2])
    doubled = replace(TASK, lesion_features=replace(FEATURES, settings={"scale": 2.0}))
    np.testing.assert_allclose(subject_features(dataset, "01", doubled)[2][:2], 2 * first[2][:2],
                               rtol=1e-6)
    assert len(CALLS) == 8  # settings changed: recomputed
    newer = replace(TASK, lesion_features=replace(FEATURES, version=other_version))
    subject_features(dataset, "01", newer)
    assert len(CALLS) == 12  # library version changed: recomputed
    subject_features(dataset, "01", newer)
    assert len(CALLS) == 12
    image = dataset.get("01", "T2w").path
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    subject_features(dataset, "01", newer)
    assert len(CALLS) == 16  # source file changed: recomputed
    wider = replace(TASK, lesion_features=replace(FEATURES, version=other_version, margin_mm=4.0))
    subject_features(dataset, "01", wider)
    assert len(CALLS) == 20  # the crop's margin changed: recomputed


@pytest.mark.parametrize(("spacing", "expected"), [
    ((1.0, 1.0, 1.0), (5, 5, 5)),
    ((0.65, 0.65, 0.65), (8, 8, 8)),  # 5 mm on fine voxels takes more of them
    ((0.72, 0.72, 3.0), (7, 7, 2)),   # thick slices keep the voxel floor
    ((0.5, 0.5, 5.0), (10, 10, 2)),
])
def test_crop_margin_reaches_a_distance_in_mm(spacing: tuple, expected: tuple) -> None:
    spec = replace(FEATURES, margin=2, margin_mm=5.0)
    assert crop_margin(spec, spacing) == expected
    assert crop_margin(FEATURES, spacing) == (2, 2, 2)  # no distance asked: voxels only


def test_crops_reach_the_margin_in_mm(tmp_path: Path) -> None:
    """Each lesion's crop is its bounding box grown by the margin in mm on each axis
    (voxels of 1, 1.1 and 0.9 mm: 3, 3 and 4 voxels for 3 mm), cut at the volume's edge."""
    shapes: list[tuple[int, ...]] = []

    def crop_shape(images: dict[str, np.ndarray], mask: np.ndarray, spacing: tuple
                   ) -> dict[str, float]:
        shapes.append(mask.shape)
        return {"voxels": float(mask.sum())}

    spec = LesionFeatures("crop", crop_shape, toy_version, margin=1, margin_mm=3.0)
    task = replace(TASK, lesion_features=spec)
    data = write_task_dataset(tmp_path / "bids", task, subjects=1)
    dataset = BIDSDataset(data)
    lesion_map = dataset.get_run("01", task.lesions.suffix, None,
                                 **task.lesions.query(None)).path
    labels_volume = load_volume(lesion_map, kind="label")
    margin = crop_margin(spec, labels_volume.spacing)
    assert margin == (3, 3, 4)
    labels = np.rint(labels_volume.data).astype(int)
    expected = []
    for label in range(1, labels.max() + 1):
        found = np.argwhere(labels == label)
        low = np.maximum(found.min(axis=0) - margin, 0)
        high = np.minimum(found.max(axis=0) + 1 + np.array(margin), labels.shape)
        expected.append(tuple(int(v) for v in high - low))
    subject_features(dataset, "01", task)
    assert shapes == expected


def test_features_are_computed_in_the_task_unit(tmp_path: Path) -> None:
    task = replace(TASK, inputs=(replace(TASK.inputs[0], unit="ppb"),))
    data = write_task_dataset(tmp_path / "bids", task, subjects=1)
    dataset = BIDSDataset(data)
    CALLS.clear()
    in_ppb = subject_features(dataset, "01", task)
    image = dataset.get("01", "T2w")
    image.sidecar.write_text('{"Units": "ppm"}')  # the same numbers, said to be ppm
    in_ppm = subject_features(dataset, "01", task)
    assert len(CALLS) == 8  # the unit changed: recomputed, not read from the cache
    np.testing.assert_allclose(in_ppm[2][:2], 1000 * in_ppb[2][:2], rtol=1e-6)
    assert in_ppm[2][2] == in_ppb[2][2]  # voxel counts do not scale


def test_class_balanced_batches_hold_the_positives() -> None:
    positive = np.zeros(40, bool)
    positive[[3, 9, 17, 30, 31]] = True
    sampler = ClassBalancedBatches(positive, batch_size=8, positives=3, items=40, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5
    assert all(len(b) == 8 and positive[b].sum() == 3 for b in batches)
    drawn = [i for b in batches for i in b if positive[i]]
    assert set(drawn) == set(np.flatnonzero(positive))  # every positive recurs in turn
    assert all(len(set(b)) == 8 for b in batches)
    sampler.set_epoch(3)
    third = list(sampler)
    assert third != batches
    resumed = ClassBalancedBatches(positive, batch_size=8, positives=3, items=40, seed=0)
    resumed.set_epoch(3)  # a training resumed at epoch 3 draws the same batches
    assert list(resumed) == third


def test_features_travel_to_training_and_prediction(tmp_path: Path) -> None:
    task = replace(TASK, sampler=replace(TASK.sampler, positives_per_batch=1))
    data = write_task_dataset(tmp_path / "bids", task, subjects=3)
    SEEN["train"].clear()
    SEEN["eval"].clear()
    model_dir = train(task, data, tmp_path / "model", epochs=1, progress=False, device="cpu",
                      splits=[{"train": ["01", "02"], "validation": ["03"]}])
    # 8 training lesions in batches of 3 (one bright each); 4 validation lesions
    assert sum(SEEN["train"]) == 9 and max(SEEN["train"]) == 3
    assert sum(SEEN["eval"]) == 4
    SEEN["eval"].clear()
    predictions = tmp_path / "predictions"
    predict(model_dir, data, tta=1, device="cpu", progress=False, out_dir=predictions,
            trusted=(__name__,))
    assert sum(SEEN["eval"]) == 12  # every lesion of the 3 subjects, with its features
    written = BIDSDataset(predictions)
    for subject in ("01", "02", "03"):
        table = pd.read_csv(written.get(subject, "lesions", extension=".tsv").path, sep="\t")
        assert list(table["label"]) == [1, 2, 3, 4]
        spec = task.outputs[-1]
        per_lesion = load_volume(written.get(subject, spec.suffix, desc=spec.desc,
                                             **dict(spec.entities)).path).data
        labels = load_volume(BIDSDataset(data).get(subject, "dseg", derivatives="manual",
                                                   desc="lesions").path, kind="label").data
        for label, probability in zip(table["label"], table["probability"], strict=True):
            assert per_lesion[np.rint(labels) == label] == pytest.approx(probability, abs=1e-6)
        assert (per_lesion[labels == 0] == 0).all()
