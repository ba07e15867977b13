"""The demo's steps on tiny datasets (the phantom cohorts are tested elsewhere)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import write_fcd_dataset, write_mrf_dataset, write_pretraining_source
from lesionkit.demo import run_step
from lesionkit.tasks import DEMO_STEPS
from lesionkit.tasks.strategies import QueueSampler

STEPS = {step.task: step for step in DEMO_STEPS}


def test_every_demo_step_names_a_registered_task() -> None:
    from lesionkit.simulate import COHORTS
    from lesionkit.tasks import TASKS

    assert {"enhance-r1", "mrf-lesion", "fcd-classify"} <= set(STEPS)
    for step in DEMO_STEPS:
        assert step.task in TASKS and step.cohort in COHORTS


def test_mrf_lesion_step_matches_trains_predicts_scores_and_reports(tmp_path: Path) -> None:
    data = write_mrf_dataset(tmp_path / "phantom" / "mrf-lesion", subjects=3)
    step = replace(STEPS["mrf-lesion"], held_out=1, epochs=1, examples_per_epoch=4, overrides={
        "network_kwargs": {"channels": (4, 4, 8, 8, 16)}, "batch_size": 2,
        "sampler": QueueSampler((8, 8, 1), 4, centre_on="mask", oversample="lesion",
                                oversample_factor=5.0)})
    lines = run_step(step, tmp_path, 0, {"mrf-lesion": 3}, use_shipped=False)
    assert lines[0].startswith("mrf-lesion reference maps (dictionary matching, MP-PCA off)")
    assert (tmp_path / "models" / "mrf-lesion" / "config.yaml").is_file()
    held_out = [line for line in lines if "held-out phantom subjects" in line]
    assert len(held_out) == 1 and held_out[0].startswith(
        "mrf-lesion (demo-trained model), held-out phantom subjects 03 (predicted in ")
    assert any("lesion_dice" in line for line in lines)
    report = Path(lines[-1].removeprefix("report: "))
    assert report.is_file() and "Dice" in report.read_text()
    matched = data / "derivatives" / "lesionkit" / "sub-01" / "anat"
    sidecar = json.loads((matched / "sub-01_desc-matched_T1map.json").read_text())
    assert sidecar["Units"] == "ms"


@pytest.mark.parametrize("pretrain", [False, True])
def test_fcd_step_cross_validates_the_arms_with_grad_cam(tmp_path: Path, pretrain: bool) -> None:
    write_fcd_dataset(tmp_path / "phantom" / "fcd-classify", subjects=4)
    cohorts = {"fcd-classify": 4}
    if pretrain:
        for stage, cohort in enumerate(STEPS["fcd-classify"].source_cohorts):
            write_pretraining_source(tmp_path / "phantom" / cohort, stage, subjects=2)
            cohorts[cohort] = 2
    step = STEPS["fcd-classify"]
    step = replace(step, epochs=1, overrides={**step.overrides, "network_kwargs": {
        **step.overrides["network_kwargs"], "widen_factor": 0.25}})
    lines = run_step(step, tmp_path, 0, cohorts, use_shipped=False)
    arms = ["scratch", "segmentation"] if pretrain else ["scratch"]
    assert lines[0].startswith(f"fcd-classify: {' vs '.join(arms)}, 4 phantom subjects, 2-fold")
    assert [line.split(":")[0].strip() for line in lines[1:-1]] == arms
    assert all("accuracy" in line for line in lines[1:-1])
    page = Path(lines[-1].removeprefix("report: ")).read_text()
    assert "Grad-CAM" in page
    predictions = tmp_path / "models" / "fcd-classify" / "arm-scratch" / "predictions"
    assert len(list(predictions.rglob("*desc-gradcam_probseg.nii.gz"))) == 4


def test_a_step_predicts_with_a_given_model_fine_tunes_it_and_indexes_both_reports(
        tmp_path: Path) -> None:
    from conftest import tiny, write_task_dataset
    from lesionkit.demo import _index_entries
    from lesionkit.report import write_index
    from lesionkit.tasks import get_task
    from lesionkit.training import train

    task = tiny(get_task("enhance-r1"))
    data = write_task_dataset(tmp_path / "phantom" / "enhance-r1", task, subjects=4)
    model = train(task, data, tmp_path / "given", folds=1, epochs=1, patches_per_epoch=4,
                  progress=False)
    step = replace(STEPS["enhance-r1"], held_out=1, tta=1, examples_per_epoch=4,
                   fine_tune_epochs=1, shown=("rmse",))
    lines = run_step(step, tmp_path, 0, {"enhance-r1": 4}, model=model)
    headers = [line for line in lines if "held-out phantom subjects 04" in line]
    assert [h.split(" (predicted")[0] for h in headers] == [
        "enhance-r1 (shipped model), held-out phantom subjects 04",
        "enhance-r1 (fine-tuned model), held-out phantom subjects 04"]
    assert any(line.startswith("fine-tuned shipped model given (learning rate 0.0001) on 3 "
                               "subjects") for line in lines)
    tuned = tmp_path / "models" / "enhance-r1"
    assert (tuned / "config.yaml").is_file() and not (model / "fold-1").exists()
    entries = _index_entries("enhance-r1", lines)
    assert len(entries) == 2 and all("rmse (s^-1)" in e["summary"] for e in entries)
    assert entries[0]["path"] != entries[1]["path"]
    page = write_index(tmp_path / "index.html", "demo", entries).read_text()
    assert page.count("enhance-r1") >= 2 and "predictions/enhance-r1-fine-tuned" in page


def test_run_demo_simulates_with_the_workers_asked_for(tmp_path: Path, monkeypatch) -> None:
    """``--workers`` reaches every cohort's simulation, capped at its subject count."""
    import lesionkit.simulate as simulate
    from lesionkit.demo import run_demo

    calls = {}

    def fake_cohort(cohort: str, out: Path, subjects: int, workers: int = 0, **_) -> Path:
        calls[cohort] = workers
        return out

    monkeypatch.setattr(simulate, "simulate_cohort", fake_cohort)
    monkeypatch.setattr("lesionkit.report.write_index", lambda path, *a, **k: path)
    run_demo(tmp_path, steps=[], cohorts={"enhance-r1": 4, "mrf-lesion": 1}, workers=2)
    assert calls == {"enhance-r1": 2, "mrf-lesion": 1}


def test_figures_carry_the_units_of_the_registered_task() -> None:
    """A metric is printed with the task's unit, and a model folder written before the
    task gave units takes the registered task's."""
    from lesionkit.shipped import metric_label
    from lesionkit.tasks import get_task

    task = get_task("enhance-r1")
    assert metric_label(task, "rmse") == "rmse (s^-1)" and metric_label(task, "ssim") == "ssim"
    assert metric_label(replace(task, metric_units={}), "relative_edge_sharpness") == (
        "relative_edge_sharpness (1/mm)")
    assert metric_label("enhance-r1", "psnr") == "psnr (dB)"  # a shipped model's name
