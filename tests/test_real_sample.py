"""The shipped real-patient sample (tests/data/realpatient): present, loadable, consistent."""

from __future__ import annotations

import itertools
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).parent / "data" / "realpatient"
STEM = "sub-patient01_ses-study2"
ANAT = ROOT / "sub-patient01" / "ses-study2" / "anat"
FLAIR = ANAT / f"{STEM}_FLAIR.nii.gz"
T1W = ANAT / f"{STEM}_T1w.nii.gz"
MASK = (ROOT / "derivatives" / "manual" / "sub-patient01" / "ses-study2" / "anat"
        / f"{STEM}_label-lesion_mask.nii.gz")


def _world_box(image: nib.spatialimages.SpatialImage) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned world bounding box (mm) of the image's voxel corners."""
    corners = np.array([[-0.5 if c == 0 else n - 0.5 for c, n in zip(choice, image.shape[:3],
                                                                      strict=True)]
                        for choice in itertools.product((0, 1), repeat=3)])
    world = nib.affines.apply_affine(image.affine, corners)
    return world.min(axis=0), world.max(axis=0)


@pytest.mark.parametrize("path", [
    FLAIR, T1W, MASK, ROOT / "dataset_description.json", ROOT / "participants.tsv",
    ROOT / "README.md", ROOT / "LICENSE.txt",
    ROOT / "derivatives" / "manual" / "dataset_description.json",
])
def test_files_exist(path: Path) -> None:
    assert path.is_file()


def test_sample_is_small() -> None:
    total = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    assert total < 2_000_000  # bytes: a slab of 12 slices, whole field of view


def test_images_load_as_3d_volumes() -> None:
    for path in (FLAIR, T1W, MASK):
        image = nib.load(path)
        assert image.ndim == 3
        data = np.asarray(image.dataobj)
        assert np.isfinite(data).all()
    assert np.asarray(nib.load(FLAIR).dataobj).max() > 0
    assert np.asarray(nib.load(T1W).dataobj).max() > 0


def test_flair_and_t1w_on_different_grids_overlap_physically() -> None:
    flair, t1w = nib.load(FLAIR), nib.load(T1W)
    same_grid = flair.shape == t1w.shape and np.allclose(flair.affine, t1w.affine)
    assert not same_grid
    low_f, high_f = _world_box(flair)
    low_t, high_t = _world_box(t1w)
    overlap = np.clip(np.minimum(high_f, high_t) - np.maximum(low_f, low_t), 0, None)
    assert np.prod(overlap) > 0.8 * np.prod(high_f - low_f)


def test_mask_on_flair_grid_and_not_empty() -> None:
    flair, mask = nib.load(FLAIR), nib.load(MASK)
    assert mask.shape == flair.shape
    np.testing.assert_allclose(mask.affine, flair.affine, atol=1e-4)
    values = np.asarray(mask.dataobj)
    assert mask.get_data_dtype() == np.uint8
    assert set(np.unique(values)) <= {0, 1}
    assert values.sum() > 0


def test_the_real_flair_is_read_as_a_flair_without_a_contrast_warning() -> None:
    """The real 2D FLAIR's CSF is dark: its bright-CSF ratio lies far under the bound
    that warns of a T2w under a FLAIR's name (and is recorded for the sidecar)."""
    from lesionkit.bids import BIDSDataset
    from lesionkit.data import DARK_CSF_BOUND, load_subject, prediction_specs
    from lesionkit.tasks import get_task

    task = get_task("flair-lesion-dr")
    notes = load_subject(BIDSDataset(ROOT), "patient01", task, prediction_specs(task),
                         "study2")["notes"]
    ratio = notes["BrightCSFRatio"][FLAIR.name]
    assert 1.1 < ratio < DARK_CSF_BOUND["FLAIR"]
    assert not any("dark CSF" in warning for warning in notes["Warnings"])
