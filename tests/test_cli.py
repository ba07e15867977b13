"""Tests of the command-line layer."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from lesionkit import __version__
from lesionkit.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"lesionkit {__version__}"


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("simulate", "demo", "version"):
        assert command in result.stdout


def test_help_imports_no_heavy_library() -> None:
    code = ("import sys; from lesionkit.cli import app; "
            "heavy = [m for m in ('torch', 'monai', 'nibabel', 'scipy', 'torchio', 'lightning') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_unknown_task_is_one_line_and_non_zero(tmp_path) -> None:
    result = runner.invoke(app, ["simulate", "brain-age", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "unknown task 'brain-age'" in result.stderr
    assert not (tmp_path / "x").exists()


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
    for command in (["predict", str(tmp_path / "model"), str(tmp_path)],
                    ["explain", str(tmp_path / "model"), str(tmp_path)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1
        assert "model/config.yaml: expected a lesionkit model folder" in result.stderr


def test_mrf_match_names_the_dataset_without_mrf(tmp_path) -> None:
    result = runner.invoke(app, ["mrf-match", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{tmp_path}: expected subjects with an MRF series" in result.stderr


def test_fcd_compare_takes_width_and_learning_rate(tmp_path) -> None:
    import json

    from conftest import write_fcd_dataset

    data = write_fcd_dataset(tmp_path / "bids", subjects=4)
    result = runner.invoke(app, ["fcd-compare", str(data), str(tmp_path / "out"), "--arms",
                                 "scratch", "--folds", "2", "--epochs", "1", "--network",
                                 "resnet10", "--widen-factor", "0.25", "--learning-rate", "0.001"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert summary["network"] == "resnet10"
    assert summary["network_kwargs"] == {"widen_factor": 0.25}
    assert summary["learning_rate"] == 0.001 and summary["augment"] == ["flip", "affine"]
    assert (tmp_path / "out" / "report.html").is_file()
