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


def test_public_api_names_resolve() -> None:
    import lesionkit as lk

    for name in lk.__all__:
        assert getattr(lk, name) is not None
