"""How far a cross-validation's figures move with its seed: several `lesionkit crossval`
runs of the same task and data, one per seed, side by side (the arms every run holds;
arms that some run lacks are named and left out).

A seed draws the folds, the initial weights and the order of the training data, so the
spread over seeds is what training alone adds to a figure whose bootstrap interval
covers the subjects. For each arm and figure: the value of every run, their mean and
standard deviation; for each pair of arms: the ROC AUC difference (a minus b) and its
paired p-value in every run, and in how many runs a came out ahead. Figures are read from
each run's ``comparison.json`` (out-of-fold classification and metric estimates) and from
the ``*_summary.json`` files that a task's report writes beside an arm's predictions
(rim-classify: partial ROC AUC, PR AUC, count MSE and Pearson r).

Usage::

    python benchmarks/crossval_seeds.py out/rim80 out/rim80-s1 out/rim80-s2 \\
        [--json seeds.json]

Prints two Markdown tables; ``--json`` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def _comparison(run: Path) -> dict[str, Any]:
    """A run's ``comparison.json``; one line naming the file when it is missing or not one."""
    path = run / "comparison.json"
    if not path.is_file():
        raise SystemExit(f"{path}: expected the comparison.json of a lesionkit crossval run, "
                         "found no such file")
    try:
        comparison = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SystemExit(f"{path}: expected JSON, found a parse error ({error})") from None
    if not isinstance(comparison, dict):
        raise SystemExit(f"{path}: expected a JSON object of a crossval comparison, found "
                         f"a {type(comparison).__name__}")
    missing = {"task", "arms", "pairs", "seed"} - set(comparison)
    if missing:
        raise SystemExit(f"{path}: expected the keys of a crossval comparison, found none of "
                         f"{', '.join(sorted(missing))}")
    return comparison


def _task_summaries(arm_dir: Path) -> dict[str, float]:
    """Numbers of a task's ``*_summary.json`` files beside an arm's predictions: entries
    with an ``estimate``, and the ``mse`` and ``r`` of the others."""
    figures: dict[str, float] = {}
    for path in sorted((arm_dir / "predictions").glob("*_summary.json")):
        for name, value in json.loads(path.read_text()).items():
            if not isinstance(value, dict):
                continue
            if "estimate" in value:
                figures[name] = float(value["estimate"])
            for key in ("mse", "r"):
                if key in value:
                    figures[f"{name} {key}"] = float(value[key])
    return figures


def arm_figures(run: Path, comparison: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Every figure of every arm of one run: ``{arm: {figure: value}}``."""
    out: dict[str, dict[str, float]] = {}
    for arm, entry in comparison["arms"].items():
        figures = {row["metric"]: float(row["estimate"])
                   for row in entry.get("classification", []) if row.get("estimate") is not None}
        for row in entry.get("metrics", []):
            if row.get("estimate") is not None:
                figures[f"{row['metric']} ({row.get('method', 'all')})"] = float(row["estimate"])
        figures.update(_task_summaries(run / f"arm-{arm}"))
        out[arm] = figures
    return out


def summarise(runs: list[Path]) -> dict[str, Any]:
    """Figures of several seeded runs of one cross-validation, and their spread.

    Args:
        runs: Output folders of ``lesionkit crossval``, the same task and subjects; the
            arms every run holds are compared.

    Returns:
        ``seeds``; ``arms``: ``{arm: {figure: {"values", "mean", "sd"}}}`` over the runs
        (SD with one degree of freedom; 0 for one run); ``pairs``: per pair of arms the
        AUC differences, p-values and the number of runs in which a was ahead;
        ``left_out``: arms some run lacks.
    """
    comparisons = [_comparison(run) for run in runs]
    first = comparisons[0]
    for run, comparison in zip(runs[1:], comparisons[1:], strict=True):
        for key in ("task", "subjects"):
            if comparison.get(key) != first.get(key):
                raise SystemExit(f"{run / 'comparison.json'}: expected the {key} of "
                                 f"{runs[0]}, found another")
        if not set(comparison["arms"]) & set(first["arms"]):
            raise SystemExit(f"{run / 'comparison.json'}: expected arms in common with "
                             f"{runs[0]} ({', '.join(first['arms'])}), found "
                             f"{', '.join(comparison['arms']) or 'none'}")
    seeds = [c["seed"] for c in comparisons]
    if len(set(seeds)) < len(seeds):
        raise SystemExit(f"{', '.join(map(str, runs))}: expected one run per seed, found the "
                         f"seeds {seeds}")
    shared = [arm for arm in first["arms"] if all(arm in c["arms"] for c in comparisons)]
    left_out = sorted({arm for c in comparisons for arm in c["arms"]} - set(shared))
    per_run = [arm_figures(run, c) for run, c in zip(runs, comparisons, strict=True)]
    arms: dict[str, dict[str, Any]] = {}
    for arm in shared:
        names = [n for n in per_run[0][arm] if all(n in figures[arm] for figures in per_run)]
        arms[arm] = {}
        for name in names:
            values = np.array([figures[arm][name] for figures in per_run])
            arms[arm][name] = {"values": values.tolist(), "mean": float(values.mean()),
                               "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    tested = [{(pair["a"], pair["b"]): pair.get("classification", {}) for pair in c["pairs"]}
              for c in comparisons]
    pairs = []
    for pair in first["pairs"]:
        tests = [found.get((pair["a"], pair["b"]), {}) for found in tested]
        if not all("auc_difference" in t for t in tests):
            continue
        difference = [float(t["auc_difference"]) for t in tests]
        pairs.append({"a": pair["a"], "b": pair["b"], "auc_difference": difference,
                      "auc_p": [float(t["auc_p"]) for t in tests],
                      "a_ahead": int(sum(d > 0 for d in difference)), "runs": len(tests)})
    return {"task": first["task"], "seeds": seeds, "runs": [str(r) for r in runs],
            "arms": arms, "pairs": pairs, "left_out": left_out}


def markdown(summary: dict[str, Any]) -> str:
    """The summary as two Markdown tables: figures per arm, then the paired tests."""
    arms = list(summary["arms"])
    seeds = "/".join(str(s) for s in summary["seeds"])
    lines = [f"| figure (seeds {seeds}) | " + " | ".join(arms) + " |",
             "|---|" + "---|" * len(arms)]
    names = list(dict.fromkeys(n for arm in arms for n in summary["arms"][arm]))
    for name in names:
        cells = []
        for arm in arms:
            entry = summary["arms"][arm].get(name)
            cells.append("n/a" if entry is None else
                         "/".join(f"{v:.3f}" for v in entry["values"])
                         + f" ({entry['mean']:.3f} +- {entry['sd']:.3f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"| arm a | arm b | ROC AUC a - b (seeds {seeds}) | p | a ahead |",
              "|---|---|---|---|---|"]
    for pair in summary["pairs"]:
        lines.append(f"| {pair['a']} | {pair['b']} | "
                     + "/".join(f"{d:+.3f}" for d in pair["auc_difference"]) + " | "
                     + "/".join(f"{p:.3f}" for p in pair["auc_p"])
                     + f" | {pair['a_ahead']} of {pair['runs']} |")
    if summary.get("left_out"):
        lines += ["", "Arms not in every run, left out: " + ", ".join(summary["left_out"])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="crossval output folders")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    summary = summarise(args.runs)
    print(markdown(summary))
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
