"""Geometry of a subject's images: voxel sizes, overlap, one grid, co-registration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchio as tio
from scipy import ndimage

from lesionkit.geometry import (
    at_voxel_size,
    brain_coverage,
    canonical,
    check_extent,
    coverage_warning,
    median_voxel_size,
    misalignment_mm,
    onto_grid,
    overlap,
    registered,
    thickness_warning,
    voxel_size,
)
from lesionkit.io import InputError

AXIAL = np.diag([0.7, 0.8, 3.0, 1.0])


def _image(data: np.ndarray, affine: np.ndarray, label: bool = False) -> tio.Image:
    kind = tio.LabelMap if label else tio.ScalarImage
    return kind(tensor=torch.from_numpy(np.asarray(data, np.float32)[None]), affine=affine)


def _blob(shape=(40, 40, 30), centre=(20, 20, 15), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(float)
    head = sum(((g - c) / (0.35 * n)) ** 2 for g, c, n in zip(grid, centre, shape, strict=True))
    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape), 2.0)
    return np.where(head <= 1, 100 + 40 * texture / texture.std() + 50 * (head < 0.3), 0)


def test_voxel_size_follows_world_axes_whatever_the_storage_order() -> None:
    sagittal = AXIAL[:, [2, 0, 1, 3]]  # voxel axis 0 now runs along world z
    assert voxel_size(AXIAL) == pytest.approx((0.7, 0.8, 3.0))
    assert voxel_size(sagittal) == pytest.approx((0.7, 0.8, 3.0))
    assert median_voxel_size([AXIAL, AXIAL, np.eye(4)]) == (0.7, 0.8, 3.0)


def test_voxel_size_of_an_acquisition_oblique_by_45_degrees() -> None:
    """Both in-plane voxel axes lean equally toward x and y: each still gets one axis."""
    r = np.sqrt(0.5)  # cos and sin of 45 degrees as one number: a tie for every column
    rotation = np.array([[r, -r, 0], [r, r, 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.5, 1.0, 3.0])
    assert sorted(voxel_size(affine)[:2]) == pytest.approx([0.5, 1.0])
    assert voxel_size(affine)[2] == pytest.approx(3.0)
    check_extent("oblique.nii", (400, 200, 40), affine, (2.0, 2.0, 2.0))


def test_overlap_of_world_boxes() -> None:
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    assert overlap((10, 10, 10), np.eye(4), (10, 10, 10), np.eye(4)) == pytest.approx(1.0)
    assert overlap((11, 10, 10), np.eye(4), (11, 10, 10), shifted) == pytest.approx(0.5)
    far = np.eye(4)
    far[0, 3] = 100.0
    assert overlap((10, 10, 10), np.eye(4), (10, 10, 10), far) == 0.0


def test_canonical_and_voxel_size_resampling() -> None:
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])
    image = canonical(_image(np.arange(24.0).reshape(2, 3, 4), flipped))
    assert image.orientation == ("R", "A", "S")
    assert image.data[0, 0, 0, 0] == 12.0  # the last row of the first axis comes first
    same = _image(np.zeros((4, 4, 4)), np.eye(4))
    assert at_voxel_size(same, (1.0, 1.0, 1.0)) is same
    assert at_voxel_size(same, (2.0, 2.0, 2.0)).spatial_shape == (2, 2, 2)


def test_images_far_apart_need_registration() -> None:
    reference = _image(_blob(), np.eye(4))
    far = np.eye(4)
    far[:3, 3] = [60.0, 0.0, 0.0]
    with pytest.raises(InputError, match=r"t1\.nii: expected the same head as flair\.nii.*"
                                         r"overlap.*--register"):
        onto_grid(_image(_blob(), far), reference, "t1.nii", "flair.nii")
    label = onto_grid(_image(_blob() > 120, np.diag([0.5, 0.5, 0.5, 1.0]), label=True),
                      reference, "mask.nii", "flair.nii")
    assert label.spatial_shape == reference.spatial_shape
    assert set(np.unique(label.data.numpy())) <= {0.0, 1.0}  # labels stay labels


def test_registration_recovers_a_shift_the_affines_do_not_know() -> None:
    reference = _image(_blob(), np.eye(4))
    moved = _image(_blob(centre=(23, 18, 15)), np.eye(4))  # the head moved 3 mm and -2 mm
    before = np.corrcoef(moved.data.ravel(), reference.data.ravel())[0, 1]
    aligned = registered(moved, reference)
    after = np.corrcoef(aligned.data.ravel(), reference.data.ravel())[0, 1]
    assert aligned.spatial_shape == reference.spatial_shape
    assert after > 0.9 > before


def test_misalignment_estimate_finds_a_shift_between_two_contrasts() -> None:
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    head = _blob(shape=(48, 48, 40), centre=(24, 24, 20))
    reference = _image(head, affine)
    inverted = np.where(head > 0, 400 - 1.5 * head, 0)  # another contrast, one anatomy
    assert misalignment_mm(onto_grid(_image(inverted, affine), reference, "b", "a"),
                           reference) < 1.0
    shifted = affine.copy()
    shifted[:3, 3] = [6.0, -4.0, 0.0]  # 7.2 mm that the affines know nothing of
    moved = onto_grid(_image(inverted, shifted), reference, "b", "a")
    assert abs(misalignment_mm(moved, reference) - 7.2) < 1.0
    fine = np.diag([0.8, 0.8, 0.8, 1.0])  # the estimate runs on a 2 mm grid
    small = _image(ndimage.zoom(head, 2.5, order=1), fine)
    assert misalignment_mm(onto_grid(_image(ndimage.zoom(inverted, 2.5, order=1), fine),
                                     small, "b", "a"), small) < 1.0


def test_misalignment_is_not_estimated_on_a_grid_too_small_for_its_pyramid() -> None:
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    head = _blob(shape=(24, 24, 7), centre=(12, 12, 3))  # 7 voxels: level 4 would be empty
    reference = _image(head, affine)
    assert np.isnan(misalignment_mm(onto_grid(_image(head, affine), reference, "b", "a"),
                                    reference))


def test_an_input_too_thin_for_a_volume_is_refused() -> None:
    axial = np.diag([0.72, 0.72, 3.0, 1.0])
    check_extent("slab.nii", (320, 320, 12), axial, (2.0, 2.0, 2.0))  # 36 mm: a slab, kept
    check_extent("slab.nii", (320, 320, 4), axial, None)
    with pytest.raises(InputError, match=r"one\.nii: .*at least 4 voxels along each axis on "
                                         r"its grid, found 320 x 320 x 1 .* 230 x 230 x 3 mm"):
        check_extent("one.nii", (320, 320, 1), axial, (2.0, 2.0, 2.0))
    # The same slab read as 0.072 mm voxels (a header in cm): 1 slice on a 2 mm grid.
    with pytest.raises(InputError, match=r"at least 2 voxels along each axis on the model's "
                                         r"grid, found 11 x 11 x 1"):
        check_extent("cm.nii", (320, 320, 12), np.diag([0.072, 0.072, 0.3, 1.0]),
                     (2.0, 2.0, 2.0))
    # Sagittal storage: counts on the model's grid follow the world axes.
    sagittal = np.array([[0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])
    check_extent("sag.nii", (256, 256, 160), sagittal, (2.0, 2.0, 2.0))


def test_thick_slices_warn() -> None:
    assert thickness_warning("a.nii", (1.0, 1.0, 1.2), (1.0, 1.0, 1.0)) is None
    warning = thickness_warning("a.nii", (0.7, 0.7, 5.5), (1.0, 1.0, 1.0))
    assert "a 5.5 mm edge" in warning and "may be missed" in warning
    assert thickness_warning("a.nii", (0.7, 0.7, 5.5), None) is None


def test_brain_coverage_in_world_space_whatever_the_grids() -> None:
    mask = np.zeros((20, 20, 10), bool)
    mask[5:15, 5:15, 2:8] = True  # 10 x 10 x 6 voxels of 2 mm
    mask_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    # the same world box, on a 1 mm grid stored with its first axis flipped
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])
    flipped[0, 3] = 39.0
    assert brain_coverage(mask, mask_affine, (40, 40, 20), flipped) == 1.0
    # a field of view ending at x = 19.5 mm: mask voxel centres at x = 10, 12, ..., 28 mm
    assert brain_coverage(mask, mask_affine, (20, 40, 20), np.eye(4)) == pytest.approx(0.5)
    assert brain_coverage(np.zeros_like(mask), mask_affine, (1, 1, 1), np.eye(4)) == 1.0
    valid = np.ones((40, 40, 20), bool)
    valid[:, 20:] = False  # no data (NaN) from y = 20 mm: mask centres at y = 10, ..., 28
    assert brain_coverage(mask, mask_affine, (40, 40, 20), np.eye(4), valid) == pytest.approx(
        0.5)
    assert coverage_warning("a_T1w.nii.gz", "a_FLAIR.nii.gz", 0.5, missing=16000).startswith(
        "a_T1w.nii.gz: its field of view less its 16000 NaN (no data) voxels holds 50%")
    assert coverage_warning("a_T1w.nii.gz", "a_FLAIR.nii.gz", 0.995) is None
    warning = coverage_warning("a_T1w.nii.gz", "a_FLAIR.nii.gz", 0.5)
    assert warning.startswith("a_T1w.nii.gz: its field of view holds 50% of the brain")
