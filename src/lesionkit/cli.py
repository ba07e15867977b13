"""Command-line interface: a thin Typer layer over the public functions.

Heavy libraries (torch, MONAI, nibabel, ...) are imported inside the commands so that
``lesionkit --help`` answers quickly. Task modules add their own commands
(:data:`lesionkit.tasks.COMMANDS`); this module names no task.

One error path for every command (:func:`run`, the ``lesionkit`` entry point):

- an error in the user's input or options: one line on stderr (file or option, what was
  expected, what was found), exit status 1;
- a usage error (unknown option, missing argument, a value of the wrong type): one
  line, exit status 2;
- Ctrl-C: one line saying what was kept and how to continue, exit status 130;
- anything unexpected: one line naming the exception and the file holding the full
  traceback, exit status 1.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated

import typer

from lesionkit.tasks import COMMANDS

app = typer.Typer(
    name="lesionkit",
    help="Train and apply 3D deep networks that make brain lesions easier to find on MRI.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


#: Seeds are unsigned 32-bit integers (NumPy, scikit-learn and Lightning take them).
MAX_SEED = 2**32 - 1

#: What an interrupted command keeps and how to continue (set by the running command).
_ON_INTERRUPT: list[str] = []


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fail(message: str) -> None:
    """Print one error line to stderr and exit with status 1."""
    typer.echo(f"error: {_one_line(message)}", err=True)
    raise typer.Exit(code=1)


def _on_interrupt(message: str) -> None:
    """Say what Ctrl-C keeps for the command that is running."""
    _ON_INTERRUPT[:] = [message]


def _traceback_file(prog_name: str = "lesionkit") -> str:
    """Write the current exception's traceback to a file; return its path."""
    import tempfile
    import time
    import traceback

    fd, path = tempfile.mkstemp(prefix=f"lesionkit-traceback-{time.strftime('%Y%m%d-%H%M%S')}-",
                                suffix=".txt")
    with open(fd, "w") as handle:
        handle.write(f"{prog_name} {' '.join(sys.argv[1:])}\n\n")
        traceback.print_exc(file=handle)
    return path


def run(argv: Sequence[str] | None = None) -> int:
    """The ``lesionkit`` command: run the CLI and turn every failure into one line.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, 1 (error), 2 (usage) or 130 (interrupted).
    """
    return run_app(app, "lesionkit", argv)


def run_app(typer_app: typer.Typer, prog_name: str, argv: Sequence[str] | None = None) -> int:
    """Run a Typer app of lesionkit through the one error path (see the module's docstring).

    Args:
        typer_app: The app (``lesionkit``'s, or another entry point's).
        prog_name: The command's name, as usage lines and traceback files show it.
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, 1 (error), 2 (usage) or 130 (interrupted).
    """
    from lesionkit.io import InputError

    _ON_INTERRUPT.clear()
    try:
        status = typer_app(args=list(argv) if argv is not None else None, prog_name=prog_name,
                           standalone_mode=False)
    except typer.TyperException as error:  # usage errors (exit 2) and other option errors
        context = getattr(error, "ctx", None)
        where = f" (see {context.command_path} --help)" if context is not None else ""
        kind = "usage error" if error.exit_code == 2 else "error"
        typer.echo(f"{kind}: {_one_line(error.format_message())}{where}", err=True)
        return error.exit_code
    except (typer.Abort, KeyboardInterrupt):
        status = 130
    except InputError as error:
        typer.echo(f"error: {_one_line(str(error))}", err=True)
        return 1
    except OSError as error:
        # Unwritable folders, full disks, paths that are files: the file and the reason.
        typer.echo(f"error: {_one_line(_os_error(error))}", err=True)
        return 1
    except Exception as error:  # the one place that catches everything
        path = _traceback_file(prog_name)
        typer.echo(f"error: unexpected {type(error).__name__}: "
                   f"{_one_line(str(error))[:300]} (a lesionkit bug; full traceback in "
                   f"{path})", err=True)
        return 1
    if status == 130:  # Ctrl-C (Typer turns it into exit status 130)
        kept = _ON_INTERRUPT[0] if _ON_INTERRUPT else "nothing was half-written"
        typer.echo(f"interrupted: {kept}", err=True)
    return status if isinstance(status, int) else 0


def _os_error(error: OSError) -> str:
    """The file and the reason of an operating-system error, in words a user can act on
    (a folder to be made where a file stands is said so, not as "File exists")."""
    if error.filename is None:  # lesionkit's own FileExistsError and the like: a message
        return str(error)
    path = Path(error.filename)
    if isinstance(error, FileExistsError) and not path.is_dir():
        return f"{path}: expected a folder (or nothing) there, found a file"
    if isinstance(error, NotADirectoryError):
        above = next((p for p in path.parents if p.exists()), None)
        if above is not None and not above.is_dir():
            return f"{path}: expected {above} to be a folder, found a file"
    return f"{path}: {error.strerror or error}"


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn lesionkit's input errors into one line and a non-zero exit."""
    from lesionkit.io import InputError

    try:
        yield
    except InputError as error:
        _fail(str(error))
    except FileExistsError as error:
        _fail(_os_error(error))


@contextlib.contextmanager
def _progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar; yields ``advance(n)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        task_id = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task_id, n)


def _print_version(value: bool) -> None:
    if value:
        from lesionkit import __version__

        typer.echo(f"lesionkit {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the version and exit.")] = False) -> None:
    """lesionkit: train, predict, evaluate and cross-validate lesion-finding tasks."""


@app.command()
def version() -> None:
    """Print the lesionkit version."""
    from lesionkit import __version__

    typer.echo(f"lesionkit {__version__}")


ThreadsOption = Annotated[int | None, typer.Option(
    min=1, help="CPU threads for torch and BLAS (default: the free cores, less data-loader "
                "workers).")]
SessionOption = Annotated[str | None, typer.Option(
    metavar="LABEL",
    help="Longitudinal data: train on this session of each subject (with or without ses-).")]
AllSessionsOption = Annotated[bool, typer.Option(
    help="Longitudinal data: every session of a subject is a training example (folds stay "
         "by subject).")]


def _parse_filters(values: list[str] | None) -> list:  # -> list[lesionkit.bids.EntityFilter]
    """``--bids-filter`` values as filters; a usage error for one of another form."""
    from lesionkit.bids import parse_filter

    try:
        return [parse_filter(value) for value in values or ()]
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--bids-filter") from None


BidsFilterOption = Annotated[list[str] | None, typer.Option(
    "--bids-filter", metavar="[SUFFIX:]ENTITY=LABEL", callback=_parse_filters,
    help="Choose among a subject's acquisitions of an image (repeatable): FLAIR:acq=3D "
         "reads the FLAIR with acq-3D (FLAIR:acq= the one without acq); rec=norm skips "
         "every file of another rec.")]
RegisterOption = Annotated[bool, typer.Option(
    help="Co-register each subject's images to its first input (dipy, mutual information) "
         "instead of trusting their affines.")]
KeepOutsideBrainOption = Annotated[bool, typer.Option(
    help="Keep lesion and tissue probability maps whole (by default they are set to 0 more "
         "than 3 mm outside the brain mask).")]
LesionThresholdOption = Annotated[float, typer.Option(
    min=0.01, max=1.0,
    help="Probability at or above which a lesion map's voxel is lesion, for the lesion "
         "label map and tables written beside it.")]
MinLesionOption = Annotated[float, typer.Option(
    "--min-lesion-ml", min=0.0,
    help="Smallest lesion (mL) in the lesion label map and tables (default: every "
         "component).")]


@app.command()
def simulate(
    cohort: Annotated[str, typer.Argument(help="Phantom cohort, e.g. enhance-r1, mrf-lesion.")],
    out_dir: Annotated[Path, typer.Argument(help="Folder for the BIDS dataset (new or empty).")],
    subjects: Annotated[int, typer.Option(min=1, help="Number of subjects.")] = 4,
    seed: Annotated[int, typer.Option(
        min=0, max=MAX_SEED, help="Seed: one seed gives the same cohort anywhere.")] = 0,
    resolution: Annotated[int, typer.Option(min=1, max=2, help="1 (1 mm) or 2 (2 mm).")] = 2,
    preview: Annotated[bool, typer.Option(help="Write a PNG montage per subject.")] = False,
    randomise: Annotated[bool, typer.Option(
        help="Domain randomisation: each weighted image gets a drawn field (1.5T/3T), "
             "sequence, voxel size, slices, orientation and artefacts.")] = False,
    randomise_strong: Annotated[bool, typer.Option(
        help="Stronger randomisation: also random intensities per tissue class "
             "(SynthSeg-like); implies --randomise.")] = False,
    lesion_library: Annotated[str, typer.Option(
        metavar="DIR",
        help="MS cohorts: real lesion shapes (about half of the lesions) from 'shipped' "
             "(27 patients' masks), a folder of binary masks in MNI space, or 'none' "
             "(parametric lesions only).")] = "shipped",
    workers: Annotated[int, typer.Option(
        min=0, help="Processes simulating subjects in parallel (0: one); the cohort is the "
                    "same for any number.")] = 0,
    follow_up: Annotated[bool, typer.Option(
        help="mrf-lesion: a second visit per subject (ses-2: FLAIR and T1w, lesions new, "
             "enlarging, shrinking or resolved, the head moved), the first as ses-1.")
    ] = False,
    threads: ThreadsOption = None,
) -> None:
    """Simulate a phantom cohort with ground truth as a BIDS dataset."""
    from lesionkit.simulate import COHORTS, simulate_cohort
    from lesionkit.threads import use_threads

    use_threads(threads)

    if cohort not in COHORTS:
        _fail(f"unknown cohort {cohort!r}; expected one of {', '.join(COHORTS)}")
    with _user_errors(), _progress(f"simulate {cohort}", subjects) as advance:
        path = simulate_cohort(cohort, out_dir, subjects=subjects, seed=seed,
                               resolution=resolution, preview=preview, progress=advance,
                               randomise="strong" if randomise_strong else randomise,
                               lesion_library=lesion_library, workers=workers,
                               follow_up=follow_up)
    typer.echo(f"wrote {path}")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Argument(help="Folder for the demo's data and outputs.")] = Path(
        "demo"
    ),
    seed: Annotated[int, typer.Option(
        min=0, max=MAX_SEED, help="Seed of the phantom cohorts.")] = 0,
    workers: Annotated[int, typer.Option(
        min=0, help="Processes simulating the cohorts' subjects in parallel (0: one); the "
                    "cohorts are the same for any number.")] = 0,
    threads: ThreadsOption = None,
) -> None:
    """Run the end-to-end demonstration on small phantom cohorts (2 mm)."""
    from lesionkit.demo import run_demo
    from lesionkit.threads import use_threads

    use_threads(threads)

    with _user_errors():
        summary = run_demo(out_dir, seed=seed, progress=_progress, workers=workers)
    typer.echo(summary)


def _task(name: str, arm: str | None = None):  # -> lesionkit.tasks.task.Task
    """The registered task (or one of its arms), or a one-line error listing the known ones."""
    from lesionkit.tasks import get_task

    try:
        task = get_task(name)
        return task.arm(arm) if arm else task
    except KeyError as error:
        _fail(str(error.args[0]))


def _subject_list(subjects: str | None) -> list[str] | None:
    """``--subjects``: "01,02" or "sub-01,sub-02" as labels; a one-line error for an empty
    label ("01,,02")."""
    if not subjects:
        return None
    labels = [s.strip().removeprefix("sub-") for s in subjects.split(",")]
    if not all(labels):
        _fail(f"--subjects: expected comma-separated subject labels such as 01,02, found "
              f"{subjects!r}")
    return labels


#: ``--widen-factor`` bounds: the ResNets' first stage has 64 x the factor features.
MIN_WIDEN_FACTOR, MAX_WIDEN_FACTOR = 1 / 64, 8.0


def _variant(task, network: str | None, channels: str | None, widen_factor: float | None,
             patch_size: int | None, batch_size: int | None, learning_rate: float | None,
             patience: int | None = None):
    """The task with the CLI's overrides (network, its size, patches, optimiser)."""
    from dataclasses import replace

    from lesionkit.training import with_overrides

    kwargs = dict(task.network_kwargs)
    takes = _network_options(task, network)
    if channels:
        try:
            levels = [int(c) for c in channels.split(",")]
        except ValueError:
            _fail(f"--channels: expected comma-separated feature counts such as 16,32,64, "
                  f"found {channels!r}")
        if len(levels) < 2 or min(levels) < 1:
            _fail(f"--channels: expected at least two positive feature counts (one per U-Net "
                  f"level), found {channels!r}")
        if "channels" not in takes:
            _fail(f"--channels: expected a U-Net network, found {network or task.network} "
                  "(ResNets take --widen-factor)")
        kwargs.update(channels=levels, strides=[2] * (len(levels) - 1))
    if widen_factor is not None:
        if "widen_factor" not in takes:
            _fail(f"--widen-factor: expected a ResNet network, found {network or task.network} "
                  "(U-Nets take --channels)")
        if not MIN_WIDEN_FACTOR <= widen_factor <= MAX_WIDEN_FACTOR:
            _fail(f"--widen-factor: expected a width factor from {MIN_WIDEN_FACTOR:g} (one "
                  f"feature in the first of the ResNet's 64) to {MAX_WIDEN_FACTOR:g}, 1 being "
                  f"the standard width, found {widen_factor:g}")
        kwargs["widen_factor"] = widen_factor
    if learning_rate is not None and not 0 < learning_rate <= 1:
        _fail(f"--learning-rate: expected an Adam learning rate above 0 and at most 1 (the "
              f"tasks use 1e-4 to 0.05), found {learning_rate:g}")
    sampler = task.sampler
    if patch_size and hasattr(sampler, "patch_size"):
        # 2D tasks keep their patches' thickness: one slice, or the slices a network that
        # reads each slice with its neighbours (``context_slices``) trains on.
        thick = sampler.patch_size[-1] if kwargs.get("context_slices") else 1
        size = tuple(n if n == 1 or (axis == 2 and n == thick) else patch_size
                     for axis, n in enumerate(sampler.patch_size))
        changes = {"patch_size": size}
        if hasattr(sampler, "step"):
            changes["step"] = tuple(min(s, n) for s, n in zip(sampler.step, size, strict=True))
        sampler = replace(sampler, **changes)
    return with_overrides(task, network=network, batch_size=batch_size,
                          learning_rate=learning_rate, patience=patience,
                          network_kwargs=kwargs, sampler=sampler)


def _spacing(text: str) -> tuple[float, float, float]:
    """``--spacing``: "2" or "1,1,3" (mm) as (x, y, z); a one-line error otherwise."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 3) or not all(0 < v <= 20 for v in values):
        _fail(f"--spacing: expected one voxel size or three (x,y,z) in mm, each above 0 and "
              f"at most 20, found {text!r}")
    x, y, z = values * 3 if len(values) == 1 else values
    return (x, y, z)


def _network_options(task, network: str | None) -> set[str]:
    """Keyword arguments the chosen network's factory takes (a one-line error if unknown)."""
    import inspect

    from lesionkit.models import NETWORKS

    name = network or task.network
    if network is not None and network not in NETWORKS:
        _fail(f"--network: expected one of {', '.join(sorted(NETWORKS))}, found {network!r}")
    factory = (task.network_factory if task.network_factory is not None and network is None
               else NETWORKS.get(name))
    return set(inspect.signature(factory).parameters) if factory is not None else set()


def _truth(task, data_dir: Path, truth: str | None):
    """The task reading its truth from ``--truth`` (checked to be a pipeline of the data)."""
    from lesionkit.data import with_truth

    if truth:
        pipelines = sorted(p.name for p in (data_dir / "derivatives").glob("*") if p.is_dir())
        if truth not in pipelines:
            _fail(f"--truth {truth}: expected a derivatives pipeline of {data_dir}, found "
                  f"{', '.join(pipelines) or 'none'}")
    return with_truth(task, truth)


def _cpu_processes(device: str, devices: int) -> int:
    """Training processes sharing this machine's cores: --devices on a CPU, else 1."""
    from lesionkit.infer import resolve_device

    return devices if resolve_device(_device(device)) == "cpu" else 1


def _device(device: str) -> str:
    """The --device value, checked: auto, cpu, or cuda where CUDA is available."""
    if device not in ("auto", "cpu", "cuda"):
        _fail(f"--device: expected auto, cpu or cuda, found {device!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            _fail("--device cuda: expected a CUDA device, found none on this machine "
                  "(use --device cpu or auto)")
    return device


NetworkOption = Annotated[str | None, typer.Option(help="Network registry name, e.g. resnet10.")]
ChannelsOption = Annotated[str | None, typer.Option(help="U-Net features, e.g. 16,32,64.")]
WidenOption = Annotated[float | None, typer.Option(help="ResNet width factor (1: standard).")]
PatchOption = Annotated[int | None, typer.Option(min=4, help="Patch edge (2D: in-plane).")]
BatchOption = Annotated[int | None, typer.Option(
    min=1, help="Examples per step (per process when distributed).")]
RateOption = Annotated[float | None, typer.Option(help="Adam learning rate.")]
WorkersOption = Annotated[int, typer.Option(min=0, help="Worker processes loading data.")]
SubjectsOption = Annotated[str | None, typer.Option(help="Comma-separated subjects.")]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
DevicesOption = Annotated[int, typer.Option(
    "--devices", "--gpus", min=1,
    help="Processes per machine: CUDA devices, or CPU processes with --device cpu; "
         "distributed (DDP) when more than one in all. --gpus: its earlier name.")]
NodesOption = Annotated[int, typer.Option(
    min=1, help="Machines (SLURM: srun with one task per device on each).")]
AmpOption = Annotated[bool, typer.Option(
    help="Mixed precision: float16 on CUDA, bfloat16 on the CPU.")]
CompileOption = Annotated[bool, typer.Option(
    "--compile", help="Train the network through torch.compile.")]
TruthOption = Annotated[str | None, typer.Option(
    help="Derivatives pipeline holding the truth, e.g. manual (default: the one that has it).")]


@app.command()
def train(
    task: Annotated[str, typer.Argument(help="Task name, e.g. enhance-r1.")],
    data_dir: Annotated[Path, typer.Argument(help="BIDS dataset with inputs and targets.")],
    model_dir: Annotated[Path, typer.Argument(help="Model folder to write.")],
    folds: Annotated[int | None, typer.Option(
        min=1, help="1: one validation split; K: K folds (default: the task's).")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Epoch cap (default: task's).")] = None,
    seed: Annotated[int, typer.Option(
        min=0, max=MAX_SEED, help="Seed of splits, sampling and weights.")] = 0,
    device: DeviceOption = "auto",
    devices: DevicesOption = 1,
    nodes: NodesOption = 1,
    amp: AmpOption = False,
    compile_network: CompileOption = False,
    patches_per_epoch: Annotated[int | None, typer.Option(
        min=1, help="Examples per epoch cap.")] = None,
    network: NetworkOption = None,
    batch_size: BatchOption = None,
    learning_rate: RateOption = None,
    patience: Annotated[int | None, typer.Option(min=1, help="Early-stopping patience.")] = None,
    channels: ChannelsOption = None,
    widen_factor: WidenOption = None,
    patch_size: PatchOption = None,
    spacing: Annotated[str | None, typer.Option(
        metavar="MM",
        help="Voxel size the model works at, in mm: one value (isotropic) or x,y,z "
             "(default: the task's, else the median voxel size of the training subjects' "
             "first input).")] = None,
    arm: Annotated[str | None, typer.Option(help="Train one of the task's arms.")] = None,
    source_dir: Annotated[list[Path] | None, typer.Option(
        metavar="DIR",
        help="Dataset the arm pretrains on (arms with pretraining; repeat the option for "
             "arms that pretrain in stages, in their order).")] = None,
    weights: Annotated[Path | None, typer.Option(
        help="Weights file the arm starts from (e.g. a MedicalNet checkpoint).")] = None,
    init: Annotated[str | None, typer.Option(
        metavar="MODEL",
        help="Fine-tune: start from a model folder or a shipped model's name (lesionkit "
             "models); its network and task settings are kept, the normalisation is "
             "fitted anew on DATA_DIR.")] = None,
    subjects: SubjectsOption = None,
    truth: TruthOption = None,
    workers: WorkersOption = 0,
    resume: Annotated[bool, typer.Option(
        help="Continue an interrupted training from its last completed epoch.")] = False,
    overwrite: Annotated[bool, typer.Option(
        help="Replace an earlier model folder of the same path.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
    threads: ThreadsOption = None,
    register: RegisterOption = False,
    session: SessionOption = None,
    all_sessions: AllSessionsOption = False,
    max_minutes: Annotated[float | None, typer.Option(
        metavar="MIN",
        help="Stop each fold after this many minutes of training and keep its best "
             "validation epoch (a job's time limit; --resume continues).")] = None,
    bids_filter: BidsFilterOption = None,
) -> None:
    """Train a task on a BIDS dataset; write a self-describing model folder."""
    base = _task(task, arm) if init is None else _initial_task(task, init)
    chosen = _variant(base, network, channels, widen_factor, patch_size, batch_size,
                      learning_rate, patience)
    if spacing is not None:
        from dataclasses import replace

        chosen = replace(chosen, spacing=_spacing(spacing))
    import time

    from lesionkit.threads import use_threads
    from lesionkit.training import train as fit

    use_threads(threads, workers, processes=_cpu_processes(device, devices))

    chosen = _truth(chosen, data_dir, truth)

    start = time.perf_counter()
    _on_interrupt(f"the last completed epoch of the running fold is kept under {model_dir}; "
                  "run the same command with --resume to continue from it")
    from lesionkit.bids import bids_filters

    with _user_errors(), bids_filters(bids_filter or []):
        path = fit(chosen, data_dir, model_dir, folds=folds, epochs=epochs, seed=seed,
                   device=_device(device), devices=devices, nodes=nodes, amp=amp,
                   compile_network=compile_network, patches_per_epoch=patches_per_epoch,
                   subjects=_subject_list(subjects), resume=resume, progress=progress,
                   workers=workers, source=source_dir or weights, overwrite=overwrite,
                   init=init, register=register,
                   session=session.removeprefix("ses-") if session else None,
                   all_sessions=all_sessions, max_minutes=max_minutes)
    if _rank_zero():
        typer.echo(f"wrote {path} ({chosen.name}, {time.perf_counter() - start:.0f} s)")


def _initial_task(name: str, init: str):  # -> lesionkit.tasks.task.Task
    """The task stored in the model ``--init`` names, which must be a model of ``name``."""
    from lesionkit.model_folder import read_config, task_from_config
    from lesionkit.shipped import resolve_model

    with _user_errors():
        folder = resolve_model(init)
        task = task_from_config(read_config(folder), folder / "config.yaml")
    if task.name != name:
        _fail(f"--init {init}: expected a model of task {name}, found one of {task.name}")
    return task


def _rank_zero() -> bool:
    """Whether this process is global rank 0 of a distributed training, or alone."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


@app.command()
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
    _on_interrupt("every prediction written so far is complete; run the same command again "
                  "to write the rest")
    from lesionkit.writers import LesionReading

    options = dict(tta=tta, device=_device(device), out_dir=out_dir, register=register,
                   allow_incomplete=allow_incomplete, amp=amp,
                   keep_outside_brain=keep_outside_brain,
                   lesions=LesionReading(lesion_threshold, min_lesion_ml))
    if image:
        dataset_only = {"DATA_DIR": data_dir, "--bids-filter": bids_filter,
                        "--keep-going": keep_going}
        clash = [name for name, value in dataset_only.items() if value]
        if clash:
            _fail(f"--image: expected the files alone, found {' and '.join(clash)} as well "
                  "(for a BIDS dataset, leave out --image)")
        written = _predict_files(model_dir, image, subjects, sessions, **options)
    elif data_dir is None:
        _fail("expected DATA_DIR or --image KEY=FILE, found neither (see lesionkit predict "
              "--help)")
    else:
        with _user_errors(), bids_filters(bids_filter or []):
            written = run(model_dir, data_dir, subjects=_subject_list(subjects),
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
        _fail("--image: expected --out-dir for the predictions, found none")
    pairs = [item.partition("=") for item in images]
    if any(not key or not sep or not path for key, sep, path in pairs):
        _fail(f"--image: expected KEY=FILE, found {' '.join(images)}")
    label = _subject_list(subjects) or ["01"]
    if len(label) != 1:
        _fail(f"--subjects: expected one subject for the files of --image, found {subjects}")
    session = [s.strip().removeprefix("ses-") for s in sessions.split(",")] if sessions else [None]
    if len(session) != 1:
        _fail(f"--sessions: expected one session (the visit) for the files of --image, found "
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
            _fail(named_as_given(str(error), sources))
    return []


@app.command()
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
    _on_interrupt("the changes of every pair of sessions written so far are complete; run "
                  "the same command again to write them all")
    from lesionkit.changes import ChangeReading
    from lesionkit.longitudinal import compare as run

    reading = ChangeReading(lesion_threshold, z_threshold, min_change_ml)
    with _user_errors():
        order = [s.strip().removeprefix("ses-") for s in sessions.split(",")] if sessions else None
        written, table = run(predictions, out_dir, _subject_list(subjects), order, reading,
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


@app.command()
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


PredictionsOption = Annotated[Path | None, typer.Option(
    help="Predictions folder (default: DATA_DIR/derivatives/lesionkit).")]


@app.command()
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
    chosen = _task(task)
    from lesionkit.evaluation import view as write

    with _user_errors():
        path = write(chosen, predictions, subject, session, out)
    typer.echo(f"wrote {path}")


@app.command()
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
    chosen = _truth(_task(task), data_dir, truth)
    from lesionkit.bids import bids_filters
    from lesionkit.evaluation import evaluate as score

    with _user_errors(), bids_filters(bids_filter or []):
        tsv, json_path = score(chosen, data_dir, _subject_list(subjects), out_dir, predictions,
                               progress=True)
    grouped = tsv.with_name(f"task-{chosen.name}_by-acquisition.tsv")
    typer.echo(f"wrote {tsv} and {json_path}"
               + (f"; metrics per acquisition: {grouped}" if grouped.is_file() else ""))


@app.command()
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
    chosen = _truth(_task(task), data_dir, truth)
    from lesionkit.bids import bids_filters
    from lesionkit.evaluation import report as write
    from lesionkit.evaluation import viewer_path

    with _user_errors(), bids_filters(bids_filter or []):
        path = write(chosen, data_dir, out, _subject_list(subjects), predictions)
    viewer = viewer_path(path)
    shown = f" and {viewer}" if viewer.is_file() else ""
    typer.echo(f"wrote {path}{shown}")


@app.command()
def crossval(
    task: Annotated[str, typer.Argument(help="Task name, e.g. fcd-classify.")],
    data_dir: Annotated[Path, typer.Argument(help="BIDS dataset with inputs and targets.")],
    out_dir: Annotated[Path, typer.Argument(help="Folder for the arms and the report.")],
    folds: Annotated[int, typer.Option(min=2, help="Folds (stratified by subject label).")] = 4,
    arms: Annotated[str | None, typer.Option(
        help="Comma-separated arms (default: all of the task's).")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Epochs per fold.")] = None,
    patches_per_epoch: Annotated[int | None, typer.Option(
        min=1, help="Examples per epoch cap.")] = None,
    network: NetworkOption = None,
    channels: ChannelsOption = None,
    widen_factor: WidenOption = None,
    patch_size: PatchOption = None,
    batch_size: BatchOption = None,
    learning_rate: RateOption = None,
    source_dir: Annotated[list[Path] | None, typer.Option(
        metavar="DIR",
        help="Dataset that pretraining arms pretrain on (repeat the option for arms that "
             "pretrain in stages: one dataset per stage, in the stages' order).")] = None,
    weights: Annotated[Path | None, typer.Option(
        help="Weights file of arms that start from one (e.g. MedicalNet).")] = None,
    tta: Annotated[int | None, typer.Option(min=1, max=8, help="Mirror flips.")] = None,
    seed: Annotated[int, typer.Option(
        min=0, max=MAX_SEED, help="Seed of folds and weights.")] = 0,
    device: DeviceOption = "auto",
    devices: DevicesOption = 1,
    nodes: NodesOption = 1,
    amp: AmpOption = False,
    compile_network: CompileOption = False,
    workers: WorkersOption = 0,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
    threads: ThreadsOption = None,
    register: RegisterOption = False,
    session: SessionOption = None,
    all_sessions: AllSessionsOption = False,
    max_minutes: Annotated[float | None, typer.Option(
        metavar="MIN",
        help="Stop each fold of each arm after this many minutes of training and keep its "
             "last epoch (the folds have no validation subjects).")] = None,
    bids_filter: BidsFilterOption = None,
) -> None:
    """Cross-validate a task's arms on the same folds; write comparison.json and report.html."""
    chosen = _variant(_task(task), network, channels, widen_factor, patch_size, batch_size,
                      learning_rate)
    from lesionkit.bids import bids_filters
    from lesionkit.crossval import crossval as run
    from lesionkit.threads import use_threads

    use_threads(threads, workers, processes=_cpu_processes(device, devices))

    _on_interrupt(f"arms that finished are kept under {out_dir}; run the same command again "
                  "to train the others")
    with _user_errors(), bids_filters(bids_filter or []):
        path = run(chosen, data_dir, out_dir, folds=folds,
                   arms=[a.strip() for a in arms.split(",")] if arms else None, epochs=epochs,
                   seed=seed, device=_device(device), devices=devices, nodes=nodes, amp=amp,
                   compile_network=compile_network, patches_per_epoch=patches_per_epoch,
                   source_dir=source_dir, weights=weights, tta=tta, workers=workers,
                   progress=progress, register=register,
                   session=session.removeprefix("ses-") if session else None,
                   all_sessions=all_sessions, max_minutes=max_minutes)
    if _rank_zero():
        typer.echo(f"wrote {path} and {Path(out_dir) / 'report.html'}")


def _with_user_errors(function: Callable[..., None]) -> Callable[..., None]:
    """A task command whose input errors end in one line and a non-zero exit."""

    @functools.wraps(function)
    def command(*args: object, **kwargs: object) -> None:
        with _user_errors():
            function(*args, **kwargs)

    return command


for _command in COMMANDS:
    app.command(_command.name)(_with_user_errors(_command.function))


def _reflowed(doc: str | None) -> str:
    """A docstring as help text: paragraphs kept, the line breaks inside them removed (Typer
    keeps them, which leaves ragged lines in a terminal narrower than the source)."""
    import inspect

    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(doc or "").split("\n\n"))


for _info in app.registered_commands:
    _info.help = _info.help or _reflowed(_info.callback.__doc__ if _info.callback else None)
