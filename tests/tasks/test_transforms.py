"""lesionkit's own TorchIO transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchio as tio

from lesionkit.tasks.task import Transform
from lesionkit.tasks.transforms import (
    RandomExtracerebral,
    RandomRot90,
    RandomThickSlices,
    RandomUnsuppressedCSF,
)


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


def _head() -> tio.Subject:
    """A z-scored FLAIR at 2 mm: a brain ball of tissue (z 0), a CSF ball inside it (z -4),
    a lesion (z 3) in the tissue, background -4 outside the brain mask."""
    grid = torch.stack(torch.meshgrid(*(torch.arange(32.0),) * 3, indexing="ij"))
    radius = ((grid - 15.5) ** 2).sum(0).sqrt()
    brain = radius < 10
    csf = ((grid - torch.tensor([15.5, 15.5, 12.0])[:, None, None, None]) ** 2).sum(0) < 9
    lesion = ((grid - torch.tensor([15.5, 20.0, 19.0])[:, None, None, None]) ** 2).sum(0) < 4
    flair = torch.full((32, 32, 32), -4.0)
    flair[brain] = 0.0
    flair[csf] = -4.0
    flair[lesion] = 3.0
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    return tio.Subject(
        flair=tio.ScalarImage(tensor=flair[None], affine=affine),
        t1w=tio.ScalarImage(tensor=flair[None].clone(), affine=affine),
        mask=tio.LabelMap(tensor=brain[None].to(torch.uint8), affine=affine),
        lesion=tio.LabelMap(tensor=lesion[None].to(torch.uint8), affine=affine))


def test_unsuppressed_csf_brightens_csf_only_and_leaves_the_truth():
    changed_somewhere = False
    for seed in range(10):
        torch.manual_seed(seed)
        subject = _head()
        before = subject.flair.data.clone()
        out = RandomUnsuppressedCSF(include=("flair",), sigma_mm=(6.0, 15.0))(subject)
        change = out.flair.data - before
        csf = (before <= -2.0) & (subject.mask.data > 0)
        assert change.min() >= 0  # only brighter
        assert torch.all(change[~csf] == 0)  # tissue, lesion and background untouched
        assert out.flair.data[csf].max() <= 3.0  # at most lesion brightness
        assert torch.equal(out.t1w.data, before)  # not named
        assert torch.equal(out.lesion.data, subject.lesion.data)
        changed_somewhere |= bool((change[csf] > 1.0).any())
    assert changed_somewhere


def test_unsuppressed_csf_needs_the_brain_mask_and_sane_settings():
    subject = _head()
    subject.remove_image("mask")
    with pytest.raises(ValueError, match="brain mask 'mask'"):
        RandomUnsuppressedCSF(include=("flair",))(subject)
    with pytest.raises(ValueError, match="below the brain median"):
        RandomUnsuppressedCSF(csf_below=0.5)
    with pytest.raises(ValueError, match="width range"):
        RandomUnsuppressedCSF(sigma_mm=(5.0, 2.0))


def test_extracerebral_fills_a_shell_outside_the_mask_only():
    widths = []
    for seed in range(10):
        torch.manual_seed(seed)
        subject = _head()
        before = subject.flair.data.clone()
        out = RandomExtracerebral(include=("flair",), width_mm=(4.0, 8.0))(subject)
        changed = (out.flair.data != before)[0]
        inside = subject.mask.data[0] > 0
        assert not changed[inside].any()  # the brain and its lesion untouched
        assert torch.equal(out.t1w.data, before) and torch.equal(out.lesion.data,
                                                                 subject.lesion.data)
        values = out.flair.data[0][changed]
        assert values.min() >= -4.0 and values.max() <= 3.0
        grid = torch.stack(torch.meshgrid(*(torch.arange(32.0),) * 3, indexing="ij"))
        radius_mm = 2 * ((grid - 15.5) ** 2).sum(0).sqrt()
        widths.append(float(radius_mm[changed].max()) - 20.0)
        assert widths[-1] <= 8.0 + 2 * 3 ** 0.5  # within the drawn width (and a voxel)
    assert max(widths) > 4.0  # a shell that reaches millimetres beyond the brain


def test_extracerebral_refuses_bad_settings_and_a_missing_mask():
    with pytest.raises(ValueError, match="width_mm"):
        RandomExtracerebral(width_mm=(0.0, 2.0))
    subject = _head()
    subject.remove_image("mask")
    with pytest.raises(ValueError, match="brain mask 'mask'"):
        RandomExtracerebral(include=("flair",))(subject)
