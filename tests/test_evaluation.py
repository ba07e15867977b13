"""Acquisition groups of an evaluation: labels from sidecars and headers, per-group means."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lesionkit.bids import BIDSDataset
from lesionkit.evaluation import acquisition, by_acquisition
from lesionkit.tasks import get_task

FLAIR = get_task("flair-lesion").prediction_inputs[0]


def _flair(root: Path, subject: str, affine: np.ndarray, sidecar: dict | None) -> None:
    anat = root / f"sub-{subject}" / "anat"
    anat.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), affine),
             anat / f"sub-{subject}_FLAIR.nii.gz")
    if sidecar is not None:
        (anat / f"sub-{subject}_FLAIR.json").write_text(json.dumps(sidecar))


@pytest.fixture
def dataset(tmp_path: Path) -> BIDSDataset:
    (tmp_path / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    # axial 2D at 1.5 T: 0.9 x 0.9 mm in plane, 5.5 mm slices
    _flair(tmp_path, "01", np.diag([0.9, 0.9, 5.5, 1.0]),
           {"MagneticFieldStrength": 1.5, "MRAcquisitionType": "2D", "Manufacturer": "Acme"})
    # sagittal slices of 3 mm stored as the last voxel axis (voxel axes z, y, x)
    sagittal = np.array([[0, 0, 3.0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])
    _flair(tmp_path, "02", sagittal, {"MagneticFieldStrength": "3", "MRAcquisitionType": "3D"})
    # 1 mm isotropic without a sidecar
    _flair(tmp_path, "03", np.eye(4), None)
    return BIDSDataset(tmp_path)


def test_acquisition_reads_sidecar_and_header(dataset: BIDSDataset) -> None:
    first = acquisition(dataset, "01", FLAIR)
    assert first == {"image": "sub-01_FLAIR.nii.gz", "voxel_mm": "0.90x0.90x5.50",
                     "field": "1.5T", "acquisition": "2D", "slices": "axial",
                     "slice_thickness": "over 5 mm", "manufacturer": "Acme"}
    second = acquisition(dataset, "02", FLAIR)
    assert (second["field"], second["slices"], second["slice_thickness"]) == (
        "3T", "sagittal", "1.5-3 mm")
    assert second["voxel_mm"] == "3.00x1.00x1.00"  # world order, whatever the storage
    third = acquisition(dataset, "03", FLAIR)
    assert (third["field"], third["acquisition"], third["slices"]) == ("n/a", "n/a", "isotropic")
    assert set(acquisition(dataset, "04", FLAIR).values()) == {"n/a"}  # no such image


def test_by_acquisition_means_per_group(dataset: BIDSDataset) -> None:
    acquired = {s: acquisition(dataset, s, FLAIR) for s in ("01", "02", "03")}
    rows = [{"participant_id": "sub-01", "method": "network", "dice": 0.2},
            {"participant_id": "sub-02", "method": "network", "dice": 0.6},
            {"participant_id": "sub-03", "method": "network", "dice": 0.8},
            {"participant_id": "sub-03", "method": "baseline", "dice": 0.1}]
    grouped = by_acquisition(rows, acquired)
    field = {(r["value"], r["method"]): r for r in grouped if r["group"] == "field"}
    assert set(field) == {("1.5T", "network"), ("3T", "network"), ("n/a", "network"),
                          ("n/a", "baseline")}
    assert field[("3T", "network")]["dice"] == pytest.approx(0.6)
    assert field[("n/a", "network")]["n"] == 1
    slices = {r["value"]: r["dice"] for r in grouped
              if r["group"] == "slices" and r["method"] == "network"}
    assert slices == pytest.approx({"axial": 0.2, "sagittal": 0.6, "isotropic": 0.8})
    # a group in which every subject is alike is left out
    same = {s: {**a, "manufacturer": "Acme"} for s, a in acquired.items()}
    assert not [r for r in by_acquisition(rows, same) if r["group"] == "manufacturer"]
