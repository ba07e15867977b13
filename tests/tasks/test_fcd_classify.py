"""fcd-classify: variants by value, train -> predict -> explain -> evaluate -> report."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import brain_mask, write_image, write_pretraining_source, write_task_dataset
from lesionkit.io import load_volume
from lesionkit.tasks import TASKS, get_task
from lesionkit.tasks.fcd_classify import cam_path, fcd_task
from lesionkit.tasks.strategies import WholeVolume, WholeVolumeSampler
from lesionkit.tasks.task import ImageSpec, LabelSpec

BLOB = (slice(9, 12), slice(5, 8), slice(7, 10))


def test_both_modalities_are_registered_with_a_two_class_head() -> None:
    flair, t1w = get_task("fcd-classify"), get_task("fcd-classify-t1w")
    assert TASKS["fcd-classify"] is flair
    assert [s.suffix for s in flair.inputs] == ["FLAIR"]
    assert [s.suffix for s in t1w.inputs] == ["T1w"]
    for task in (flair, t1w):
        assert task.out_channels == 2 and task.output_activation == "softmax"
        assert task.inference == WholeVolume(cam_layer="layer4")
        assert task.sampler == WholeVolumeSampler() and task.output_kind == "subjects"
        label = task.targets[0]
        assert isinstance(label, LabelSpec) and label.classes == ("control", "patient")


def test_depth_and_modality_are_values() -> None:
    deep = fcd_task("T1w", network="resnet50", batch_size=4)
    assert (deep.network, deep.batch_size, deep.name) == ("resnet50", 4, "fcd-classify-t1w")
    with pytest.raises(ValueError, match="FLAIR or T1w"):
        fcd_task("DWI")


def _dataset(root: Path, subjects: int = 4) -> Path:
    """Tiny fcd-classify dataset: odd subjects are patients with a bright blob (lesion)."""
    task = get_task("fcd-classify")
    write_task_dataset(root, task, subjects=subjects)
    lesion_spec = ImageSpec("lesion", "mask", derivatives="phantom",
                            entities=(("label", "lesion"),), kind="label")
    for number in range(1, subjects + 1):
        subject = f"{number:02d}"
        lesion = np.zeros(brain_mask().shape, np.float32)
        if number % 2 == 1:
            lesion[BLOB] = 1.0
            path = root / f"sub-{subject}" / "anat" / f"sub-{subject}_FLAIR.nii.gz"
            write_image(root, subject, task.inputs[0],
                        np.where(lesion > 0, 3.0, load_volume(path).data))
        write_image(root, subject, lesion_spec, lesion)
    return root


def test_predict_writes_held_out_cams_evaluate_and_report(tmp_path: Path) -> None:
    from lesionkit.infer import predict
    from lesionkit.training import train

    data = _dataset(tmp_path / "bids")
    task = replace(get_task("fcd-classify"), network="resnet10",
                   network_kwargs={"widen_factor": 0.25})
    model = train(task, data, tmp_path / "model", folds=2, epochs=1, max_steps=1,
                  progress=False, device="cpu")
    predictions = tmp_path / "predictions"
    predict(model, data, device="cpu", progress=False, out_dir=predictions)
    source = load_volume(data / "sub-01" / "anat" / "sub-01_FLAIR.nii.gz")
    cam = load_volume(cam_path(predictions, "01"), kind="probability")
    assert cam.shape == source.shape
    np.testing.assert_allclose(cam.affine, source.affine, atol=1e-6)
    assert cam.data.min() >= 0.0 and cam.data.max() <= 1.0
    sidecar = json.loads(cam_path(predictions, "01").with_suffix("").with_suffix(".json")
                         .read_text())
    # Each subject is explained by the one fold of the two that did not train on it.
    assert sidecar["ClassExplained"] == "patient" and sidecar["Folds"] == 1

    subjects = ["01", "02", "03", "04"]
    rows = {r["participant_id"]: r for r in task.evaluate(task, data, predictions, subjects)}
    assert rows["sub-01"]["group"] == "patient" and rows["sub-02"]["label"] == 0
    assert 0.0 <= rows["sub-01"]["probability"] <= 1.0
    assert rows["sub-01"]["correct"] == (rows["sub-01"]["probability"] >= 0.5)
    assert rows["sub-01"]["heat_score"] is not None and rows["sub-02"]["heat_score"] is None
    sections = task.report_sections(task, data, predictions, subjects, list(rows.values()))
    assert [s.title for s in sections] == ["fcd-classify: classification",
                                           "fcd-classify: Grad-CAM"]
    metrics = {r["metric"]: r for r in sections[0].tables["metrics"]}
    assert metrics["accuracy"]["n"] == 4
    assert "not publish" in sections[0].text


def test_segmentation_arm_pretrains_in_stages_through_the_one_trainer(tmp_path: Path) -> None:
    from lesionkit.io import InputError
    from lesionkit.model_folder import read_config
    from lesionkit.training import train

    data = _dataset(tmp_path / "bids")
    sources = [write_pretraining_source(tmp_path / f"source-{k}", k) for k in range(2)]
    task = replace(get_task("fcd-classify"), network="resnet10",
                   network_kwargs={"widen_factor": 0.25}).arm("segmentation")
    with pytest.raises(InputError, match="expected 2 source dataset"):
        train(task, data, tmp_path / "refused", epochs=1, max_steps=1, progress=False,
              device="cpu", source=sources[0])
    assert not (tmp_path / "refused").exists()
    model = train(task, data, tmp_path / "model", epochs=1, max_steps=1, progress=False,
                  device="cpu", source=sources)
    first, second = (read_config(model / f"pretraining-{k}") for k in (1, 2))
    for config, suffix in ((first, "T1w"), (second, "T1w")):
        assert config["task"]["network"] == "resnet-segmenter"
        assert config["task"]["network_kwargs"] == {"depth": 10, "widen_factor": 0.25}
        assert config["task"]["inputs"][0]["suffix"] == suffix
    assert ["ce", "gadolinium"] in [list(e) for e in second["task"]["inputs"][0]["entities"]]
    # the second stage starts from the first's encoder, the classifier from the second's
    stage_two = json.loads((model / "pretraining-2" / "metrics.json").read_text())
    assert "loaded" in stage_two["fold-0"]["initialised"]
    metrics = json.loads((model / "metrics.json").read_text())
    assert "loaded" in metrics["fold-0"]["initialised"]


def test_evaluate_without_predictions_says_what_is_missing(tmp_path: Path) -> None:
    from lesionkit.io import InputError

    data = _dataset(tmp_path / "bids", subjects=2)
    with pytest.raises(InputError, match="run predict"):
        task = get_task("fcd-classify")
        task.evaluate(task, data, data / "derivatives" / "lesionkit", ["01"])


def test_classifier_can_overfit_a_few_phantom_subjects(tmp_path: Path) -> None:
    """The training check a careful engineer makes first: without augmentation the
    task's network fits 4 phantom subjects (2 patients) far below chance loss (ln 2)."""
    import math

    import pandas as pd

    from lesionkit.simulate import simulate_cohort
    from lesionkit.training import train

    data = simulate_cohort("fcd-classify", tmp_path / "phantom", 4, seed=0, resolution=2)
    task = replace(get_task("fcd-classify"), augment=(), learning_rate=1e-3,
                   network_kwargs={**get_task("fcd-classify").network_kwargs,
                                   "widen_factor": 0.25})
    subjects = ["01", "02", "03", "04"]
    model = train(task, data, tmp_path / "model", epochs=12, progress=False, device="cpu",
                  splits=[{"train": subjects, "validation": []}])
    loss = pd.read_csv(model / "fold-0" / "metrics.csv")["train_loss"].to_numpy()
    assert loss[-3:].mean() < 0.25 * math.log(2) and loss[-3:].mean() < loss[:3].mean()


def test_normative_arm_compares_with_the_training_controls_only(tmp_path: Path) -> None:
    from lesionkit.infer import predict
    from lesionkit.model_folder import load_tensors, read_config
    from lesionkit.training import train

    data = _dataset(tmp_path / "bids", subjects=8)
    task = replace(get_task("fcd-classify"), network="resnet10",
                   network_kwargs={"widen_factor": 0.25}).arm("normative")
    assert task.network_kwargs["base"] == "resnet10"  # the arm follows the task's network
    assert task.inference.cam_layer == "network.layer4"
    assert not any(t.name == "RandomFlip" for t in task.augment)
    model = train(task, data, tmp_path / "model", folds=2, epochs=1, max_steps=1,
                  progress=False, device="cpu")
    config = read_config(model)
    groups = {f"{n:02d}": n % 2 for n in range(1, 9)}  # odd subjects are patients
    for entry in config["folds"]:
        state = load_tensors(model / f"fold-{entry['fold']}" / "state.safetensors")
        controls = [s for s in entry["train"] if groups[s.removeprefix("sub-")] == 0]
        assert 0 < len(controls) < 4  # a fold's own controls, never all of them
        assert int(state["normative_count"][0]) == len(controls)
    predictions = tmp_path / "predictions"
    predict(model, data, device="cpu", progress=False, out_dir=predictions)
    assert cam_path(predictions, "01") is not None
    rows = task.evaluate(task, data, predictions, list(groups))
    assert len(rows) == 8 and all(0.0 <= r["probability"] <= 1.0 for r in rows)

    # a subject on another grid (not registered to the training template) is refused
    import nibabel as nib

    from lesionkit.io import InputError

    for path in [data / "sub-01" / "anat" / "sub-01_FLAIR.nii.gz",
                 *(data / "derivatives" / "phantom" / "sub-01" / "anat").glob("*.nii.gz")]:
        image = nib.load(path)
        nib.save(image.slicer[:, :, 1:], path)
    refused = tmp_path / "refused"
    with pytest.raises(InputError, match=r"sub-01_FLAIR\.nii\.gz: expected an input on the "
                                         r"grid of the model's normative maps"):
        predict(model, data, device="cpu", progress=False, out_dir=refused, subjects=["01"])
    assert not list(refused.rglob("*.nii.gz"))


def test_normative_peak_arm_scores_voxels_and_explains_with_its_score_map(tmp_path: Path
                                                                          ) -> None:
    from lesionkit.infer import predict
    from lesionkit.model_folder import read_config
    from lesionkit.models import PeakScoreNet
    from lesionkit.training import train

    data = _dataset(tmp_path / "bids", subjects=8)
    task = get_task("fcd-classify").arm("normative-peak")
    assert task.network == "peak-fcn" and task.network_kwargs["base"] == "peak-fcn"
    assert task.inference.cam_layer == "network.features"
    assert task.augment == ()  # any shift moves tissue edges off the controls' voxels
    model = train(task, data, tmp_path / "model", folds=2, epochs=1, max_steps=1,
                  progress=False, device="cpu")
    assert read_config(model)["task"]["network_kwargs"]["base"] == "peak-fcn"
    predictions = tmp_path / "predictions"
    predict(model, data, device="cpu", progress=False, out_dir=predictions)
    cam = load_volume(cam_path(predictions, "01"), kind="probability").data
    assert cam.shape == brain_mask().shape and cam.min() >= 0.0 and cam.max() <= 1.0
    rows = task.evaluate(task, data, predictions, [f"{n:02d}" for n in range(1, 9)])
    assert len(rows) == 8 and all(0.0 <= r["probability"] <= 1.0 for r in rows)
    assert isinstance(task.network_factory(1, 2, state=_state(), **task.network_kwargs).network,
                      PeakScoreNet)


def _registered_dataset(root: Path, subjects: int) -> Path:
    """Like :func:`_dataset`, but every subject is one anatomy plus a little noise, as
    subjects registered to one template are (a voxel-wise comparison makes sense)."""
    from conftest import smooth_field

    _dataset(root, subjects)
    mask = brain_mask()
    anatomy = (0.6 + 0.8 * smooth_field(np.random.default_rng(1))) * mask
    rng = np.random.default_rng(2)
    spec = get_task("fcd-classify").inputs[0]
    for number in range(1, subjects + 1):
        image = anatomy + 0.02 * rng.standard_normal(mask.shape) * mask
        if number % 2 == 1:
            image[BLOB] += 0.5
        write_image(root, f"{number:02d}", spec, image.astype(np.float32))
    return root


def _state() -> dict:
    from lesionkit.models import fit_normative

    shape = (1, *brain_mask().shape)
    return fit_normative([{"input": np.full(shape, v, np.float32), "target": 0}
                          for v in (1.0, 2.0)], 0, sigma=0)


def test_normative_max_arm_learns_a_threshold_on_the_largest_z_score(tmp_path: Path) -> None:
    import math

    import pandas as pd

    from lesionkit.training import train

    data = _registered_dataset(tmp_path / "bids", subjects=24)
    task = get_task("fcd-classify").arm("normative-max")
    assert task.network_kwargs == {"depth": 0, "with_image": False, "base": "peak-fcn"}
    assert task.inference.cam_layer == "network.score" and task.augment == ()
    subjects = [f"{n:02d}" for n in range(1, 25)]
    model = train(task, data, tmp_path / "model", epochs=40, progress=False, device="cpu",
                  splits=[{"train": subjects, "validation": []}])
    # two weights cannot memorise: the loss falls because the patients' blob is the
    # largest deviation from the controls
    loss = pd.read_csv(model / "fold-0" / "metrics.csv")["train_loss"].to_numpy()
    assert loss[-3:].mean() < 0.5 * math.log(2)
