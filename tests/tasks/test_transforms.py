"""lesionkit's own TorchIO transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchio as tio

from lesionkit.tasks.task import Transform
from lesionkit.tasks.transforms import RandomRot90, RandomThickSlices


def _subject() -> tio.Subject:
    image = torch.arange(2 * 4 * 4 * 3, dtype=torch.float32).reshape(2, 4, 4, 3)
    label = (image[:1] % 5 == 0).to(torch.uint8)
    return tio.Subject(image=tio.ScalarImage(tensor=image), label=tio.LabelMap(tensor=label))


def test_rot90_turns_every_image_alike_by_quarter_turns_in_its_plane():
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        subject = _subject()
        out = Transform("RandomRot90", {"axes": (0, 1), "probability": 0.75}).build()(subject)
        image, label = out["image"].data, out["label"].data
        turns = [k for k in range(4) if torch.equal(image, torch.rot90(subject["image"].data,
                                                                        k, (1, 2)))]
        assert len(turns) == 1  # a quarter turn about the third axis, no interpolation
        assert torch.equal(label, torch.rot90(subject["label"].data, turns[0], (1, 2)))
        seen.add(turns[0])
    assert seen == {0, 1, 2, 3}


def test_rot90_with_probability_zero_changes_nothing():
    subject = _subject()
    out = RandomRot90(probability=0.0)(subject)
    assert torch.equal(out["image"].data, subject["image"].data)
    np.testing.assert_array_equal(out["image"].affine, subject["image"].affine)


@pytest.mark.parametrize("axes", [(0,), (1, 1), (0, 3)])
def test_rot90_needs_two_spatial_axes(axes):
    with pytest.raises(ValueError, match="two different spatial axes"):
        RandomRot90(axes=axes)


def test_rot90_refuses_a_plane_that_is_not_square():
    subject = _subject()  # 4 x 4 x 3: square in (0, 1), not in (1, 2)
    with pytest.raises(ValueError, match="equal sizes"):
        RandomRot90(axes=(1, 2), probability=1.0)(subject)


def _spot() -> tio.Subject:
    """A one-voxel lesion on a FLAIR, the same spot on a second image and as a label."""
    image = torch.zeros(1, 24, 24, 24)
    image[0, 12, 12, 12] = 1.0
    return tio.Subject(flair=tio.ScalarImage(tensor=image),
                       gm=tio.ScalarImage(tensor=image.clone()),
                       lesion=tio.LabelMap(tensor=image.to(torch.uint8)))


def test_thick_slices_fade_a_small_lesion_by_partial_volume_and_keep_its_signal():
    for seed in range(10):
        torch.manual_seed(seed)
        subject = _spot()
        out = RandomThickSlices(axes=(2,), thickness=(4.0, 4.0), include=("flair",))(subject)
        flair = out["flair"].data
        assert flair.shape == subject["flair"].shape
        np.testing.assert_array_equal(out["flair"].affine, subject["flair"].affine)
        assert 0.05 < float(flair.max()) < 0.5  # fainter, not kept whole nor erased
        assert float(flair.sum()) == pytest.approx(1.0, abs=0.1)  # the signal is spread
        assert float(flair[0, 12, 12].sum()) == pytest.approx(float(flair.sum()), abs=1e-4)
        assert torch.equal(out["gm"].data, subject["gm"].data)  # not named: untouched
        assert torch.equal(out["lesion"].data, subject["lesion"].data)  # the truth stays


def test_torchio_anisotropy_would_erase_the_same_lesion():
    """Why RandomThickSlices exists: nearest-neighbour thick slices keep or drop a spot."""
    for seed in range(10):
        torch.manual_seed(seed)
        out = tio.RandomAnisotropy(axes=(2,), downsampling=(4.0, 4.0))(_spot())
        peak = float(out["flair"].data.max())
        assert peak == 0.0 or peak > 0.9


def test_thick_slices_no_thicker_than_the_voxels_change_nothing():
    subject = _spot()
    out = RandomThickSlices(thickness=(0.5, 1.0))(subject)
    assert torch.equal(out["flair"].data, subject["flair"].data)


@pytest.mark.parametrize("kwargs", [{"axes": (3,)}, {"axes": ()}, {"thickness": (5.0, 3.0)},
                                    {"thickness": (0.0, 3.0)}])
def test_thick_slices_refuse_a_bad_setting(kwargs):
    with pytest.raises(ValueError, match="expected"):
        RandomThickSlices(**kwargs)
