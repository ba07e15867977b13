"""benchmarks/storage_variants.py: the storage variants keep the image in world space."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.processing import resample_from_to

from conftest import load_script

BENCH = Path(__file__).parents[2] / "benchmarks" / "storage_variants.py"


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH, "lesionkit_benchmarks_storage")


def test_storage_variants_hold_the_same_image(bench, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    anat = tmp_path / "anat"
    anat.mkdir()
    affine = np.diag([-0.9, -0.9, 3.0, 1.0])
    affine[:3, 3] = [40, 30, -20]
    for modality in ("FLAIR", "T1w"):
        data = rng.integers(1, 1000, (48, 52, 12)).astype(np.uint16)
        nib.save(nib.Nifti1Image(data, affine), anat / f"sub-x_{modality}.nii.gz")
    roots = bench.write_variants(anat, tmp_path / "out")
    original = nib.load(roots["original"] / "sub-original" / "anat" / "sub-original_FLAIR.nii.gz")
    expected = np.asarray(original.dataobj, np.float64)
    for name, (_, same_image) in bench.VARIANTS.items():
        label = name.replace("-", "")
        img = nib.load(roots[name] / f"sub-{label}" / "anat" / f"sub-{label}_FLAIR.nii.gz")
        if not same_image:
            continue
        data = np.asarray(img.dataobj, np.float64).reshape(img.shape[:3])
        back = resample_from_to(nib.Nifti1Image(data, img.affine), original, order=0)
        inner = (slice(1, -1),) * 3  # border voxels sit on the edge of the field of view
        np.testing.assert_allclose(np.asarray(back.dataobj)[inner], expected[inner],
                                   err_msg=name)
    turned = nib.load(roots["turned"] / "sub-turned" / "anat" / "sub-turned_FLAIR.nii.gz")
    assert not np.allclose(turned.affine, original.affine)
    nan = nib.load(next((roots["nan-background"] / "sub-nanbackground").rglob("*FLAIR*")))
    assert np.isnan(np.asarray(nan.dataobj)).any()
