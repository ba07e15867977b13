"""benchmarks/common.py: the output folder of a benchmark run alone."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import load_script

COMMON = Path(__file__).parents[2] / "benchmarks" / "common.py"


def test_an_option_is_never_taken_for_the_output_folder(monkeypatch, capsys) -> None:
    common = load_script(COMMON, "lesionkit_benchmarks_common")
    monkeypatch.setattr(sys, "argv", ["bench.py"])
    assert common.output_folder("bench-out/x", "doc") == "bench-out/x"
    monkeypatch.setattr(sys, "argv", ["bench.py", "out"])
    assert common.output_folder("bench-out/x", "doc") == "out"
    monkeypatch.setattr(sys, "argv", ["bench.py", "--help"])
    with pytest.raises(SystemExit) as stop:
        common.output_folder("bench-out/x", "What it measures.")
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == "What it measures."
    monkeypatch.setattr(sys, "argv", ["bench.py", "--nope"])
    with pytest.raises(SystemExit) as stop:
        common.output_folder("bench-out/x", "doc")
    assert stop.value.code == 2 and "--nope: expected an output folder" in capsys.readouterr().err
