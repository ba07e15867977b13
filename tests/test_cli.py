"""Tests of the command-line layer."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lesionkit import __version__
from lesionkit.cli import app

runner = CliRunner()


@pytest.mark.parametrize("argv", [["version"], ["--version"]])
def test_version(argv: list[str]) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 0
    assert result.stdout.strip() == f"lesionkit {__version__}"


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("simulate", "demo", "version"):
        assert command in result.stdout


def test_command_help_paragraphs_flow_in_a_narrow_terminal() -> None:
    result = runner.invoke(app, ["predict", "--help"], terminal_width=80)
    assert result.exit_code == 0
    (line,) = [line for line in result.stdout.splitlines() if "grid; the" in line]
    assert "brain mask" in line  # wrapped by the terminal, not at the docstring's breaks
    for info in app.registered_commands:  # no line break inside a paragraph
        assert "\n" not in info.help.replace("\n\n", ""), info.name


def test_help_imports_no_heavy_library() -> None:
    code = ("import sys; from lesionkit.cli import app; "
            "heavy = [m for m in ('torch', 'monai', 'nibabel', 'scipy', 'torchio', 'lightning') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_unknown_task_is_one_line_and_non_zero(tmp_path) -> None:
    result = runner.invoke(app, ["simulate", "brain-age", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "unknown cohort 'brain-age'" in result.stderr
    assert not (tmp_path / "x").exists()


def test_simulate_with_workers(tmp_path) -> None:
    out = tmp_path / "fcd"
    result = runner.invoke(app, ["simulate", "fcd-classify", str(out), "--subjects", "2",
                                 "--workers", "2", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("sub-*")) == ["sub-01", "sub-02"]
    refused = runner.invoke(app, ["simulate", "fcd-classify", str(tmp_path / "x"),
                                  "--workers", "-1"])
    assert refused.exit_code == 2 and not (tmp_path / "x").exists()


def test_public_api_names_resolve_to_objects_not_modules() -> None:
    import importlib
    import types

    import lesionkit as lk

    # Importing every defining module first would shadow a lazy name by a submodule.
    for module in set(lk._EXPORTS.values()):
        importlib.import_module(module)
    for name in lk.__all__:
        assert not isinstance(getattr(lk, name), types.ModuleType), name
    assert callable(lk.train) and callable(lk.predict) and callable(lk.simulate_cohort)


def test_model_commands_name_the_missing_model_folder(tmp_path) -> None:
    for command in (["predict", str(tmp_path / "model"), str(tmp_path)],):
        result = runner.invoke(app, command)
        assert result.exit_code == 1
        assert "model/config.yaml: expected a lesionkit model folder" in result.stderr


def test_view_names_the_missing_predictions_in_one_line(tmp_path) -> None:
    result = runner.invoke(app, ["view", "flair-lesion-dr", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert f"{tmp_path}: expected flair-lesion-dr's predictions" in result.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_mrf_match_names_the_dataset_without_mrf(tmp_path) -> None:
    result = runner.invoke(app, ["mrf-match", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{tmp_path}: expected subjects with an MRF series" in result.stderr


def test_crossval_takes_network_width_and_learning_rate(tmp_path) -> None:
    import json

    from conftest import write_fcd_dataset

    data = write_fcd_dataset(tmp_path / "bids", subjects=4)
    result = runner.invoke(app, ["crossval", "fcd-classify", str(data), str(tmp_path / "out"),
                                 "--arms", "scratch", "--folds", "2", "--epochs", "1",
                                 "--network", "resnet10", "--widen-factor", "0.25",
                                 "--learning-rate", "0.001", "--device", "cpu",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Epoch" not in result.output  # no progress bars
    summary = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert summary["network"] == "resnet10"
    assert summary["network_kwargs"] == {"widen_factor": "0.25", "conv1_t_stride": "2",
                                          "pooling": "max"}
    assert summary["learning_rate"] == 0.001
    accuracy = next(r for r in summary["arms"]["scratch"]["classification"]
                    if r["metric"] == "accuracy")
    assert accuracy["n"] == 4  # every subject predicted once, out of fold
    assert (tmp_path / "out" / "report.html").is_file()


def test_toy_per_lesion_task_trains_predicts_and_evaluates_through_the_cli(
        tmp_path, monkeypatch) -> None:
    import pandas as pd

    from conftest import TOY_LESION_TASK, write_task_dataset
    from lesionkit import tasks

    monkeypatch.setitem(tasks.TASKS, TOY_LESION_TASK.name, TOY_LESION_TASK)
    data = write_task_dataset(tmp_path / "bids", TOY_LESION_TASK, subjects=4)
    result = runner.invoke(app, ["train", "toy-lesions", str(data), str(tmp_path / "model"),
                                 "--epochs", "2", "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    monkeypatch.delitem(tasks.TASKS, TOY_LESION_TASK.name)  # predict needs only the folder
    result = runner.invoke(app, ["predict", str(tmp_path / "model"), str(data), "--device",
                                 "cpu", "--out-dir", str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "pred" / "sub-01" / "anat" / "sub-01_desc-bright_lesions.tsv",
                        sep="\t")
    assert list(table.columns[:8]) == ["label", "centre_i", "centre_j", "centre_k",
                                       "centre_x_mm", "centre_y_mm", "centre_z_mm", "volume_mm3"]
    assert {"probability", "uncertainty"} <= set(table.columns)
    monkeypatch.setitem(tasks.TASKS, TOY_LESION_TASK.name, TOY_LESION_TASK)
    result = runner.invoke(app, ["evaluate", "toy-lesions", str(data), "--predictions",
                                 str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "pred" / "task-toy-lesions_metrics.tsv", sep="\t")
    assert len(rows) == 16 and rows["probability"].between(0, 1).all()
    # Another model's lesion table beside it (a lesion map's, predicted into the same
    # folder; its name sorts first) is not read as this task's.
    decoy = table.assign(probability=0.999, uncertainty=0.0)
    decoy.to_csv(tmp_path / "pred" / "sub-01" / "anat" / "sub-01_desc-another_lesions.tsv",
                 sep="\t", index=False)
    result = runner.invoke(app, ["evaluate", "toy-lesions", str(data), "--predictions",
                                 str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    again = pd.read_csv(tmp_path / "pred" / "task-toy-lesions_metrics.tsv", sep="\t")
    pd.testing.assert_frame_equal(again, rows)


def test_ctrl_c_is_one_line_saying_what_was_kept(tmp_path, monkeypatch, capsys) -> None:
    from lesionkit import training
    from lesionkit.cli import run

    def interrupted(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    status = run(["train", "enhance-r1", str(tmp_path), str(tmp_path / "model"),
                  "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 130
    assert len(err) == 1 and err[0].startswith("interrupted:") and "--resume" in err[0]


def test_unexpected_error_is_one_line_with_the_traceback_file(tmp_path, monkeypatch,
                                                              capsys) -> None:
    from pathlib import Path

    from lesionkit import training
    from lesionkit.cli import run

    def broken(*_, **__):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(training, "train", broken)
    status = run(["train", "enhance-r1", str(tmp_path), str(tmp_path / "model"),
                  "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1
    assert err[0].startswith("error: unexpected ZeroDivisionError: division by zero")
    path = Path(err[0].rsplit("traceback in ", 1)[1].rstrip(")"))
    assert "Traceback" in path.read_text() and "broken" in path.read_text()
    path.unlink()


def test_entry_point_is_the_one_error_path() -> None:
    from importlib.metadata import entry_points

    (point,) = [e for e in entry_points(group="console_scripts") if e.name == "lesionkit"]
    assert point.value == "lesionkit.cli:run"


def test_train_and_crossval_take_devices_nodes_amp_and_compile(tmp_path, monkeypatch) -> None:
    from lesionkit import crossval, training

    calls: list[dict] = []
    monkeypatch.setattr(training, "train", lambda *args, **kwargs: calls.append(kwargs) or "m")
    monkeypatch.setattr(crossval, "crossval", lambda *args, **kwargs: calls.append(kwargs))
    common = ["--device", "cpu", "--nodes", "3", "--amp", "--compile"]
    for command in (["train", "enhance-r1", str(tmp_path), str(tmp_path / "model"), "--gpus",
                     "2", *common],
                    ["crossval", "fcd-classify", str(tmp_path), str(tmp_path / "out"),
                     "--devices", "2", *common]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
    for kwargs in calls:  # --gpus is the earlier name of --devices
        assert {k: kwargs[k] for k in ("device", "devices", "nodes", "amp", "compile_network")
                } == {"device": "cpu", "devices": 2, "nodes": 3, "amp": True,
                      "compile_network": True}


def test_every_command_that_reads_a_dataset_takes_bids_filters(tmp_path, monkeypatch) -> None:
    """The filters hold while the command's function runs (and not after)."""
    from lesionkit import bids_app, crossval, evaluation, infer, training
    from lesionkit.bids import EntityFilter, active_filters

    seen: dict[str, tuple] = {}

    def recorder(name: str, result: object = None):
        return lambda *args, **kwargs: seen.setdefault(name, active_filters()) and result

    monkeypatch.setattr(training, "train", recorder("train", "m"))
    monkeypatch.setattr(crossval, "crossval", recorder("crossval"))
    monkeypatch.setattr(infer, "predict", recorder("predict", []))
    monkeypatch.setattr(evaluation, "evaluate", recorder("evaluate", (tmp_path / "m.tsv",
                                                                      tmp_path / "m.json")))
    monkeypatch.setattr(evaluation, "report", recorder("report", tmp_path / "r.html"))
    monkeypatch.setattr(bids_app, "participant_level", recorder("lesionkit-bids", []))
    chosen = ["--bids-filter", "FLAIR:acq=3D", "--bids-filter", "rec=norm"]
    for command in (["train", "enhance-r1", str(tmp_path), str(tmp_path / "model")],
                    ["crossval", "fcd-classify", str(tmp_path), str(tmp_path / "out")],
                    ["predict", "enhance-r1", str(tmp_path)],
                    ["evaluate", "enhance-r1", str(tmp_path)],
                    ["report", "enhance-r1", str(tmp_path)]):
        result = runner.invoke(app, [*command, *chosen])
        assert result.exit_code == 0, result.output
    (tmp_path / "filter.json").write_text('{"T2w": {"acquisition": null}}')
    result = runner.invoke(bids_app.app, [str(tmp_path), str(tmp_path / "derivatives" / "o"),
                                          "participant", "--task", "enhance-r1", *chosen,
                                          "--bids-filter-file", str(tmp_path / "filter.json")])
    assert result.exit_code == 0, result.output
    expected = (EntityFilter("acq", "3D", "FLAIR"), EntityFilter("rec", "norm"))
    assert seen.pop("lesionkit-bids") == (*expected, EntityFilter("acq", "", "T2w"))
    assert seen == dict.fromkeys(("train", "crossval", "predict", "evaluate", "report"),
                                 expected)
    assert active_filters() == ()


def test_more_devices_than_cuda_has_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    import torch

    from lesionkit.cli import run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    status = run(["train", "enhance-r1", str(tmp_path), str(tmp_path / "model"), "--device",
                  "cuda", "--devices", "2"])
    assert status == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "--devices 2: expected at most the 1 CUDA device(s) of this machine" in error
    assert not (tmp_path / "model").exists()


def test_heavy_commands_set_threads(tmp_path, monkeypatch) -> None:
    import torch

    from lesionkit import crossval, infer, training

    monkeypatch.setattr(training, "train", lambda *args, **kwargs: "m")
    monkeypatch.setattr(crossval, "crossval", lambda *args, **kwargs: None)
    monkeypatch.setattr(infer, "predict", lambda *args, **kwargs: [])
    for command in (["train", "enhance-r1", str(tmp_path), str(tmp_path / "model")],
                    ["crossval", "fcd-classify", str(tmp_path), str(tmp_path / "out")],
                    ["predict", str(tmp_path / "model"), str(tmp_path)]):
        torch.set_num_threads(2)
        result = runner.invoke(app, [*command, "--device", "cpu", "--threads", "1"])
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1, command


def test_train_spacing_sets_the_model_voxel_size(tmp_path, monkeypatch) -> None:
    from lesionkit import training

    tasks: list = []
    monkeypatch.setattr(training, "train", lambda task, *args, **kwargs: tasks.append(task) or "m")
    for value, expected in (("2", (2.0, 2.0, 2.0)), ("1,1.2,3", (1.0, 1.2, 3.0))):
        result = runner.invoke(app, ["train", "flair-lesion", str(tmp_path),
                                     str(tmp_path / "model"), "--spacing", value])
        assert result.exit_code == 0, result.output
        assert tasks[-1].spacing == expected
    for bad in ("2,2", "0", "a,b,c", "nan"):
        result = runner.invoke(app, ["train", "flair-lesion", str(tmp_path),
                                     str(tmp_path / "model"), "--spacing", bad])
        assert result.exit_code == 1
        assert result.stderr.count("\n") == 1 and "--spacing: expected one voxel size" in (
            result.stderr)
    assert len(tasks) == 2
