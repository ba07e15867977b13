"""Training augmentation: names, left-right flips in world space, masks moving with images."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torchio as tio

from lesionkit.augment import AUGMENTATIONS, augmentation
from lesionkit.tasks import get_task


def _lateral_subject() -> tio.Subject:
    """A volume bright only on the subject's left (RAS x < 0) with a matching mask."""
    image = torch.zeros(1, 16, 12, 10)
    image[:, :4] = 1.0
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-15.0, -11.0, -9.0)
    return tio.Subject(flair=tio.ScalarImage(tensor=image, affine=affine),
                       mask=tio.LabelMap(tensor=(image > 0).to(torch.uint8), affine=affine),
                       group=1)


def test_augmentation_flips_left_right_and_moves_masks_with_images() -> None:
    from lesionkit.data import WholeVolumes, training_dataset

    task = get_task("fcd-classify")
    assert task.sampler.augment == ("flip", "affine")
    flip_only = replace(task, sampler=replace(task.sampler, augment=("flip",)))
    subject = _lateral_subject()
    torch.manual_seed(0)
    dataset = training_dataset([subject], flip_only, augment=True)
    assert isinstance(dataset, WholeVolumes)
    sides = set()
    for _ in range(20):
        item = dataset[0]
        assert item["input"].shape == (1, 16, 12, 10) and int(item["target"]) == 1
        sides.add("left" if item["input"][0, :4].sum() > 0 else "right")
    assert sides == {"left", "right"}  # flipped about half the time, never elsewhere
    plain = training_dataset([subject], flip_only)  # validation: untouched
    assert all(torch.equal(plain[0]["input"], subject["flair"].data) for _ in range(5))
    moved = augmentation(replace(task, sampler=replace(task.sampler, augment=("affine",))))(
        subject)
    inside = moved["mask"].data[0] > 0
    assert moved["flair"].data[0][inside].min() > 0.3  # the mask followed the image
    assert set(AUGMENTATIONS) >= {"flip", "affine", "bias", "noise"}


def test_unknown_augmentation_and_grid_augmentation_are_refused() -> None:
    from lesionkit.data import training_dataset

    task = get_task("enhance-r1")
    with pytest.raises(ValueError, match="augmentations from"):
        augmentation(replace(task, sampler=replace(task.sampler, augment=("warp",))))
    grid = replace(task, sampler=replace(task.sampler, augment=("flip",)))
    with pytest.raises(ValueError, match="grid sampler"):
        training_dataset([], grid, augment=True)
