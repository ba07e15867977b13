"""The BIDS-App call: ``lesionkit-bids BIDS_DIR OUTPUT_DIR {participant,group} --task TASK``.

The command line of the BIDS-Apps convention (fMRIPrep, MRIQC), beside ``lesionkit
predict``, on the same engine:

- ``participant`` predicts the listed participants (``--participant-label 01 02``, with
  or without ``sub-``; every participant with the task's inputs when omitted) and
  writes OUTPUT_DIR as a BIDS derivatives dataset: ``sub-<label>/...`` files and a
  ``dataset_description.json`` naming lesionkit, its parameters and the source dataset,
  with one viewer page per participant (and session) beside its folder,
  ``sub-<label>[_ses-<label>].html``, as fMRIPrep places its reports.
  Tables of one participant stay in that participant's folder, so participant-level
  runs of different participants can share OUTPUT_DIR at the same time.
- ``group`` combines what the participant level wrote: each kind of per-participant
  table (``sub-<label>[_ses-<label>]_<name>.tsv``) becomes ``OUTPUT_DIR/group_<name>.tsv``
  with ``participant_id`` (and ``session_id``) columns, as MRIQC's group level gathers
  its per-participant measures. A task whose outputs are images only has nothing to
  combine, and the command says so in one line.

BIDS_DIR is only read. Errors take the one error path of :func:`lesionkit.console.run_app`.
"""

from __future__ import annotations

import enum
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from lesionkit.cli_options import (
    MIN_LESION_DEPTH_MM,
    BidsFilterOption,
    DeviceOption,
    KeepOutsideBrainOption,
    LesionThresholdOption,
    MinLesionDepthOption,
    MinLesionOption,
    ThreadsOption,
    checked_device,
)
from lesionkit.console import on_interrupt, progress_bar, run_app
from lesionkit.io import InputError

#: Options taking a space-separated list of values, as BIDS Apps' ``nargs="+"``.
LIST_OPTIONS = ("--participant-label", "--participant_label", "--session-label",
                "--session_label", "--bids-filter")
#: Folder names start with this; tables of one participant are named after it.
PARTICIPANT = "sub-"


class Level(enum.StrEnum):
    """Analysis level of a BIDS App."""

    participant = "participant"
    group = "group"


app = typer.Typer(
    name="lesionkit-bids",
    help="lesionkit as a BIDS App: predict participants of a BIDS dataset into a BIDS "
         "derivatives dataset (participant level), then combine their tables (group level).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from lesionkit import __version__

        typer.echo(f"lesionkit-bids {__version__}")
        raise typer.Exit()


@app.command()
def bids_app(
    bids_dir: Annotated[Path, typer.Argument(help="BIDS dataset with the task's inputs (read "
                                                  "only).")],
    output_dir: Annotated[Path, typer.Argument(help="Derivatives dataset to write (outside "
                                                    "BIDS_DIR, or under its derivatives/).")],
    analysis_level: Annotated[Level, typer.Argument(
        help="participant: predict each participant; group: combine their tables.")],
    task: Annotated[str, typer.Option(help="Task name, e.g. enhance-r1.")],
    participant_label: Annotated[list[str] | None, typer.Option(
        "--participant-label", "--participant_label", metavar="LABEL ...",
        help="Participants (with or without sub-), separated by spaces (default: all).")] = None,
    session_label: Annotated[list[str] | None, typer.Option(
        "--session-label", "--session_label", metavar="LABEL ...",
        help="Sessions (with or without ses-), separated by spaces (default: every "
             "session); participants without any of them are skipped.")] = None,
    model: Annotated[str | None, typer.Option(
        metavar="NAME_OR_DIR",
        help="Model folder, or the name of a shipped model (default: the one named like "
             "--task).")] = None,
    tta: Annotated[int | None, typer.Option(
        min=1, max=8, help="Mirror flips averaged (1-8; default: the task's).")] = None,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    register: Annotated[bool, typer.Option(
        help="Co-register each participant's images to its first input (dipy).")] = False,
    keep_outside_brain: KeepOutsideBrainOption = False,
    lesion_threshold: LesionThresholdOption = 0.33,
    min_lesion_ml: MinLesionOption = 0.0,
    min_lesion_depth_mm: MinLesionDepthOption = MIN_LESION_DEPTH_MM,
    changes: Annotated[bool, typer.Option(
        help="For a participant with lesion maps of two or more sessions, read the lesions "
             "new, enlarging, shrinking or resolved between them (lesionkit changes).")
    ] = True,
    bids_filter: BidsFilterOption = None,
    bids_filter_file: Annotated[Path | None, typer.Option(
        metavar="FILE",
        help="Filters as a JSON file in fMRIPrep's form, e.g. {\"flair\": {\"acquisition\": "
             "\"3D\"}} (null: the entity absent); added to --bids-filter.")] = None,
    stop_on_first_crash: Annotated[bool, typer.Option(
        help="Stop at the first participant whose inputs are refused (default: name it, "
             "predict the others, exit status 1 at the end).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every file "
                                                                    "written.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """Run lesionkit on a BIDS dataset as a BIDS App (BIDS_DIR OUTPUT_DIR LEVEL)."""
    bids, out = Path(bids_dir).resolve(), Path(output_dir).resolve()
    labels = _labels(bids, participant_label)
    _check_places(bids, out)
    if analysis_level is Level.participant:
        from lesionkit.bids import bids_filters, filters_from_file

        chosen = [*(bids_filter or []),
                  *(filters_from_file(bids_filter_file) if bids_filter_file else [])]
        with bids_filters(chosen):
            participant_level(bids, out, task, labels, model, tta, checked_device(device), threads,
                              register, session_label, stop_on_first_crash, verbose,
                              keep_outside_brain, lesion_threshold, min_lesion_ml,
                              changes, min_lesion_depth_mm)
    else:
        written = group_level(bids, out, task, labels)
        for path in written if verbose else ():
            typer.echo(str(path))


def run(argv: Sequence[str] | None = None) -> int:
    """The ``lesionkit-bids`` command, through lesionkit's one error path.

    Returns:
        The exit status: 0, 1 (error), 2 (usage) or 130 (interrupted).
    """
    import sys

    return run_app(app, "lesionkit-bids", spread(sys.argv[1:] if argv is None else argv))


def spread(argv: Sequence[str]) -> list[str]:
    """Arguments with each list option repeated before each of its values.

    ``--participant-label 01 02`` becomes ``--participant-label 01 --participant-label
    02`` (values end at the next option, as with argparse's ``nargs="+"``); values may
    also be separated by commas.
    """
    out: list[str] = []
    option = None
    for arg in argv:
        if arg.startswith("-"):
            option = arg if arg in LIST_OPTIONS else None
            out.append(arg)
            continue
        values = [v for v in arg.split(",") if v] if option else [arg]
        for value in values:
            if option and out[-1] != option:
                out.append(option)
            out.append(value)
    return out


def _labels(bids: Path, given: Sequence[str] | None) -> list[str] | None:
    """Participant labels without ``sub-``, checked against BIDS_DIR (None: all)."""
    from lesionkit.bids import BIDSDataset

    found = BIDSDataset(bids).subjects()
    if not given:
        return None
    labels = list(dict.fromkeys(g.removeprefix(PARTICIPANT) for g in given))
    unknown = [label for label in labels if label not in found]
    if unknown:
        shown = ", ".join(found[:20]) + (f" and {len(found) - 20} more" if len(found) > 20
                                         else "")
        raise InputError(f"--participant-label: expected participants of {bids}, found "
                         f"unknown {', '.join(unknown)}; the dataset has {shown or 'none'}")
    return labels


def _with_sessions(bids: Path, subjects: Sequence[str], sessions: Sequence[str]) -> list[str]:
    """The participants holding at least one of ``sessions`` (labels with or without
    ``ses-``)."""
    from lesionkit.bids import BIDSDataset

    dataset = BIDSDataset(bids)
    wanted = {s.removeprefix("ses-") for s in sessions}
    kept = [s for s in subjects if wanted & set(dataset.sessions(s))]
    if not kept:
        found = sorted({ses for s in subjects for ses in dataset.sessions(s)})
        raise InputError(f"--session-label: expected sessions of {bids}, found none of "
                         f"{', '.join(sorted(wanted))} among the participants; they have "
                         f"{', '.join(found) or 'no sessions'}")
    return kept


def _check_places(bids: Path, out: Path) -> None:
    """OUTPUT_DIR is a folder apart from BIDS_DIR (or under its ``derivatives/``)."""
    from lesionkit.bids import check_output_place

    check_output_place(bids, out, "an OUTPUT_DIR")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: expected a folder for the derivatives, found a file")


def participant_level(bids: Path, out: Path, task_name: str, labels: list[str] | None,
                      model: str | None, tta: int | None, device: str, threads: int | None,
                      register: bool, sessions: Sequence[str] | None = None,
                      stop_on_first_crash: bool = False, verbose: bool = False,
                      keep_outside_brain: bool = False, lesion_threshold: float = 0.33,
                      min_lesion_ml: float = 0.0, changes: bool = True,
                      min_lesion_depth_mm: float = MIN_LESION_DEPTH_MM) -> list[Path]:
    """Predict participants of ``bids`` into the derivatives dataset ``out``.

    Each participant is predicted into a private folder inside ``out`` and moved into
    place when complete; a table of participants is split into one table per
    participant (and session). A participant whose inputs are refused is named in one
    line and the others are predicted (unless ``stop_on_first_crash``); the error at the
    end lists them. ``verbose``: every file written is listed, failures or not.
    ``keep_outside_brain``: probability maps are not cleared outside the brain mask;
    ``lesion_threshold``, ``min_lesion_ml`` and ``min_lesion_depth_mm``: how lesion maps
    are read as lesions
    (:func:`lesionkit.infer.predict`, :class:`lesionkit.writers.LesionReading`).
    ``changes``: a participant with lesion maps of two or more sessions also gets the
    lesion changes between them (:func:`lesionkit.longitudinal.compare`, at
    ``lesion_threshold``), the sessions that earlier runs wrote into ``out`` included (one
    job per session).

    Returns:
        Paths written.
    """
    from lesionkit.bids import active_filters
    from lesionkit.changes import ChangeReading
    from lesionkit.infer import predict
    from lesionkit.longitudinal import compare
    from lesionkit.session_maps import has_pairs
    from lesionkit.threads import use_threads
    from lesionkit.writers import LesionReading

    _known_task(task_name)
    model_dir, model_id = _model(model, task_name)
    subjects = labels or _with_inputs(bids, model_dir)
    if sessions:
        subjects = _with_sessions(bids, subjects, sessions)
    parameters = {"task": task_name, "model": model_id, "tta": tta, "register": register,
                  "bids_filter": [str(f) for f in active_filters()],
                  **({"keep_outside_brain": True} if keep_outside_brain else {}),
                  "lesion_threshold": lesion_threshold, "min_lesion_ml": min_lesion_ml,
                  "min_lesion_depth_mm": min_lesion_depth_mm,
                  **({} if changes else {"changes": False})}
    _check_earlier(out, parameters)
    use_threads(threads)
    start = time.perf_counter()
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    on_interrupt(f"participants written so far under {out} are complete; run the same "
                 "command again for the rest")
    written: list[Path] = []
    failed: list[str] = []
    try:
        with progress_bar(f"predict {task_name}", len(subjects)) as advance:
            for subject in subjects:
                staging = Path(tempfile.mkdtemp(prefix=f".lesionkit-bids.{os.getpid()}.partial-",
                                                dir=out))
                try:
                    predict(model_dir, bids, tta=tta, device=device, subjects=[subject],
                            progress=False, out_dir=staging, register=register,
                            sessions=sessions, keep_outside_brain=keep_outside_brain,
                            lesions=LesionReading(lesion_threshold, min_lesion_ml,
                                                  min_lesion_depth_mm))
                    if changes and has_pairs(staging, [subject], earlier=out):
                        try:  # with the sessions earlier jobs wrote into OUTPUT_DIR
                            compare(staging, subjects=[subject], earlier=out,
                                    reading=ChangeReading(threshold=lesion_threshold,
                                                          min_depth_mm=min_lesion_depth_mm))
                        except InputError as error:  # the maps stand; the changes are an extra
                            typer.echo(f"warning: no lesion changes for {PARTICIPANT}"
                                       f"{subject}: {' '.join(str(error).split())}", err=True)
                    _viewers(task_name, staging, subject)
                    if not written:
                        written.append(_describe(out, bids, parameters))
                    moved = _moved(staging, out)
                    written.extend(moved + _pages_of_earlier_sessions(task_name, out, subject,
                                                                      moved))
                except InputError as error:  # the participant is left out, the others go on
                    if stop_on_first_crash:
                        raise
                    failed.append(f"{PARTICIPANT}{subject}")
                    typer.echo(f"error: {' '.join(str(error).split())}", err=True)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
                advance(1)
    finally:
        if created and not any(out.iterdir()):
            out.rmdir()
    for path in written if verbose else ():
        typer.echo(str(path))
    done = len(subjects) - len(failed)
    typer.echo(f"wrote {len(written)} files of {done} participants under {out} in "
               f"{time.perf_counter() - start:.0f} s")
    if failed:
        raise InputError(f"{bids}: expected every participant predicted, found {len(failed)} "
                         f"of {len(subjects)} refused, each named above: "
                         f"{', '.join(failed[:10])}{' ...' if len(failed) > 10 else ''}")
    return written


def _viewers(task_name: str, staging: Path, subject: str) -> list[Path]:
    """One viewer page per session of a predicted participant, beside its folder as
    fMRIPrep places its reports: ``sub-<label>[_ses-<label>].html``; none for a task
    that predicts no map."""
    import sys

    from lesionkit.bids import BIDSDataset
    from lesionkit.evaluation import view, viewer_layers
    from lesionkit.tasks import get_task

    task, label = get_task(task_name), subject.removeprefix(PARTICIPANT)
    pages = []
    for session in BIDSDataset(staging).sessions(label) or [None]:
        if not viewer_layers(task, staging, label, session):
            continue  # no map of this task to show
        name = f"{PARTICIPANT}{label}" + (f"_ses-{session}" if session else "")
        try:
            pages.append(view(task, staging, label, session, staging / f"{name}.html"))
        except InputError as error:  # the maps are written; the page is an extra
            print(f"warning: no viewer for {name}: {error}", file=sys.stderr)
    return pages


def _pages_of_earlier_sessions(task_name: str, out: Path, subject: str,
                               moved: list[Path]) -> list[Path]:
    """The viewer pages, rebuilt from OUTPUT_DIR, of the sessions an earlier job predicted
    and whose changes this job read (the later session's job ran first), so that they show
    the change layer too."""
    import sys

    from lesionkit.bids import parse_name
    from lesionkit.evaluation import view
    from lesionkit.tasks import get_task

    label = subject.removeprefix(PARTICIPANT)
    changed = {(parse_name(p.name) or ({},))[0].get("ses") for p in moved
               if p.name.endswith(("change_dseg.nii.gz", "change_dseg.nii"))}
    paged = {p.stem.removeprefix(f"{PARTICIPANT}{label}_ses-") for p in moved
             if p.suffix == ".html"}
    pages = []
    for session in sorted(s for s in changed - paged if s):
        name = f"{PARTICIPANT}{label}_ses-{session}"
        try:
            pages.append(view(get_task(task_name), out, label, session, out / f"{name}.html"))
        except InputError as error:  # the maps are written; the page is an extra
            print(f"warning: no viewer for {name}: {error}", file=sys.stderr)
    return pages


def _with_inputs(bids: Path, model_dir: Path) -> list[str]:
    """Participants holding the model's inputs (a warning names the others)."""
    from lesionkit.bids import BIDSDataset
    from lesionkit.data import missing_images, prediction_units
    from lesionkit.model_folder import read_config, task_from_config
    from lesionkit.shipped import alternatives

    task = task_from_config(read_config(model_dir), model_dir / "config.yaml")
    dataset = BIDSDataset(bids)
    subjects = list(dict.fromkeys(unit[0] for unit in prediction_units(dataset, task)))
    if not subjects:
        others = alternatives(dataset, task)
        raise InputError(f"{bids}: expected participants with the inputs of task {task.name}, "
                         f"found none among {len(dataset.subjects())}: "
                         f"{missing_images(dataset, task, with_targets=False)}"
                         + (f"; shipped models that write the same from the images there "
                            f"(--task): {', '.join(others)}" if others else ""))
    skipped = sorted(set(dataset.subjects()) - set(subjects))
    if skipped:
        typer.echo(f"warning: {bids}: skipped {len(skipped)} participant(s) without the inputs "
                   f"of task {task.name}: sub-{', sub-'.join(skipped[:10])}", err=True)
    return subjects


def _known_task(name: str) -> None:
    from lesionkit.tasks import get_task

    try:
        get_task(name)
    except KeyError as error:
        raise InputError(f"--task: {error.args[0]}") from None


def _model(model: str | None, task: str) -> tuple[Path, str]:
    """(model folder of ``task``, how the description names it: a shipped model's name or
    the folder's absolute path)."""
    from lesionkit.model_folder import read_config
    from lesionkit.shipped import resolve_model, shipped_names

    if model is None and task not in shipped_names():
        raise InputError(f"--model: expected a model folder (no shipped model is named like "
                         f"--task {task}; shipped: {', '.join(shipped_names()) or 'none'}), "
                         "found no --model")
    model = model or task
    folder = resolve_model(model)
    model_id = str(folder.resolve()) if Path(model).exists() else model
    trained = read_config(folder)["task"]["name"]
    if trained != task:
        raise InputError(f"--model {model_id}: expected a model of task {task}, found one of "
                         f"task {trained}")
    return folder, model_id


def _description(root: Path) -> dict[str, Any] | None:
    """A dataset's ``dataset_description.json`` (None when it has none)."""
    path = root / "dataset_description.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: expected JSON, found unreadable text ({error})") from None


def _parameters(out: Path) -> dict[str, Any] | None:
    """The parameters an earlier run recorded in OUTPUT_DIR (None: not lesionkit's)."""
    description = _description(out) or {}
    for step in description.get("GeneratedBy", []):
        if isinstance(step, dict) and step.get("Name") == "lesionkit":
            return step.get("Parameters", {})
    return None


def _check_earlier(out: Path, parameters: dict[str, Any]) -> None:
    """OUTPUT_DIR is new, or holds outputs of the same task and model."""
    if _description(out) is None:
        return
    earlier = _parameters(out)
    where = out / "dataset_description.json"
    if earlier is None:
        raise InputError(f"{where}: expected a new folder or lesionkit's derivatives, found "
                         "another dataset; choose another OUTPUT_DIR")
    same = {k: earlier.get(k) for k in ("task", "model")}
    if same != {k: parameters[k] for k in same}:
        raise InputError(f"{where}: expected outputs of task {parameters['task']} and model "
                         f"{parameters['model']}, found task {same['task']} and model "
                         f"{same['model']}; choose another OUTPUT_DIR")
    chosen, before = parameters["bids_filter"], earlier.get("bids_filter") or []
    if chosen != before:  # another acquisition's outputs would take the same names
        shown = " ".join(f"--bids-filter {f}" for f in before) or "no --bids-filter"
        raise InputError(f"{where}: expected outputs read with "
                         f"{' '.join(f'--bids-filter {f}' for f in chosen) or 'no --bids-filter'}"
                         f", found outputs read with {shown}; choose another OUTPUT_DIR")


def _moved(staging: Path, out: Path) -> list[Path]:
    """Move a finished prediction folder's files into ``out``; split its root tables."""
    from lesionkit.io import write_tsv

    written = []
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        relative = path.relative_to(staging)
        if relative.parts[0].startswith(PARTICIPANT):
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            written.append(target)
        elif path.suffix == ".tsv":  # one row per participant (and session)
            rows = _rows(path)
            name = path.name.rsplit("_", 1)[-1]
            for key in dict.fromkeys((r["participant_id"], r.get("session_id")) for r in rows):
                mine = [r for r in rows if (r["participant_id"], r.get("session_id")) == key]
                folder = out.joinpath(*(k for k in key if k))
                written.append(write_tsv(mine, folder / f"{'_'.join(k for k in key if k)}"
                                                        f"_{name}"))
    return written


def _rows(path: Path) -> list[dict[str, str]]:
    """A TSV table's rows as text ("n/a" kept as written)."""
    import pandas as pd

    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    return table.to_dict("records")


def _describe(out: Path, bids: Path, parameters: dict[str, Any]) -> Path:
    """Write OUTPUT_DIR's ``dataset_description.json`` as BIDS derivatives ask."""
    from lesionkit import __version__
    from lesionkit.bids import BIDS_VERSION
    from lesionkit.io import write_json

    source = _description(bids) or {}
    doi = source.get("DatasetDOI")
    origin = ({"DOI": doi, "URL": f"https://doi.org/{doi.removeprefix('doi:')}"} if doi
              else {"URL": bids.as_uri()})
    if source.get("Name"):
        origin["Name"] = source["Name"]
    settings = ", ".join(f"{k} {' '.join(v) if isinstance(v, list) else v}"
                         for k, v in parameters.items() if v not in (None, False, []))
    description = {
        "Name": f"lesionkit predictions ({parameters['task']})",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "lesionkit", "Version": __version__,
                         "Description": f"lesionkit-bids participant level: {settings}",
                         "Parameters": parameters}],
        "SourceDatasets": [origin],
        **({"License": source["License"]} if source.get("License") else {}),
    }
    return write_json(description, out / "dataset_description.json")


def group_level(bids: Path, out: Path, task_name: str, labels: list[str] | None) -> list[Path]:
    """Combine the per-participant tables of OUTPUT_DIR into ``group_<name>.tsv`` tables.

    Returns:
        Paths written (none when the participant level wrote images only).
    """
    from lesionkit.io import write_tsv

    earlier = _parameters(out)
    if earlier is None:
        raise InputError(f"{out}: expected the outputs of the participant level "
                         "(a lesionkit dataset_description.json), found none; run the "
                         "participant level first")
    if earlier.get("task") != task_name:
        raise InputError(f"{out / 'dataset_description.json'}: expected outputs of task "
                         f"{task_name}, found outputs of task {earlier.get('task')}")
    folders = sorted(p for p in out.glob(f"{PARTICIPANT}*") if p.is_dir()
                     and (labels is None or p.name.removeprefix(PARTICIPANT) in labels))
    for label in sorted(set(labels or ()) - {p.name.removeprefix(PARTICIPANT) for p in folders}):
        typer.echo(f"warning: {out}: no outputs of sub-{label}; run the participant level "
                   "for it", err=True)
    groups: dict[str, list[dict[str, str]]] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*.tsv")):
            name, entities = _table_name(path.name)
            groups.setdefault(name, []).extend({**entities, **row} for row in _rows(path))
    index = _index(bids, out, task_name, folders, groups)
    if index is not None:
        typer.echo(f"wrote {index} (the participants' pages)")
    if not groups:
        images = sum(1 for folder in folders for _ in folder.rglob("*.nii*"))
        typer.echo(f"group level: nothing to combine: task {task_name} writes images only "
                   f"({images} images of {len(folders)} participants under {out})")
        return [] if index is None else [index]
    written = [] if index is None else [index]
    for name, rows in sorted(groups.items()):
        columns = ["participant_id", *(["session_id"] if any("session_id" in r for r in rows)
                                       else [])]
        rows.sort(key=lambda r: tuple(r.get(c) or "" for c in columns))
        written.append(write_tsv(rows, out / f"group_{name}", columns=columns))
        typer.echo(f"wrote {written[-1]} ({len(rows)} rows of "
                   f"{len({r['participant_id'] for r in rows})} participants)")
    return written


def _index(bids: Path, out: Path, task_name: str, folders: Sequence[Path],
           groups: dict[str, list[dict[str, str]]]) -> Path | None:
    """``OUTPUT_DIR/index.html``: a row per participant's page (and session), with its
    lesion count and volume and the changes since the session before where the tables
    hold them; None when no page was written."""
    from lesionkit.changes import KINDS
    from lesionkit.report import PHANTOM_NOTE, ReportEntry, write_index
    from lesionkit.tasks.task import dataset_is_phantom

    names = {folder.name for folder in folders}
    pages = [p for p in sorted(out.glob(f"{PARTICIPANT}*.html"))
             if p.stem.partition("_")[0] in names]
    if not pages:
        return None

    def by_visit(name: str) -> dict[tuple[str, str], dict[str, str]]:
        return {(r["participant_id"], r.get("session_id") or ""): r
                for r in groups.get(name, [])}

    loads, changes = by_visit("lesionload.tsv"), by_visit("lesionchange.tsv")
    entries = []
    for page in pages:
        participant, _, session = page.stem.partition("_")
        figures = []
        if (load := loads.get((participant, session))) is not None:
            figures.append(f"{load['lesion_count']} lesions, {load['lesion_volume_ml']} mL")
        if (change := changes.get((participant, session))) is not None:
            figures.append(f"since {change['baseline_session_id']}: " + ", ".join(
                f"{change[kind]} {kind}" for kind in KINDS))
        entries.append(ReportEntry(page, task_name, f"{participant} {session}".strip(),
                                   "; ".join(figures) or "maps only"))
    return write_index(out / "index.html", f"lesionkit {task_name}: {bids.name}", entries,
                       text="One page per participant and session: the maps predicted, over "
                            "the images they were predicted from. The tables of every "
                            "participant are the group_*.tsv files beside this page.",
                       data_note=PHANTOM_NOTE if dataset_is_phantom(bids) else None)


def _table_name(name: str) -> tuple[str, dict[str, str]]:
    """``sub-01_ses-A_desc-x_lesions.tsv`` -> (``desc-x_lesions.tsv``, its participant and
    session columns)."""
    parts = name.split("_")
    entities = {"participant_id": parts.pop(0)}
    if parts[0].startswith("ses-") and len(parts) > 1:
        entities["session_id"] = parts.pop(0)
    return "_".join(parts), entities
