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

Longitudinal data is scored per unit: each session (and run) that holds predictions is
evaluated on its own (:func:`evaluation_units`, inside :func:`lesionkit.units.unit_scope`,
so a task's hook written for one image per subject reads that unit's images), and its
rows carry ``session_id`` (and ``run``) beside ``participant_id``, as predict's tables.
A session without any of the task's truth images (the first visit, where the truth marks
what changed) is skipped with a warning naming it, when another session of the subject
is scored; every other error of a session stops the evaluation as before.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.bids import BIDSDataset, BIDSFile, parse_name
from lesionkit.data import expected_name
from lesionkit.io import InputError, instead_of_folder, read_sidecar, write_json, write_tsv
from lesionkit.summaries import summarise
from lesionkit.tasks.task import ImageSpec, Task, dataset_is_phantom
from lesionkit.units import row_in_scope, unit_label, unit_scope

#: Acquisition columns that group metrics (:func:`by_acquisition`), in table order.
GROUPS = ("field", "acquisition", "slices", "slice_thickness", "manufacturer")
#: Slice-thickness bins (upper edges, mm) and their names.
THICKNESS_BINS = ((1.5, "up to 1.5 mm"), (3.0, "1.5-3 mm"), (5.0, "3-5 mm"),
                  (float("inf"), "over 5 mm"))
#: A largest voxel edge this many times the smallest makes the slices oriented, not
#: isotropic.
ANISOTROPY = 1.3

#: (subject, session, run) of one prediction; session and run None where there are none.
Unit = tuple[str, str | None, str | None]


def predictions_root(data_dir: str | os.PathLike[str],
                     predictions: str | os.PathLike[str] | None = None) -> Path:
    """Where predictions live: ``predictions`` or ``DATA_DIR/derivatives/lesionkit``."""
    return Path(predictions) if predictions else Path(data_dir) / "derivatives" / "lesionkit"


def _evaluation_options(hook: Any) -> dict[str, Any]:
    """What the engine hands a task's evaluation hook besides its four arguments: the
    engine's :func:`lesionkit.infer.predict` when the hook takes ``predict`` (an
    evaluation that fits something on the training subjects' predictions; task files
    import no engine module)."""
    import inspect

    if hook is None or "predict" not in inspect.signature(hook).parameters:
        return {}
    from lesionkit.infer import predict

    return {"predict": predict}


def evaluate(task: Task, data_dir: str | os.PathLike[str], subjects: Sequence[str] | None = None,
             out_dir: str | os.PathLike[str] | None = None,
             predictions: str | os.PathLike[str] | None = None,
             progress: bool = False) -> tuple[Path, Path]:
    """Score written predictions with the task's evaluation; write TSV and JSON tables.

    Each session (and run) with predictions is scored on its own (:func:`evaluation_units`).
    Beside ``task-<name>_metrics.tsv`` and ``.json``: ``task-<name>_acquisitions.tsv``
    (:func:`acquisition` per unit) and, where units differ in acquisition,
    ``task-<name>_by-acquisition.tsv`` (:func:`by_acquisition`).

    Args:
        task: The task whose ``evaluate`` hook scores the predictions.
        data_dir: BIDS dataset holding the ground truth.
        subjects: Subjects to score (default: every subject with predictions).
        out_dir: Where to write (default: the predictions folder).
        predictions: Predictions folder (default: ``DATA_DIR/derivatives/lesionkit``).
        progress: Show a progress bar over the units.

    Returns:
        (TSV path, JSON path).

    Raises:
        InputError: nothing to score, or a unit that cannot be scored (other than a
            session without truth beside one with it).
    """
    hook_options = _evaluation_options(task.evaluate)
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

    rows, acquired, scored, skipped = [], {}, [], []
    units = evaluation_units(task, found, names)
    truth = [t for t in task.targets if isinstance(t, ImageSpec)]
    for unit in track(units, description=f"evaluate {task.name}", disable=not progress):
        subject, session, run = unit
        with unit_scope(session, run):
            if (truth and sum(u[0] == subject for u in units) > 1
                    and not any(dataset.locate(subject, t.suffix, **t.query()) for t in truth)):
                # a session without truth (the first visit, where the truth marks change)
                # beside a session of the subject that has it: skipped, not an error
                reason = (f"{dataset.root}: expected the truth of {unit_label(*unit)} "
                          f"({', '.join(_truth_name(t) for t in truth)}), found none")
                skipped.append({"unit": unit_label(*unit), "reason": reason})
                print(f"warning: skipped {unit_label(*unit)}: {reason}", file=sys.stderr)
                continue
            found_rows = [_labelled(row, session, run)
                          for row in task.evaluate(task, dataset.root, found, [subject],
                                                   **hook_options)]
            if found_rows:
                acquired[unit_label(*unit)] = acquisition(dataset, subject,
                                                          task.prediction_inputs[0])
        scored.extend([unit] if found_rows else [])
        rows.extend(found_rows)
    if not rows and skipped:
        raise InputError(skipped[0]["reason"])
    if not rows:
        raise InputError(f"{found}: expected predictions of task {task.name} for "
                         f"{', '.join(names[:5])}, found none to score")
    out = Path(out_dir) if out_dir else found
    grouped = by_acquisition(rows, acquired)
    tsv = write_tsv(rows, out / f"task-{task.name}_metrics.tsv")
    write_tsv([{**_ids(*unit), **acquired[unit_label(*unit)]} for unit in scored],
              out / f"task-{task.name}_acquisitions.tsv")
    grouped_tsv = out / f"task-{task.name}_by-acquisition.tsv"
    if grouped:
        write_tsv(grouped, grouped_tsv)
    else:
        grouped_tsv.unlink(missing_ok=True)  # not a stale one from other subjects
    json_path = write_json({"task": task.name, "subjects": list(dict.fromkeys(
                                u[0] for u in scored)),
                            "units": [list(u) for u in scored], "skipped": skipped,
                            "rows": rows,
                            "summary": summarise(rows), "acquisitions": acquired,
                            "by_acquisition": grouped},
                           out / f"task-{task.name}_metrics.json")
    return tsv, json_path


def _truth_name(spec: ImageSpec) -> str:
    """How a truth image is named, its pipeline "<any pipeline>" where any may hold it."""
    name = expected_name(spec)
    if spec.other_pipelines and spec.derivatives:
        name = name.replace(f"derivatives/{spec.derivatives}/", "derivatives/<any pipeline>/")
    return name


def evaluation_units(task: Task, predictions: Path, subjects: Sequence[str]) -> list[Unit]:
    """The units with predictions, per subject: each session (and each run within it) named
    by the subject's files under ``predictions`` or by the rows of the task's predictions
    table; one unit (session and run None) for a subject where they name none.

    Files and rows without a session (run) stand beside sessioned ones as subject-level
    files (a mask), not as a unit of their own.
    """
    import csv

    named: dict[str, set[tuple[str | None, str | None]]] = {s: set() for s in subjects}
    if predictions.is_dir():
        for subject in subjects:
            named[subject] |= {(f.entities.get("ses"), f.entities.get("run")) for f in
                               BIDSDataset(predictions).find(subject=subject, extension=None)}
    table = predictions / f"task-{task.name}_predictions.tsv"
    if table.is_file():
        with table.open(newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                subject = str(row.get("participant_id", "")).removeprefix("sub-")
                if subject in named:
                    named[subject].add(((row.get("session_id") or "").removeprefix("ses-")
                                        or None, row.get("run") or None))
    units: list[Unit] = []
    for subject, pairs in named.items():
        if any(session for session, _ in pairs):
            pairs = {p for p in pairs if p[0]}
        sessions = sorted({session for session, _ in pairs}, key=lambda s: (s is not None, s))
        for session in sessions or [None]:
            runs = sorted({r for s, r in pairs if s == session and r},
                          key=lambda r: (len(r), r))
            units.extend((subject, session, run) for run in runs or [None])
    return units


def _ids(subject: str, session: str | None, run: str | None) -> dict[str, str]:
    """The identifying columns of a unit's table rows."""
    return {"participant_id": f"sub-{subject}",
            **({"session_id": f"ses-{session}"} if session else {}),
            **({"run": run} if run else {})}


def _labelled(row: dict[str, Any], session: str | None, run: str | None) -> dict[str, Any]:
    """A hook's row with the unit's ``session_id`` and ``run`` after ``participant_id``
    (where the hook has not set them)."""
    subject = str(row.get("participant_id", "")).removeprefix("sub-")
    return {**_ids(subject, session, run), **row}


def _row_label(row: dict[str, Any]) -> str:
    """:func:`unit_label` of a table row."""
    return unit_label(str(row.get("participant_id", "")).removeprefix("sub-"),
                      str(row.get("session_id") or "").removeprefix("ses-") or None,
                      str(row.get("run") or "") or None)


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
    sidecar = _sidecar(files[0])
    sizes = np.array(voxel_size(load_affine(path)))
    thick = round(float(sizes.max()), 2)  # 3.000005 and 2.999998 mm: one protocol
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
    which the subjects differ (one row per group, value and method; ``n``: rows).

    ``acquired`` is keyed by :func:`unit_label` ("sub-01", or "sub-01_ses-2" where the
    rows name sessions).
    """
    out: list[dict[str, Any]] = []
    for group in GROUPS:
        values = sorted({a[group] for a in acquired.values()})
        if len(values) < 2:
            continue
        for value in values:
            chosen = [r for r in rows if acquired.get(_row_label(r), {}).get(group) == value]
            for method, columns in summarise(chosen).items():
                count = sum(str(r.get("method", "all")) == method for r in chosen)
                out.append({"group": group, "value": value, "method": method, "n": count,
                            **{name: c["mean"] for name, c in columns.items()}})
    return out


def report(task: Task, data_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
           subjects: Sequence[str] | None = None,
           predictions: str | os.PathLike[str] | None = None) -> Path:
    """Write one HTML page: the task's metric tables and figures (evaluates if needed).

    Longitudinal data gets the task's sections once per session (and run), each title
    prefixed with it ("ses-2: ..."). Beside the page, :func:`viewer_path` gets the
    interactive viewer of the first scored unit whose predictions name their input
    (:func:`write_task_viewer`), linked from the page's last section.

    Returns:
        The HTML file (default ``PREDICTIONS/task-<name>_report.html``).
    """
    from lesionkit.report import PHANTOM_NOTE, Section, write_report

    if task.report_sections is None:
        raise InputError(f"task {task.name}: expected report sections, found none")
    dataset = BIDSDataset(data_dir)
    found = predictions_root(dataset.root, predictions)
    metrics = found / f"task-{task.name}_metrics.json"
    if subjects or not metrics.is_file():
        _, metrics = evaluate(task, dataset.root, subjects, predictions=found)
    table = json.loads(metrics.read_text())
    sections = report_sections(task, dataset.root, found, table)
    path = Path(out) if out else found / f"task-{task.name}_report.html"
    name = _description(dataset.root).get("Name") or dataset.root.name
    note = PHANTOM_NOTE if dataset_is_phantom(dataset.root) else None
    viewer = write_task_viewer(task, found, scored_units(table), viewer_path(path), note)
    if viewer is None:
        viewer_path(path).unlink(missing_ok=True)  # not a stale one from other predictions
    else:
        sections.append(Section(
            "Interactive viewer", f"{viewer.name}: every map predicted for the first subject "
            "scored here, over its input, in three planes (NiiVue, embedded in the page: it "
            "opens from disk with no network).", links={viewer.name: "open the viewer"}))
    return write_report(path, f"lesionkit {task.name}: {task.description} ({name})", sections,
                        data_note=note)


def scored_units(table: dict) -> list[Unit]:
    """The (subject, session, run) units of an evaluation table (the metrics JSON of
    :func:`evaluate`); tables without sessions give (subject, None, None)."""
    units = table.get("units") or [[s, None, None] for s in table["subjects"]]
    return [(u[0], u[1], u[2]) for u in units]


def viewer_path(report_path: Path) -> Path:
    """The viewer page beside a report: ``task-X_report.html`` -> ``task-X_viewer.html``,
    any other ``NAME.html`` -> ``NAME_viewer.html``."""
    name = report_path.name
    return report_path.with_name(name.replace("_report.html", "_viewer.html")
                                 if name.endswith("_report.html")
                                 else f"{report_path.stem}_viewer.html")


def viewer_layers(task: Task, predictions: Path, subject: str,
                  session: str | None = None) -> list:
    """The viewer layers of one subject's predictions (:mod:`lesionkit.report.viewer`).

    The task's outputs found for the subject (in ``session``, or the first session that
    has any) and the inputs they were predicted from (the ``Sources`` of the predictions'
    sidecar). The background is the predicted intensity map with the smallest voxels (a
    super-resolved or amplified image, a T1 map), or the first input when the task
    predicts no intensity map; the other intensity images start hidden. Of the
    probability and label maps the task's last (its lesion map where it has one) is drawn
    over the background, the others start hidden, each in its own colours; a brain mask
    that ``predict`` computed, the label map of the lesions it counted and the label map
    of the changes ``lesionkit changes`` read (written beside them) start hidden.

    Returns:
        The layers, background first; [] when the subject has no output or its sidecar
        names no source that exists.
    """
    import nibabel as nib

    from lesionkit.report.viewer import OVERLAY_COLORMAPS, Layer

    dataset = BIDSDataset(predictions)
    found: list[tuple[Any, BIDSFile]] = []
    for spec in task.outputs:
        files = dataset.find(subject=subject, session=session, suffix=spec.suffix,
                             desc=spec.desc, **dict(spec.entities))
        files = [f for f in files if session is None or f.entities.get("ses") == session]
        if files:
            session = files[0].entities.get("ses")
            found.append((spec, files[0]))
    if not found:
        return []
    named = next((n for _, file in found if (n := _sidecar(file).get("Sources"))), [])
    sources = [Path(n) for n in dict.fromkeys(named) if Path(n).is_file()]
    if not sources:
        return []
    maps = [Layer(file.path, f"{_map_name(spec)}, desc-{spec.desc}", kind=spec.kind,
                  unit="" if spec.kind == "probability" else spec.unit)  # 0-1 goes unsaid
            for spec, file in found]
    given = [Layer(path, _image_name(path)) for path in sources]

    def voxel_volume(layer: Layer) -> float:
        return float(np.prod(nib.load(layer.path).header.get_zooms()[:3]))

    background = min((m for m in maps if m.kind == "intensity"), key=voxel_volume,
                     default=given[0])
    overlays = [m for m in maps if m.kind != "intensity"]
    colours = iter(OVERLAY_COLORMAPS[1:] * len(overlays))
    shown = [replace(m, visible=m is overlays[-1],
                     colormap=OVERLAY_COLORMAPS[0] if m is overlays[-1] else next(colours))
             for m in overlays]
    hidden = [replace(m, visible=False) for m in [*maps, *given]
              if m.kind == "intensity" and m is not background]
    desc = found[-1][0].desc
    written = [("mask", desc, "brain mask (computed by predict)", {"label": "brain"}),
               ("dseg", desc, "lesions (label map of the lesion table)", {}),
               ("dseg", f"{desc}change", "lesion changes since the session before "
                                         "(lesionkit changes)", {})]
    extra = [Layer(f.path, name, kind="label", visible=False)
             for suffix, file_desc, name, entities in written
             for f in dataset.find(subject=subject, session=session, suffix=suffix,
                                   desc=file_desc, **entities)[:1]
             if session is None or f.entities.get("ses") == session]
    return [background, *hidden, *extra, *shown]


def view(task: Task, predictions: str | os.PathLike[str], subject: str | None = None,
         session: str | None = None, out: str | os.PathLike[str] | None = None,
         data_note: str | None = None) -> Path:
    """Write the viewer page of one subject's predictions; needs no ground truth.

    Args:
        task: The task that predicted them.
        predictions: The folder ``predict`` wrote (a BIDS derivatives dataset).
        subject: Subject label (default: the first whose predictions can be shown).
        session: Session label (default: the subject's first with predictions).
        out: HTML file (default ``PREDICTIONS/sub-<label>[_ses-<label>]_viewer.html``).
        data_note: Shown at the top (default: ``PHANTOM_NOTE`` when the inputs come from a
            phantom dataset).

    Returns:
        The page written.

    Raises:
        InputError: No predictions of the task for the subject, or their sidecar names
            no input that exists (the inputs moved since ``predict``).
    """
    from lesionkit.report.viewer import write_viewer

    root = Path(predictions)
    if not root.is_dir():
        raise InputError(f"{root}: expected a predictions folder written by lesionkit "
                         f"predict, found {instead_of_folder(root)}")
    candidates = [subject.removeprefix("sub-")] if subject else BIDSDataset(root).subjects()
    session = session.removeprefix("ses-") if session else None
    for label in candidates:
        layers = viewer_layers(task, root, label, session)
        if layers:
            found = next((parsed[0]["ses"] for layer in layers
                          if (parsed := parse_name(Path(layer.path).name))
                          and "ses" in parsed[0]), None)
            name = f"sub-{label}" + (f"_ses-{found}" if found else "")
            path = Path(out) if out else root / f"{name}_viewer.html"
            if data_note is None and any(dataset_is_phantom(folder) for layer in layers
                                         for folder in Path(layer.path).resolve().parents):
                from lesionkit.report import PHANTOM_NOTE

                data_note = PHANTOM_NOTE
            return write_viewer(path, f"lesionkit {task.name}: {name.replace('_', ' ')}",
                                layers, f"The maps {task.name} predicted for "
                                f"{name.replace('_', ' ')}, over {layers[0].name}. Tick a "
                                "layer to show or hide it.", data_note)
    wanted = ", ".join(f"{o.suffix} (desc-{o.desc})" for o in task.outputs)
    who = f"sub-{candidates[0]}" if subject else "any subject"
    where = f" ses-{session}" if session else ""
    raise InputError(f"{root}: expected {task.name}'s predictions ({wanted}) of {who}{where} "
                     "with a sidecar naming existing inputs (Sources), found none")


#: What a predicted map of each BIDS suffix holds, in a viewer's layer names.
_MAP_NAMES = {"probseg": "probability", "dseg": "labels", "mask": "mask"}


def _map_name(spec: Any) -> str:
    """A predicted map's name for a reader: its entities' values and what its suffix
    holds (``label-lesion`` ``probseg`` -> "lesion probability"; ``R1map`` -> "R1map")."""
    return " ".join([*(v for _, v in spec.entities), _MAP_NAMES.get(spec.suffix, spec.suffix)])


def _image_name(path: Path) -> str:
    """A BIDS file's suffix after its entities other than subject, session and run:
    ``sub-01_ce-gadolinium_T1w.nii.gz`` -> ``ce-gadolinium T1w``."""
    parsed = parse_name(path.name)
    if parsed is None:
        return path.name
    entities, suffix, _ = parsed
    return " ".join([*(f"{k}-{v}" for k, v in entities.items()
                       if k not in ("sub", "ses", "run")), suffix])


def _sidecar(file: BIDSFile) -> dict:
    """The JSON sidecar of a BIDS file, or {} when it has none or it cannot be read (then
    with a warning naming the file)."""
    return read_sidecar(file.sidecar, "its acquisition reads as n/a")


def write_task_viewer(task: Task, predictions: Path, units: Sequence[Unit], out: Path,
                      data_note: str | None = None) -> Path | None:
    """Write the viewer page of the first unit (subject, session, run) whose predictions
    can be shown (:func:`viewer_layers`).

    The viewer is an extra beside a report: an image it cannot show (unreadable, not
    3D/4D) is named in a warning on stderr and no page is written, so the report itself
    still is.

    Returns:
        The page, or None when no unit has an output map with a readable source.
    """
    from lesionkit.report.viewer import write_viewer

    for subject, session, _ in units:
        subject = subject.removeprefix("sub-")
        layers = viewer_layers(task, predictions, subject, session)
        if layers:
            name = f"sub-{subject}" + (f" ses-{session}" if session else "")
            try:
                return write_viewer(out, f"lesionkit {task.name}: {name}", layers,
                                    f"The maps {task.name} predicted for {name}, over "
                                    f"{layers[0].name}. Tick a layer to show or hide it.",
                                    data_note)
            except InputError as error:
                print(f"warning: no viewer written: {error}", file=sys.stderr)
                return None
    return None


def report_sections(task: Task, data_root: Path, predictions: Path, table: dict) -> list:
    """The task's report sections for an evaluation ``table`` (the metrics JSON of
    :func:`evaluate`), once per group of units (:func:`report_groups`) when there are
    several, each title prefixed with the group ("ses-2: ..."), each computed inside
    :func:`lesionkit.units.unit_scope`."""
    groups = report_groups(scored_units(table))
    sections = []
    for label, chosen in groups.items():
        with unit_scope(per_subject=chosen):
            rows = [r for r in table["rows"] if row_in_scope(r)
                    and str(r.get("participant_id", "")).removeprefix("sub-") in chosen]
            part = task.report_sections(task, data_root, predictions, list(chosen), rows)
        if len(groups) > 1:
            part = [replace(section, title=f"{label}: {section.title}") for section in part]
        sections.extend(part)
    return sections


def report_groups(units: Sequence[Unit]) -> dict[str, dict[str, tuple[str | None, str | None]]]:
    """Units grouped for a report, at most one per subject in a group: by session (and
    run) label where subjects share labels ("ses-2"), else by their order within each
    subject ("session 2 of each subject": labels such as dates differ from subject to
    subject). Returns group name -> subject -> (session, run); one group ("") for data
    with one unit per subject.
    """
    per_subject: dict[str, list[tuple[str | None, str | None]]] = {}
    for subject, session, run in units:
        per_subject.setdefault(subject, []).append((session, run))
    labelled: dict[str, dict[str, tuple[str | None, str | None]]] = {}
    for subject, session, run in units:
        labelled.setdefault(unit_label("", session, run), {})[subject] = (session, run)
    visits = max((len(v) for v in per_subject.values()), default=1)
    if len(labelled) <= visits:
        return dict(sorted(labelled.items()))
    return {f"session {k + 1} of each subject": {s: v[k] for s, v in per_subject.items()
                                                  if len(v) > k} for k in range(visits)}


def _description(root: Path) -> dict:
    """The dataset's dataset_description.json, or {}."""
    try:
        return json.loads((root / "dataset_description.json").read_text())
    except (OSError, ValueError):
        return {}
