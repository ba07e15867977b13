"""Tests of the BIDS-App call (``lesionkit-bids BIDS_DIR OUTPUT_DIR LEVEL``)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from lesionkit import __version__
from lesionkit.bids_app import run, spread


@pytest.fixture(scope="module")
def enhance(tmp_path_factory) -> tuple[Path, Path]:
    """(three tiny enhance-r1 participants, a tiny model trained one step on them)."""
    from conftest import tiny, write_task_dataset
    from lesionkit.tasks import get_task
    from lesionkit.training import train

    root = tmp_path_factory.mktemp("enhance")
    task = tiny(get_task("enhance-r1"))
    data = write_task_dataset(root / "bids", task, subjects=3)
    model = train(task, data, root / "model", epochs=1, max_steps=1, progress=False,
                  device="cpu")
    return data, model


@pytest.fixture(scope="module")
def lesions(tmp_path_factory) -> tuple[Path, Path]:
    """(three tiny participants of the toy per-lesion task, its tiny model)."""
    from conftest import TOY_LESION_TASK, tiny, write_task_dataset
    from lesionkit.training import train

    root = tmp_path_factory.mktemp("lesions")
    task = tiny(TOY_LESION_TASK)
    data = write_task_dataset(root / "bids", task, subjects=3)
    model = train(task, data, root / "model", epochs=1, max_steps=1, progress=False,
                  device="cpu")
    return data, model


def digest(folder: Path) -> str:
    """One hash of every file's path and bytes under ``folder``."""
    hashed = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        hashed.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            hashed.update(path.read_bytes())
    return hashed.hexdigest()


def test_console_script_is_declared() -> None:
    import tomllib
    from importlib.metadata import entry_points

    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    scripts = tomllib.loads(pyproject.read_text())["project"]["scripts"]
    assert scripts["lesionkit-bids"] == "lesionkit.bids_app:run"
    (point,) = [e for e in entry_points(group="console_scripts") if e.name == "lesionkit-bids"]
    assert point.value == "lesionkit.bids_app:run"


def test_label_lists_are_spread_like_argparse_nargs() -> None:
    assert spread(["b", "o", "participant", "--participant-label", "01", "sub-02", "--tta",
                   "2", "--participant_label", "03,04"]) == [
        "b", "o", "participant", "--participant-label", "01", "--participant-label", "sub-02",
        "--tta", "2", "--participant_label", "03", "--participant_label", "04"]
    assert spread(["b", "o", "participant", "--bids-filter", "FLAIR:acq=3D", "rec=norm"]) == [
        "b", "o", "participant", "--bids-filter", "FLAIR:acq=3D", "--bids-filter", "rec=norm"]


def test_help_and_version_import_no_torch() -> None:
    code = ("import sys; from lesionkit.bids_app import run; status = run(['--version']); "
            "print('torch' in sys.modules, status)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["lesionkit-bids", __version__, "False", "0"]


def test_participant_level_writes_a_derivatives_dataset_into_output_dir_only(
        enhance, tmp_path) -> None:
    data, model = enhance
    before = digest(data)
    out = tmp_path / "out"
    status = run([str(data), str(out), "participant", "--participant-label", "01", "sub-03",
                  "--task", "enhance-r1", "--model", str(model), "--device", "cpu"])
    assert status == 0
    assert digest(data) == before  # BIDS_DIR is never written to
    assert sorted(p.name for p in out.iterdir()) == [
        "dataset_description.json", "sub-01", "sub-01_ses-3T.html", "sub-03",
        "sub-03_ses-3T.html"]  # a viewer page per participant and session, as fMRIPrep's
    assert "lesionkit enhance-r1: sub-01 ses-3T" in (out / "sub-01_ses-3T.html").read_text(
        encoding="utf-8")
    maps = sorted(p.name for p in out.rglob("*.nii.gz"))
    assert maps and all(name.startswith(("sub-01_", "sub-03_")) for name in maps)
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["BIDSVersion"]
    (step,) = description["GeneratedBy"]
    assert step["Name"] == "lesionkit" and step["Version"] == __version__
    assert step["Parameters"]["task"] == "enhance-r1"
    assert step["Parameters"]["model"] == str(model.resolve())
    assert description["SourceDatasets"][0]["URL"] == data.resolve().as_uri()
    sidecar = next(out.rglob("*_R1map.json"))
    assert all(s.startswith(str(data.resolve())) for s in json.loads(sidecar.read_text())
               ["Sources"])
    # Running again for another participant adds it beside the others.
    assert run([str(data), str(out), "participant", "--participant-label", "02", "--task",
                "enhance-r1", "--model", str(model), "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.glob("sub-*[0-9]")) == ["sub-01", "sub-02", "sub-03"]
    # Outputs of other acquisitions would take the same names: another filter is refused.
    before = digest(out)
    assert run([str(data), str(out), "participant", "--participant-label", "02", "--task",
                "enhance-r1", "--model", str(model), "--bids-filter", "R1map:rec=norm"]) == 1
    assert digest(out) == before


def test_a_refused_participant_is_named_and_the_others_are_predicted(enhance, tmp_path,
                                                                     capsys) -> None:
    """As fMRIPrep goes on past a participant that fails: one line for it, the others
    written, exit status 1 and a last line listing the refused; --stop-on-first-crash
    stops there."""
    import shutil

    from lesionkit.io import load_volume, save_volume
    from lesionkit.volume import Volume

    source, model = enhance
    data = shutil.copytree(source, tmp_path / "bids")
    broken = next((data / "sub-02").rglob("sub-02_ses-3T_R1map.nii.gz"))
    volume = load_volume(broken)
    save_volume(Volume(np.zeros(volume.shape, np.float32), volume.affine), broken)
    common = [str(data), "participant", "--task", "enhance-r1", "--model", str(model),
              "--device", "cpu"]
    capsys.readouterr()
    assert run([common[0], str(tmp_path / "out"), *common[1:], "-v"]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    listed = [Path(line) for line in captured.out.splitlines() if line.startswith("/")]
    assert listed and all(p.is_file() for p in listed)  # -v lists what was written
    assert {p.relative_to(tmp_path / "out").parts[0] for p in listed} >= {"sub-01", "sub-03"}
    assert len(errors) == 2
    assert "sub-02_ses-3T_R1map.nii.gz: expected an image, found only zero" in errors[0]
    assert errors[1].endswith("found 1 of 3 refused, each named above: sub-02")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "dataset_description.json", "sub-01", "sub-01_ses-3T.html", "sub-03",
        "sub-03_ses-3T.html"]  # no staging folder left behind
    assert run([common[0], str(tmp_path / "stop"), *common[1:], "--stop-on-first-crash"]) == 1
    assert sorted(p.name for p in (tmp_path / "stop").glob("sub-*[0-9]")) == ["sub-01"]


def test_unknown_participant_label_is_one_line_naming_it(enhance, tmp_path, capsys) -> None:
    data, model = enhance
    status = run([str(data), str(tmp_path / "out"), "participant", "--participant-label",
                  "01", "07", "--task", "enhance-r1", "--model", str(model)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1
    assert "unknown 07" in err[0] and "01, 02, 03" in err[0]
    assert not (tmp_path / "out").exists()


def test_output_dir_that_would_write_into_bids_dir_is_refused(enhance, capsys) -> None:
    data, model = enhance
    before = digest(data)
    for out in (data, data / "predictions"):
        status = run([str(data), str(out), "participant", "--task", "enhance-r1", "--model",
                      str(model)])
        assert status == 1 and "derivatives/" in capsys.readouterr().err
    assert digest(data) == before


def test_a_model_of_another_task_is_refused(enhance, tmp_path, capsys) -> None:
    data, model = enhance
    status = run([str(data), str(tmp_path / "out"), "participant", "--task", "mrf-lesion",
                  "--model", str(model)])
    assert status == 1
    assert "expected a model of task mrf-lesion, found one of task enhance-r1" in (
        capsys.readouterr().err)


def test_model_defaults_to_the_shipped_model_named_like_the_task(enhance, tmp_path,
                                                                 monkeypatch) -> None:
    import shutil

    from lesionkit import shipped

    data, model = enhance
    shutil.copytree(model, tmp_path / "shipped" / "enhance-r1")
    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path / "shipped")
    out = tmp_path / "out"
    assert run([str(data), str(out), "participant", "--participant-label", "02", "--task",
                "enhance-r1", "--device", "cpu"]) == 0
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["GeneratedBy"][0]["Parameters"]["model"] == "enhance-r1"


def test_group_level_of_an_images_task_says_there_is_nothing_to_combine(
        enhance, tmp_path, capsys) -> None:
    data, model = enhance
    out = tmp_path / "out"
    assert run([str(data), str(out), "participant", "--participant-label", "01", "--task",
                "enhance-r1", "--model", str(model), "--device", "cpu"]) == 0
    capsys.readouterr()
    assert run([str(data), str(out), "group", "--task", "enhance-r1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "nothing to combine" in lines[1]
    assert lines[0] == f"wrote {out / 'index.html'} (the participants' pages)"
    assert not list(out.glob("group_*"))
    assert 'href="sub-01_ses-3T.html"' in (out / "index.html").read_text()  # maps only


def test_group_level_combines_the_participants_tables(lesions, tmp_path, monkeypatch) -> None:
    from conftest import TOY_LESION_TASK
    from lesionkit import tasks

    monkeypatch.setitem(tasks.TASKS, TOY_LESION_TASK.name, TOY_LESION_TASK)
    data, model = lesions
    out = tmp_path / "out"
    for label in ("01", "02", "03"):  # one run per participant, as on a cluster
        assert run([str(data), str(out), "participant", "--participant-label", label,
                    "--task", "toy-lesions", "--model", str(model), "--device", "cpu"]) == 0
    assert run([str(data), str(out), "group", "--task", "toy-lesions"]) == 0
    table = pd.read_csv(out / "group_desc-bright_lesions.tsv", sep="\t")
    assert list(table.columns[:2]) == ["participant_id", "label"]
    assert table.groupby("participant_id").size().to_dict() == {"sub-01": 4, "sub-02": 4,
                                                                 "sub-03": 4}
    assert table["probability"].between(0, 1).all()
    index = (out / "index.html").read_text()  # a row per participant's page
    assert all(f'href="sub-{label}.html"' in index for label in ("01", "02", "03"))
    assert run([str(data), str(out), "group", "--task", "toy-lesions", "--participant-label",
                "02"]) == 0
    assert set(pd.read_csv(out / "group_desc-bright_lesions.tsv", sep="\t")
               ["participant_id"]) == {"sub-02"}


def test_group_level_without_participant_outputs_is_one_line(enhance, tmp_path,
                                                             capsys) -> None:
    data, _ = enhance
    status = run([str(data), str(tmp_path / "out"), "group", "--task", "enhance-r1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1 and "run the participant level first" in err[0]


def test_tables_of_several_participants_are_split_per_participant_and_session(
        tmp_path) -> None:
    from lesionkit.bids_app import _moved
    from lesionkit.io import write_tsv

    staging = tmp_path / "staging"
    write_tsv([{"participant_id": "sub-01", "session_id": "ses-A", "patient": 0.2},
               {"participant_id": "sub-01", "session_id": "ses-B", "patient": "n/a"}],
              staging / "task-x_predictions.tsv")
    written = _moved(staging, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "sub-01/ses-A/sub-01_ses-A_predictions.tsv", "sub-01/ses-B/sub-01_ses-B_predictions.tsv"]
    assert "n/a" in written[1].read_text()


def _into_sessions(root: Path, sessions: tuple[str, ...]) -> Path:
    """Each subject's files (raw and derivatives) copied into every session, the flat
    files removed: a longitudinal copy of a tiny dataset."""
    import shutil

    for anat in [p for p in root.rglob("anat") if "ses-" not in str(p)]:
        subject = anat.parent.name
        for session in sessions:
            target = anat.parent / f"ses-{session}" / "anat"
            target.mkdir(parents=True)
            for path in anat.iterdir():
                name = path.name.replace(f"{subject}_", f"{subject}_ses-{session}_", 1)
                shutil.copy(path, target / name)
        shutil.rmtree(anat)
    return root


def test_session_label_predicts_only_those_sessions(lesions, tmp_path, capsys,
                                                   monkeypatch) -> None:
    import shutil

    from conftest import TOY_LESION_TASK
    from lesionkit import tasks

    monkeypatch.setitem(tasks.TASKS, TOY_LESION_TASK.name, TOY_LESION_TASK)
    data, model = lesions
    bids = _into_sessions(Path(shutil.copytree(data, tmp_path / "bids")), ("A", "B"))
    out = tmp_path / "out"
    assert run([str(bids), str(out), "participant", "--task", "toy-lesions", "--model",
                str(model), "--participant-label", "01", "--session-label", "ses-B"]) == 0
    written = sorted(p.relative_to(out).parts[1] for p in out.rglob("sub-01_*.nii.gz"))
    assert written and set(written) == {"ses-B"}
    assert run([str(bids), str(tmp_path / "out2"), "participant", "--task", "toy-lesions",
                "--model", str(model), "--session-label", "C"]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--session-label" in error[0] and "A, B" in error[0]
    assert not (tmp_path / "out2").exists()


def test_changes_that_cannot_be_read_leave_the_maps_with_a_warning(
        tmp_path, monkeypatch, lesions, capsys) -> None:
    """The lesion changes are an extra of the participant level: a pair they cannot read
    is a warning naming the participant, its maps are kept and the exit status is 0."""
    import shutil

    from conftest import TOY_LESION_TASK
    from lesionkit import longitudinal, session_maps, tasks
    from lesionkit.io import InputError

    monkeypatch.setitem(tasks.TASKS, TOY_LESION_TASK.name, TOY_LESION_TASK)

    def refuse(*args, **kwargs):
        raise InputError("mask.nii.gz: expected a brain mask of at least 200 mL,\nfound 0.0 mL")

    monkeypatch.setattr(session_maps, "has_pairs", lambda *args, **kwargs: True)
    monkeypatch.setattr(longitudinal, "compare", refuse)
    data, model = lesions
    bids = _into_sessions(Path(shutil.copytree(data, tmp_path / "bids")), ("A", "B"))
    out = tmp_path / "out"
    assert run([str(bids), str(out), "participant", "--task", "toy-lesions", "--model",
                str(model), "--participant-label", "01"]) == 0
    assert {p.relative_to(out).parts[1] for p in out.rglob("sub-01_*.nii.gz")} == {
        "ses-A", "ses-B"}
    assert ("warning: no lesion changes for sub-01: mask.nii.gz: expected a brain mask of at "
            "least 200 mL, found 0.0 mL") in capsys.readouterr().err


@pytest.mark.slow
def test_a_participant_of_two_visits_gets_its_lesion_changes(tmp_path) -> None:
    """The real sample's two visits in one dataset through the FLAIR-only shipped model:
    the participant level writes the changes and their table per visit, the group level
    gathers them; --no-changes leaves them out; with one job per session, the later
    session's first, the second job writes the same changes and the later session's page
    shows them."""
    import shutil

    data = Path(__file__).parent / "data"
    bids = Path(shutil.copytree(data / "realpatient", tmp_path / "bids"))
    shutil.copytree(data / "realpatient-study1" / "sub-patient01" / "ses-study1",
                    bids / "sub-patient01" / "ses-study1")
    out = tmp_path / "out"
    assert run([str(bids), str(out), "participant", "--task", "flair-only-lesion-dr",
                "--threads", "2"]) == 0
    folder = out / "sub-patient01" / "ses-study2"
    assert list(folder.rglob("*_desc-flaironlylesiondrchange_dseg.nii.gz"))
    assert (folder / "sub-patient01_ses-study2_lesionchange.tsv").is_file()
    assert "lesion changes" in (out / "sub-patient01_ses-study2.html").read_text()
    assert run([str(bids), str(out), "group", "--task", "flair-only-lesion-dr"]) == 0
    [row] = pd.read_csv(out / "group_lesionchange.tsv", sep="\t").to_dict("records")
    assert row["baseline_session_id"] == "ses-study1" and row["session_id"] == "ses-study2"
    assert row["new"] + row["enlarging"] >= 1
    index = (out / "index.html").read_text()
    assert 'href="sub-patient01_ses-study2.html"' in index and "since ses-study1: " in index
    plain = tmp_path / "plain"
    assert run([str(bids), str(plain), "participant", "--task", "flair-only-lesion-dr",
                "--threads", "2", "--no-changes"]) == 0
    assert not list(plain.rglob("*change*"))
    # one job per session, the later one first: the second job pairs its session with the
    # first job's and rebuilds the later session's page with the change layer
    jobs = tmp_path / "jobs"
    for session in ("study2", "study1"):
        assert run([str(bids), str(jobs), "participant", "--task", "flair-only-lesion-dr",
                    "--threads", "2", "--session-label", session]) == 0
    [label] = jobs.rglob("*_desc-flaironlylesiondrchange_dseg.nii.gz")
    [together] = folder.rglob("*_desc-flaironlylesiondrchange_dseg.nii.gz")
    assert np.array_equal(np.asarray(nib.load(label).dataobj),
                          np.asarray(nib.load(together).dataobj))
    assert "lesion changes" in (jobs / "sub-patient01_ses-study2.html").read_text()
    assert run([str(bids), str(jobs), "group", "--task", "flair-only-lesion-dr"]) == 0
    assert (jobs / "group_lesionchange.tsv").is_file()
