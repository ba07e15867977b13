"""Lesion changes between sessions: the reading on hand-made volumes, the files, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from lesionkit.changes import (
    MIN_CHANGE_ML,
    ChangeReading,
    SessionMap,
    compare,
    has_pairs,
    lesion_changes,
    score_changes,
    session_order,
)
from lesionkit.io import InputError

SHAPE = (48, 56, 44)
VOXEL_MM = 2.0
#: Voxel size (mm) of the files compare() reads: the brain is 334 mL there, a plausible
#: brain mask (171 mL at VOXEL_MM is refused as too small to be one).
FILE_VOXEL_MM = 2.5


def _ball(centre: tuple[float, float, float], radius: float) -> np.ndarray:
    grid = np.indices(SHAPE).astype(float)
    return sum((grid[i] - centre[i]) ** 2 for i in range(3)) <= radius**2


def _head(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A head-like image (skull, brain with texture, ventricles) and its brain mask."""
    grid = np.indices(SHAPE).astype(float)
    centre = np.array(SHAPE) / 2
    radii = np.array(SHAPE) / 2 - 3
    r = np.sqrt(sum(((grid[i] - centre[i]) / radii[i]) ** 2 for i in range(3)))
    brain = r < 0.8
    texture = ndimage.gaussian_filter(np.random.default_rng(99).normal(size=SHAPE), 2.0)
    image = np.where(brain, 100.0 + 400.0 * texture, 0.0)
    image[(r >= 0.85) & (r < 1.0)] = 160.0  # skull
    image[_ball((centre[0] - 5, centre[1], centre[2]), 4)] = 30.0  # ventricles
    image[_ball((centre[0] + 5, centre[1], centre[2]), 4)] = 30.0
    image += np.random.default_rng(seed).normal(0, 3.0, SHAPE)
    return image.astype(np.float32), brain


#: Lesion centres (voxels): one that stays, one that resolves, one new, one that grows.
STAYS, RESOLVES, NEW, GROWS = (24, 18, 14), (14, 34, 22), (30, 38, 28), (20, 28, 30)


def _sessions() -> dict[str, dict[str, np.ndarray]]:
    """Baseline and follow-up images and lesion maps of one subject, on one grid."""
    out = {}
    for session, balls in (("1", [(STAYS, 3), (RESOLVES, 3), (GROWS, 2)]),
                           ("2", [(STAYS, 3), (NEW, 3), (GROWS, 3.5)])):
        image, brain = _head(seed=int(session))
        lesions = np.zeros(SHAPE, bool)
        for centre, radius in balls:
            lesions |= _ball(centre, radius)
        image[lesions] += 120.0
        out[session] = {"image": image, "map": lesions.astype(np.float32), "brain": brain}
    return out


def test_lesion_changes_reads_new_enlarging_and_resolved() -> None:
    """Each kind is read where it happened; the lesion that stayed is no change."""
    s = _sessions()
    affine = np.diag([VOXEL_MM] * 3 + [1.0])
    changes = lesion_changes(s["2"]["map"], s["1"]["map"], s["2"]["image"], s["1"]["image"],
                             s["2"]["brain"], affine)
    kinds = {row["change"]: row for row in changes.rows}
    assert sorted(kinds) == ["enlarging", "new", "resolved"]
    for kind, centre in (("new", NEW), ("resolved", RESOLVES), ("enlarging", GROWS)):
        row = kinds[kind]
        assert np.linalg.norm(np.array([row["centre_i"], row["centre_j"], row["centre_k"]])
                              - centre) < 3.0, kind
    assert kinds["new"]["mean_z"] > 2 and kinds["resolved"]["mean_z"] < -2
    assert kinds["new"]["lesion_volume_baseline_mm3"] == 0.0
    assert kinds["enlarging"]["lesion_volume_baseline_mm3"] > 0.0
    assert (changes.counts == {"new": 1, "enlarging": 1, "shrinking": 0, "resolved": 1})
    assert changes.labels[STAYS] == 0
    assert set(np.unique(changes.labels)) == {0, 1, 2, 3}
    # the grown part only, not the lesion's old core, is the enlarging change
    assert changes.labels[GROWS] == 0
    sizes = [row["volume_mm3"] for row in changes.rows]
    assert sizes == sorted(sizes, reverse=True)


def test_a_map_that_differs_where_the_image_did_not_change_is_no_change() -> None:
    """A lesion called at follow-up only (a map's error) where the image did not change
    is not new, and neither is one the baseline map missed where the image shows it."""
    s = _sessions()
    affine = np.diag([VOXEL_MM] * 3 + [1.0])
    follow_map = s["2"]["map"].copy()
    follow_map[_ball((34, 20, 16), 3)] = 0.9  # a map error: the image is the same there
    base_map = s["1"]["map"].copy()
    base_map[_ball(STAYS, 3)] = 0.0  # the baseline map missed a lesion the image holds
    changes = lesion_changes(follow_map, base_map, s["2"]["image"], s["1"]["image"],
                             s["2"]["brain"], affine)
    assert changes.labels[34, 20, 16] == 0 and changes.labels[STAYS] == 0
    assert changes.counts == {"new": 1, "enlarging": 1, "shrinking": 0, "resolved": 1}


def test_thresholds_decide() -> None:
    """A higher z threshold than the change drops it; a size floor drops small ones."""
    s = _sessions()
    affine = np.diag([VOXEL_MM] * 3 + [1.0])
    args = (s["2"]["map"], s["1"]["map"], s["2"]["image"], s["1"]["image"], s["2"]["brain"],
            affine)
    assert sum(lesion_changes(*args, ChangeReading(z_threshold=1000.0)).counts.values()) == 0
    assert sum(lesion_changes(*args, ChangeReading(min_ml=2.0)).counts.values()) == 0
    import inspect

    from lesionkit import cli

    given = inspect.signature(cli.changes).parameters["min_change_ml"].default
    assert round(MIN_CHANGE_ML, 4) == given  # the command's default is the module's


def test_session_order(tmp_path: Path) -> None:
    """Given order, then acq_time of sessions.tsv, then labels with numbers as numbers."""
    raw = tmp_path / "raw" / "sub-01"
    maps = []
    for session in ("10", "2", "baseline"):
        source = raw / f"ses-{session}" / "anat" / f"sub-01_ses-{session}_FLAIR.nii.gz"
        path = tmp_path / "pred" / f"sub-01_ses-{session}_label-lesion_probseg.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(
            json.dumps({"Sources": [str(source)]}))
        maps.append(SessionMap(path, "01", session, ()))
    assert [m.session for m in session_order(maps)] == ["2", "10", "baseline"]
    assert [m.session for m in session_order(maps, ["baseline", "10"])] == ["baseline", "10"]
    raw.mkdir(parents=True)
    (raw / "sub-01_sessions.tsv").write_text(
        "session_id\tacq_time\nses-baseline\t2020-01-01T10:00:00\n"
        "ses-2\t2021-06-01T10:00:00\nses-10\t2021-01-01T10:00:00\n")
    assert [m.session for m in session_order(maps)] == ["baseline", "10", "2"]


def _write_predictions(root: Path, shift_mm: float = 0.0) -> Path:
    """Raw images and predict-like maps (with sidecars) of two sessions; the baseline
    stored with its head shifted by ``shift_mm`` along x in world space."""
    s = _sessions()
    predictions = root / "pred"
    for session in ("1", "2"):
        affine = np.diag([FILE_VOXEL_MM] * 3 + [1.0])
        if session == "1":
            affine[0, 3] = shift_mm
        source = root / "raw" / "sub-01" / f"ses-{session}" / "anat" / (
            f"sub-01_ses-{session}_FLAIR.nii.gz")
        source.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(s[session]["image"], affine), source)
        folder = predictions / "sub-01" / f"ses-{session}" / "anat"
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"sub-01_ses-{session}_label-lesion_desc-flairlesion_probseg"
        nib.save(nib.Nifti1Image(s[session]["map"], affine), folder / f"{stem}.nii.gz")
        (folder / f"{stem}.json").write_text(json.dumps(
            {"Sources": [str(source)], "Task": "flair-lesion"}))
        nib.save(nib.Nifti1Image(s[session]["brain"].astype(np.uint8), affine),
                 folder / f"sub-01_ses-{session}_label-brain_desc-flairlesion_mask.nii.gz")
    return predictions


def test_compare_registers_and_writes(tmp_path: Path) -> None:
    """Sessions whose heads lie 6 mm apart in world space are co-registered; the label
    map, its sidecar and table, and the summary row are written; an uncertainty map
    beside a lesion map is not read as one."""
    predictions = _write_predictions(tmp_path, shift_mm=6.0)
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


def test_one_session_is_refused_in_one_line(tmp_path: Path) -> None:
    """A folder without two sessions of a subject names what it found."""
    predictions = _write_predictions(tmp_path)
    for path in (predictions / "sub-01" / "ses-1" / "anat").iterdir():
        path.unlink()
    with pytest.raises(InputError, match=r"two or more sessions.*session\(s\) 2$"):
        compare(predictions)
    with pytest.raises(InputError, match="expected the predictions folder"):
        compare(tmp_path / "missing")


def test_score_changes_by_direction_or_any() -> None:
    """Hand-made: a new lesion found by an increase, a resolved one missed (the call there is
    an increase, the wrong direction, and so also false), a call elsewhere false; without
    kinds in the truth, direction does not count."""
    truth = np.zeros((20, 20, 20), np.int64)
    truth[2:5, 2:5, 2:5] = 1  # new
    truth[10:13, 10:13, 10:13] = 4  # resolved
    labels = np.zeros_like(truth)
    labels[3:6, 3:6, 3:6] = 1  # increase on the new lesion
    labels[11:13, 11:13, 11:13] = 2  # increase on the resolved lesion
    labels[16:18, 16:18, 16:18] = 3  # elsewhere
    kinds = {1: "new", 2: "enlarging", 3: "shrinking"}
    coded = score_changes(labels, kinds, truth, coded=True)
    assert (coded["true_changes"], coded["found"], coded["calls"], coded["false_calls"]) == (
        2, 1, 3, 2)
    assert (coded["new_true"], coded["new_found"], coded["resolved_true"],
            coded["resolved_found"]) == (1, 1, 1, 0)
    assert (coded["increase_calls"], coded["increase_false"], coded["decrease_calls"],
            coded["decrease_false"]) == (2, 1, 1, 1)
    assert coded["sensitivity"] == 0.5 and coded["ppv"] == round(1 / 3, 4)
    assert coded["f1"] == round(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3), 4)
    both = ((labels > 0) & (truth > 0)).sum()
    assert coded["dice"] == round(2 * both / ((labels > 0).sum() + (truth > 0).sum()), 4)
    plain = score_changes(labels, kinds, (truth > 0).astype(np.int64), coded=False)
    assert (plain["found"], plain["false_calls"]) == (2, 1) and "new_true" not in plain
    empty = score_changes(np.zeros_like(truth), {}, np.zeros_like(truth), coded=False)
    assert empty["sensitivity"] is None and empty["ppv"] is None and empty["f1"] is None
    assert empty["dice"] == 1.0  # two empty maps agree, as metrics.segmentation.dice
    missed = score_changes(np.zeros_like(truth), {}, truth, coded=True)
    assert missed["sensitivity"] == 0.0 and missed["ppv"] is None and missed["f1"] is None


def test_compare_scores_against_a_change_truth(tmp_path: Path, capsys) -> None:
    """--truth: a label-change_dseg of the later session, laid where the changes happened,
    gives every change found and no false call; without a truth, one line says so."""
    from lesionkit.cli import run

    predictions = _write_predictions(tmp_path)
    truth = np.zeros(SHAPE, np.int16)
    truth[_ball(NEW, 3)] = 1
    truth[_ball(GROWS, 3.5) & ~_ball(GROWS, 2)] = 2
    truth[_ball(RESOLVES, 3)] = 4
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
    predictions = _write_predictions(tmp_path)
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
    predictions = _write_predictions(tmp_path)
    beneath = tmp_path / "raw" / "derivatives" / "lesionkit"
    beneath.parent.mkdir()
    predictions.rename(beneath)
    written, table = compare(tmp_path / "raw")
    assert table == beneath / "task-flair-lesion_lesionchange.tsv"
    assert all(beneath in path.parents for path in written)


def test_sessions_that_name_no_maps_are_said_so(tmp_path: Path) -> None:
    predictions = _write_predictions(tmp_path)
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
    predictions = _write_predictions(tmp_path)
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
    predictions = _write_predictions(tmp_path)
    (tmp_path / "raw" / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_FLAIR.nii.gz").unlink()
    with pytest.raises(InputError, match=r"ses-1_FLAIR\.nii\.gz \(Sources\), found no such"):
        compare(predictions, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_changes(tmp_path: Path) -> None:
    """The command's one-line error and exit status."""
    from lesionkit.cli import run

    predictions = _write_predictions(tmp_path)
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
    predictions = _write_predictions(tmp_path)
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

    predictions = _write_predictions(tmp_path)
    assert run(["changes", str(predictions), "--sessions", "ses-2,1", "--out-dir",
                str(tmp_path / "out")]) == 0
    [written] = (tmp_path / "out").rglob("*change_dseg.json")
    sidecar = json.loads(written.read_text())
    assert (sidecar["BaselineSession"], sidecar["FollowUpSession"]) == ("2", "1")
