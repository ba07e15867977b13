"""Scans named one by one (``predict --image``) laid out where the task looks for them."""

from __future__ import annotations

from pathlib import Path

import pytest

from lesionkit.bids import BIDSDataset
from lesionkit.files import dataset_of_files
from lesionkit.io import InputError
from lesionkit.tasks import get_task


def test_files_are_laid_out_where_the_task_looks_for_them(tmp_path: Path) -> None:
    source = tmp_path / "scans"
    source.mkdir()
    for name in ("t1c.nii.gz", "t1.nii", "flair.nii.gz", "mask.nii.gz", "notes.txt",
                 "flair.mgz"):
        (source / name).write_bytes(b"")
    (source / "t1c.json").write_text('{"Units": "a.u."}')
    task = get_task("contrast-amplify-noadc")  # two T1w images told apart by entities
    images = {"t1c": source / "t1c.nii.gz", "t1w": source / "t1.nii",
              "flair": source / "flair.nii.gz", "brain": source / "mask.nii.gz"}
    root = tmp_path / "ds"
    sources = dataset_of_files(task, images, root, "p7")
    dataset = BIDSDataset(root)
    for spec in (*task.prediction_inputs, task.mask):
        found = dataset.get("p7", spec.suffix, **spec.query())
        assert sources[str(found.path)] == str(images[spec.key].resolve())
    t1c = dataset.get("p7", "T1w", acq="standard", ce="gadolinium")
    assert t1c.sidecar.resolve() == source / "t1c.json"
    for wrong, message in (({**images, "adc": source / "t1.nii"}, "found unknown adc"),
                           ({"t1c": source / "t1c.nii.gz"}, "found none for t1w, flair"),
                           ({**images, "flair": source / "notes.txt"}, "another kind of file"),
                           ({**images, "flair": source / "flair.mgz"}, "FreeSurfer MGH image "
                            r"\(convert it: nib-convert"),
                           ({**images, "flair": source / "x.nii"}, "no such file")):
        with pytest.raises(InputError, match=message):
            dataset_of_files(task, wrong, tmp_path / "other", "p7")
        assert not (tmp_path / "other").exists()  # checked before anything is made
    with pytest.raises(InputError, match="one subject label of letters and digits"):
        dataset_of_files(task, images, tmp_path / "other", "p_7")


def test_image_keys_are_read_in_any_case_or_as_the_images_bids_suffix(tmp_path: Path) -> None:
    """``--image FLAIR=...`` and ``--image mask=...`` name the task's flair and brain images;
    a key wins over a suffix two images share (T1W is t1w, not t1c, whose suffix is also
    T1w), and two keys for one image are refused before anything is made."""
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(b"")
    task = get_task("flair-lesion-dr")
    sources = dataset_of_files(task, {"FLAIR": scan, "T1W": scan, "mask": scan},
                               tmp_path / "ds", "p7")
    assert sorted(Path(link).name for link in sources) == [
        "sub-p7_FLAIR.nii.gz", "sub-p7_T1w.nii.gz", "sub-p7_desc-brain_mask.nii.gz"]
    with pytest.raises(InputError, match="expected one file for image flair, found two"):
        dataset_of_files(task, {"flair": scan, "FLAIR": scan, "t1w": scan},
                         tmp_path / "other", "p7")
    assert not (tmp_path / "other").exists()
    t1c = tmp_path / "t1c.nii.gz"
    t1c.write_bytes(b"")
    sources = dataset_of_files(get_task("contrast-amplify-noadc"),
                               {"T1W": scan, "T1C": t1c, "Flair": scan}, tmp_path / "ca", "p7")
    assert {Path(link).name: Path(file).name for link, file in sources.items()} == {
        "sub-p7_acq-standard_ce-gadolinium_T1w.nii.gz": "t1c.nii.gz",
        "sub-p7_T1w.nii.gz": "scan.nii.gz", "sub-p7_FLAIR.nii.gz": "scan.nii.gz"}


def test_files_of_one_visit_are_laid_out_in_its_session(tmp_path: Path) -> None:
    """``--sessions`` with ``--image``: the links lie in ``ses-<label>``, so the outputs of
    two visits lie side by side; a task whose images have sessions of their own, or a label
    that is no BIDS label, is refused before anything is made."""
    source = tmp_path / "FLAIR 3D.nii.gz"
    source.write_bytes(b"")
    sources = dataset_of_files(get_task("flair-only-lesion-dr"), {"flair": source},
                               tmp_path / "ds", "p7", "2")
    [link] = sources
    assert Path(link) == tmp_path / "ds/sub-p7/ses-2/anat/sub-p7_ses-2_FLAIR.nii.gz"
    assert BIDSDataset(tmp_path / "ds").get("p7", "FLAIR", session="2").path == Path(link)
    with pytest.raises(InputError, match=r"reads its images from session\(s\) 3T;"):
        dataset_of_files(get_task("enhance-r1"), {"r1_3t": source}, tmp_path / "r1", "p7", "2")
    with pytest.raises(InputError, match="one session label of letters and digits"):
        dataset_of_files(get_task("flair-only-lesion-dr"), {"flair": source},
                         tmp_path / "other", "p7", "visit-2")
    assert not (tmp_path / "r1").exists() and not (tmp_path / "other").exists()
