"""The commands of the command line that apply models and read their outputs:
``predict``, ``changes``, ``models``, ``view``, ``evaluate`` and ``report``.

Plain functions with Typer's annotations; :mod:`lesionkit.cli` registers them. Heavy
libraries are imported inside them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lesionkit.cli_options import (
    MIN_LESION_DEPTH_MM,
    BidsFilterOption,
    DeviceOption,
    KeepOutsideBrainOption,
    LesionThresholdOption,
    MinLesionDepthOption,
    MinLesionOption,
    PredictionsOption,
    RegisterOption,
    SubjectsOption,
    ThreadsOption,
    TruthOption,
    checked_device,
    subject_list,
    task_named,
    truth_task,
)
from lesionkit.console import fail, on_interrupt, user_errors


def predict(
    model_dir: Annotated[Path, typer.Argument(
        metavar="MODEL",
        help="Model folder written by train, or the name of a shipped model (see "
             "lesionkit models).")],
    data_dir: Annotated[Path | None, typer.Argument(
        help="BIDS dataset with the task's inputs (or name the files with --image).")] = None,
    tta: Annotated[int | None, typer.Option(
        min=1, max=8, help="Mirror flips averaged (1-8; default: the task's).")] = None,
    device: DeviceOption = "auto",
    subjects: SubjectsOption = None,
    out_dir: Annotated[Path | None, typer.Option(
        help="Derivatives folder (default: DATA_DIR/derivatives/lesionkit).")] = None,
    image: Annotated[list[str] | None, typer.Option(
        "--image", metavar="KEY=FILE",
        help="Instead of DATA_DIR: one NIfTI file per input of the model, e.g. --image "
             "flair=scan.nii.gz --image t1w=t1.nii (KEY in any case, or the image's BIDS "
             "suffix; a wrong or missing KEY is answered with the model's list; a brain "
             "mask is optional); --subjects names the subject "
             "(default 01) and --sessions its visit (default none); needs --out-dir.")] = None,
    register: RegisterOption = False,
    allow_incomplete: Annotated[bool, typer.Option(
        help="Predict with a model folder whose training did not finish.")] = False,
    amp: Annotated[bool, typer.Option(
        help="Mixed precision: bfloat16 on a CPU, float16 on CUDA (faster where the "
             "processor supports it; slightly less precise).")] = False,
    threads: ThreadsOption = None,
    sessions: Annotated[str | None, typer.Option(
        help="Comma-separated sessions to predict (default: every session); with --image, "
             "the one session (visit) the files belong to.")] = None,
    bids_filter: BidsFilterOption = None,
    keep_going: Annotated[bool, typer.Option(
        help="Predict the other subjects when one's inputs are refused: a line for each, "
             "exit status 1 at the end.")] = False,
    keep_outside_brain: KeepOutsideBrainOption = False,
    lesion_threshold: LesionThresholdOption = 0.33,
    min_lesion_ml: MinLesionOption = 0.0,
    min_lesion_depth_mm: MinLesionDepthOption = MIN_LESION_DEPTH_MM,
) -> None:
    """Apply a model folder or a shipped model; write predictions (and uncertainty) as
    BIDS derivatives.

    Inputs are reoriented, resampled to the model's voxel size and put on one grid; the
    brain mask is the dataset's or computed (and then written beside probability maps);
    outputs land on each input's own grid.
    """
    import time

    from lesionkit.bids import bids_filters
    from lesionkit.infer import predict as run
    from lesionkit.threads import use_threads

    use_threads(threads)
    start = time.perf_counter()
    on_interrupt("every prediction written so far is complete; run the same command again "
                 "to write the rest")
    from lesionkit.writers import LesionReading

    options = dict(tta=tta, device=checked_device(device), out_dir=out_dir, register=register,
                   allow_incomplete=allow_incomplete, amp=amp,
                   keep_outside_brain=keep_outside_brain,
                   lesions=LesionReading(lesion_threshold, min_lesion_ml,
                                          min_lesion_depth_mm))
    if image:
        dataset_only = {"DATA_DIR": data_dir, "--bids-filter": bids_filter,
                        "--keep-going": keep_going}
        clash = [name for name, value in dataset_only.items() if value]
        if clash:
            fail(f"--image: expected the files alone, found {' and '.join(clash)} as well "
                 "(for a BIDS dataset, leave out --image)")
        written = _predict_files(model_dir, image, subjects, sessions, **options)
    elif data_dir is None:
        fail("expected DATA_DIR or --image KEY=FILE, found neither (see lesionkit predict "
             "--help)")
    else:
        with user_errors(), bids_filters(bids_filter or []):
            written = run(model_dir, data_dir, subjects=subject_list(subjects),
                          sessions=sessions.split(",") if sessions else None,
                          keep_going=keep_going, **options)
    where = out_dir or data_dir / "derivatives" / "lesionkit"
    typer.echo(f"wrote {len(written)} files under {where} in {time.perf_counter() - start:.0f} s")


def _predict_files(model_dir: Path, images: list[str], subjects: str | None,
                   sessions: str | None, **options: object) -> list[Path]:
    """``predict --image``: the files laid out as a one-subject dataset of links in a
    temporary folder (in session ``sessions`` when one is named), predicted into
    ``--out-dir``; errors name the user's files."""
    import tempfile

    from lesionkit.files import dataset_of_files, named_as_given
    from lesionkit.infer import predict as run
    from lesionkit.io import InputError
    from lesionkit.model_folder import read_config, task_from_config
    from lesionkit.shipped import resolve_model

    if options["out_dir"] is None:
        fail("--image: expected --out-dir for the predictions, found none")
    pairs = [item.partition("=") for item in images]
    if any(not key or not sep or not path for key, sep, path in pairs):
        fail(f"--image: expected KEY=FILE, found {' '.join(images)}")
    label = subject_list(subjects) or ["01"]
    if len(label) != 1:
        fail(f"--subjects: expected one subject for the files of --image, found {subjects}")
    session = [s.strip().removeprefix("ses-") for s in sessions.split(",")] if sessions else [None]
    if len(session) != 1:
        fail(f"--sessions: expected one session (the visit) for the files of --image, found "
             f"{sessions}")
    sources: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="lesionkit-files-") as folder:
        try:
            resolved = resolve_model(model_dir)
            task = task_from_config(read_config(resolved), resolved / "config.yaml")
            sources = dataset_of_files(task, {k: Path(p) for k, _, p in pairs}, Path(folder),
                                       label[0], session[0])
            return run(resolved, folder, sources=sources, **options)
        except InputError as error:
            fail(named_as_given(str(error), sources))
    return []


def changes(
    predictions: Annotated[Path, typer.Argument(
        help="Predictions folder written by predict, with lesion maps of two or more "
             "sessions of a subject (or the dataset whose derivatives/lesionkit holds "
             "them, predict's default).")],
    out_dir: Annotated[Path | None, typer.Option(
        help="Folder to write to (default: the maps' folder).")] = None,
    subjects: SubjectsOption = None,
    sessions: Annotated[str | None, typer.Option(
        help="Comma-separated sessions in time order (default: acq_time of the raw "
             "dataset's sessions.tsv, else the labels' order).")] = None,
    lesion_threshold: LesionThresholdOption = 0.33,
    z_threshold: Annotated[float, typer.Option(
        min=0.5, help="Change, in robust SD of the two scans' difference over the "
                      "normal-appearing brain, that a lesion voxel needs.")] = 2.0,
    min_change_ml: Annotated[float, typer.Option(
        min=0.0, help="Smallest change counted (mL); default: a ball of 3 mm "
                      "diameter.")] = 0.0141,
    min_lesion_depth_mm: MinLesionDepthOption = MIN_LESION_DEPTH_MM,
    truth: Annotated[Path | None, typer.Option(
        help="Dataset with change truths of the later sessions "
             "(sub-<label>_ses-<label>_label-change_dseg: 1 new, 2 enlarging, 3 shrinking, "
             "4 resolved; or _label-change_mask: any change): score the changes read "
             "against them (task-<model>_changescores.tsv).")] = None,
    truth_pipeline: Annotated[str | None, typer.Option(
        help="Derivatives pipeline of --truth holding them (default: the one that "
             "does).")] = None,
) -> None:
    """Read new, enlarging, shrinking and resolved lesions between sessions from predict's
    lesion maps: each session against the one before it.

    The earlier session's image (the model's first input, e.g. the FLAIR) is rigidly
    co-registered onto the later one's; a change is a voxel that is lesion at one visit
    and not the other and whose intensity changed that way by at least --z-threshold.
    Writes a label map and a table of the changes beside each later session's map, and
    task-<model>_lesionchange.tsv.
    """
    on_interrupt("the changes of every pair of sessions written so far are complete; run "
                 "the same command again to write them all")
    from lesionkit.changes import ChangeReading
    from lesionkit.longitudinal import compare as run

    reading = ChangeReading(lesion_threshold, z_threshold, min_change_ml, min_lesion_depth_mm)
    with user_errors():
        order = [s.strip().removeprefix("ses-") for s in sessions.split(",")] if sessions else None
        written, table = run(predictions, out_dir, subject_list(subjects), order, reading,
                             progress=lambda text: typer.echo(text, err=True), truth=truth,
                             truth_pipeline=truth_pipeline)
    typer.echo(f"wrote {len(written)} files; the changes per subject: {table}")
    for scores in (p for p in written if p.name.endswith("_changescores.tsv")):
        import csv

        with scores.open(newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        found, true, calls, false = (sum(int(r[c]) for r in rows) for c in (
            "found", "true_changes", "calls", "false_calls"))
        typer.echo(f"scores against the truth ({scores}): {found} of {true} true changes "
                   f"found, {false} of {calls} calls false, over {len(rows)} pair(s)")


def models() -> None:
    """List the phantom-trained models shipped with lesionkit: how each was trained and
    its figures on held-out phantom subjects."""
    from lesionkit.shipped import SHIPPED_DIR, describe, shipped_names

    names = shipped_names()
    if not names:
        typer.echo(f"no shipped models under {SHIPPED_DIR} (make models builds them)")
    for name in names:
        typer.echo("\n".join(describe(name)))
    typer.echo("Use one by name: lesionkit predict NAME DATA_DIR; fine-tune it: lesionkit "
               "train TASK DATA_DIR MODEL_DIR --init NAME. Figures are phantom figures.")


def view(
    task: Annotated[str, typer.Argument(help="Task name, e.g. flair-lesion-dr.")],
    predictions: Annotated[Path, typer.Argument(help="Predictions folder written by predict.")],
    subject: Annotated[str | None, typer.Option(
        help="Subject (default: the first with predictions).")] = None,
    session: Annotated[str | None, typer.Option(
        help="Session (default: the subject's first with predictions).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="HTML file (default: PREDICTIONS/sub-<label>[_ses-<label>]_viewer.html).")] = None,
) -> None:
    """Write an interactive viewer (NiiVue, one HTML file) of one subject's predicted maps
    over the inputs they were predicted from; needs no ground truth."""
    chosen = task_named(task)
    from lesionkit.evaluation import view as write

    with user_errors():
        path = write(chosen, predictions, subject, session, out)
    typer.echo(f"wrote {path}")


def evaluate(
    task: Annotated[str, typer.Argument(help="Task name, e.g. enhance-r1.")],
    data_dir: Annotated[Path, typer.Argument(help="BIDS dataset with the ground truth.")],
    subjects: SubjectsOption = None,
    out_dir: Annotated[Path | None, typer.Option(
        help="Folder of the tables (default: the predictions folder).")] = None,
    predictions: PredictionsOption = None,
    truth: TruthOption = None,
    bids_filter: BidsFilterOption = None,
) -> None:
    """Score predictions against the truth; write a metrics table (TSV and JSON)."""
    chosen = truth_task(task_named(task), data_dir, truth)
    from lesionkit.bids import bids_filters
    from lesionkit.evaluation import evaluate as score

    with user_errors(), bids_filters(bids_filter or []):
        tsv, json_path = score(chosen, data_dir, subject_list(subjects), out_dir, predictions,
                               progress=True)
    grouped = tsv.with_name(f"task-{chosen.name}_by-acquisition.tsv")
    typer.echo(f"wrote {tsv} and {json_path}"
               + (f"; metrics per acquisition: {grouped}" if grouped.is_file() else ""))


def report(
    task: Annotated[str, typer.Argument(help="Task name, e.g. enhance-r1.")],
    data_dir: Annotated[Path, typer.Argument(help="BIDS dataset with the ground truth.")],
    out: Annotated[Path | None, typer.Option(help="HTML file to write.")] = None,
    subjects: SubjectsOption = None,
    predictions: PredictionsOption = None,
    truth: TruthOption = None,
    bids_filter: BidsFilterOption = None,
) -> None:
    """Write one HTML page with the task's metric tables and figures, and beside it an
    interactive viewer of one subject's predicted maps over its input."""
    chosen = truth_task(task_named(task), data_dir, truth)
    from lesionkit.bids import bids_filters
    from lesionkit.evaluation import report as write
    from lesionkit.evaluation import viewer_path

    with user_errors(), bids_filters(bids_filter or []):
        path = write(chosen, data_dir, out, subject_list(subjects), predictions)
    viewer = viewer_path(path)
    shown = f" and {viewer}" if viewer.is_file() else ""
    typer.echo(f"wrote {path}{shown}")
