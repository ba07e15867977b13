"""The demo's method steps on tiny datasets (the phantom cohorts are tested elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_fcd_dataset, write_mrf_dataset
from lesionkit.demo import DemoSettings, _fcd_classify, _mrf_lesion, _no_progress

TINY = DemoSettings(learning_rate=1e-3, mrf_held_out=1, mrf_epochs=1, mrf_patches_per_epoch=4,
                    mrf_channels=(4, 4, 8, 8, 16), mrf_patch=8, fcd_folds=2, fcd_epochs=1,
                    fcd_network=("resnet10", 0.25), fcd_pretrain_epochs=1, fcd_pretrain_patch=4)


def test_mrf_lesion_step_matches_trains_predicts_scores_and_reports(tmp_path: Path) -> None:
    data = write_mrf_dataset(tmp_path / "phantom" / "mrf-lesion", subjects=3)
    lines = _mrf_lesion(tmp_path, 0, TINY, _no_progress)
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
    if pretrain:
        write_mrf_dataset(tmp_path / "phantom" / "mrf-lesion", subjects=2)
    lines = _fcd_classify(tmp_path, 0, TINY, pretrain)
    arms = ["scratch", "segmentation"] if pretrain else ["scratch"]
    assert lines[0].startswith(f"fcd-classify: {' vs '.join(arms)}, 4 subjects, 2-fold")
    assert [line.split(":")[0].strip() for line in lines[1:-1]] == arms
    assert all("accuracy" in line and "Heat-Score" in line for line in lines[1:-1])
    page = Path(lines[-1].removeprefix("report: ")).read_text()
    assert "Grad-CAM" in page
    cams = list((tmp_path / "models" / "fcd-classify" / "arm-scratch" / "cams").glob("*.nii.gz"))
    assert len(cams) == 2  # the held-out patients of both folds
