"""Evaluation and report glue: a task's metric rows from written predictions, and its page.

The task's ``evaluate`` hook computes the rows; this module finds the subjects, writes
the tables (TSV and JSON with a per-method summary) and assembles the HTML report from
the task's ``report_sections``.

Every evaluation also says how each subject's first prediction input was acquired
(:func:`acquisition`: field strength and 2D/3D from its BIDS sidecar, voxel size, slice
orientation and slice thickness from its header) and, where subjects differ in any of
these, the per-method means of the metrics per group (:func:`by_acquisition`), so that
a model can be judged per protocol (another field strength, thick 2D slices, another
orientation) without hand-made tables.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.bids import BIDSDataset
from lesionkit.io import InputError, write_json, write_tsv
from lesionkit.summaries import summarise
from lesionkit.tasks.task import ImageSpec, Task, dataset_is_phantom

#: Acquisition columns that group metrics (:func:`by_acquisition`), in table order.
GROUPS = ("field", "acquisition", "slices", "slice_thickness", "manufacturer")
#: Slice-thickness bins (upper edges, mm) and their names.
THICKNESS_BINS = ((1.5, "up to 1.5 mm"), (3.0, "1.5-3 mm"), (5.0, "3-5 mm"),
                  (float("inf"), "over 5 mm"))
#: A largest voxel edge this many times the smallest makes the slices oriented, not
#: isotropic.
ANISOTROPY = 1.3


def predictions_root(data_dir: str | os.PathLike[str],
                     predictions: str | os.PathLike[str] | None = None) -> Path:
    """Where predictions live: ``predictions`` or ``DATA_DIR/derivatives/lesionkit``."""
    return Path(predictions) if predictions else Path(data_dir) / "derivatives" / "lesionkit"


def evaluate(task: Task, data_dir: str | os.PathLike[str], subjects: Sequence[str] | None = None,
             out_dir: str | os.PathLike[str] | None = None,
             predictions: str | os.PathLike[str] | None = None,
             progress: bool = False) -> tuple[Path, Path]:
    """Score written predictions with the task's evaluation; write TSV and JSON tables.

    Beside ``task-<name>_metrics.tsv`` and ``.json``: ``task-<name>_acquisitions.tsv``
    (:func:`acquisition` per subject) and, where subjects differ in acquisition,
    ``task-<name>_by-acquisition.tsv`` (:func:`by_acquisition`).

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
    acquired = {name: acquisition(dataset, name, task.prediction_inputs[0]) for name in names}
    grouped = by_acquisition(rows, acquired)
    tsv = write_tsv(rows, out / f"task-{task.name}_metrics.tsv")
    write_tsv([{"participant_id": f"sub-{name}", **values} for name, values in acquired.items()],
              out / f"task-{task.name}_acquisitions.tsv")
    grouped_tsv = out / f"task-{task.name}_by-acquisition.tsv"
    if grouped:
        write_tsv(grouped, grouped_tsv)
    else:
        grouped_tsv.unlink(missing_ok=True)  # not a stale one from other subjects
    json_path = write_json({"task": task.name, "subjects": names, "rows": rows,
                            "summary": summarise(rows), "acquisitions": acquired,
                            "by_acquisition": grouped},
                           out / f"task-{task.name}_metrics.json")
    return tsv, json_path


def acquisition(dataset: BIDSDataset, subject: str, spec: ImageSpec) -> dict[str, str]:
    """How a subject's image ``spec`` was acquired, as group labels.

    ``field`` ("1.5T", "3T"; BIDS ``MagneticFieldStrength``), ``acquisition`` ("2D",
    "3D"; ``MRAcquisitionType``) and ``manufacturer`` come from the JSON sidecar ("n/a"
    where it does not say); ``voxel_mm`` (x, y, z in world order), ``slices`` (the world
    plane of the slices: "axial", "coronal" or "sagittal" when the largest voxel edge is
    at least :data:`ANISOTROPY` times the smallest, else "isotropic") and
    ``slice_thickness`` (the largest edge, binned by :data:`THICKNESS_BINS`) from the
    header, so they hold for any scan. A subject without exactly one such image, or
    with several sessions of it, gets "n/a" everywhere.
    """
    from lesionkit.geometry import voxel_size
    from lesionkit.io import load_affine

    files = dataset.locate(subject, spec.suffix, **spec.query())
    if len(files) != 1:
        return dict.fromkeys(("image", "voxel_mm", *GROUPS), "n/a")
    path = files[0].path
    try:
        sidecar = json.loads(files[0].sidecar.read_text())
    except (OSError, ValueError):
        sidecar = {}
    sizes = np.array(voxel_size(load_affine(path)))
    thick = float(sizes.max())
    try:  # a number, or a number written as text
        field = f"{float(sidecar['MagneticFieldStrength']):g}T"
    except (KeyError, TypeError, ValueError):
        field = "n/a"
    return {
        "image": path.name,
        "voxel_mm": "x".join(f"{v:.2f}" for v in sizes),
        "field": field,
        "acquisition": str(sidecar.get("MRAcquisitionType", "n/a")),
        "slices": ("isotropic" if thick < ANISOTROPY * float(sizes.min())
                   else ("sagittal", "coronal", "axial")[int(sizes.argmax())]),
        "slice_thickness": next(name for edge, name in THICKNESS_BINS if thick <= edge),
        "manufacturer": str(sidecar.get("Manufacturer", "n/a")),
    }


def by_acquisition(rows: Sequence[dict], acquired: dict[str, dict[str, str]]
                   ) -> list[dict[str, Any]]:
    """Per-method means of every numeric metric, per value of each acquisition group in
    which the subjects differ (one row per group, value and method; ``n``: rows)."""
    def subject(row: dict) -> str:
        return str(row.get("participant_id", "")).removeprefix("sub-")

    out: list[dict[str, Any]] = []
    for group in GROUPS:
        values = sorted({a[group] for a in acquired.values()})
        if len(values) < 2:
            continue
        for value in values:
            chosen = [r for r in rows if acquired.get(subject(r), {}).get(group) == value]
            for method, columns in summarise(chosen).items():
                count = sum(str(r.get("method", "all")) == method for r in chosen)
                out.append({"group": group, "value": value, "method": method, "n": count,
                            **{name: c["mean"] for name, c in columns.items()}})
    return out


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
