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
    lines = run_step(step, tmp_path, 0, {"mrf-lesion": 3})
    assert lines[0].startswith("mrf-lesion reference maps (dictionary matching, MP-PCA off)")
    assert (tmp_path / "models" / "mrf-lesion" / "config.yaml").is_file()
    held_out = [line for line in lines if "held-out phantom subjects" in line]
    assert held_out == ["mrf-lesion, held-out phantom subjects 03 (mean over subjects):"]
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
    lines = run_step(step, tmp_path, 0, cohorts)
    arms = ["scratch", "segmentation"] if pretrain else ["scratch"]
    assert lines[0].startswith(f"fcd-classify: {' vs '.join(arms)}, 4 phantom subjects, 2-fold")
    assert [line.split(":")[0].strip() for line in lines[1:-1]] == arms
    assert all("accuracy" in line for line in lines[1:-1])
    page = Path(lines[-1].removeprefix("report: ")).read_text()
    assert "Grad-CAM" in page
    predictions = tmp_path / "models" / "fcd-classify" / "arm-scratch" / "predictions"
    assert len(list(predictions.rglob("*desc-gradcam_probseg.nii.gz"))) == 4
