"""Evaluation glue: acquisition groups (labels from sidecars and headers, per-group means)
and longitudinal data scored per session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lesionkit.bids import BIDSDataset, bids_path, write_dataset_description, write_participants
from lesionkit.data import with_truth
from lesionkit.evaluation import (
    acquisition,
    by_acquisition,
    evaluate,
    evaluation_units,
    report,
    report_groups,
    unit_label,
)
from lesionkit.io import InputError, save_volume
from lesionkit.tasks import get_task
from lesionkit.units import unit_scope
from lesionkit.volume import Volume

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
    # 3 mm slices as two scans of one protocol store them (float32 headers)
    _flair(tmp_path, "05", np.diag([0.72, 0.72, 3.000005, 1.0]), None)
    _flair(tmp_path, "06", np.diag([0.72, 0.72, 2.999998, 1.0]), None)
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
    assert {acquisition(dataset, s, FLAIR)["slice_thickness"] for s in ("05", "06")} == {
        "1.5-3 mm"}


def test_an_unreadable_sidecar_is_named_in_a_warning(dataset: BIDSDataset, capsys) -> None:
    (dataset.root / "sub-01" / "anat" / "sub-01_FLAIR.json").write_text("{not json")
    row = acquisition(dataset, "01", FLAIR)
    assert (row["field"], row["acquisition"], row["manufacturer"]) == ("n/a", "n/a", "n/a")
    assert row["slices"] == "axial"  # from the header
    warning = capsys.readouterr().err
    assert "sub-01_FLAIR.json: expected a JSON sidecar, found an unreadable file" in warning
    acquisition(dataset, "03", FLAIR)  # no sidecar at all: nothing to warn about
    assert capsys.readouterr().err == ""


def test_by_acquisition_means_per_group(dataset: BIDSDataset) -> None:
    acquired = {f"sub-{s}": acquisition(dataset, s, FLAIR) for s in ("01", "02", "03")}
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


def _longitudinal(root: Path) -> Path:
    """Subject p01 at two sessions: FLAIR, manual lesion mask and a lesion probability per
    session (ses-1 on a 2 mm grid, predicted exactly; ses-2 on 1 x 1 x 4 mm axial slices,
    predicted beside the lesion); and a session 0 predicted without a mask."""
    write_dataset_description(root, "longitudinal")
    write_participants(root, [{"participant_id": "sub-p01"}])
    truth = np.zeros((12, 12, 12), np.uint8)
    truth[3:6, 3:6, 3:6] = 1
    predictions = root / "derivatives" / "lesionkit"
    for session, voxel, predicted in (("1", (2.0, 2.0, 2.0), truth),
                                      ("2", (1.0, 1.0, 4.0), np.roll(truth, 5, axis=0))):
        affine = np.diag([*voxel, 1.0])
        affine[:3, 3] = (-10.0, 4.0, 2.0)
        save_volume(Volume(np.random.default_rng(0).random((12, 12, 12)).astype(np.float32),
                           affine, "intensity"), bids_path(root, "p01", "FLAIR", session=session))
        save_volume(Volume(truth, affine, "label"), bids_path(
            root, "p01", "mask", session=session, derivatives="manual", label="lesion"))
        save_volume(Volume(predicted.astype(np.float32), affine, "probability"), bids_path(
            predictions, "p01", "probseg", session=session, label="lesion", desc="flairlesion"))
    # a first visit predicted, with no truth to score it against
    save_volume(Volume(truth.astype(np.float32), np.eye(4), "intensity"),
                bids_path(root, "p01", "FLAIR", session="0"))
    save_volume(Volume(truth.astype(np.float32), np.eye(4), "probability"), bids_path(
        predictions, "p01", "probseg", session="0", label="lesion", desc="flairlesion"))
    return root


def test_longitudinal_predictions_are_scored_per_session(tmp_path: Path, capsys) -> None:
    data = _longitudinal(tmp_path / "data")
    task = get_task("flair-lesion")
    predictions = data / "derivatives" / "lesionkit"
    assert evaluation_units(task, predictions, ["p01"]) == [
        ("p01", "0", None), ("p01", "1", None), ("p01", "2", None)]
    tsv, json_path = evaluate(task, data)
    assert "warning: skipped sub-p01_ses-0: " in capsys.readouterr().err
    table = json.loads(json_path.read_text())
    assert [s["unit"] for s in table["skipped"]] == ["sub-p01_ses-0"]
    assert table["skipped"][0]["reason"].endswith(
        "expected the truth of sub-p01_ses-0 (derivatives/<any pipeline>/sub-<label>"
        "[_ses-<label>]_label-lesion_mask.nii[.gz]), found none")
    named = with_truth(task, "manual")
    _, scored = evaluate(named, data, out_dir=tmp_path / "named")
    assert "derivatives/manual/sub-<label>" in json.loads(scored.read_text())["skipped"][0][
        "reason"]
    # any other fault of a session stops the evaluation: a probability above 1 at ses-2
    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    path = next((bad / "derivatives" / "lesionkit").rglob("sub-p01_ses-2_*_probseg.nii.gz"))
    save_volume(Volume(np.full((12, 12, 12), 2.0, np.float32), np.diag([1.0, 1.0, 4.0, 1.0]),
                       "intensity"), path)
    with pytest.raises(InputError, match=r"expected sub-p01's lesion probability in \[0, 1\]"):
        evaluate(task, bad, out_dir=tmp_path / "bad-scores")
    # a subject's only session without truth: the task's own line, which asks for the
    # pipeline only where none was named
    with unit_scope(session="0"), pytest.raises(InputError) as error:
        named.evaluate(named, data, predictions, ["p01"])
    assert "in manual, found none" in str(error.value) and "--truth" not in str(error.value)
    rows = {r["session_id"]: r for r in table["rows"] if r["method"] == "network"}
    assert rows["ses-1"]["lesion_dice"] == pytest.approx(1.0)
    assert rows["ses-2"]["lesion_dice"] == pytest.approx(0.0)
    assert tsv.read_text().splitlines()[0].startswith("participant_id\tsession_id\tmethod")
    assert table["units"] == [["p01", "1", None], ["p01", "2", None]]
    assert table["acquisitions"]["sub-p01_ses-2"]["slices"] == "axial"
    acquired = (predictions / "task-flair-lesion_acquisitions.tsv").read_text().splitlines()
    assert acquired[0].startswith("participant_id\tsession_id\timage")
    assert [line.split("\t")[1] for line in acquired[1:]] == ["ses-1", "ses-2"]
    grouped = (predictions / "task-flair-lesion_by-acquisition.tsv").read_text()
    assert "axial" in grouped and "isotropic" in grouped
    page = report(task, data).read_text()
    assert "ses-1: " in page and "ses-2: " in page


def test_units_of_runs_and_of_unsessioned_subjects(tmp_path: Path) -> None:
    task = get_task("flair-lesion")
    for name in ("sub-a_run-1_label-lesion_probseg.nii.gz",
                 "sub-a_run-2_label-lesion_probseg.nii.gz", "sub-a_desc-brain_mask.nii.gz",
                 "sub-b_label-lesion_probseg.nii.gz"):
        path = tmp_path / name.split("_")[0] / "anat" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    assert evaluation_units(task, tmp_path, ["a", "b"]) == [("a", None, "1"), ("a", None, "2"),
                                                            ("b", None, None)]
    assert unit_label("a", None, "2") == "sub-a_run-2"
    assert unit_label("a", "1") == "sub-a_ses-1"


def test_subject_classifier_table_is_read_per_session(tmp_path: Path) -> None:
    task = get_task("fcd-classify")
    data = tmp_path / "data"
    write_dataset_description(data, "fcd")
    write_participants(data, [{"participant_id": "sub-01", "group": "patient"}])
    for session in ("1", "2"):
        save_volume(Volume(np.ones((4, 4, 4), np.float32), np.eye(4), "intensity"),
                    bids_path(data, "01", "FLAIR", session=session))
    out = tmp_path / "predictions"
    out.mkdir()
    (out / "task-fcd-classify_predictions.tsv").write_text(
        "participant_id\tsession_id\tcontrol\tpatient\n"
        "sub-01\tses-1\t0.8\t0.2\nsub-01\tses-2\t0.1\t0.9\n")
    _, json_path = evaluate(task, data, predictions=out)
    rows = {r["session_id"]: r for r in json.loads(json_path.read_text())["rows"]}
    assert (rows["ses-1"]["probability"], rows["ses-1"]["correct"]) == (0.2, False)
    assert (rows["ses-2"]["probability"], rows["ses-2"]["correct"]) == (0.9, True)


def test_report_groups_by_shared_label_else_by_order() -> None:
    assert report_groups([("a", None, None), ("b", None, None)]) == {
        "": {"a": (None, None), "b": (None, None)}}
    shared = report_groups([("a", "2", None), ("b", "1", None), ("b", "2", None)])
    assert shared == {"ses-1": {"b": ("1", None)}, "ses-2": {"a": ("2", None), "b": ("2", None)}}
    dated = report_groups([("a", "20190101", None), ("a", "20190601", None),
                           ("b", "20200304", None), ("b", "20210304", None)])
    assert dated == {"session 1 of each subject": {"a": ("20190101", None),
                                                   "b": ("20200304", None)},
                     "session 2 of each subject": {"a": ("20190601", None),
                                                   "b": ("20210304", None)}}


def test_an_evaluation_hook_that_takes_predict_gets_the_engines() -> None:
    from lesionkit.evaluation import _evaluation_options
    from lesionkit.infer import predict

    def plain(task, root, predictions, subjects):
        return []

    def fitting(task, root, predictions, subjects, predict=None):
        return []

    assert _evaluation_options(plain) == {} and _evaluation_options(None) == {}
    assert _evaluation_options(fitting) == {"predict": predict}
