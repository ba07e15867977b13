"""benchmarks/lesion_depth.py: how deep manual and predicted lesions lie, on hand-made files."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import load_script

BENCH = Path(__file__).parents[2] / "benchmarks" / "lesion_depth.py"
AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH, "lesionkit_benchmarks_lesion_depth")


def _save(data: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.uint8), AFFINE), path)


def test_manual_and_predicted_lesions_by_depth(bench, tmp_path: Path) -> None:
    brain = np.zeros((30, 30, 30), np.uint8)
    brain[2:28, 2:28, 2:28] = 1
    change = np.zeros(brain.shape, np.uint8)
    change[14:16, 14:16, 14:16] = 1  # deep (12.5 mm at most)
    change[2, 10, 10] = 1  # on the mask's edge (0.5 mm)
    predictions, truth = tmp_path / "pred", tmp_path / "bids"
    anat = predictions / "sub-01" / "anat"
    _save(brain, anat / "sub-01_label-brain_desc-m_mask.nii.gz")
    _save(change, truth / "derivatives" / "manual" / "sub-01" / "anat"
          / "sub-01_label-change_mask.nii.gz")
    found = bench.truth_depths(predictions, truth)
    entry = found["sub-01_label-change_mask.nii.gz"]
    assert entry["lesions"] == 2 and entry["depths_mm"] == [0.5, 12.5]
    assert entry["under 3 mm"] == {"components": 1, "volume_mm3": 1.0}
    labels = np.zeros(brain.shape, np.uint8)
    labels[13:15, 13:15, 13:15] = 1  # touches the deep change
    labels[2:4, 20, 20] = 2  # a shallow false positive
    _save(labels, anat / "sub-01_desc-m_dseg.nii.gz")
    (anat / "sub-01_desc-m_lesions.tsv").write_text(
        "label\tvolume_mm3\tdepth_mm\n1\t8\t12.0\n2\t2\t2.0\n")
    [entry] = bench.predicted(predictions, truth).values()
    assert entry["components"] == 2 and entry["under 3 mm"]["components"] == 1
    assert entry["touching the change mask"] == 1 and entry["touching, depths_mm"] == [12.0]


def test_tables_without_depth_and_missing_masks_are_named(bench, tmp_path: Path) -> None:
    table = tmp_path / "pred" / "sub-01" / "anat" / "sub-01_desc-m_lesions.tsv"
    table.parent.mkdir(parents=True)
    table.write_text("label\tvolume_mm3\n1\t8\n")
    with pytest.raises(SystemExit, match=r"sub-01_desc-m_lesions\.tsv: expected a depth_mm"):
        bench.predicted(tmp_path / "pred", None)
    with pytest.raises(SystemExit, match=r"expected masks named .*label-change_mask"):
        bench.truth_depths(tmp_path / "pred", tmp_path / "bids")
