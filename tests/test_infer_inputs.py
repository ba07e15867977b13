"""Prediction on inputs as users have them: any intensity scale, orientation and voxel size,
truth in any pipeline, a read-only dataset, a real clinical scan."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchio as tio
from scipy import ndimage
from typer.testing import CliRunner

from lesionkit.bids import BIDSDataset, bids_path, write_dataset_description, write_participants
from lesionkit.cli import app
from lesionkit.evaluation import evaluate, report
from lesionkit.infer import predict
from lesionkit.io import InputError, load_volume, save_volume
from lesionkit.tasks import get_task
from lesionkit.tasks.strategies import QueueSampler
from lesionkit.training import train
from lesionkit.volume import Volume

SHAPE = (32, 32, 12)
AFFINE = np.array([[2.0, 0, 0, -30.0], [0, 2.0, 0, -34.0], [0, 0, 2.5, -10.0], [0, 0, 0, 1]])
REAL_SAMPLE = Path(__file__).parent / "data" / "realpatient"


def _head(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """FLAIR, T1w, brain and lesion masks of a small ellipsoidal 'brain' with lesions."""
    grid = np.indices(SHAPE).astype(float)
    centre = (np.array(SHAPE) - 1) / 2
    radius = np.array(SHAPE) * 0.42
    brain = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radius, strict=True)) <= 1
    lesion = np.zeros(SHAPE, bool)
    for _ in range(3):
        c = centre + rng.uniform(-5, 5, 3) * np.array([1, 1, 0.3])
        lesion |= sum(((g - x) / 2.0) ** 2 for g, x in zip(grid, c, strict=True)) <= 1
    lesion &= brain
    texture = ndimage.gaussian_filter(rng.normal(0, 1, SHAPE), 2.0)
    texture /= texture.std()
    # tissue fills the field of view (scalp, skull and CSF outside the brain mask)
    flair = 200 + 15 * texture + 120 * lesion - 20 * ~brain
    t1w = 600 - 20 * texture - 150 * lesion + 30 * ~brain
    return {"FLAIR": flair, "T1w": t1w, "brain": brain, "lesion": lesion}


def _write(root: Path, heads: dict[str, dict[str, np.ndarray]], affine=AFFINE,
           truth: str = "phantom", sessions: tuple[str | None, ...] = (None,)) -> Path:
    write_dataset_description(root, "tiny heads")
    for subject, head in heads.items():
        for session in sessions:
            for suffix in ("FLAIR", "T1w"):
                save_volume(Volume(head[suffix].astype(np.float32), affine),
                            bids_path(root, subject, suffix, session=session))
            save_volume(Volume(head["brain"].astype(np.uint8), affine, "label"), bids_path(
                root, subject, "mask", session=session, derivatives="phantom", desc="brain"))
            save_volume(Volume(head["lesion"].astype(np.uint8), affine, "label"), bids_path(
                root, subject, "mask", session=session, derivatives=truth, label="lesion"))
    write_participants(root, [{"participant_id": f"sub-{s}"} for s in heads])
    return root


def _tiny_task():  # -> Task
    """flair-lesion with a tiny 2D U-Net."""
    return replace(get_task("flair-lesion"),
                   network_kwargs={"channels": (4, 4, 8, 8, 16), "bridge_dropout": 0.0},
                   sampler=QueueSampler((16, 16, 1), 8, centre_on="mask", oversample="lesion",
                                        oversample_factor=5.0), batch_size=4, learning_rate=3e-3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny flair-lesion model (a few steps) and its dataset of three heads."""
    root = tmp_path_factory.mktemp("heads")
    rng = np.random.default_rng(3)
    data = _write(root / "bids", {f"0{i}": _head(rng) for i in (1, 2, 3)})
    model = train(_tiny_task(), data, root / "model", epochs=8, max_steps=60, progress=False,
                  device="cpu", subjects=["01", "02"])
    return model, data


def _prediction(folder: Path, subject: str = "03") -> Volume:
    found = BIDSDataset(folder).find(subject=subject, suffix="probseg", label="lesion",
                                     desc="flairlesion")
    return load_volume(found[0].path)


def _copy_subject(data: Path, out: Path, change, subject: str = "03") -> Path:
    """A dataset with a subject's images (and masks) rewritten by ``change(volume, kind)``."""
    write_dataset_description(out, "changed")
    dataset = BIDSDataset(data)
    for source in [f for pipeline in (None, "phantom")
                   for f in dataset.find(subject=subject, derivatives=pipeline)]:
        kind = "label" if source.suffix == "mask" else "intensity"
        volume = load_volume(source.path, kind=kind)
        target = out / source.path.relative_to(data)
        save_volume(change(volume, source.suffix), target)
    return out


def test_per_image_normalisation_ignores_scale_and_offset(trained, tmp_path: Path) -> None:
    model, data = trained
    predict(model, data, device="cpu", progress=False, subjects=["03"], out_dir=tmp_path / "a")
    gains = {"FLAIR": (3.0, 50.0), "T1w": (0.25, 7.0)}

    def rescale(volume: Volume, suffix: str) -> Volume:
        gain, offset = gains.get(suffix, (1.0, 0.0))
        data = volume.data * gain + offset if suffix in gains else volume.data
        return replace(volume, data=np.asarray(data, np.float32))

    changed = _copy_subject(data, tmp_path / "scaled", rescale)
    predict(model, changed, device="cpu", progress=False, out_dir=tmp_path / "b")
    a, b = _prediction(tmp_path / "a").data, _prediction(tmp_path / "b").data
    assert a.std() > 1e-3  # the prediction depends on the image
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_sagittal_storage_gives_the_same_prediction(trained, tmp_path: Path) -> None:
    model, data = trained
    predict(model, data, device="cpu", progress=False, subjects=["03"], out_dir=tmp_path / "a")
    order = (2, 0, 1)  # slices stored along the former first axis

    def sagittal(volume: Volume, _: str) -> Volume:
        affine = volume.affine.copy()
        affine[:, :3] = volume.affine[:, list(order)]
        return replace(volume, data=np.ascontiguousarray(volume.data.transpose(order)),
                       affine=affine)

    changed = _copy_subject(data, tmp_path / "sagittal", sagittal)
    predict(model, changed, device="cpu", progress=False, out_dir=tmp_path / "b")
    canonical, stored = _prediction(tmp_path / "a"), _prediction(tmp_path / "b")
    assert stored.shape == tuple(SHAPE[i] for i in order)  # on the input's own grid
    np.testing.assert_allclose(stored.affine, sagittal(canonical, "").affine, atol=1e-5)
    np.testing.assert_allclose(stored.data.transpose(np.argsort(order)), canonical.data,
                               atol=1e-4)


def test_each_run_of_the_first_input_is_predicted_with_the_one_t1w(trained, tmp_path: Path
                                                                   ) -> None:
    model, data = trained
    predict(model, data, device="cpu", progress=False, subjects=["03"], out_dir=tmp_path / "a")
    runs = _copy_subject(data, tmp_path / "runs", lambda volume, _: volume)
    anat = runs / "sub-03" / "anat"
    flair = anat / "sub-03_FLAIR.nii.gz"
    shutil.copy(flair, anat / "sub-03_run-1_FLAIR.nii.gz")
    flipped = load_volume(flair)  # a second run that differs from the first
    save_volume(replace(flipped, data=np.ascontiguousarray(flipped.data[::-1])),
                anat / "sub-03_run-2_FLAIR.nii.gz")
    flair.unlink()
    predict(model, runs, device="cpu", progress=False, out_dir=tmp_path / "b")
    written = {f.entities.get("run"): load_volume(f.path) for f in BIDSDataset(
        tmp_path / "b").find(subject="03", suffix="probseg", label="lesion")}
    assert sorted(written) == ["1", "2"]
    sidecar = json.loads((tmp_path / "b" / "sub-03" / "anat" /
                          "sub-03_run-2_label-lesion_desc-flairlesion_probseg.json").read_text())
    assert [Path(s).name for s in sidecar["Sources"]][:2] == [
        "sub-03_run-2_FLAIR.nii.gz", "sub-03_T1w.nii.gz"]
    np.testing.assert_allclose(written["1"].data, _prediction(tmp_path / "a").data, atol=1e-5)
    assert np.abs(written["2"].data - written["1"].data).max() > 0.05
    # a second T1w without runs to tell them apart: one line naming both files
    shutil.copy(anat / "sub-03_T1w.nii.gz", anat / "sub-03_acq-mprage_T1w.nii.gz")
    with pytest.raises(InputError, match=r"expected one 'T1w' image .*found 2 files"):
        predict(model, runs, device="cpu", progress=False, out_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()


def _regridded(volume: Volume, suffix: str) -> Volume:
    """The T1w stored on another grid (shifted 1 mm), the rest as it was."""
    if suffix != "T1w":
        return volume
    affine = volume.affine.copy()
    affine[:3, 3] += [1.0, 0.0, 0.0]
    image = tio.ScalarImage(tensor=torch.from_numpy(
        np.asarray(volume.data, np.float32)[None]), affine=volume.affine)
    moved = tio.Resample((SHAPE, affine))(image)
    return replace(volume, data=moved.data[0].numpy(), affine=affine)


def test_t1w_displaced_from_the_flair_warns_or_stops(trained, tmp_path: Path, monkeypatch,
                                                     capsys) -> None:
    from lesionkit import geometry

    model, data = trained
    shifts: list[float] = []
    monkeypatch.setattr(geometry, "misalignment_mm", lambda image, reference: shifts[0])
    predict(model, data, device="cpu", progress=False, subjects=["03"], out_dir=tmp_path / "a")
    # FLAIR and T1w on one grid (one frame): not checked; shifts is empty
    changed = _copy_subject(data, tmp_path / "regridded", _regridded)
    shifts.append(5.0)
    predict(model, changed, device="cpu", progress=False, out_dir=tmp_path / "b")
    sidecar = json.loads(next((tmp_path / "b").rglob("*_probseg.json")).read_text())
    assert any("sub-03_T1w.nii.gz: displaced from sub-03_FLAIR.nii.gz by about 5.0 mm" in w
               for w in sidecar["Warnings"])
    assert "displaced" in capsys.readouterr().err
    shifts[0] = 12.0
    with pytest.raises(InputError, match=r"sub-03_T1w\.nii\.gz: expected an image aligned "
                                         r"with sub-03_FLAIR\.nii\.gz.*about 12 mm.*--register"):
        predict(model, changed, device="cpu", progress=False, out_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()
    predict(model, changed, device="cpu", progress=False, out_dir=tmp_path / "d",
            register=True)  # co-registered instead: not checked
    assert (tmp_path / "d").exists()


def test_training_stops_on_displaced_images_unless_registered(trained, tmp_path: Path,
                                                              monkeypatch) -> None:
    from lesionkit import geometry
    from lesionkit.model_folder import read_config

    _, data = trained
    monkeypatch.setattr(geometry, "misalignment_mm", lambda image, reference: 12.0)
    changed = tmp_path / "regridded"
    for subject in ("01", "02"):
        _copy_subject(data, changed, _regridded, subject)
    with pytest.raises(InputError, match=r"sub-0[12]_T1w\.nii\.gz: expected an image aligned "
                                         r"with .*about 12 mm.*--register"):
        train(_tiny_task(), changed, tmp_path / "a", epochs=1, max_steps=2, progress=False,
              device="cpu")
    assert not (tmp_path / "a").exists()
    result = CliRunner().invoke(app, ["train", "flair-lesion", str(changed), str(tmp_path / "b"),
                                      "--epochs", "1", "--channels", "4,4,8,8,16",
                                      "--patches-per-epoch", "8", "--device", "cpu",
                                      "--no-progress", "--register"])
    assert result.exit_code == 0, result.output
    assert read_config(tmp_path / "b")["training"]["register"] is True


def test_longitudinal_data_trains_on_one_session_and_is_scored_per_session(tmp_path: Path
                                                                           ) -> None:
    from lesionkit.model_folder import read_config

    rng = np.random.default_rng(5)
    data = _write(tmp_path / "long", {f"0{i}": _head(rng) for i in (1, 2, 3)},
                  sessions=("1", "2"))
    with pytest.raises(InputError, match=r"sub-01: expected one session of 'FLAIR' per "
                                         r"training subject, found ses-1, ses-2.*--session"):
        train(_tiny_task(), data, tmp_path / "a", epochs=1, max_steps=2, progress=False,
              device="cpu")
    assert not (tmp_path / "a").exists()
    model = train(_tiny_task(), data, tmp_path / "model", epochs=1, max_steps=2,
                  progress=False, device="cpu", session="2", subjects=["01", "02"])
    assert read_config(model)["training"]["session"] == "2"
    with pytest.raises(InputError, match=r"expected at least 2 training subjects .*at ses-9"):
        train(_tiny_task(), data, tmp_path / "none", epochs=1, progress=False, device="cpu",
              session="9")
    predict(model, data, device="cpu", progress=False, subjects=["03"], out_dir=tmp_path / "p")
    _, table = evaluate(get_task("flair-lesion"), data, predictions=tmp_path / "p")
    rows = json.loads(table.read_text())["rows"]
    assert [(r["participant_id"], r["session_id"]) for r in rows] == [("sub-03", "ses-1"),
                                                                      ("sub-03", "ses-2")]
    assert rows[0]["lesion_dice"] == pytest.approx(rows[1]["lesion_dice"])  # same images
    # every session an example, folds over subjects
    from lesionkit.infer import folds_for
    from lesionkit.model_folder import load_model
    from lesionkit.units import subjects_of

    every = train(_tiny_task(), data, tmp_path / "every", folds=3, epochs=1, max_steps=2,
                  progress=False, device="cpu", all_sessions=True)
    config = read_config(every)
    assert config["data"]["subjects"] == ["01_ses-1", "01_ses-2", "02_ses-1", "02_ses-2",
                                          "03_ses-1", "03_ses-2"]
    for fold in config["folds"]:
        assert len(fold["train"]) == 4 and len(fold["validation"]) == 2
        assert not set(subjects_of(fold["train"])) & set(subjects_of(fold["validation"]))
    held_out = folds_for(load_model(every), "03", data)
    assert len(held_out) == 1 and "03" not in subjects_of(held_out[0].train)
    # sub-03 of another dataset is someone else: every fold predicts it
    import shutil

    other = shutil.copytree(data, tmp_path / "other-dataset")
    assert len(folds_for(load_model(every), "03", other)) == 3
    predict(every, other, device="cpu", progress=False, subjects=["03"], tta=1,
            out_dir=tmp_path / "p-other")
    assert {json.loads(p.read_text())["Folds"] for p in (tmp_path / "p-other").rglob(
        "sub-03*.json")} == {3}
    with pytest.raises(InputError, match="expected --session or --all-sessions, found both"):
        train(_tiny_task(), data, tmp_path / "both", epochs=1, max_steps=2, progress=False,
              device="cpu", session="2", all_sessions=True)
    # cross-validation of that session: trained, predicted and scored at session 2 only
    from lesionkit.crossval import crossval

    crossval(_tiny_task(), data, tmp_path / "cv", folds=3, epochs=1, patches_per_epoch=8,
             device="cpu", progress=False, session="2")
    scored = json.loads((tmp_path / "cv" / "arm-default" / "predictions" /
                         "task-flair-lesion_metrics.json").read_text())
    assert scored["units"] == [["01", "2", None], ["02", "2", None], ["03", "2", None]]
    # and of every session, folds over subjects: each session scored by the fold that
    # did not train on its subject
    crossval(_tiny_task(), data, tmp_path / "cv-all", folds=3, epochs=1, patches_per_epoch=8,
             device="cpu", progress=False, all_sessions=True)
    arm = tmp_path / "cv-all" / "arm-default"
    scored = json.loads((arm / "predictions" / "task-flair-lesion_metrics.json").read_text())
    assert len(scored["units"]) == 6
    for fold in read_config(arm / "model")["folds"]:
        assert len(fold["train"]) == 4 and fold["train"][0].endswith(("_ses-1", "_ses-2"))
    sidecars = [json.loads(f.read_text()) for f in (arm / "predictions").rglob("*_probseg.json")]
    assert len(sidecars) == 6  # one fold each (3 when a fold's list hid the subject)
    assert all("not written: 1 ensemble member" in c["Uncertainty"] for c in sidecars)


def test_another_voxel_size_matches_after_resampling_back(trained, tmp_path: Path) -> None:
    model, data = trained
    predict(model, data, device="cpu", progress=False, subjects=["03"], out_dir=tmp_path / "a")
    # half the voxel edges over the same field of view (the grid a scanner would give)
    fine = AFFINE.copy()
    fine[:3, :3] = np.diag([1.0, 1.0, 1.25])
    fine[:3, 3] -= np.array([0.5, 0.5, 0.625])
    shape = (64, 64, 24)

    def finer(volume: Volume, suffix: str) -> Volume:
        image = tio.ScalarImage(tensor=torch.from_numpy(
            np.asarray(volume.data, np.float32)[None]), affine=volume.affine)
        interpolation = "nearest" if suffix == "mask" else "linear"
        moved = tio.Resample((shape, fine), image_interpolation=interpolation)(image)
        return replace(volume, data=moved.data[0].numpy(), affine=fine)

    changed = _copy_subject(data, tmp_path / "fine", finer)
    predict(model, changed, device="cpu", progress=False, out_dir=tmp_path / "b")
    canonical, other = _prediction(tmp_path / "a"), _prediction(tmp_path / "b")
    assert other.shape == shape
    back = tio.Resample((SHAPE, AFFINE))(tio.ScalarImage(
        tensor=torch.from_numpy(other.data[None].astype(np.float32)), affine=fine)).data[0]
    brain = load_volume(BIDSDataset(data).get("03", "mask", derivatives="phantom",
                                               desc="brain").path).data > 0
    inner = brain & np.roll(brain, 2, 0) & np.roll(brain, -2, 0) & np.roll(brain, 2, 1)
    a, b = canonical.data[inner], back.numpy()[inner]
    assert np.corrcoef(a, b)[0, 1] > 0.9
    assert np.abs(a - b).mean() < 0.5 * a.std()  # measured: 0.17 of it
    sidecar = json.loads(_sidecar(tmp_path / "b").read_text())
    assert sidecar["ModelVoxelSize"] == [2.0, 2.0, 2.5]
    assert next(iter(sidecar["InputVoxelSizes"].values())) == [1.0, 1.0, 1.25]


def test_truth_on_another_grid_than_the_prediction_is_resampled(trained, tmp_path: Path
                                                                ) -> None:
    """Images re-acquired on a finer, shifted grid; truth and mask stay on the old one."""
    model, data = trained
    fine = AFFINE.copy()
    fine[:3, :3] = np.diag([1.5, 1.5, 2.0])
    shape = (42, 42, 15)

    def finer(volume: Volume, suffix: str) -> Volume:
        if suffix == "mask":
            return volume
        image = tio.ScalarImage(tensor=torch.from_numpy(
            np.asarray(volume.data, np.float32)[None]), affine=volume.affine)
        moved = tio.Resample((shape, fine))(image)
        return replace(volume, data=moved.data[0].numpy(), affine=fine)

    changed = _copy_subject(data, tmp_path / "fine", finer)
    predict(model, changed, device="cpu", progress=False, out_dir=tmp_path / "p")
    tsv, _ = evaluate(get_task("flair-lesion"), changed, predictions=tmp_path / "p")
    row = tsv.read_text().splitlines()
    values = dict(zip(row[0].split("\t"), row[1].split("\t"), strict=True))
    # the tiny model is not calibrated (33 % is far from its best threshold): best Dice,
    # 0.85 on the original grid
    assert float(values["best_dice"]) > 0.5 and int(values["n_true_lesions"]) >= 1


def _sidecar(folder: Path) -> Path:
    found = BIDSDataset(folder).find(subject="03", suffix="probseg", desc="flairlesion")
    return found[0].sidecar


def test_thick_slices_warn_in_the_sidecar(trained, tmp_path: Path, capsys) -> None:
    model, data = trained
    thick = AFFINE.copy()
    thick[2, 2] = 6.0

    def slab(volume: Volume, _: str) -> Volume:
        return replace(volume, affine=thick)

    changed = _copy_subject(data, tmp_path / "thick", slab)
    predict(model, changed, device="cpu", progress=False, out_dir=tmp_path / "b")
    warnings = json.loads(_sidecar(tmp_path / "b").read_text())["Warnings"]
    assert any("6.0 mm edge" in w for w in warnings)
    assert "lesions thinner than the slices may be missed" in capsys.readouterr().err


def test_the_t1w_before_contrast_is_read_beside_a_post_contrast_one(trained, tmp_path: Path,
                                                                    capsys) -> None:
    """A session with a T1w and a ce-gadolinium T1w (as MS protocols acquire them) reads
    the first, as the model learnt; a post-contrast T1w alone is read with a warning."""
    model, data = trained
    both = _copy_subject(data, tmp_path / "both", lambda volume, _: volume)
    anat = both / "sub-03" / "anat"
    shutil.copy(anat / "sub-03_T1w.nii.gz", anat / "sub-03_ce-gadolinium_T1w.nii.gz")
    predict(model, both, device="cpu", progress=False, out_dir=tmp_path / "a")
    sidecar = json.loads(_sidecar(tmp_path / "a").read_text())
    assert [Path(p).name for p in sidecar["Sources"]] == ["sub-03_FLAIR.nii.gz",
                                                         "sub-03_T1w.nii.gz"]
    assert not sidecar.get("Warnings")
    (anat / "sub-03_T1w.nii.gz").unlink()
    predict(model, both, device="cpu", progress=False, out_dir=tmp_path / "b")
    sidecar = json.loads(_sidecar(tmp_path / "b").read_text())
    assert Path(sidecar["Sources"][1]).name == "sub-03_ce-gadolinium_T1w.nii.gz"
    assert any("carries ce-gadolinium" in w for w in sidecar["Warnings"])
    assert "read as the T1w, although it carries ce-gadolinium" in capsys.readouterr().err


def test_t1w_that_misses_part_of_the_brain_warns_in_the_sidecar(trained, tmp_path: Path,
                                                               capsys) -> None:
    model, data = trained
    predict(model, data, device="cpu", progress=False, subjects=["03"], out_dir=tmp_path / "a")
    assert not json.loads(_sidecar(tmp_path / "a").read_text()).get("Warnings")

    def crop_t1w(volume: Volume, suffix: str) -> Volume:  # a T1w with 10 fewer columns
        if suffix != "T1w":
            return volume
        affine = volume.affine.copy()
        affine[:3, 3] += affine[:3, :3] @ [10, 0, 0]
        return replace(volume, data=volume.data[10:], affine=affine)

    changed = _copy_subject(data, tmp_path / "cropped", crop_t1w)
    predict(model, changed, device="cpu", progress=False, out_dir=tmp_path / "b")
    warnings = json.loads(_sidecar(tmp_path / "b").read_text())["Warnings"]
    assert any(w.startswith("sub-03_T1w.nii.gz: its field of view holds") and
               "of the brain (the mask on sub-03_FLAIR.nii.gz's grid)" in w for w in warnings)
    assert "outside it the network reads its background" in capsys.readouterr().err


def test_nan_where_an_input_holds_no_data_reads_as_its_background(trained, tmp_path: Path,
                                                                   capsys) -> None:
    model, data = trained
    predict(model, data, device="cpu", progress=False, subjects=["03"], out_dir=tmp_path / "a")
    brain = load_volume(BIDSDataset(data).find(subject="03", suffix="mask", desc="brain",
                                               derivatives="phantom")[0].path).data > 0

    def nan_outside(volume: Volume, suffix: str) -> Volume:  # SPM-style: no data = NaN
        if suffix == "mask":
            return volume
        return replace(volume, data=np.where(brain, volume.data, np.nan).astype(np.float32))

    changed = _copy_subject(data, tmp_path / "nan", nan_outside)
    predict(model, changed, device="cpu", progress=False, out_dir=tmp_path / "b")
    np.testing.assert_allclose(_prediction(tmp_path / "b").data,
                               _prediction(tmp_path / "a").data, atol=1e-4)
    sidecar = json.loads(_sidecar(tmp_path / "b").read_text())
    outside = int((~brain).sum())
    assert sidecar["InputNaNVoxels"]["Voxels"] == {"sub-03_FLAIR.nii.gz": outside,
                                                   "sub-03_T1w.nii.gz": outside}
    assert not sidecar.get("Warnings")

    def hole_in_t1w(volume: Volume, suffix: str) -> Volume:  # no data in a third of the brain
        if suffix != "T1w":
            return volume
        hole = volume.data.astype(np.float32)
        hole[:12] = np.nan
        return replace(volume, data=hole)

    capsys.readouterr()
    changed = _copy_subject(data, tmp_path / "hole", hole_in_t1w)
    predict(model, changed, device="cpu", progress=False, out_dir=tmp_path / "c")
    warnings = json.loads(_sidecar(tmp_path / "c").read_text())["Warnings"]
    holes = 12 * SHAPE[1] * SHAPE[2]
    assert any(w.startswith(f"sub-03_T1w.nii.gz: its field of view less its {holes} NaN (no "
                            "data) voxels holds") for w in warnings)
    assert "outside it the network reads its background" in capsys.readouterr().err


def test_truth_in_a_manual_pipeline_is_evaluated(trained, tmp_path: Path) -> None:
    model, _ = trained
    rng = np.random.default_rng(4)
    data = _write(tmp_path / "bids", {"01": _head(rng)}, truth="manual")
    predict(model, data, device="cpu", progress=False)
    tsv, _ = evaluate(get_task("flair-lesion"), data)
    header = tsv.read_text().splitlines()[0].split("\t")
    assert {"lesion_dice", "lesion_f1", "false_positive_components"} <= set(header)
    page = report(get_task("flair-lesion"), data).read_text()
    assert "flair-lesion" in page and "tiny heads" in page and "MRF study" not in page
    result = CliRunner().invoke(app, ["evaluate", "flair-lesion", str(data), "--truth",
                                      "nothing-here", "--out-dir", str(tmp_path / "scores")])
    assert result.exit_code == 1 and "--truth nothing-here" in result.output


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_out_dir_leaves_a_read_only_dataset_untouched(trained, tmp_path: Path) -> None:
    model, data = trained
    copy = tmp_path / "dataset"
    shutil.copytree(data, copy, ignore=shutil.ignore_patterns("lesionkit"))
    before = _digest(copy)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        out = tmp_path / "predictions"
        result = CliRunner().invoke(app, ["predict", str(model), str(copy), "--out-dir", str(out),
                                          "--device", "cpu", "--tta", "2"])
        assert result.exit_code == 0, result.output
        scores = CliRunner().invoke(app, ["evaluate", "flair-lesion", str(copy), "--predictions",
                                          str(out), "--out-dir", str(tmp_path / "scores")])
        assert scores.exit_code == 0, scores.output
    finally:
        for path in [copy, *copy.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert _digest(copy) == before
    assert len(BIDSDataset(out).find(suffix="probseg", desc="uncertainty")) == 3
    assert (tmp_path / "scores" / "task-flair-lesion_metrics.tsv").is_file()
    acquired = (tmp_path / "scores" / "task-flair-lesion_acquisitions.tsv").read_text()
    assert acquired.startswith("participant_id\timage\tvoxel_mm\tfield")


def test_real_clinical_patient_runs_end_to_end(trained, tmp_path: Path) -> None:
    """A cropped real 2D clinical FLAIR and T1w (0.72 x 0.72 x 3 mm, skull on, on two
    different grids, no brain mask): predicted on the FLAIR's own grid, in [0, 1]."""
    model, _ = trained
    out = tmp_path / "predictions"
    result = CliRunner().invoke(app, ["predict", str(model), str(REAL_SAMPLE), "--out-dir",
                                      str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    flair = load_volume(next((REAL_SAMPLE / "sub-patient01").rglob("*_FLAIR.nii.gz")))
    found = BIDSDataset(out).find(subject="patient01", session="study2", suffix="probseg",
                                  desc="flairlesion")
    assert len(found) == 1
    prediction = load_volume(found[0].path)
    assert prediction.shape == flair.shape
    np.testing.assert_allclose(prediction.affine, flair.affine, atol=1e-4)
    assert prediction.data.min() >= 0 and prediction.data.max() <= 1
    sidecar = json.loads(found[0].sidecar.read_text())
    assert sidecar["BrainMask"].startswith("computed")
    assert len(sidecar["Sources"]) == 2
    # Its lesions at 33 %: a label map on the FLAIR's grid, their table and the load row.
    [dseg] = BIDSDataset(out).find(subject="patient01", suffix="dseg", desc="flairlesion")
    labels = load_volume(dseg.path).data
    np.testing.assert_allclose(load_volume(dseg.path).affine, flair.affine, atol=1e-4)
    assert (prediction.data[labels > 0] >= 0.33).all()
    lesions = pd.read_csv(out / "sub-patient01" / "ses-study2" / "anat" /
                          "sub-patient01_ses-study2_desc-flairlesion_lesions.tsv", sep="\t")
    voxel_mm3 = float(np.prod(flair.spacing))
    assert list(lesions["label"]) == list(range(1, int(labels.max()) + 1))
    np.testing.assert_allclose(lesions["volume_mm3"],
                               np.bincount(labels.astype(int).ravel())[1:] * voxel_mm3,
                               rtol=1e-4)
    assert (lesions["max_probability"] >= lesions["mean_probability"]).all()
    assert (lesions["mean_probability"] >= 0.33).all()
    # Components above 33 % whose deepest voxel lies less than 3 mm inside the brain mask
    # (written beside the maps) are not lesions; every lesion's depth is in its table.
    [mask_file] = BIDSDataset(out).find(subject="patient01", suffix="mask", label="brain")
    brain = load_volume(mask_file.path)
    from lesionkit.lesions import depth_inside

    depth = depth_inside(brain.data > 0, flair.spacing)
    every, count = ndimage.label(prediction.data >= 0.33, np.ones((3, 3, 3)))
    deepest = ndimage.maximum(depth, every, np.arange(1, count + 1))
    assert count >= len(lesions) == int(np.sum(np.asarray(deepest) >= 3.0 - 0.01))
    assert (lesions["depth_mm"] >= 3.0 - 0.01).all()
    np.testing.assert_allclose(sorted(lesions["depth_mm"]),
                               sorted(d for d in deepest if d >= 3.0 - 0.01), atol=0.01)
    assert json.loads(dseg.sidecar.read_text())["MinLesionDepthMm"] == 3.0
    [load] = pd.read_csv(out / "task-flair-lesion_lesionload.tsv", sep="\t").to_dict("records")
    assert load["participant_id"] == "sub-patient01" and load["session_id"] == "ses-study2"
    assert load["lesion_count"] == len(lesions) and load["lesion_threshold"] == 0.33
    assert load["lesion_volume_ml"] == pytest.approx(lesions["volume_mm3"].sum() / 1000, 1e-3)
    # Probabilities stop 3 mm outside the computed brain mask, which is written beside them.
    assert sidecar["OutsideBrain"]["MarginMm"] == 3.0
    assert brain.shape == flair.shape and set(np.unique(brain.data)) == {0, 1}
    np.testing.assert_allclose(brain.affine, flair.affine, atol=1e-4)
    distance = ndimage.distance_transform_edt(brain.data == 0, sampling=flair.spacing)
    beyond = distance > 3.0 + 2.0 * np.sqrt(3)  # the margin, then one 2 mm voxel's diagonal
    assert beyond.any() and (prediction.data[beyond] == 0).all()
    kept_out = tmp_path / "kept"
    result = CliRunner().invoke(app, ["predict", str(model), str(REAL_SAMPLE), "--out-dir",
                                      str(kept_out), "--device", "cpu", "--keep-outside-brain",
                                      "--lesion-threshold", "0.2", "--min-lesion-ml", "0.05",
                                      "--min-lesion-depth-mm", "0"])
    assert result.exit_code == 0, result.output
    [load] = pd.read_csv(kept_out / "task-flair-lesion_lesionload.tsv",
                         sep="\t").to_dict("records")
    assert load["lesion_threshold"] == 0.2 and load["min_lesion_ml"] == 0.05
    assert load["min_lesion_depth_mm"] == 0
    [dseg] = BIDSDataset(kept_out).find(suffix="dseg")
    sizes = np.bincount(load_volume(dseg.path).data.astype(int).ravel())[1:] * voxel_mm3
    assert len(sizes) == load["lesion_count"] and (sizes >= 50.0).all()
    [kept] = BIDSDataset(kept_out).find(suffix="probseg", desc="flairlesion")
    assert "OutsideBrain" not in json.loads(kept.sidecar.read_text())
    assert not BIDSDataset(kept_out).find(suffix="mask")
    whole = load_volume(kept.path).data
    assert (whole[beyond] > 0).any()  # a sigmoid is never exactly 0
    # Inside the mask, away from its edge (where the linear resampling onto the FLAIR's
    # grid blends in cleared voxels of the 2 mm grid), the maps are the same.
    inside = ndimage.distance_transform_edt(brain.data > 0, sampling=flair.spacing) > 2.5
    assert inside.sum() > 0.5 * (brain.data > 0).sum()
    np.testing.assert_allclose(whole[inside], prediction.data[inside], atol=1e-6)
