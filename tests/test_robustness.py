"""Bad inputs and faults through the CLI: each ends in one line, a non-zero exit, no
traceback, and nothing new or changed on disk.

Every case runs ``lesionkit.cli.run`` in this process on small datasets and model
folders made once per module, after taking a snapshot of every file under the case's
folder; the snapshot must be the same afterwards.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from conftest import tiny, write_fcd_dataset, write_mrf_dataset, write_task_dataset
from lesionkit.cli import run
from lesionkit.io import load_volume, save_volume
from lesionkit.tasks import get_task
from lesionkit.training import train
from lesionkit.volume import Volume


@dataclass(frozen=True)
class Fixtures:
    """Read-only originals; cases copy what they damage."""

    root: Path
    enhance: Path
    enhance_model: Path
    fcd: Path
    fcd_model: Path
    mrf: Path
    mrf_model: Path


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Fixtures:
    root = tmp_path_factory.mktemp("robust")
    enhance = write_task_dataset(root / "enhance", get_task("enhance-r1"), subjects=3)
    enhance_model = train(tiny(get_task("enhance-r1")), enhance, root / "enhance-model",
                          epochs=1, max_steps=1, progress=False, device="cpu")
    fcd = write_fcd_dataset(root / "fcd", subjects=4)
    fcd_model = train(tiny(get_task("fcd-classify")), fcd, root / "fcd-model", epochs=1,
                      max_steps=1, progress=False, device="cpu")
    mrf = write_mrf_dataset(root / "mrf", subjects=3)
    mrf_model = train(tiny(get_task("mrf-lesion")), mrf, root / "mrf-model", epochs=1,
                      max_steps=1, progress=False, device="cpu")
    return Fixtures(root, enhance, enhance_model, fcd, fcd_model, mrf, mrf_model)


def _copy(source: Path, where: Path) -> Path:
    target = where / source.name
    shutil.copytree(source, target)
    return target


def _edit_image(path: Path, change: Callable[[np.ndarray], np.ndarray],
                affine: np.ndarray | None = None) -> None:
    volume = load_volume(path, ndim=None)
    save_volume(Volume(change(volume.data).astype(np.float32),
                       volume.affine if affine is None else affine, "intensity", ""), path)


def _first(root: Path, pattern: str) -> Path:
    return sorted(root.rglob(pattern))[0]


def _config(model: Path, change: Callable[[dict], None]) -> None:
    path = model / "config.yaml"
    config = yaml.safe_load(path.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


# --- case builders: (fixtures, scratch folder) -> argv ------------------------------------

def _shifted_target(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.enhance, w)
    path = _first(data / "sub-01" / "ses-7T", "*R1map.nii.gz")
    volume = load_volume(path)
    affine = volume.affine.copy()
    affine[:3, 3] += [10.0, 0.0, 0.0]
    _edit_image(path, lambda d: d, affine)
    return ["train", "enhance-r1", str(data), str(w / "model"), *SMALL]


def _cropped_target(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.enhance, w)
    _edit_image(_first(data / "sub-01" / "ses-7T", "*R1map.nii.gz"), lambda d: d[:-4])
    return ["train", "enhance-r1", str(data), str(w / "model"), *SMALL]


def _scaled_input(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.enhance, w)
    _edit_image(_first(data / "sub-01" / "ses-3T", "*R1map.nii.gz"), lambda d: d * 1000)
    return ["predict", str(f.enhance_model), str(data), "--device", "cpu"]


def _zero_input(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.enhance, w)
    _edit_image(_first(data / "sub-01" / "ses-3T", "*R1map.nii.gz"), lambda d: d * 0)
    return ["predict", str(f.enhance_model), str(data), "--device", "cpu"]


def _header_edit(f: Fixtures, w: Path, change: Callable[[nib.Nifti1Image], None]
                 ) -> list[str]:
    """Predict after ``change`` edited the header of sub-01's 3T R1 map in place."""
    data = _copy(f.enhance, w)
    path = _first(data / "sub-01" / "ses-3T", "*R1map.nii.gz")
    image = nib.load(str(path))
    image = nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine, image.header)
    change(image)
    nib.save(image, str(path))
    return ["predict", str(f.enhance_model), str(data), "--device", "cpu"]


def _no_orientation(f: Fixtures, w: Path) -> list[str]:
    def change(image: nib.Nifti1Image) -> None:
        image.set_qform(None, code=0)
        image.set_sform(None, code=0)
    return _header_edit(f, w, change)


def _singular_affine(f: Fixtures, w: Path) -> list[str]:
    def change(image: nib.Nifti1Image) -> None:
        affine = image.affine.copy()
        affine[:3, 2] = affine[:3, 0]  # the third voxel axis along the first
        image.set_sform(affine, code=2)
        image.set_qform(None, code=0)
    return _header_edit(f, w, change)


def _scaled_header(factor: float) -> Callable[[Fixtures, Path], list[str]]:
    """Voxel sizes read in units other than mm: ``factor`` x the true mm."""
    def case(f: Fixtures, w: Path) -> list[str]:
        def change(image: nib.Nifti1Image) -> None:
            affine = np.diag([factor, factor, factor, 1.0]) @ image.affine
            image.set_sform(affine, code=1)
            image.set_qform(affine, code=1)
        return _header_edit(f, w, change)
    return case


def _single_slice(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.enhance, w)
    _edit_image(_first(data / "sub-01" / "ses-3T", "*R1map.nii.gz"), lambda d: d[:, :, 7:8])
    return ["predict", str(f.enhance_model), str(data), "--device", "cpu"]


def _zero_mrf(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.mrf, w)
    _edit_image(_first(data / "sub-01", "*_MRF.nii.gz"), lambda d: d * 0)
    return ["predict", str(f.mrf_model), str(data), "--device", "cpu"]


def _mrf_34_frames(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.mrf, w)
    for path in data.glob("sub-*/anat/*_MRF.nii.gz"):
        _edit_image(path, lambda d: d[..., :34])
    return ["predict", str(f.mrf_model), str(data), "--device", "cpu"]


def _truncated_nifti(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.enhance, w)
    path = _first(data / "sub-01" / "ses-3T", "*R1map.nii.gz")
    path.write_bytes(path.read_bytes()[:200])
    return ["predict", str(f.enhance_model), str(data), "--device", "cpu"]


def _text_as_nifti(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.enhance, w)
    _first(data / "sub-01" / "ses-3T", "*R1map.nii.gz").write_text("not an image\n")
    return ["predict", str(f.enhance_model), str(data), "--device", "cpu"]


def _no_label_column(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.fcd, w)
    table = data / "participants.tsv"
    table.write_text("\n".join(line.split("\t")[0] for line in table.read_text().splitlines())
                     + "\n")
    return ["train", "fcd-classify", str(data), str(w / "model"), "--device", "cpu",
            "--epochs", "1", "--widen-factor", "0.25"]


def _damaged_config(f: Fixtures, w: Path) -> list[str]:
    model = _copy(f.enhance_model, w)
    (model / "config.yaml").write_text("task: [unclosed\n  : :\n")
    return ["predict", str(model), str(f.enhance), "--out-dir", str(w / "out")]


def _truncated_config(f: Fixtures, w: Path) -> list[str]:
    model = _copy(f.enhance_model, w)
    text = (model / "config.yaml").read_text()
    (model / "config.yaml").write_text(text[: len(text) // 3])
    return ["predict", str(model), str(f.enhance), "--out-dir", str(w / "out")]


def _no_folds_key(f: Fixtures, w: Path) -> list[str]:
    model = _copy(f.enhance_model, w)
    _config(model, lambda c: c.pop("folds"))
    return ["predict", str(model), str(f.enhance), "--out-dir", str(w / "out")]


def _unknown_task_in_folder(f: Fixtures, w: Path) -> list[str]:
    model = _copy(f.enhance_model, w)
    _config(model, lambda c: c["task"].update(network="no-such-network"))
    return ["predict", str(model), str(f.enhance), "--out-dir", str(w / "out")]


def _truncated_weights(f: Fixtures, w: Path) -> list[str]:
    model = _copy(f.enhance_model, w)
    path = model / "fold-0" / "weights.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    return ["predict", str(model), str(f.enhance), "--out-dir", str(w / "out")]


def _foreign_weights(f: Fixtures, w: Path) -> list[str]:
    model = _copy(f.enhance_model, w)
    (model / "fold-0" / "weights.safetensors").write_bytes(np.arange(500).tobytes())
    return ["predict", str(model), str(f.enhance), "--out-dir", str(w / "out")]


def _other_task_weights(f: Fixtures, w: Path) -> list[str]:
    model = _copy(f.enhance_model, w)
    shutil.copy(f.fcd_model / "fold-0" / "weights.safetensors",
                model / "fold-0" / "weights.safetensors")
    return ["predict", str(model), str(f.enhance), "--out-dir", str(w / "out")]


def _missing_weights(f: Fixtures, w: Path) -> list[str]:
    model = _copy(f.enhance_model, w)
    (model / "fold-0" / "weights.safetensors").unlink()
    return ["predict", str(model), str(f.enhance), "--out-dir", str(w / "out")]


def _incomplete_model(f: Fixtures, w: Path) -> list[str]:
    model = _copy(f.enhance_model, w)
    _config(model, lambda c: c["training"].update(complete=False))
    return ["predict", str(model), str(f.enhance), "--out-dir", str(w / "out")]


def _model_is_file(f: Fixtures, w: Path) -> list[str]:
    (w / "model").write_text("x")
    return ["predict", str(w / "model"), str(f.enhance), "--out-dir", str(w / "out")]


def _train_into_file(f: Fixtures, w: Path) -> list[str]:
    (w / "model").write_text("x")
    return ["train", "enhance-r1", str(f.enhance), str(w / "model"), *SMALL]


def _train_into_existing(f: Fixtures, w: Path) -> list[str]:
    model = _copy(f.enhance_model, w)
    return ["train", "enhance-r1", str(f.enhance), str(model), *SMALL]


def _out_dir_is_file(f: Fixtures, w: Path) -> list[str]:
    (w / "out").write_text("x")
    return ["predict", str(f.enhance_model), str(f.enhance), "--out-dir", str(w / "out")]


def _simulate_under_a_file(f: Fixtures, w: Path) -> list[str]:
    (w / "file").write_text("x")
    return ["simulate", "enhance-r1", str(w / "file" / "cohort" / "x"), "--subjects", "1"]


def _empty_dataset(f: Fixtures, w: Path) -> list[str]:
    (w / "data").mkdir()
    (w / "data" / "dataset_description.json").write_text(json.dumps({"Name": "x"}))
    return ["train", "enhance-r1", str(w / "data"), str(w / "model"), *SMALL]


def _dicom_export(w: Path) -> Path:
    """A scanner's export: a study folder with one series of DICOM files (no suffix)."""
    series = w / "export" / "SE000002"
    series.mkdir(parents=True)
    for k in range(3):
        (series / f"IM{k:04d}").write_bytes(bytes(128) + b"DICM" + bytes(64))
    return w / "export"


def _dicom_as_data_dir(f: Fixtures, w: Path) -> list[str]:
    return ["predict", str(f.enhance_model), str(_dicom_export(w)), "--out-dir", str(w / "o")]


def _dicom_as_image(f: Fixtures, w: Path) -> list[str]:
    series = _dicom_export(w) / "SE000002"
    return ["predict", str(f.enhance_model), "--image", f"r1_3t={series}", "--out-dir",
            str(w / "o")]


def _data_is_file(f: Fixtures, w: Path) -> list[str]:
    (w / "data").write_text("x")
    return ["train", "enhance-r1", str(w / "data"), str(w / "model")]


#: Options that would let a training on the tiny datasets run (briefly) past the checks.
SMALL = ["--device", "cpu", "--patch-size", "8", "--epochs", "1", "--patches-per-epoch", "2",
         "--channels", "4,8"]


def _mrf_before_matching(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.mrf, w)
    shutil.rmtree(data / "derivatives" / "lesionkit")
    return ["train", "mrf-lesion", str(data), str(w / "model"), "--device", "cpu"]


def _constant_input(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.fcd, w)
    _edit_image(_first(data / "sub-01", "*_FLAIR.nii.gz"), lambda d: d * 0 + 7)
    return ["predict", str(f.fcd_model), str(data), "--device", "cpu"]


def _label_missing(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.fcd, w)
    table = data / "participants.tsv"
    lines = table.read_text().splitlines()
    header = lines[0].split("\t")
    row = lines[1].split("\t")
    row[header.index("group")] = "n/a"
    table.write_text("\n".join([lines[0], "\t".join(row), *lines[2:]]) + "\n")
    return ["train", "fcd-classify", str(data), str(w / "model"), "--device", "cpu",
            "--epochs", "1", "--widen-factor", "0.25"]


def _one_class_only(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.fcd, w)
    table = data / "participants.tsv"
    table.write_text(table.read_text().replace("\tcontrol", "\tpatient"))
    return ["train", "fcd-classify", str(data), str(w / "model"), "--device", "cpu",
            "--epochs", "1", "--widen-factor", "0.25"]


def _mask_as_input(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.fcd, w)
    _edit_image(_first(data / "sub-01", "*_FLAIR.nii.gz"), lambda d: (d > d.mean()) * 1.0)
    return ["predict", str(f.fcd_model), str(data), "--device", "cpu"]


def _complex_input(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.fcd, w)
    flair = _first(data / "sub-01", "*_FLAIR.nii.gz")
    image = nib.load(flair)
    nib.save(nib.Nifti1Image(image.get_fdata().astype(np.complex64), image.affine), flair)
    return ["predict", str(f.fcd_model), str(data), "--device", "cpu"]


def _stale_temporary_is_kept_on_failure(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.enhance, w)
    _edit_image(_first(data / "sub-01" / "ses-3T", "*R1map.nii.gz"), lambda d: d * 0)
    return ["predict", str(f.enhance_model), str(data), "--device", "cpu", "--tta", "2"]


def _evaluate_shifted_reference(f: Fixtures, w: Path) -> list[str]:
    from lesionkit.infer import predict

    data = _copy(f.enhance, w)
    predict(f.enhance_model, data, device="cpu", progress=False)
    path = _first(data / "sub-01" / "ses-7T", "*R1map.nii.gz")
    affine = load_volume(path).affine.copy()
    affine[:3, 3] += [0.0, 10.0, 0.0]
    _edit_image(path, lambda d: d, affine)
    return ["evaluate", "enhance-r1", str(data), "--out-dir", str(w / "scores")]


def _two_flair_acquisitions(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.fcd, w)
    flair = _first(data / "sub-01", "*_FLAIR.nii.gz")
    shutil.copy(flair, flair.with_name(flair.name.replace("_FLAIR", "_acq-3D_FLAIR")))
    return ["predict", str(f.fcd_model), str(data), "--subjects", "01", "--device", "cpu",
            "--out-dir", str(w / "out")]


def _flair_not_fetched(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.fcd, w)
    flair = _first(data / "sub-01", "*_FLAIR.nii.gz")
    flair.unlink()
    flair.symlink_to("../../.git/annex/objects/Xk/Q2/SHA256E-s1--0.nii.gz")
    return ["predict", str(f.fcd_model), str(data), "--subjects", "01", "--device", "cpu",
            "--out-dir", str(w / "out")]


def _label_with_underscore(f: Fixtures, w: Path) -> list[str]:
    data = _copy(f.fcd, w)
    folder = (data / "sub-01").rename(data / "sub-0_1")
    for path in folder.rglob("sub-01_*"):
        path.rename(path.with_name(path.name.replace("sub-01_", "sub-0_1_")))
    return ["predict", str(f.fcd_model), str(data), "--subjects", "0_1", "--device", "cpu",
            "--out-dir", str(w / "out")]


def _args(*argv: str) -> Callable[[Fixtures, Path], list[str]]:
    """A case whose argv names fixture folders as {enhance}, {fcd_model}, ... and {w}."""

    def build(f: Fixtures, w: Path) -> list[str]:
        names = {k: str(getattr(f, k)) for k in Fixtures.__dataclass_fields__} | {"w": str(w)}
        return [a.format(**names) for a in argv]

    return build


# (id, builder, exit status, a fragment the one line must hold)
CASES: list[tuple[str, Callable[[Fixtures, Path], list[str]], int, str]] = [
    # usage errors
    ("no-such-option", _args("train", "--nope"), 2, "--nope"),
    ("missing-argument", _args("train", "enhance-r1"), 2, "data_dir"),
    ("epochs-not-a-number", _args("train", "enhance-r1", "{enhance}", "{w}/m", "--epochs",
                                  "abc"), 2, "--epochs"),
    ("negative-patches", _args("train", "enhance-r1", "{enhance}", "{w}/m",
                               "--patches-per-epoch", "-1"), 2, "--patches-per-epoch"),
    ("tta-9", _args("predict", "{enhance_model}", "{enhance}", "--tta", "9"), 2, "--tta"),
    ("resolution-3", _args("simulate", "enhance-r1", "{w}/x", "--resolution", "3"), 2,
     "--resolution"),
    ("subjects-0", _args("simulate", "enhance-r1", "{w}/x", "--subjects", "0"), 2, "--subjects"),
    ("crossval-one-fold", _args("crossval", "fcd-classify", "{fcd}", "{w}/cv", "--folds", "1"),
     2, "--folds"),
    # options
    ("unknown-task", _args("train", "brain-age", "{enhance}", "{w}/m"), 1, "brain-age"),
    ("unknown-cohort", _args("simulate", "brain-age", "{w}/x"), 1, "brain-age"),
    ("unknown-arm", _args("train", "fcd-classify", "{fcd}", "{w}/m", "--arm", "nope"), 1,
     "nope"),
    ("channels-not-numbers", _args("train", "enhance-r1", "{enhance}", "{w}/m", "--channels",
                                   "abc"), 1, "--channels"),
    ("channels-one-level", _args("train", "enhance-r1", "{enhance}", "{w}/m", "--channels",
                                 "8"), 1, "--channels"),
    ("channels-on-resnet", _args("train", "fcd-classify", "{fcd}", "{w}/m", "--channels",
                                 "8,16"), 1, "--channels"),
    ("widen-factor-zero", _args("train", "fcd-classify", "{fcd}", "{w}/m", "--widen-factor",
                                "0"), 1, "--widen-factor"),
    ("widen-factor-negative", _args("train", "fcd-classify", "{fcd}", "{w}/m", "--widen-factor",
                                    "-1"), 1, "--widen-factor"),
    ("learning-rate-zero", _args("train", "enhance-r1", "{enhance}", "{w}/m", "--learning-rate",
                                 "0"), 1, "--learning-rate"),
    ("learning-rate-negative", _args("train", "enhance-r1", "{enhance}", "{w}/m",
                                     "--learning-rate", "-1"), 1, "--learning-rate"),
    ("widen-on-unet", _args("train", "enhance-r1", "{enhance}", "{w}/m", "--widen-factor",
                            "2"), 1, "--widen-factor"),
    ("unknown-network", _args("train", "enhance-r1", "{enhance}", "{w}/m", "--network",
                              "nonet"), 1, "nonet"),
    ("device-cuda", _args("train", "enhance-r1", "{enhance}", "{w}/m", "--device", "cuda"), 1,
     "cuda"),
    ("device-tpu", _args("predict", "{enhance_model}", "{enhance}", "--device", "tpu",
                         "--out-dir", "{w}/out"), 1, "tpu"),
    ("folds-exceed-subjects", _args("train", "enhance-r1", "{enhance}", "{w}/m", "--folds",
                                    "9", "--device", "cpu"), 1, "fold"),
    ("unknown-subject", _args("train", "enhance-r1", "{enhance}", "{w}/m", "--subjects", "99",
                              "--device", "cpu"), 1, "99"),
    ("predict-empty-subject-label", _args("predict", "{enhance_model}", "{enhance}",
                                          "--subjects", "01,,02"), 1, "--subjects"),
    ("seed-negative", _args("simulate", "enhance-r1", "{w}/x", "--seed", "-1"), 2, "--seed"),
    ("predict-unknown-subject", _args("predict", "{enhance_model}", "{enhance}", "--subjects",
                                      "99", "--out-dir", "{w}/out"), 1, "99"),
    ("missing-truth-pipeline", _args("train", "enhance-r1", "{enhance}", "{w}/m", "--truth",
                                     "nosuch", "--device", "cpu"), 1, "nosuch"),
    ("lesion-library-missing", _args("simulate", "mrf-lesion", "{w}/x", "--lesion-library",
                                     "{w}/nolib"), 1, "nolib"),
    # folders
    ("data-missing", _args("train", "enhance-r1", "{w}/nodata", "{w}/m"), 1, "nodata"),
    ("data-is-file", _data_is_file, 1, "data"),
    ("empty-dataset", _empty_dataset, 1, "data"),
    ("model-missing", _args("predict", "{w}/nomodel", "{enhance}"), 1, "nomodel"),
    ("model-is-file", _model_is_file, 1, "model"),
    ("train-into-file", _train_into_file, 1, "model"),
    ("train-into-existing-model", _train_into_existing, 1, "--overwrite"),
    ("out-dir-is-file", _out_dir_is_file, 1, "out"),
    ("simulate-into-file", _args("simulate", "enhance-r1", "{enhance}/participants.tsv"), 1,
     "participants.tsv"),
    ("simulate-under-a-file", _simulate_under_a_file, 1, "file to be a folder, found a file"),
    ("simulate-into-other-dataset", _args("simulate", "enhance-r1", "{fcd}"), 1, "fcd"),
    # model folders
    ("damaged-config", _damaged_config, 1, "config.yaml"),
    ("truncated-config", _truncated_config, 1, "config.yaml"),
    ("config-without-folds", _no_folds_key, 1, "folds"),
    ("config-unknown-network", _unknown_task_in_folder, 1, "no-such-network"),
    ("truncated-weights", _truncated_weights, 1, "weights.safetensors"),
    ("foreign-weights", _foreign_weights, 1, "weights.safetensors"),
    ("other-task-weights", _other_task_weights, 1, "weights.safetensors"),
    ("missing-weights", _missing_weights, 1, "weights.safetensors"),
    ("incomplete-model", _incomplete_model, 1, "--allow-incomplete"),
    # images
    ("shifted-target", _shifted_target, 1, "R1map"),
    ("cropped-target", _cropped_target, 1, "R1map"),
    ("r1-in-wrong-units", _scaled_input, 1, "s^-1"),
    ("all-zero-input", _zero_input, 1, "zero"),
    ("all-zero-mrf", _zero_mrf, 1, "zero"),
    ("header-without-orientation", _no_orientation, 1, "qform_code or sform_code"),
    ("singular-affine", _singular_affine, 1, "singular"),
    ("voxel-sizes-in-cm", _scaled_header(40.0), 1, "voxel sizes in mm"),
    ("voxel-sizes-not-mm-small", _scaled_header(0.02), 1, "on the model's grid"),
    ("single-slice-input", _single_slice, 1, "at least 4 voxels along each axis on its grid"),
    ("mrf-34-frames", _mrf_34_frames, 1, "35"),
    ("truncated-nifti", _truncated_nifti, 1, "R1map"),
    ("text-as-nifti", _text_as_nifti, 1, "R1map"),
    ("participants-without-label", _no_label_column, 1, "group"),
    ("participants-label-n/a", _label_missing, 1, "found 'n/a'"),
    ("participants-one-class", _one_class_only, 1, "all of one class"),
    ("constant-input", _constant_input, 1, "constant"),
    ("mask-as-input", _mask_as_input, 1, "two values"),
    ("complex-input", _complex_input, 1, "complex"),
    ("mrf-lesion-before-mrf-match", _mrf_before_matching, 1, "mrf-match"),
    ("zero-input-with-flips", _stale_temporary_is_kept_on_failure, 1, "zero"),
    ("predict-into-dataset", _args("predict", "{enhance_model}", "{enhance}", "--out-dir",
                                   "{enhance}/sub-01"), 1, "would write into the dataset"),
    ("two-flair-acquisitions", _two_flair_acquisitions, 1, "--bids-filter FLAIR:acq=3D"),
    ("bids-filter-unknown-entity", _args("predict", "{fcd_model}", "{fcd}", "--bids-filter",
                                         "aq=3D"), 2, "--bids-filter"),
    ("bids-filter-keeps-nothing", _args("predict", "{fcd_model}", "{fcd}", "--bids-filter",
                                        "FLAIR:acq=nope", "--out-dir", "{w}/out"), 1,
     "read with --bids-filter FLAIR:acq=nope"),
    ("flair-not-fetched", _flair_not_fetched, 1, "datalad get"),
    ("label-with-underscore", _label_with_underscore, 1, "is not a BIDS name"),
    ("predict-neither-data-nor-image", _args("predict", "{enhance_model}"), 1, "--image"),
    ("image-unknown-key", _args("predict", "{enhance_model}", "--image", "flair={w}/x.nii",
                                "--out-dir", "{w}/out"), 1, "r1_3t (R1map)"),
    ("image-no-such-file", _args("predict", "{enhance_model}", "--image", "r1_3t={w}/x.nii",
                                 "--out-dir", "{w}/out"), 1, "x.nii: expected a NIfTI image"),
    ("image-without-out-dir", _args("predict", "{enhance_model}", "--image",
                                    "r1_3t={w}/x.nii"), 1, "--out-dir"),
    ("image-two-sessions", _args("predict", "{enhance_model}", "--image", "r1_3t={w}/x.nii",
                                 "--sessions", "1,2", "--out-dir", "{w}/out"), 1,
     "one session (the visit)"),
    ("image-session-of-a-task-with-sessions", _args(
        "predict", "{enhance_model}", "--image", "r1_3t={w}/x.nii", "--sessions", "2",
        "--out-dir", "{w}/out"), 1, "reads its images from session(s) 3T;"),
    ("image-and-data-dir", _args("predict", "{enhance_model}", "{enhance}", "--image",
                                 "r1_3t={w}/x.nii", "--out-dir", "{w}/out"), 1, "DATA_DIR"),
    ("dicom-folder-as-data", _dicom_as_data_dir, 1, "DICOM files: convert to NIfTI first"),
    ("dicom-series-as-image", _dicom_as_image, 1, "found DICOM: convert to NIfTI first"),
    ("predict-a-subject-folder", _args("predict", "{enhance_model}", "{enhance}/sub-01",
                                       "--out-dir", "{w}/out"), 1, "give the dataset's root"),
    ("crossval-into-dataset", _args("crossval", "fcd-classify", "{fcd}", "{fcd}/cv"), 1,
     "would write into the dataset"),
    # evaluation
    ("evaluate-without-predictions", _args("evaluate", "enhance-r1", "{enhance}", "--out-dir",
                                           "{w}/scores"), 1, "prediction"),
    ("report-without-predictions", _args("report", "enhance-r1", "{enhance}", "--out",
                                         "{w}/r.html"), 1, "prediction"),
    ("mrf-match-without-mrf", _args("mrf-match", "{enhance}"), 1, "MRF"),
    ("mrf-match-zero-series", lambda f, w: ["mrf-match", str(_zero_mrf(f, w)[2])], 1, "zero"),
    ("evaluate-shifted-reference", _evaluate_shifted_reference, 1, "affine"),
    ("evaluate-unknown-subject", _args("evaluate", "enhance-r1", "{enhance}", "--subjects", "77",
                                       "--out-dir", "{w}/scores"), 1, "77"),
    ("crossval-unknown-arm", _args("crossval", "fcd-classify", "{fcd}", "{w}/cv", "--arms",
                                   "nope", "--device", "cpu"), 1, "nope"),
    ("crossval-folds-exceed", _args("crossval", "fcd-classify", "{fcd}", "{w}/cv", "--folds",
                                    "9", "--device", "cpu"), 1, "9"),
    ("demo-into-file", _args("demo", "{enhance}/participants.tsv"), 1, "participants.tsv"),
]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in root.rglob("*")} if root.exists() else {}


@pytest.mark.parametrize(("build", "status", "fragment"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(made: Fixtures, tmp_path: Path, capsys,
                                                  build, status: int, fragment: str) -> None:
    argv = build(made, tmp_path)
    before_case, before_made = _snapshot(tmp_path), _snapshot(made.root)
    capsys.readouterr()
    assert run(argv) == status
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    assert "lesionkit bug" not in lines[0], lines[0]
    assert fragment.lower() in lines[0].lower(), lines[0]
    assert _snapshot(tmp_path) == before_case
    assert _snapshot(made.root) == before_made


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


def test_a_full_disk_while_saving_weights_is_an_os_error(tmp_path: Path, monkeypatch) -> None:
    """safetensors reports a full disk as its own error type; the CLI's one-line OSError
    path gets it as an OSError naming the file, and nothing is left half-written."""
    import safetensors.torch
    from safetensors import SafetensorError

    from lesionkit.model_folder import save_tensors

    def full(*_args, **_kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    target = tmp_path / "fold-0" / "weights.safetensors"
    with pytest.raises(OSError, match=r"weights\.safetensors: could not write.*No space"):
        save_tensors({"w": np.zeros(3)}, target)
    assert list(target.parent.iterdir()) == []
