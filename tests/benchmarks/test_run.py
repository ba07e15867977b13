"""benchmarks/run.py: one suite rerun replaces its own section and keeps the others."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from conftest import load_script

RUN = Path(__file__).parents[2] / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def run():
    return load_script(RUN, "lesionkit_benchmarks_run")


EXISTING = """# lesionkit benchmarks

Command: `make bench`
Date: 2026-01-01

## simulate

Suite wall time: 1.0 s

| case | value |
|---|---|
| old simulate | 1 |

## engine

Suite wall time: 2.0 s

| case | value |
|---|---|
| old engine | 2 |
"""


def test_update_replaces_only_the_rerun_suite(run) -> None:
    new = {"engine": ["## engine", "", "Rerun alone on 2026-02-02", "", "| case | value |",
                      "|---|---|", "| new engine | 3 |", ""]}
    text = run.updated(EXISTING, new)
    assert "old engine" not in text and "new engine" in text and "Rerun alone" in text
    assert "old simulate" in text and text.startswith("# lesionkit benchmarks")
    assert text.index("## simulate") < text.index("## engine")
    assert text.count("## engine") == 1


def test_update_appends_a_suite_the_file_lacks_in_suite_order(run) -> None:
    new = {"ddp": ["## ddp", "", "| case |", "|---|", "| ddp row |"]}
    text = run.updated(EXISTING, new)
    _, found = run.sections(text)
    assert list(found) == ["simulate", "engine", "ddp"]


def test_unknown_suite_is_one_clear_line(run, tmp_path) -> None:
    with pytest.raises(SystemExit, match=r"expected suites among .* found nosuch"):
        run.main(["--out", str(tmp_path), "--only", "nosuch"])


def test_update_without_a_file_is_one_clear_line(run, tmp_path) -> None:
    with pytest.raises(SystemExit, match=r"expected an existing .*none"):
        run.main(["--out", str(tmp_path), "--only", "engine", "--update",
                  "--markdown", str(tmp_path / "missing.md")])


def test_a_full_run_keeps_sections_measured_on_another_machine(run, tmp_path,
                                                             monkeypatch) -> None:
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text(EXISTING + "\n## gpu\n\nMeasured on a GPU.\n\n| gpu row |\n")
    suite = types.SimpleNamespace(bench=lambda out: [{"case": "new engine", "value": 3}])
    monkeypatch.setitem(sys.modules, "lesionkit_fake_suite", suite)
    monkeypatch.setitem(run.SUITES, "engine", ("lesionkit_fake_suite", "bench"))
    run.main(["--out", str(tmp_path / "out"), "--only", "engine", "--markdown", str(markdown)])
    text = markdown.read_text()
    _, found = run.sections(text)
    assert list(found) == ["engine", "gpu"]  # suites rewritten, the GPU section kept
    assert "old engine" not in text and "new engine" in text and "| gpu row |" in text
