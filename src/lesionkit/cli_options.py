"""The command line's shared options: their types, and the checks and parsing behind them.

Every check ends in one error line naming the option (:func:`lesionkit.console.fail`).
Heavy libraries are imported inside the functions, so that ``lesionkit --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lesionkit.console import fail, user_errors

#: Seeds are unsigned 32-bit integers (NumPy, scikit-learn and Lightning take them).
MAX_SEED = 2**32 - 1


ThreadsOption = Annotated[int | None, typer.Option(
    min=1, help="CPU threads for torch and BLAS (default: the free cores, less data-loader "
                "workers).")]
SessionOption = Annotated[str | None, typer.Option(
    metavar="LABEL",
    help="Longitudinal data: train on this session of each subject (with or without ses-).")]
AllSessionsOption = Annotated[bool, typer.Option(
    help="Longitudinal data: every session of a subject is a training example (folds stay "
         "by subject).")]


def parse_filters(values: list[str] | None) -> list:  # -> list[lesionkit.bids.EntityFilter]
    """``--bids-filter`` values as filters; a usage error for one of another form."""
    from lesionkit.bids import parse_filter

    try:
        return [parse_filter(value) for value in values or ()]
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--bids-filter") from None


BidsFilterOption = Annotated[list[str] | None, typer.Option(
    "--bids-filter", metavar="[SUFFIX:]ENTITY=LABEL", callback=parse_filters,
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
#: ``--min-lesion-depth-mm``'s default (mm), :data:`lesionkit.lesions.LESION_MIN_DEPTH_MM`
#: (written out here so that ``--help`` does not import numpy).
MIN_LESION_DEPTH_MM = 3.0
MinLesionDepthOption = Annotated[float, typer.Option(
    "--min-lesion-depth-mm", min=0.0,
    help="Depth inside the brain mask (mm) a lesion's deepest voxel must reach to be in the "
         "lesion label map and tables; 0 keeps components at the mask's edge (on the skull "
         "base, the dura or the cortex).")]


def task_named(name: str, arm: str | None = None):  # -> lesionkit.tasks.task.Task
    """The registered task (or one of its arms), or a one-line error listing the known ones."""
    from lesionkit.tasks import get_task

    try:
        task = get_task(name)
        return task.arm(arm) if arm else task
    except KeyError as error:
        fail(str(error.args[0]))


def subject_list(subjects: str | None) -> list[str] | None:
    """``--subjects``: "01,02" or "sub-01,sub-02" as labels; a one-line error for an empty
    label ("01,,02")."""
    if not subjects:
        return None
    labels = [s.strip().removeprefix("sub-") for s in subjects.split(",")]
    if not all(labels):
        fail(f"--subjects: expected comma-separated subject labels such as 01,02, found "
             f"{subjects!r}")
    return labels


#: ``--widen-factor`` bounds: the ResNets' first stage has 64 x the factor features.
MIN_WIDEN_FACTOR, MAX_WIDEN_FACTOR = 1 / 64, 8.0


def variant(task, network: str | None, channels: str | None, widen_factor: float | None,
            patch_size: int | None, batch_size: int | None, learning_rate: float | None,
            patience: int | None = None):
    """The task with the CLI's overrides (network, its size, patches, optimiser)."""
    from dataclasses import replace

    from lesionkit.training import with_overrides

    kwargs = dict(task.network_kwargs)
    takes = network_options(task, network)
    if channels:
        try:
            levels = [int(c) for c in channels.split(",")]
        except ValueError:
            fail(f"--channels: expected comma-separated feature counts such as 16,32,64, "
                 f"found {channels!r}")
        if len(levels) < 2 or min(levels) < 1:
            fail(f"--channels: expected at least two positive feature counts (one per U-Net "
                 f"level), found {channels!r}")
        if "channels" not in takes:
            fail(f"--channels: expected a U-Net network, found {network or task.network} "
                 "(ResNets take --widen-factor)")
        kwargs.update(channels=levels, strides=[2] * (len(levels) - 1))
    if widen_factor is not None:
        if "widen_factor" not in takes:
            fail(f"--widen-factor: expected a ResNet network, found {network or task.network} "
                 "(U-Nets take --channels)")
        if not MIN_WIDEN_FACTOR <= widen_factor <= MAX_WIDEN_FACTOR:
            fail(f"--widen-factor: expected a width factor from {MIN_WIDEN_FACTOR:g} (one "
                 f"feature in the first of the ResNet's 64) to {MAX_WIDEN_FACTOR:g}, 1 being "
                 f"the standard width, found {widen_factor:g}")
        kwargs["widen_factor"] = widen_factor
    if learning_rate is not None and not 0 < learning_rate <= 1:
        fail(f"--learning-rate: expected an Adam learning rate above 0 and at most 1 (the "
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


def parse_spacing(text: str) -> tuple[float, float, float]:
    """``--spacing``: "2" or "1,1,3" (mm) as (x, y, z); a one-line error otherwise."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 3) or not all(0 < v <= 20 for v in values):
        fail(f"--spacing: expected one voxel size or three (x,y,z) in mm, each above 0 and "
             f"at most 20, found {text!r}")
    x, y, z = values * 3 if len(values) == 1 else values
    return (x, y, z)


def network_options(task, network: str | None) -> set[str]:
    """Keyword arguments the chosen network's factory takes (a one-line error if unknown)."""
    import inspect

    from lesionkit.models import NETWORKS

    name = network or task.network
    if network is not None and network not in NETWORKS:
        fail(f"--network: expected one of {', '.join(sorted(NETWORKS))}, found {network!r}")
    factory = (task.network_factory if task.network_factory is not None and network is None
               else NETWORKS.get(name))
    return set(inspect.signature(factory).parameters) if factory is not None else set()


def truth_task(task, data_dir: Path, truth: str | None):
    """The task reading its truth from ``--truth`` (checked to be a pipeline of the data)."""
    from lesionkit.data import with_truth

    if truth:
        pipelines = sorted(p.name for p in (data_dir / "derivatives").glob("*") if p.is_dir())
        if truth not in pipelines:
            fail(f"--truth {truth}: expected a derivatives pipeline of {data_dir}, found "
                 f"{', '.join(pipelines) or 'none'}")
    return with_truth(task, truth)


def cpu_processes(device: str, devices: int) -> int:
    """Training processes sharing this machine's cores: --devices on a CPU, else 1."""
    from lesionkit.infer import resolve_device

    return devices if resolve_device(checked_device(device)) == "cpu" else 1


def checked_device(device: str) -> str:
    """The --device value, checked: auto, cpu, or cuda where CUDA is available."""
    if device not in ("auto", "cpu", "cuda"):
        fail(f"--device: expected auto, cpu or cuda, found {device!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda: expected a CUDA device, found none on this machine "
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


def initial_task(name: str, init: str):  # -> lesionkit.tasks.task.Task
    """The task stored in the model ``--init`` names, which must be a model of ``name``."""
    from lesionkit.model_folder import read_config, task_from_config
    from lesionkit.shipped import resolve_model

    with user_errors():
        folder = resolve_model(init)
        task = task_from_config(read_config(folder), folder / "config.yaml")
    if task.name != name:
        fail(f"--init {init}: expected a model of task {name}, found one of {task.name}")
    return task


def rank_zero() -> bool:
    """Whether this process is global rank 0 of a distributed training, or alone."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


PredictionsOption = Annotated[Path | None, typer.Option(
    help="Predictions folder (default: DATA_DIR/derivatives/lesionkit).")]
