"""benchmarks/crossval_seeds.py: figures of seeded cross-validation runs side by side, on
hand-made comparison files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_script

BENCH = Path(__file__).parents[2] / "benchmarks" / "crossval_seeds.py"


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH, "lesionkit_benchmarks_crossval_seeds")


def _run(root: Path, seed: int, auc: dict[str, float], difference: float, p: float,
         count_r: float | None = None, arms: tuple[str, ...] = ("a", "b")) -> Path:
    """A crossval output folder with two arms, their ROC AUC, one paired test and, for
    arm a, a task summary beside its predictions."""
    out = root / f"seed{seed}"
    out.mkdir()
    comparison = {
        "task": "rim-classify", "seed": seed, "subjects": ["01", "02"],
        "arms": {arm: {"classification": [{"metric": "roc_auc", "estimate": auc[arm]}],
                       "metrics": [{"metric": "volume_mm3", "method": "all",
                                    "estimate": 100.0}]} for arm in arms},
        "pairs": [{"a": arms[0], "b": arms[1],
                   "classification": {"auc_difference": difference, "auc_p": p}}]}
    (out / "comparison.json").write_text(json.dumps(comparison))
    if count_r is not None:
        predictions = out / "arm-a" / "predictions"
        predictions.mkdir(parents=True)
        (predictions / "rim_summary.json").write_text(json.dumps(
            {"lesions": 10, "pr_auc": {"estimate": 0.5, "ci_low": 0.4},
             "count_sum": {"mse": 1.0, "r": count_r}}))
    return out


def test_values_mean_sd_and_pairs(bench, tmp_path: Path) -> None:
    runs = [_run(tmp_path, 0, {"a": 0.9, "b": 0.8}, 0.1, 0.01, count_r=0.5),
            _run(tmp_path, 1, {"a": 0.7, "b": 0.8}, -0.1, 0.2, count_r=0.7)]
    summary = bench.summarise(runs)
    assert summary["seeds"] == [0, 1]
    auc = summary["arms"]["a"]["roc_auc"]
    assert auc["values"] == [0.9, 0.7]
    assert auc["mean"] == pytest.approx(0.8) and auc["sd"] == pytest.approx(0.1414, abs=1e-4)
    assert summary["arms"]["a"]["count_sum r"]["mean"] == pytest.approx(0.6)
    assert summary["arms"]["a"]["pr_auc"]["values"] == [0.5, 0.5]
    assert "count_sum r" not in summary["arms"]["b"]
    assert summary["arms"]["b"]["volume_mm3 (all)"]["sd"] == 0.0
    pair = summary["pairs"][0]
    assert (pair["a_ahead"], pair["runs"]) == (1, 2)
    assert pair["auc_difference"] == [0.1, -0.1] and pair["auc_p"] == [0.01, 0.2]
    text = bench.markdown(summary)
    assert "| roc_auc | 0.900/0.700 (0.800 +- 0.141) | 0.800/0.800 (0.800 +- 0.000) |" in text
    assert "| count_sum r | 0.500/0.700 (0.600 +- 0.141) | n/a |" in text
    assert "| a | b | +0.100/-0.100 | 0.010/0.200 | 1 of 2 |" in text


def test_arms_in_every_run_are_compared(bench, tmp_path: Path) -> None:
    runs = [_run(tmp_path, 0, {"a": 0.9, "b": 0.8}, 0.1, 0.01),
            _run(tmp_path, 1, {"a": 0.7, "c": 0.8}, -0.1, 0.2, arms=("a", "c"))]
    summary = bench.summarise(runs)
    assert list(summary["arms"]) == ["a"] and summary["left_out"] == ["b", "c"]
    assert summary["arms"]["a"]["roc_auc"]["values"] == [0.9, 0.7]
    assert summary["pairs"] == []  # a-b is not in the second run
    assert "Arms not in every run, left out: b, c" in bench.markdown(summary)


@pytest.mark.parametrize("problem", ["missing", "same-seed", "other-arms", "not-json",
                                     "not-object"])
def test_bad_runs_end_in_one_line(bench, tmp_path: Path, problem: str) -> None:
    first = _run(tmp_path, 0, {"a": 0.9, "b": 0.8}, 0.1, 0.01)
    if problem == "missing":
        second, expected = tmp_path / "nowhere", "found no such file"
    elif problem == "same-seed":
        second = tmp_path / "copy"
        second.mkdir()
        (second / "comparison.json").write_text((first / "comparison.json").read_text())
        expected = "expected one run per seed, found the seeds [0, 0]"
    elif problem == "other-arms":
        second = _run(tmp_path, 1, {"c": 0.9, "d": 0.8}, 0.1, 0.01, arms=("c", "d"))
        expected = "expected arms in common with"
    elif problem == "not-json":
        second = tmp_path / "broken"
        second.mkdir()
        (second / "comparison.json").write_text("{")
        expected = "expected JSON, found a parse error"
    else:
        second = tmp_path / "list"
        second.mkdir()
        (second / "comparison.json").write_text("[1, 2]")
        expected = "expected a JSON object of a crossval comparison, found a list"
    with pytest.raises(SystemExit) as error:
        bench.summarise([first, second])
    message = str(error.value)
    assert expected in message and "\n" not in message
