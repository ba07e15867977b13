"""``lesionkit changes`` on predictions folders: pairs registered, read, written and
scored; refusals; the CLI; two real visits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from lesionkit.io import InputError
from lesionkit.longitudinal import compare
from lesionkit.session_maps import has_pairs
from two_visits import FILE_VOXEL_MM, GROWS, NEW, RESOLVES, SHAPE, ball, write_predictions


def test_compare_registers_and_writes(tmp_path: Path) -> None:
    """Sessions whose heads lie 6 mm apart in world space are co-registered; the label
    map, its sidecar and table, and the summary row are written; an uncertainty map
    beside a lesion map is not read as one."""
    predictions = write_predictions(tmp_path, shift_mm=6.0)
    for session in ("1", "2"):
        folder = predictions / "sub-01" / f"ses-{session}" / "anat"
        shutil.copy(folder / f"sub-01_ses-{session}_label-lesion_desc-flairlesion_probseg.nii.gz",
                    folder / f"sub-01_ses-{session}_label-lesion_desc-uncertainty_probseg.nii.gz")
    written, table = compare(predictions, tmp_path / "out")
    folder = tmp_path / "out" / "sub-01" / "ses-2" / "anat"
    label = folder / "sub-01_ses-2_label-lesion_desc-flairlesionchange_dseg.nii.gz"
    assert label in written and table.name == "task-flair-lesion_lesionchange.tsv"
    assert not list((tmp_path / "out").rglob("*uncertaintychange*"))
    description = json.loads((tmp_path / "out" / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    sidecar = json.loads(label.with_name(label.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["BaselineSession"] == "1" and sidecar["FollowUpSession"] == "2"
    assert sidecar["RegistrationShiftMm"] == pytest.approx(6.0, abs=1.0)
    rows = table.read_text().splitlines()
    header, row = rows[0].split("\t"), dict(zip(rows[0].split("\t"), rows[1].split("\t"),
                                                strict=True))
    assert header[:3] == ["participant_id", "session_id", "baseline_session_id"]
    assert (row["new"], row["enlarging"], row["resolved"], row["shrinking"]) == ("1", "1", "1",
                                                                                  "0")
    lines = label.with_name(label.name.replace(".nii.gz", ".tsv")).read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("label\tchange\t")
    assert nib.load(label).shape == SHAPE


def test_changes_are_read_only_where_the_baseline_was_scanned(tmp_path: Path) -> None:
    """A baseline whose field of view stops below a lesion seen only at follow-up (its
    top slices not acquired): nothing is called past its end, where the moved baseline
    image is empty and every lesion would read as new; the changes below it are read as
    before, and the share of the brain compared is recorded."""
    predictions = write_predictions(tmp_path)
    top = ball((24, 28, 35), 2)  # inside the brain, above the baseline's last slice
    follow = tmp_path / "raw" / "sub-01" / "ses-2" / "anat" / "sub-01_ses-2_FLAIR.nii.gz"
    follow_map = next((predictions / "sub-01" / "ses-2" / "anat").glob("*_probseg.nii.gz"))
    for path, value in ((follow, 120.0), (follow_map, 1.0)):
        image = nib.load(path)
        data = np.asarray(image.dataobj, np.float32)
        data[top] = data[top] + value if value > 1 else value
        nib.save(nib.Nifti1Image(data, image.affine), path)
    base = tmp_path / "raw" / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_FLAIR.nii.gz"
    for path in (base, *(predictions / "sub-01" / "ses-1" / "anat").glob("*.nii.gz")):
        nib.save(nib.load(path).slicer[:, :, :33], path)  # world positions kept
    _, table = compare(predictions, tmp_path / "out")
    row = pd.read_csv(table, sep="\t").to_dict("records")[0]
    assert (row["new"], row["enlarging"], row["resolved"]) == (1, 1, 1)
    assert 0.8 < row["brain_compared"] < 1.0
    assert row["registration_shift_mm"] < 1.0
    [label] = (tmp_path / "out").rglob("*change_dseg.nii.gz")
    sidecar = json.loads(label.with_name(label.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["BrainCompared"] == row["brain_compared"]
    assert not np.asarray(nib.load(label).dataobj)[top].any()


def test_a_pair_that_cannot_be_read_names_how_much_of_the_brain_was_compared(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the reading fails and the baseline covers only part of the follow-up's
    brain, the one-line error says how much it covers."""
    import lesionkit.longitudinal as longitudinal

    predictions = write_predictions(tmp_path)
    base = tmp_path / "raw" / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_FLAIR.nii.gz"
    for path in (base, *(predictions / "sub-01" / "ses-1" / "anat").glob("*.nii.gz")):
        nib.save(nib.load(path).slicer[:, :, :33], path)

    def fails(*args, **kwargs):
        raise ValueError("the brain mask holds almost no voxel outside the lesions")

    monkeypatch.setattr(longitudinal, "lesion_changes", fails)
    with pytest.raises(InputError, match=r"outside the lesions \(the moved baseline's field "
                                         r"of view covers \d+\.\d % of the follow-up's"):
        compare(predictions, tmp_path / "out")


def test_one_session_is_refused_in_one_line(tmp_path: Path) -> None:
    """A folder without two sessions of a subject names what it found."""
    predictions = write_predictions(tmp_path)
    for path in (predictions / "sub-01" / "ses-1" / "anat").iterdir():
        path.unlink()
    with pytest.raises(InputError, match=r"two or more sessions.*session\(s\) 2$"):
        compare(predictions)
    with pytest.raises(InputError, match="expected the predictions folder"):
        compare(tmp_path / "missing")


def test_compare_scores_against_a_change_truth(tmp_path: Path, capsys) -> None:
    """--truth: a label-change_dseg of the later session, laid where the changes happened,
    gives every change found and no false call; without a truth, one line says so."""
    from lesionkit.cli import run

    predictions = write_predictions(tmp_path)
    truth = np.zeros(SHAPE, np.int16)
    truth[ball(NEW, 3)] = 1
    truth[ball(GROWS, 3.5) & ~ball(GROWS, 2)] = 2
    truth[ball(RESOLVES, 3)] = 4
    folder = tmp_path / "raw" / "derivatives" / "manual" / "sub-01" / "ses-2" / "anat"
    folder.mkdir(parents=True)
    nib.save(nib.Nifti1Image(truth, np.diag([FILE_VOXEL_MM] * 3 + [1.0])),
             folder / "sub-01_ses-2_label-change_dseg.nii.gz")
    assert run(["changes", str(predictions), "--out-dir", str(tmp_path / "out"), "--truth",
                str(tmp_path / "raw")]) == 0
    assert "3 of 3 true changes found, 0 of 3 calls false" in capsys.readouterr().out
    [row] = pd.read_csv(tmp_path / "out" / "task-flair-lesion_changescores.tsv",
                        sep="\t").to_dict("records")
    assert (row["new_found"], row["enlarging_found"], row["resolved_found"], row["f1"]) == (
        1, 1, 1, 1.0)
    assert row["model"] == "flair-lesion" and row["baseline_session_id"] == "ses-1"
    (folder / "sub-01_ses-2_label-change_dseg.nii.gz").unlink()
    assert run(["changes", str(predictions), "--out-dir", str(tmp_path / "out2"), "--truth",
                str(tmp_path / "raw")]) == 1
    assert "expected a change truth" in capsys.readouterr().err
    assert run(["changes", str(predictions), "--truth", str(tmp_path / "nowhere")]) == 1
    assert "nowhere: expected a BIDS dataset folder" in capsys.readouterr().err
    assert not list(predictions.rglob("*change_dseg*"))  # refused before any pair


def test_sessions_written_earlier_are_paired_with_the_new_ones(tmp_path: Path) -> None:
    """One job per session: the maps of a session predicted now are paired with another
    session's in a folder written before; without a new map there is no pair to read."""
    predictions = write_predictions(tmp_path)
    earlier, new = tmp_path / "earlier", tmp_path / "new"
    (earlier / "sub-01").mkdir(parents=True)
    (predictions / "sub-01" / "ses-1").rename(earlier / "sub-01" / "ses-1")
    (new / "sub-01").mkdir(parents=True)
    (predictions / "sub-01" / "ses-2").rename(new / "sub-01" / "ses-2")
    assert not has_pairs(new, ["01"]) and has_pairs(new, ["01"], earlier=earlier)
    written, table = compare(new, tmp_path / "out", earlier=earlier)
    assert (tmp_path / "out" / "sub-01" / "ses-2" / "anat" /
            "sub-01_ses-2_label-lesion_desc-flairlesionchange_dseg.nii.gz") in written
    assert "ses-1" in table.read_text()
    (tmp_path / "none").mkdir()
    with pytest.raises(InputError, match="two or more sessions"):  # no new map: no pair
        compare(tmp_path / "none", earlier=earlier)


def test_the_dataset_predict_wrote_into_is_read_through(tmp_path: Path) -> None:
    """``changes DATA`` after ``predict MODEL DATA`` (no --out-dir): the maps under
    DATA/derivatives/lesionkit are read, and the changes written beside them."""
    predictions = write_predictions(tmp_path)
    beneath = tmp_path / "raw" / "derivatives" / "lesionkit"
    beneath.parent.mkdir()
    predictions.rename(beneath)
    written, table = compare(tmp_path / "raw")
    assert table == beneath / "task-flair-lesion_lesionchange.tsv"
    assert all(beneath in path.parents for path in written)


def test_sessions_that_name_no_maps_are_said_so(tmp_path: Path) -> None:
    predictions = write_predictions(tmp_path)
    with pytest.raises(InputError, match=r"sessions named by --sessions \(3, 4\) of a "):
        compare(predictions, sessions=["3", "4"])


@pytest.mark.parametrize(("broken", "message"), [
    ("empty brain", r"brain mask \(sub-01_ses-2_\S+\) of at least 200 mL, found 0\.0 mL"),
    ("tiny brain", r"of at least 200 mL, found 0\.1 mL"),
    ("constant baseline", r"ses-1_FLAIR\.nii\.gz\) to have contrast, found 2nd and 98th"),
    ("constant follow-up", r"ses-2_FLAIR\.nii\.gz\) to have contrast inside the brain"),
])
def test_a_pair_that_cannot_be_compared_is_refused_before_registration(
        tmp_path: Path, broken: str, message: str) -> None:
    """An empty or implausibly small follow-up brain mask, or an image without contrast,
    is one line naming the file, not a registration that fails or reads noise; nothing is
    written."""
    predictions = write_predictions(tmp_path)
    session = "1" if broken == "constant baseline" else "2"
    folder = predictions / "sub-01" / f"ses-{session}" / "anat"
    if broken.endswith("brain"):
        path = folder / f"sub-01_ses-{session}_label-brain_desc-flairlesion_mask.nii.gz"
        mask = np.zeros(SHAPE, np.uint8)
        if broken == "tiny brain":
            mask[20:22, 20:22, 20:22] = 1
    else:
        path = tmp_path / "raw" / "sub-01" / f"ses-{session}" / "anat" / (
            f"sub-01_ses-{session}_FLAIR.nii.gz")
        mask = np.full(SHAPE, 7.0, np.float32)
    nib.save(nib.Nifti1Image(mask, nib.load(path).affine), path)
    with pytest.raises(InputError, match=message):
        compare(predictions, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_missing_input_image_is_named(tmp_path: Path) -> None:
    """The image a map was predicted from must still be there; nothing is written."""
    predictions = write_predictions(tmp_path)
    (tmp_path / "raw" / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_FLAIR.nii.gz").unlink()
    with pytest.raises(InputError, match=r"ses-1_FLAIR\.nii\.gz \(Sources\), found no such"):
        compare(predictions, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_changes(tmp_path: Path) -> None:
    """The command's one-line error and exit status."""
    from lesionkit.cli import run

    predictions = write_predictions(tmp_path)
    for path in (predictions / "sub-01" / "ses-1" / "anat").iterdir():
        path.unlink()
    assert run(["changes", str(predictions)]) == 1


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["bids", "files"])
def test_two_real_visits(tmp_path: Path, layout: str) -> None:
    """The real sample's two visits (tests/data/realpatient-study1 and realpatient, a real
    MS patient's clinical FLAIR slabs, the head 10 mm apart) through the FLAIR-only
    shipped model and ``changes``, as BIDS datasets or as two files named with ``--image``
    and ``--sessions``: the largest change is the large changed lesion of the change mask,
    and most changes called touch a changed lesion."""
    from lesionkit.cli import run

    data = Path(__file__).parent / "data"
    out = tmp_path / "visits"
    for session, dataset in (("study1", "realpatient-study1"), ("study2", "realpatient")):
        where = ([str(data / dataset)] if layout == "bids" else
                 ["--image", f"flair={next((data / dataset).rglob('*_FLAIR.nii.gz'))}",
                  "--subjects", "patient01", "--sessions", session])
        assert run(["predict", "flair-only-lesion-dr", *where, "--out-dir", str(out),
                    "--threads", "2"]) == 0
    assert run(["changes", str(out)]) == 0
    [label_path] = out.rglob("*_desc-flaironlylesiondrchange_dseg.nii.gz")
    labels = np.asarray(nib.load(label_path).dataobj)
    truth = np.asarray(nib.load(next((data / "realpatient" / "derivatives").rglob(
        "*_mask.nii.gz"))).dataobj) > 0
    assert labels.shape == truth.shape
    assert ((labels == 1) & truth).sum() > 0.5 * (labels == 1).sum()
    touching = len(set(np.unique(labels[truth])) - {0})
    assert touching >= labels.max() - touching >= 0
    sidecar = json.loads(label_path.with_name(label_path.name.replace(".nii.gz", ".json"))
                         .read_text())
    assert 5.0 < sidecar["RegistrationShiftMm"] < 15.0


def test_the_dataset_brain_mask_predict_used_is_read(tmp_path: Path) -> None:
    """Where predict used the dataset's brain mask (named in its sidecar, not written
    beside the map), that mask is the follow-up's, not a new BET."""
    predictions = write_predictions(tmp_path)
    folder = predictions / "sub-01" / "ses-2" / "anat"
    mask = folder / "sub-01_ses-2_label-brain_desc-flairlesion_mask.nii.gz"
    dataset_mask = tmp_path / "raw" / "derivatives" / "sub-01_ses-2_desc-brain_mask.nii.gz"
    dataset_mask.parent.mkdir(parents=True)
    mask.rename(dataset_mask)
    sidecar = folder / "sub-01_ses-2_label-lesion_desc-flairlesion_probseg.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()),
                                   "BrainMask": f"dataset: {dataset_mask}"}))
    compare(predictions, tmp_path / "out")
    [written] = (tmp_path / "out").rglob("*change_dseg.json")
    assert json.loads(written.read_text())["BrainMask"] == str(dataset_mask)


def test_cli_sessions_name_the_order(tmp_path: Path) -> None:
    """--sessions (with or without ses-) gives the order: the later one first reverses
    the pair."""
    from lesionkit.cli import run

    predictions = write_predictions(tmp_path)
    assert run(["changes", str(predictions), "--sessions", "ses-2,1", "--out-dir",
                str(tmp_path / "out")]) == 0
    [written] = (tmp_path / "out").rglob("*change_dseg.json")
    sidecar = json.loads(written.read_text())
    assert (sidecar["BaselineSession"], sidecar["FollowUpSession"]) == ("2", "1")
