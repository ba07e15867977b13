"""Tests of the BIDS layer: finding files, participants, derivatives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lesionkit import __version__
from lesionkit.bids import (
    BIDSDataset,
    EntityFilter,
    bids_filters,
    bids_path,
    build_name,
    check_output_place,
    derivatives_root,
    filters_from_file,
    parse_filter,
    parse_name,
    save_derivative,
    write_dataset_description,
    write_participants,
)
from lesionkit.io import InputError, load_volume, save_volume
from lesionkit.units import row_in_scope, unit_scope
from lesionkit.volume import Volume


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    write_dataset_description(root, "test")
    write_participants(root, [{"participant_id": "sub-01", "group": "control"},
                              {"participant_id": "sub-02", "group": "fcd", "age": None}])
    image = Volume(np.ones((2, 2, 2), np.float32), np.eye(4), unit="s^-1")
    for subject in ("01", "02"):
        for session in ("3T", "7T"):
            save_volume(image, bids_path(root, subject, "R1map", session=session))
        save_volume(image, bids_path(root, subject, "R1map", session="3T", acq="native"))
        save_volume(image, bids_path(root, subject, "mask", session="7T",
                                     derivatives="phantom", desc="brain"))
    return root


def test_names_round_trip() -> None:
    name = build_name({"sub": "01", "ses": "3T", "acq": "native"}, "R1map")
    assert name == "sub-01_ses-3T_acq-native_R1map.nii.gz"
    assert parse_name(name) == ({"sub": "01", "ses": "3T", "acq": "native"}, "R1map", ".nii.gz")
    assert parse_name("README.md") is None
    with pytest.raises(ValueError, match="unknown BIDS entities"):
        build_name({"sub": "01", "colour": "red"}, "T1w")


def test_subjects_sessions_and_find(dataset: Path) -> None:
    ds = BIDSDataset(dataset)
    assert ds.subjects() == ["01", "02"]
    assert ds.sessions("01") == ["3T", "7T"]
    assert len(ds.find(suffix="R1map")) == 6
    resliced = ds.find(subject="01", session="3T", suffix="R1map", acq=None)
    assert [f.path.name for f in resliced] == ["sub-01_ses-3T_R1map.nii.gz"]
    native = ds.get("01", "R1map", session="3T", acq="native")
    assert native.entities["acq"] == "native"
    assert native.sidecar.name == "sub-01_ses-3T_acq-native_R1map.json"
    mask = ds.get("02", "mask", session="7T", derivatives="phantom", desc="brain")
    assert mask.path.is_relative_to(dataset / "derivatives" / "phantom")


def test_get_names_the_folder_when_missing_or_ambiguous(dataset: Path) -> None:
    ds = BIDSDataset(dataset)
    with pytest.raises(InputError, match=r"sub-01: expected one 'FLAIR' image.*found no such "
                       r"file; the subject has sub-01_ses-3T_R1map\.nii\.gz"):
        ds.get("01", "FLAIR")
    with pytest.raises(InputError, match=r"expected one 'R1map' image.*found 2 files "
                       r"\(sub-01_ses-3T_R1map\.nii\.gz, sub-01_ses-3T_acq-native"):
        ds.get("01", "R1map", session="3T")


def test_several_acquisitions_name_the_filter_that_chooses_one(dataset: Path) -> None:
    with pytest.raises(InputError, match=r"choose one with --bids-filter \(e\.g\. "
                       r"--bids-filter R1map:acq=native\)"):
        BIDSDataset(dataset).get("01", "R1map", session="3T")
    image = Volume(np.ones((2, 2, 2), np.float32), np.eye(4))
    save_volume(image, bids_path(dataset, "01", "FLAIR", session="3T"))
    save_volume(image, bids_path(dataset, "01", "FLAIR", session="3T", extension=".nii"))
    with pytest.raises(InputError, match=r"stored twice \(\.nii and \.nii\.gz\): keep one"):
        BIDSDataset(dataset).get("01", "FLAIR")


def test_a_preferred_absence_chooses_among_files_and_reads_the_one_left(dataset: Path
                                                                       ) -> None:
    ds = BIDSDataset(dataset)
    resliced = ds.get("01", "R1map", session="3T", prefer_without=("acq",))
    assert resliced.path.name == "sub-01_ses-3T_R1map.nii.gz"
    (resliced.path).unlink()
    assert ds.get("01", "R1map", session="3T", prefer_without=("acq",)).entities["acq"] == (
        "native")
    with pytest.raises(InputError, match=r"expected one 'FLAIR' image \(session=3T\), found "
                       "no such file"):
        ds.get("01", "FLAIR", session="3T", prefer_without=("ce",))


def test_the_phase_of_a_complex_image_is_read_only_when_asked_for(dataset: Path) -> None:
    image = Volume(np.ones((2, 2, 2), np.float32), np.eye(4))
    for part in ("mag", "phase"):
        save_volume(image, bids_path(dataset, "01", "FLAIR", part=part))
    ds = BIDSDataset(dataset)
    assert ds.get("01", "FLAIR").entities["part"] == "mag"
    with bids_filters([parse_filter("FLAIR:part=phase")]):
        assert ds.get("01", "FLAIR").entities["part"] == "phase"
    assert ds.get("01", "FLAIR", part="phase").entities["part"] == "phase"


def test_parse_filter_reads_suffix_entity_and_label() -> None:
    assert parse_filter("FLAIR:acq=3D") == EntityFilter("acq", "3D", "FLAIR")
    assert parse_filter(" rec=norm ") == EntityFilter("rec", "norm")
    assert parse_filter("T1w:acq=") == EntityFilter("acq", "", "T1w")
    assert str(parse_filter("FLAIR:acq=3D")) == "FLAIR:acq=3D"
    for text, message in (("acq3D", "ENTITY=LABEL"), ("FLAIR:acq=3-D", "ENTITY=LABEL"),
                          ("aq=3D", "expected a BIDS entity"), ("sub=01", "--subjects"),
                          ("ses=2", "--session")):
        with pytest.raises(ValueError, match=message):
            parse_filter(text)


def test_a_filter_file_in_fmriprep_form_is_read(tmp_path: Path) -> None:
    path = tmp_path / "filter.json"
    path.write_text(json.dumps({"flair": {"datatype": "anat", "acquisition": "3D"},
                                "t1w": {"reconstruction": None, "run": 2},
                                "bold": {"task": "rest"}}))
    assert filters_from_file(path) == [EntityFilter("acq", "3D", "flair"),
                                       EntityFilter("rec", "", "t1w"),
                                       EntityFilter("run", "2", "t1w"),
                                       EntityFilter("task", "rest", "bold")]
    for content, message in (("[1]", "found list of another shape"),
                             ('{"flair": {"session": "1"}}', "--session-label"),
                             ('{"flair": {"acquisition": ["a", "b"]}}', "one label"),
                             ('{"flair": {"colour": "red"}}', "expected a BIDS entity"),
                             ("{", "unreadable file")):
        path.write_text(content)
        with pytest.raises(InputError, match=message):
            filters_from_file(path)


def test_bids_filters_choose_among_acquisitions(dataset: Path) -> None:
    ds = BIDSDataset(dataset)
    names = lambda found: [f.path.name for f in found]  # noqa: E731
    with bids_filters([parse_filter("R1map:acq=native")]):  # the image must carry the label
        assert ds.get("01", "R1map", session="3T").entities["acq"] == "native"
        assert ds.find(subject="01", suffix="mask", derivatives="phantom")  # other images kept
    with bids_filters([parse_filter("R1map:acq=")]):  # the one without acq
        assert ds.get("01", "R1map", session="3T").path.name == "sub-01_ses-3T_R1map.nii.gz"
    with bids_filters([parse_filter("acq=other")]):  # files without acq are kept
        assert names(ds.find(subject="01", session="3T", suffix="R1map")) == [
            "sub-01_ses-3T_R1map.nii.gz"]
        with bids_filters([parse_filter("R1map:acq=native")]):  # filters add up
            assert ds.find(subject="01", session="3T", suffix="R1map") == []
            with pytest.raises(InputError, match=r"--bids-filter acq=other, --bids-filter "
                               r"R1map:acq=native\), found no such file"):
                ds.get("01", "R1map", session="3T")
    assert len(ds.find(subject="01", session="3T", suffix="R1map")) == 2  # outside: both


def test_a_link_to_content_not_fetched_is_named(dataset: Path) -> None:
    """DataLad and git-annex datasets hold links whose content is fetched on demand."""
    link = bids_path(dataset, "01", "FLAIR", session="3T")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to("../../../.git/annex/objects/Xk/Q2/SHA256E-s1--0.nii.gz")
    ds = BIDSDataset(dataset)
    assert ds.find(subject="01", suffix="FLAIR") == []
    assert [f.path for f in ds.unfetched("01", "FLAIR")] == [link]
    with pytest.raises(InputError, match=r"FLAIR\.nii\.gz: expected an image, found a link to "
                       r"content that is not here .*datalad get"):
        ds.get("01", "FLAIR")


def test_files_that_are_not_bids_names_are_said_to_be_so(dataset: Path) -> None:
    """A label with an underscore, or an extension in capitals: no look-up finds them, and
    the error says why rather than that the subject has no such image."""
    image = Volume(np.ones((2, 2, 2), np.float32), np.eye(4))
    anat = dataset / "sub-01" / "ses-3T" / "anat"
    save_volume(image, anat / "sub-01_ses-3T_acq-ax_ial_FLAIR.nii.gz")
    save_volume(image, anat / "sub-01_ses-3T_T2w.nii.gz")
    (anat / "sub-01_ses-3T_T2w.nii.gz").rename(anat / "sub-01_ses-3T_T2w.NII.GZ")
    ds = BIDSDataset(dataset)
    assert [p.name for p in ds.misnamed("FLAIR")] == ["sub-01_ses-3T_acq-ax_ial_FLAIR.nii.gz"]
    assert [p.name for p in ds.misnamed("t2w", "01")] == ["sub-01_ses-3T_T2w.NII.GZ"]
    assert ds.misnamed("R1map") == []
    with pytest.raises(InputError, match=r"found no such file; .*; sub-01_ses-3T_acq-ax_ial_"
                       r"FLAIR\.nii\.gz is not a BIDS name and is not read \(sub-<label>"):
        ds.get("01", "FLAIR")


def test_files_in_a_template_space_are_not_taken_for_the_subject(dataset: Path) -> None:
    """fMRIPrep writes a brain mask in the subject's space, one in MNI space and one per
    functional run; the subject's anatomical one is the one, unless a query or filter
    asks for a space (or a datatype)."""
    image = Volume(np.ones((2, 2, 2), np.float32), np.eye(4))
    for space in (None, "MNI152NLin2009cAsym", "T1w"):
        save_volume(image, bids_path(dataset, "01", "mask", session="7T", derivatives="fmriprep",
                                     desc="head", **({"space": space} if space else {})))
    ds = BIDSDataset(dataset)
    found = ds.find(subject="01", suffix="mask", derivatives="fmriprep", desc="head")
    assert [f.entities.get("space") for f in found] == [None, "T1w"]
    template = ds.get("01", "mask", derivatives="fmriprep", space="MNI152NLin2009cAsym")
    assert template.entities["space"] == "MNI152NLin2009cAsym"
    with bids_filters([parse_filter("space=MNI152NLin2009cAsym")]):
        assert [f.entities.get("space") for f in ds.find(
            subject="01", suffix="mask", derivatives="fmriprep", desc="head")] == [
            None, "MNI152NLin2009cAsym"]
    bold_mask = bids_path(dataset, "01", "mask", session="7T", derivatives="fmriprep",
                          datatype="func", task="rest", desc="head")
    save_volume(image, bold_mask)  # a functional run's mask: not an anatomical image
    assert len(ds.find(subject="01", suffix="mask", derivatives="fmriprep", desc="head")) == 2
    assert [f.path for f in ds.find(subject="01", suffix="mask", derivatives="fmriprep",
                                    datatype="func")] == [bold_mask]


def test_a_folder_without_subjects_is_said_to_be_what_it_is(dataset: Path,
                                                             tmp_path: Path) -> None:
    anat = dataset / "sub-01" / "ses-3T" / "anat"
    assert BIDSDataset(anat).without_subjects().endswith(
        f"part of the subject folder {dataset.resolve() / 'sub-01'}; give the dataset's root "
        f"({dataset.resolve()})")
    flat = tmp_path / "scanner"
    flat.mkdir()
    (flat / "t1_mprage.NII").write_bytes(b"")
    assert "1 NIfTI file(s) outside a BIDS layout (t1_mprage.NII): name each with predict " \
           "--image KEY=FILE" in BIDSDataset(flat).without_subjects()
    (flat / "t1_mprage.NII").unlink()
    assert BIDSDataset(flat).without_subjects().startswith("no sub-<label> folder (a BIDS")


def test_load_in_converts_from_the_units_of_the_sidecar(dataset: Path) -> None:
    path = bids_path(dataset, "01", "T1map", session="3T")
    save_volume(Volume(np.full((2, 2, 2), 1.2, np.float32), np.eye(4)), path)
    found = BIDSDataset(dataset).get("01", "T1map")
    assert np.allclose(found.load_in("ms").data, 1.2)  # no sidecar: as stored
    found.sidecar.write_text(json.dumps({"Units": "s"}))
    assert np.allclose(found.load_in("ms").data, 1200.0)
    found.sidecar.write_text(json.dumps({"Units": "furlong"}))
    with pytest.raises(InputError, match="Units 'furlong'"):
        found.load_in("ms")


def test_get_run_reads_the_run_else_the_one_file(dataset: Path) -> None:
    image = Volume(np.ones((2, 2, 2), np.float32), np.eye(4))
    for run in ("1", "2"):
        save_volume(image, bids_path(dataset, "01", "FLAIR", session="3T", run=run))
    save_volume(image, bids_path(dataset, "01", "T1w", session="3T"))
    ds = BIDSDataset(dataset)
    second = ds.get_run("01", "FLAIR", "2", session="3T")
    assert second.path.name == "sub-01_ses-3T_run-2_FLAIR.nii.gz"
    assert ds.get_run("01", "T1w", "2", session="3T").path.name == "sub-01_ses-3T_T1w.nii.gz"
    with pytest.raises(InputError, match=r"expected one 'FLAIR' image.*found 2 files"):
        ds.get_run("01", "FLAIR", None, session="3T")
    with pytest.raises(InputError, match=r"found 2 files"):
        ds.get_run("01", "FLAIR", "3", session="3T")  # no such run, no single file


def test_unit_scope_shows_one_session_and_run(dataset: Path) -> None:
    ds = BIDSDataset(dataset)
    image = Volume(np.ones((2, 2, 2), np.float32), np.eye(4))
    for run in ("1", "2"):
        save_volume(image, bids_path(dataset, "01", "FLAIR", session="7T", run=run))
    assert len(ds.find(subject="01", suffix="R1map", acq=None)) == 2
    with unit_scope(session="7T"):
        assert [f.entities["ses"] for f in ds.find(subject="01", suffix="R1map")] == ["7T"]
        # a query naming its session is left as it asks; files without one are kept
        assert ds.get("01", "R1map", session="3T", acq=None).entities["ses"] == "3T"
        assert len(ds.find(subject="01", suffix="FLAIR")) == 2
        with unit_scope(session="7T", run="2"):
            assert ds.get("01", "FLAIR").entities["run"] == "2"
            assert ds.find(subject="01", suffix="FLAIR", run=None) == []
            assert row_in_scope({"participant_id": "sub-01", "session_id": "ses-7T", "run": 2})
            assert not row_in_scope({"session_id": "ses-3T"})
            assert row_in_scope({"participant_id": "sub-01", "session_id": float("nan")})
    with unit_scope(session="7T"), unit_scope(run="1"):  # nested: session kept, run added
        assert [f.path.name for f in ds.find(subject="01", suffix="FLAIR")] == [
            "sub-01_ses-7T_run-1_FLAIR.nii.gz"]
        assert len(ds.find(subject="01", suffix="R1map", acq=None)) == 1
    assert len(ds.find(subject="01", suffix="R1map", acq=None)) == 2  # the scope has ended
    with unit_scope(per_subject={"02": ("3T", None)}, session="7T"):  # a unit per subject
        found = ds.find(suffix="R1map", acq=None)
        assert [(f.subject, f.entities["ses"]) for f in found] == [("01", "7T"), ("02", "3T")]
        assert row_in_scope({"participant_id": "sub-02", "session_id": "ses-3T"})
        assert not row_in_scope({"participant_id": "sub-01", "session_id": "ses-3T"})


def test_uncompressed_nifti_and_scanner_suffix_case_are_found(dataset: Path) -> None:
    image = Volume(np.ones((2, 2, 2), np.float32), np.eye(4))
    save_volume(image, bids_path(dataset, "01", "FLAIR", session="3T", extension=".nii"))
    save_volume(image, dataset / "sub-01" / "ses-3T" / "anat" / "sub-01_ses-3T_T1W.nii.gz")
    ds = BIDSDataset(dataset)
    assert ds.get("01", "FLAIR").path.name == "sub-01_ses-3T_FLAIR.nii"
    assert ds.get("01", "T1w").path.name == "sub-01_ses-3T_T1W.nii.gz"


def test_truth_is_found_in_any_one_pipeline(dataset: Path) -> None:
    image = Volume(np.ones((2, 2, 2), np.float32), np.eye(4))
    save_volume(image, bids_path(dataset, "01", "mask", derivatives="manual", label="lesion"))
    ds = BIDSDataset(dataset)
    assert ds.pipelines() == ["manual", "phantom"]
    assert not ds.locate("01", "mask", derivatives="phantom", label="lesion")
    found = ds.locate("01", "mask", derivatives="phantom", other_pipelines=True, label="lesion")
    assert [f.path.parent.parent.parent.name for f in found] == ["manual"]
    save_volume(image, bids_path(dataset, "01", "mask", derivatives="rater2", label="lesion"))
    with pytest.raises(InputError, match="found manual, rater2; choose one"):
        ds.get("01", "mask", derivatives="phantom", other_pipelines=True, label="lesion")


def test_participants(dataset: Path) -> None:
    table = BIDSDataset(dataset).participants()
    assert list(table["participant_id"]) == ["sub-01", "sub-02"]
    assert list(table["group"]) == ["control", "fcd"]
    assert table["age"].isna().all()


def test_a_participant_listed_twice_is_refused(dataset: Path) -> None:
    table = dataset / "participants.tsv"
    table.write_text(table.read_text() + "sub-01\tfcd\tn/a\n")
    with pytest.raises(InputError, match=r"participants\.tsv: expected one row per participant, "
                                         r"found sub-01 more than once"):
        BIDSDataset(dataset).participants()


def test_outputs_go_beside_the_dataset_or_under_its_derivatives(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for fine in (tmp_path / "out", root / "derivatives" / "lesionkit", root / "derivatives"):
        check_output_place(root, fine)
    for wrong in (root, root / "sub-01", tmp_path):
        with pytest.raises(InputError, match=r"expected an output folder outside the dataset "
                                             r".* or under its derivatives/"):
            check_output_place(root, wrong)


def test_missing_dataset_and_participants(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="expected a BIDS dataset folder"):
        BIDSDataset(tmp_path / "nothing")
    with pytest.raises(InputError, match=r"participants\.tsv: expected a participants table"):
        BIDSDataset(tmp_path).participants()


def test_derivative_has_description_and_sidecar(tmp_path: Path) -> None:
    root = derivatives_root(tmp_path, "lesionkit")
    description = json.loads((root / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "lesionkit"
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    path = bids_path(tmp_path, "01", "R1map", session="3T", derivatives="lesionkit",
                     desc="enhanced")
    save_derivative(Volume(np.ones((3, 3, 3), np.float32), affine, unit="s^-1"), path,
                    {"Command": "lesionkit predict model data", "ModelFolder": "model"})
    sidecar = json.loads(path.with_name("sub-01_ses-3T_desc-enhanced_R1map.json").read_text())
    assert sidecar["Units"] == "s^-1"
    assert sidecar["lesionkit_version"] == __version__
    assert sidecar["ModelFolder"] == "model"
    np.testing.assert_allclose(load_volume(path).affine, affine)


def test_a_dataset_that_is_no_folder_says_what_it_found(tmp_path: Path) -> None:
    (tmp_path / "scan.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match=r"scan.nii.gz: expected a BIDS dataset folder, "
                                         r"found a file$"):
        BIDSDataset(tmp_path / "scan.nii.gz")
    with pytest.raises(InputError, match=r"expected a BIDS dataset folder, found no folder$"):
        BIDSDataset(tmp_path / "nowhere")
