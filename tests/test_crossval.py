"""Cross-validation of arms on the same folds, with out-of-fold lesion rows."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import TOY_LESION_TASK, write_task_dataset
from lesionkit.crossval import _paired_row, crossval
from lesionkit.io import InputError
from lesionkit.model_folder import read_config


def test_arms_share_folds_and_every_lesion_is_predicted_out_of_fold(tmp_path: Path) -> None:
    task = replace(TOY_LESION_TASK, arms={"slow": {"learning_rate": 1e-4},
                                          "fast": {"learning_rate": 1e-2}})
    data = write_task_dataset(tmp_path / "bids", task, subjects=4)
    path = crossval(task, data, tmp_path / "out", folds=2, epochs=1, device="cpu",
                    progress=False)
    summary = json.loads(path.read_text())
    assert list(summary["arms"]) == ["slow", "fast"] and summary["folds"] == 2
    folds = [read_config(tmp_path / "out" / f"arm-{a}" / "model")["folds"] for a in ("slow",
                                                                                   "fast")]
    assert [f["train"] for f in folds[0]] == [f["train"] for f in folds[1]]
    for fold in folds[0]:
        assert fold["validation"] == [] and not set(fold["train"]) & set(fold["held_out"])
    accuracy = next(r for r in summary["arms"]["slow"]["classification"]
                    if r["metric"] == "accuracy")
    assert accuracy["n"] == 16  # 4 subjects x 4 lesions, each predicted once
    (pair,) = summary["pairs"]
    assert (pair["a"], pair["b"]) == ("slow", "fast")
    assert "mcnemar_midp" in pair["classification"]
    assert "label" not in {r["metric"] for r in pair["metrics"]}
    sidecar = next((tmp_path / "out" / "arm-slow" / "predictions").rglob("*_probseg.json"))
    assert json.loads(sidecar.read_text())["Folds"] == 1
    report = (tmp_path / "out" / "report.html").read_text()
    assert "Training curves" in report and "training loss per epoch" in report
    assert "Method: arm fast of" in report  # the caption names the arm
    assert "right only with a" in report  # the paired table, both arms named
    for arm in ("slow", "fast"):  # each arm's out-of-fold maps in a viewer, linked
        assert f'href="arm-{arm}/viewer.html"' in report
        assert (tmp_path / "out" / f"arm-{arm}" / "viewer.html").is_file()


def test_training_curves_plot_every_fold(tmp_path: Path) -> None:
    from lesionkit.crossval import training_curves

    assert training_curves(tmp_path) is None
    for fold, losses in (("fold-0", (0.7, 0.5, 0.3)), ("fold-1", (0.69, 0.6))):
        (tmp_path / fold).mkdir()
        rows = "".join(f"{e},{e},{v},nan,1.0\n" for e, v in enumerate(losses))
        (tmp_path / fold / "metrics.csv").write_text(
            "epoch,step,train_loss,val_loss,seconds\n" + rows)
    figure = training_curves(tmp_path)
    (axes,) = figure.axes
    lines = {line.get_label(): line.get_ydata() for line in axes.get_lines()}
    assert set(lines) == {"fold-0 training", "fold-1 training"}  # no validation logged
    assert list(lines["fold-0 training"]) == [0.7, 0.5, 0.3]
    assert len(lines["fold-1 training"]) == 3  # the missing epoch is a gap


def test_unknown_arm_is_an_input_error(tmp_path: Path) -> None:
    data = write_task_dataset(tmp_path / "bids", TOY_LESION_TASK, subjects=4)
    with pytest.raises(InputError, match="no arm 'nope'"):
        crossval(TOY_LESION_TASK, data, tmp_path / "out", arms=["nope"], progress=False)


def plain_step(network, loss, batch):
    """A training step defined outside lesionkit (the engine's own step, written out)."""
    from lesionkit.tasks.strategies import network_inputs

    return loss(network(*network_inputs(batch)), batch["target"])


def test_arms_with_hooks_of_a_trusted_module_predict(tmp_path: Path) -> None:
    task = replace(TOY_LESION_TASK, arms={"own-step": {"training_step": plain_step}})
    data = write_task_dataset(tmp_path / "bids", task, subjects=4)
    with pytest.raises(InputError, match=f"{__name__}:plain_step"):
        crossval(task, data, tmp_path / "refused", folds=2, epochs=1, device="cpu",
                 progress=False)
    path = crossval(task, data, tmp_path / "out", folds=2, epochs=1, device="cpu",
                    progress=False, trusted=(__name__,))
    summary = json.loads(path.read_text())
    assert summary["arms"]["own-step"]["training"]["fold-0"]["steps"] > 0
    config = (tmp_path / "out" / "arm-own-step" / "model" / "config.yaml").read_text()
    assert f"{__name__}:plain_step" in config


def test_a_time_limit_stops_each_fold_and_keeps_its_last_epoch(tmp_path: Path) -> None:
    data = write_task_dataset(tmp_path / "bids", TOY_LESION_TASK, subjects=4)
    crossval(TOY_LESION_TASK, data, tmp_path / "out", folds=2, epochs=50, device="cpu",
             progress=False, max_minutes=1e-5)  # 0.6 ms: stops after the first step
    model = tmp_path / "out" / "arm-default" / "model"
    metrics = json.loads((model / "metrics.json").read_text())
    assert [metrics[f"fold-{k}"]["steps"] for k in (0, 1)] == [1, 1]  # not 50 epochs
    assert [metrics[f"fold-{k}"]["epochs"] for k in (0, 1)] == [1, 1]
    assert all((model / f"fold-{k}" / "weights.safetensors").is_file() for k in (0, 1))
    assert (tmp_path / "out" / "comparison.json").is_file()


def test_paired_rows_keep_both_arms_and_name_mcnemar_counts():
    row = _paired_row({"a": "slow", "b": "fast"}, {"b": 3, "c": 1, "mcnemar_midp": 0.6})
    assert row == {"arm a": "slow", "arm b": "fast", "right only with a": 3,
                   "right only with b": 1, "mcnemar_midp": 0.6}
