"""enhance-r1: the paper's recipe, evaluation against the 3T baseline, CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import oblique_affine, write_image
from lesionkit.bids import BIDSDataset, bids_path, save_derivative
from lesionkit.cli import app
from lesionkit.io import load_volume
from lesionkit.tasks import get_task
from lesionkit.tasks.enhance_r1 import evaluate
from lesionkit.tasks.task import ImageSpec
from lesionkit.volume import Volume

TASK = get_task("enhance-r1")


def test_recipe_follows_methods() -> None:
    assert TASK.sampler.patch_size == (32, 32, 32) and TASK.sampler.step == (8, 8, 4)
    assert TASK.sampler.max_background == 0.8
    assert (TASK.network, TASK.loss, TASK.learning_rate, TASK.patience) == (
        "unet", "mse+gradient-l1", 1e-4, 10)
    assert TASK.network_kwargs["upsample"] == "nontrainable"  # no transposed convolution
    assert TASK.outputs[0].unit == "s^-1" and TASK.outputs[0].target == "r1_7t"
    assert TASK.inference.window == (96, 96, 96) and TASK.inference.overlap == 0.125


def _add_truth(root: Path, subject: str) -> None:
    """GM/WM probabilities (halves of the grid) and a lesion block in the GM half."""
    shape = load_volume(bids_path(root, subject, "R1map", session="7T")).shape
    gm = np.zeros(shape, np.float32)
    gm[: shape[0] // 2 + 1] = 0.6
    wm = np.zeros(shape, np.float32)
    wm[shape[0] // 2 - 1:] = 0.6
    lesion = np.zeros(shape, np.float32)
    lesion[4:7, 6:10, 6:10] = 1
    for label, data in (("GM", gm), ("WM", wm)):
        write_image(root, subject, ImageSpec(label, "probseg", session="7T",
                    derivatives="phantom", entities=(("label", label),)), data)
    write_image(root, subject, ImageSpec("l", "mask", session="7T", derivatives="phantom",
                entities=(("label", "lesion"),)), lesion)


def test_evaluation_scores_baseline_and_output(enhance_dataset: Path) -> None:
    _add_truth(enhance_dataset, "01")
    r7 = load_volume(bids_path(enhance_dataset, "01", "R1map", session="7T"))
    r7 = Volume(r7.data.copy(), r7.affine, unit="s^-1")
    r7.data[4:7, 6:10, 6:10] *= 0.8  # a lesion darker than its surroundings
    save_derivative(r7, bids_path(enhance_dataset, "01", "R1map", session="7T"))
    path = bids_path(enhance_dataset, "01", "R1map", session="3T", derivatives="lesionkit",
                     desc="enhanced")
    save_derivative(r7, path, {})  # a perfect enhancement
    predictions = enhance_dataset / "derivatives" / "lesionkit"
    truth = bids_path(enhance_dataset, "01", "R1map", session="7T", derivatives="phantom")
    save_derivative(r7, truth, {})  # the phantom's noise-free map
    rows = {r["method"]: r for r in evaluate(TASK, enhance_dataset, predictions, ["01"])}
    assert rows["truth"]["rmse"] == pytest.approx(0.0, abs=1e-6)
    assert rows["enhanced"]["nyquist_power_ratio"] == pytest.approx(1.0)
    assert rows["reference"]["nyquist_power_ratio"] is None
    assert rows["enhanced"]["rmse"] == pytest.approx(0.0, abs=1e-6)
    assert rows["enhanced"]["ssim"] == pytest.approx(1.0)
    assert rows["enhanced"]["contrast_preservation"] == pytest.approx(1.0)
    assert rows["baseline"]["rmse"] > 0.05
    assert rows["baseline"]["ssim"] < 1.0
    assert rows["reference"]["rmse"] is None
    assert rows["reference"]["edge_sharpness"] == pytest.approx(rows["enhanced"]["edge_sharpness"])
    assert rows["reference"]["lesion_contrast"] < 0


def test_edge_profiles_of_the_report(enhance_dataset: Path) -> None:
    from lesionkit.tasks.enhance_r1 import _edge_profiles

    r7 = load_volume(bids_path(enhance_dataset, "01", "R1map", session="7T"), unit="s^-1")
    wm = np.zeros(r7.shape, np.float32)
    wm[r7.shape[0] // 2:] = 1.0
    for label, data in (("GM", 1.0 - wm), ("WM", wm)):
        write_image(enhance_dataset, "01", ImageSpec(label, "probseg", session="7T",
                    derivatives="phantom", entities=(("label", label),)), data)
    predictions = enhance_dataset / "derivatives" / "lesionkit"
    save_derivative(r7, bids_path(enhance_dataset, "01", "R1map", session="3T",
                                  derivatives="lesionkit", desc="enhanced"), {})
    distance, curves = _edge_profiles(enhance_dataset, predictions, "01")
    assert set(curves) == {"3T (baseline)", "enhanced", "7T (reference)"}
    assert distance.size >= 2 and np.all(np.diff(distance) > 0)
    assert all(c.shape == distance.shape for c in curves.values())
    assert curves["enhanced"] == pytest.approx(curves["7T (reference)"])  # a perfect output
    assert _edge_profiles(enhance_dataset, predictions, "02") is None  # no probabilities
    save_derivative(Volume(np.ones(r7.shape, np.float32), r7.affine, unit="s^-1"),
                    bids_path(enhance_dataset, "01", "R1map", session="3T",
                              derivatives="lesionkit", desc="enhanced"), {})
    assert _edge_profiles(enhance_dataset, predictions, "01") is None  # a flat output


def test_cli_train_predict_evaluate_report(enhance_dataset: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    model = tmp_path / "model"
    result = runner.invoke(app, ["train", "enhance-r1", str(enhance_dataset), str(model),
                                 "--epochs", "1", "--channels", "4,8", "--patch-size", "8",
                                 "--patches-per-epoch", "4", "--device", "cpu",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["predict", str(model), str(enhance_dataset), "--tta", "2",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    found = BIDSDataset(enhance_dataset).find(derivatives="lesionkit", desc="uncertainty")
    assert len(found) == 4
    assert np.allclose(load_volume(found[0].path).affine, oblique_affine(), atol=1e-5)
    result = runner.invoke(app, ["evaluate", "enhance-r1", str(enhance_dataset)])
    assert result.exit_code == 0, result.output
    table = json.loads((enhance_dataset / "derivatives" / "lesionkit"
                        / "task-enhance-r1_metrics.json").read_text())
    assert set(table["summary"]) == {"baseline", "enhanced", "reference"}
    assert table["summary"]["enhanced"]["rmse"]["n"] == 4
    html = tmp_path / "report.html"
    result = runner.invoke(app, ["report", "enhance-r1", str(enhance_dataset), "--out",
                                 str(html)])
    assert result.exit_code == 0, result.output
    text = html.read_text()
    assert "enhance-r1" in text and text.count("<img") >= 3


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["train", "no-such-task", str(tmp_path), str(tmp_path / "m")])
    assert result.exit_code == 1 and "known tasks" in result.output
    result = runner.invoke(app, ["predict", str(tmp_path / "none"), str(tmp_path)])
    assert result.exit_code == 1 and "config.yaml" in result.output


def test_demo_and_shipped_model_keep_the_sharpening_recipe() -> None:
    from lesionkit.models import build_network
    from lesionkit.tasks.enhance_r1 import DEMO, SHIPPED_MODEL, SHIPPED_MODELS

    assert SHIPPED_MODELS == (SHIPPED_MODEL,)
    for step in (DEMO, SHIPPED_MODEL):
        # overrides replace whole fields: the interpolating decoder must be repeated
        assert step.overrides["network_kwargs"]["upsample"] == "nontrainable"
        assert "loss" not in step.overrides  # the task's MSE + gradient-L1
    network = build_network("unet", 1, 1, **SHIPPED_MODEL.overrides["network_kwargs"])
    assert sum(p.numel() for p in network.parameters()) * 4 <= 8e6  # float32 bytes
