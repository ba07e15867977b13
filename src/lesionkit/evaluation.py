"""Evaluation and report glue: a task's metric rows from written predictions, and its page.

The task's ``evaluate`` hook computes the rows; this module finds the subjects, writes
the tables (TSV and JSON with a per-method summary) and assembles the HTML report from
the task's ``report_sections``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from lesionkit.bids import BIDSDataset
from lesionkit.io import InputError, write_json, write_tsv
from lesionkit.summaries import summarise
from lesionkit.tasks.task import Task, dataset_is_phantom


def predictions_root(data_dir: str | os.PathLike[str],
                     predictions: str | os.PathLike[str] | None = None) -> Path:
    """Where predictions live: ``predictions`` or ``DATA_DIR/derivatives/lesionkit``."""
    return Path(predictions) if predictions else Path(data_dir) / "derivatives" / "lesionkit"


def evaluate(task: Task, data_dir: str | os.PathLike[str], subjects: Sequence[str] | None = None,
             out_dir: str | os.PathLike[str] | None = None,
             predictions: str | os.PathLike[str] | None = None,
             progress: bool = False) -> tuple[Path, Path]:
    """Score written predictions with the task's evaluation; write TSV and JSON tables.

    Args:
        task: The task whose ``evaluate`` hook scores the predictions.
        data_dir: BIDS dataset holding the ground truth.
        subjects: Subjects to score (default: every subject with predictions).
        out_dir: Where to write (default: the predictions folder).
        predictions: Predictions folder (default: ``DATA_DIR/derivatives/lesionkit``).
        progress: Show a progress bar over the subjects.

    Returns:
        (TSV path, JSON path).
    """
    if task.evaluate is None:
        raise InputError(f"task {task.name}: expected an evaluation, found none")
    dataset = BIDSDataset(data_dir)
    found = predictions_root(dataset.root, predictions)
    names = list(subjects) if subjects else BIDSDataset(found).subjects() if found.is_dir() else []
    if not names and (found / f"task-{task.name}_predictions.tsv").is_file():
        names = dataset.subjects()
    if not names:
        raise InputError(f"{found}: expected predictions (run lesionkit predict first), "
                         "found none")
    from rich.progress import track

    rows = [row for name in track(names, description=f"evaluate {task.name}",
                                  disable=not progress)
            for row in task.evaluate(task, dataset.root, found, [name])]
    if not rows:
        raise InputError(f"{found}: expected predictions of task {task.name} for "
                         f"{', '.join(names[:5])}, found none to score")
    out = Path(out_dir) if out_dir else found
    tsv = write_tsv(rows, out / f"task-{task.name}_metrics.tsv")
    json_path = write_json({"task": task.name, "subjects": names, "rows": rows,
                            "summary": summarise(rows)}, out / f"task-{task.name}_metrics.json")
    return tsv, json_path


def report(task: Task, data_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
           subjects: Sequence[str] | None = None,
           predictions: str | os.PathLike[str] | None = None) -> Path:
    """Write one HTML page: the task's metric tables and figures (evaluates if needed).

    Returns:
        The HTML file (default ``PREDICTIONS/task-<name>_report.html``).
    """
    from lesionkit.report import PHANTOM_NOTE, write_report

    if task.report_sections is None:
        raise InputError(f"task {task.name}: expected report sections, found none")
    dataset = BIDSDataset(data_dir)
    found = predictions_root(dataset.root, predictions)
    metrics = found / f"task-{task.name}_metrics.json"
    if subjects or not metrics.is_file():
        _, metrics = evaluate(task, dataset.root, subjects, predictions=found)
    table = json.loads(metrics.read_text())
    sections = task.report_sections(task, dataset.root, found, table["subjects"], table["rows"])
    path = Path(out) if out else found / f"task-{task.name}_report.html"
    name = _description(dataset.root).get("Name") or dataset.root.name
    return write_report(path, f"lesionkit {task.name}: {task.description} ({name})", sections,
                        data_note=PHANTOM_NOTE if dataset_is_phantom(dataset.root) else None)


def _description(root: Path) -> dict:
    """The dataset's dataset_description.json, or {}."""
    try:
        return json.loads((root / "dataset_description.json").read_text())
    except (OSError, ValueError):
        return {}
