"""fcd-classify: variants by value, train -> predict -> explain -> evaluate -> report."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import brain_mask, write_image, write_task_dataset
from lesionkit.io import load_volume
from lesionkit.tasks import TASKS, get_task
from lesionkit.tasks.fcd_classify import cam_path, explain, fcd_task
from lesionkit.tasks.task import ImageSpec, LabelSpec

BLOB = (slice(9, 12), slice(5, 8), slice(7, 10))


def test_both_modalities_are_registered_with_a_two_class_head() -> None:
    flair, t1w = get_task("fcd-classify"), get_task("fcd-classify-t1w")
    assert TASKS["fcd-classify"] is flair
    assert [s.suffix for s in flair.inputs] == ["FLAIR"]
    assert [s.suffix for s in t1w.inputs] == ["T1w"]
    for task in (flair, t1w):
        assert task.out_channels == 2 and task.output_activation == "softmax"
        assert task.inference == "whole_volume" and task.sampler.kind == "whole"
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


def _model_folder(folder: Path, task, folds: list[list[str]]) -> Path:
    """A model folder of untrained tiny folds, without running the trainer."""
    from lesionkit.model_folder import fold_dir, save_weights, task_fields, write_config
    from lesionkit.models import build_network

    entries = []
    for k, train_subjects in enumerate(folds):
        network = build_network(task.network, 1, 2, **task.network_kwargs)
        save_weights(network, fold_dir(folder, k) / "weights.safetensors")
        entries.append({"fold": k, "train": train_subjects, "validation": [],
                        "normalisation": {"flair": {"shift": 1.0, "scale": 0.5}}})
    write_config(folder, {"task": task.name, "task_fields": task_fields(task),
                          "in_channels": 1, "folds": entries})
    return folder


def test_explain_uses_the_held_out_fold_and_keeps_the_grid(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "bids")
    task = replace(get_task("fcd-classify"), network="resnet10",
                   network_kwargs={"widen_factor": 0.25})
    model = _model_folder(tmp_path / "model", task, [["01", "02"], ["03", "04"]])
    written = explain(model, data, subjects=["01", "03"], progress=False)
    assert written == [cam_path(data, "01"), cam_path(data, "03")]
    source = load_volume(data / "sub-01" / "anat" / "sub-01_FLAIR.nii.gz")
    cam = load_volume(written[0], kind="probability")
    assert cam.shape == source.shape
    np.testing.assert_allclose(cam.affine, source.affine, atol=1e-6)
    assert cam.data.min() >= 0.0 and cam.data.max() <= 1.0
    for path, fold in zip(written, (1, 0), strict=True):
        sidecar = json.loads(path.with_suffix("").with_suffix(".json").read_text())
        assert sidecar["Folds"] == [fold]
        assert sidecar["ClassExplained"] == "patient" and sidecar["Units"] == "1"


def test_train_predict_explain_evaluate_report(tmp_path: Path) -> None:
    from lesionkit.infer import predict
    from lesionkit.training import train

    data = _dataset(tmp_path / "bids")
    task = replace(get_task("fcd-classify"), network="resnet10",
                   network_kwargs={"widen_factor": 0.25})
    model = train(task, data, tmp_path / "model", folds=2, epochs=1, max_steps=1,
                  progress=False, device="cpu")
    predict(model, data, device="cpu", progress=False)
    written = explain(model, data, progress=False)
    assert len(written) == 4
    source = load_volume(data / "sub-01" / "anat" / "sub-01_FLAIR.nii.gz")
    cam = load_volume(cam_path(data, "01"), kind="probability")
    assert cam.shape == source.shape
    np.testing.assert_allclose(cam.affine, source.affine, atol=1e-6)
    assert cam.data.min() >= 0.0 and cam.data.max() <= 1.0
    sidecar = json.loads(cam_path(data, "01").with_suffix("").with_suffix(".json").read_text())
    assert sidecar["ClassExplained"] == "patient" and len(sidecar["Folds"]) == 1

    rows = {r["participant_id"]: r for r in task.evaluate(data, ["01", "02", "03", "04"])}
    assert rows["sub-01"]["group"] == "patient" and rows["sub-02"]["label"] == 0
    assert 0.0 <= rows["sub-01"]["p_patient"] <= 1.0
    assert rows["sub-01"]["correct"] == (rows["sub-01"]["p_patient"] >= 0.5)
    assert rows["sub-01"]["heat_score"] is not None and rows["sub-02"]["heat_score"] is None
    sections = task.report_sections(data, ["01", "02", "03", "04"], list(rows.values()))
    assert [s.title for s in sections] == ["fcd-classify: classification",
                                           "fcd-classify: Grad-CAM"]
    metrics = {r["metric"]: r for r in sections[0].tables["metrics"]}
    assert metrics["accuracy"]["n"] == 4
    assert "not publish" in sections[0].text


def test_evaluate_without_predictions_says_what_is_missing(tmp_path: Path) -> None:
    from lesionkit.io import InputError

    data = _dataset(tmp_path / "bids", subjects=2)
    with pytest.raises(InputError, match="run predict"):
        get_task("fcd-classify").evaluate(data, ["01"])
