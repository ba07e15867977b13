"""Subject-level splits, normalisation fitted on training subjects, grid patches."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torchio as tio

from lesionkit.bids import BIDSDataset
from lesionkit.data import (
    GridPatches,
    available_subjects,
    fit_normalisation,
    invert,
    kfold_subjects,
    load_subject,
    normalise,
    split_subjects,
    training_subjects,
)
from lesionkit.io import InputError
from lesionkit.tasks import get_task

SUBJECTS = [f"{i:02d}" for i in range(1, 11)]


def test_split_is_disjoint_complete_and_seeded() -> None:
    split = split_subjects(SUBJECTS, seed=3)
    assert not set(split["train"]) & set(split["validation"])
    assert sorted(split["train"] + split["validation"]) == SUBJECTS
    assert split == split_subjects(list(reversed(SUBJECTS)), seed=3)
    assert split != split_subjects(SUBJECTS, seed=4)


def test_kfold_validates_every_subject_once() -> None:
    folds = kfold_subjects(SUBJECTS, folds=5, seed=0)
    validated = [s for fold in folds for s in fold["validation"]]
    assert sorted(validated) == SUBJECTS
    for fold in folds:
        assert not set(fold["train"]) & set(fold["validation"])
        assert len(fold["train"]) == 8


def test_too_few_subjects_is_an_input_error() -> None:
    with pytest.raises(InputError, match="at least 2"):
        split_subjects(["01"], seed=0)
    with pytest.raises(InputError, match="3 folds"):
        kfold_subjects(["01", "02"], folds=3, seed=0)


def _subject(value: float, mask: np.ndarray) -> tio.Subject:
    rng = np.random.default_rng(int(value))
    data = torch.from_numpy((value + rng.standard_normal(mask.shape) * mask)[None]).float()
    return tio.Subject(r1_3t=tio.ScalarImage(tensor=data), r1_7t=tio.ScalarImage(tensor=data * 2),
                       mask=tio.LabelMap(tensor=torch.from_numpy(mask[None]).to(torch.uint8)))


def test_normalisation_uses_only_given_subjects_inside_mask() -> None:
    task = get_task("enhance-r1")
    mask = np.zeros((8, 8, 8), bool)
    mask[2:6, 2:6, 2:6] = True
    train = [_subject(1.0, mask), _subject(3.0, mask)]
    stats = fit_normalisation(train, task)
    assert stats["r1_3t"]["shift"] == pytest.approx(2.0, abs=0.1)  # background ignored
    assert stats["r1_7t"]["shift"] == pytest.approx(4.0, abs=0.2)
    outlier = _subject(100.0, mask)
    assert fit_normalisation([*train], task) == stats
    assert fit_normalisation([*train, outlier], task) != stats


def test_normalise_then_invert_is_identity() -> None:
    mask = np.ones((4, 4, 4), bool)
    subject = _subject(2.0, mask)
    stats = {"r1_3t": {"shift": 2.0, "scale": 0.5}}
    normalised = normalise(subject, stats)
    back = invert(normalised["r1_3t"].data.numpy(), stats, "r1_3t")
    np.testing.assert_allclose(back, subject["r1_3t"].data.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(normalised["r1_7t"].data, subject["r1_7t"].data)


def test_grid_patches_drop_background() -> None:
    task = get_task("enhance-r1")
    task = replace(task, sampler=replace(task.sampler, patch_size=(4, 4, 4), step=(4, 4, 4)))
    mask = np.zeros((8, 8, 8), bool)
    mask[:4, :4, :] = True  # 2 of the 8 patches inside
    subject = _subject(1.0, mask)
    assert len(GridPatches([subject], task)) == 2
    keep_all = replace(task, sampler=replace(task.sampler, max_background=1.0))
    patches = GridPatches([subject], keep_all)
    assert len(patches) == 8
    item = patches[0]
    assert item["input"].shape == item["target"].shape == (1, 4, 4, 4)


def test_load_subject_keeps_grid_and_mask(enhance_dataset: Path, affine: np.ndarray) -> None:
    task = get_task("enhance-r1")
    dataset = BIDSDataset(enhance_dataset)
    assert available_subjects(dataset, task) == ["01", "02", "03", "04"]
    subject = load_subject(dataset, "02", task)
    assert set(subject.get_images_dict(intensity_only=False)) == {"r1_3t", "r1_7t", "mask"}
    np.testing.assert_allclose(subject["r1_3t"].affine, affine, atol=1e-6)
    assert subject["mask"].data.sum() > 0
    assert subject["subject_id"] == "02"


def test_training_subjects_follow_train_on(enhance_dataset: Path) -> None:
    table = (enhance_dataset / "participants.tsv").read_text()
    (enhance_dataset / "participants.tsv").write_text(table.replace("sub-03\tcontrol",
                                                                    "sub-03\tfcd"))
    dataset = BIDSDataset(enhance_dataset)
    task = get_task("enhance-r1")
    assert training_subjects(dataset, task) == ["01", "02", "04"]
    assert training_subjects(dataset, replace(task, train_on={})) == ["01", "02", "03", "04"]
    with pytest.raises(InputError, match="'site' column"):
        training_subjects(dataset, replace(task, train_on={"site": ("a",)}))


def test_oversampled_patches_hold_the_label_more_often() -> None:
    from lesionkit.data import QueuePatches
    from lesionkit.tasks.task import ImageSpec, OutputSpec, SamplerSpec, Task

    lesion = np.zeros((24, 24, 8), np.float32)
    lesion[2:4, 2:4, 1] = 1.0
    subject = tio.Subject(
        x=tio.ScalarImage(tensor=torch.rand(1, 24, 24, 8), affine=np.eye(4)),
        lesion=tio.LabelMap(tensor=torch.from_numpy(lesion[None]), affine=np.eye(4)),
        mask=tio.LabelMap(tensor=torch.ones(1, 24, 24, 8, dtype=torch.uint8), affine=np.eye(4)))
    task = Task("t", "t", (ImageSpec("x", "x"),), (ImageSpec("lesion", "mask"),),
                (OutputSpec("mask", "p", "1"),), "unet",
                sampler=SamplerSpec("label", (8, 8, 1), samples_per_volume=400))
    rates = []
    for factor in (1.0, 5.0):
        torch.manual_seed(0)
        sampler = replace(task.sampler, oversample="lesion", oversample_factor=factor)
        patches = QueuePatches([subject], replace(task, sampler=sampler))
        rates.append(np.mean([patches[i]["target"].max().item() > 0.5 for i in range(400)]))
    assert rates[0] < 0.03 and 0.025 < rates[1] < 0.09, rates


def test_log_zscore_floors_fits_in_log_space_and_inverts() -> None:
    from lesionkit.data import apply_normalisation
    from lesionkit.tasks.task import ImageSpec, OutputSpec, Task

    rng = np.random.default_rng(0)
    t2s = np.exp(rng.normal(np.log(60.0), 0.5, (10, 10, 10))).astype(np.float32)
    t2s[0, 0, :] = 2500.0  # CSF tail
    t2s[-1, -1, -1] = 0.0  # a voxel the matching left empty
    subject = tio.Subject(t2s=tio.ScalarImage(tensor=torch.from_numpy(t2s[None])),
                          x=tio.ScalarImage(tensor=torch.from_numpy(t2s[None])),
                          mask=tio.LabelMap(tensor=torch.ones(1, 10, 10, 10, dtype=torch.uint8)))
    task = Task("t", "t", (ImageSpec("x", "x"),),
                (ImageSpec("t2s", "T2starmap", normalisation="log-zscore"),),
                (OutputSpec("T2starmap", "p", "ms", target="t2s"),), "unet")
    entry = fit_normalisation([subject], task)["t2s"]
    floor = np.percentile(t2s, 1)
    logs = np.log(np.maximum(t2s, floor))
    assert entry == pytest.approx({"shift": logs.mean(), "scale": logs.std(), "log_floor": floor},
                                  rel=1e-5)
    z = normalise(subject, {"t2s": entry})["t2s"].data.numpy()[0]
    assert np.abs(z).max() < 10  # linear z-scores reach about 25 here
    np.testing.assert_allclose(z, apply_normalisation(t2s, entry), rtol=1e-5, atol=1e-5)
    back = invert(z, {"t2s": entry}, "t2s")
    np.testing.assert_allclose(back, np.maximum(t2s, floor), rtol=1e-4)
