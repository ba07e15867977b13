"""The training commands of the command line: ``train`` and ``crossval``.

Plain functions with Typer's annotations; :mod:`lesionkit.cli` registers them. Heavy
libraries are imported inside them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lesionkit.cli_options import (
    MAX_SEED,
    AllSessionsOption,
    AmpOption,
    BatchOption,
    BidsFilterOption,
    ChannelsOption,
    CompileOption,
    DeviceOption,
    DevicesOption,
    NetworkOption,
    NodesOption,
    PatchOption,
    RateOption,
    RegisterOption,
    SessionOption,
    SubjectsOption,
    ThreadsOption,
    TruthOption,
    WidenOption,
    WorkersOption,
    checked_device,
    cpu_processes,
    initial_task,
    parse_spacing,
    rank_zero,
    subject_list,
    task_named,
    truth_task,
    variant,
)
from lesionkit.console import on_interrupt, user_errors


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
    base = task_named(task, arm) if init is None else initial_task(task, init)
    chosen = variant(base, network, channels, widen_factor, patch_size, batch_size,
                     learning_rate, patience)
    if spacing is not None:
        from dataclasses import replace

        chosen = replace(chosen, spacing=parse_spacing(spacing))
    import time

    from lesionkit.threads import use_threads
    from lesionkit.training import train as fit

    use_threads(threads, workers, processes=cpu_processes(device, devices))

    chosen = truth_task(chosen, data_dir, truth)

    start = time.perf_counter()
    on_interrupt(f"the last completed epoch of the running fold is kept under {model_dir}; "
                 "run the same command with --resume to continue from it")
    from lesionkit.bids import bids_filters

    with user_errors(), bids_filters(bids_filter or []):
        path = fit(chosen, data_dir, model_dir, folds=folds, epochs=epochs, seed=seed,
                   device=checked_device(device), devices=devices, nodes=nodes, amp=amp,
                   compile_network=compile_network, patches_per_epoch=patches_per_epoch,
                   subjects=subject_list(subjects), resume=resume, progress=progress,
                   workers=workers, source=source_dir or weights, overwrite=overwrite,
                   init=init, register=register,
                   session=session.removeprefix("ses-") if session else None,
                   all_sessions=all_sessions, max_minutes=max_minutes)
    if rank_zero():
        typer.echo(f"wrote {path} ({chosen.name}, {time.perf_counter() - start:.0f} s)")


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
    chosen = variant(task_named(task), network, channels, widen_factor, patch_size, batch_size,
                     learning_rate)
    from lesionkit.bids import bids_filters
    from lesionkit.crossval import crossval as run
    from lesionkit.threads import use_threads

    use_threads(threads, workers, processes=cpu_processes(device, devices))

    on_interrupt(f"arms that finished are kept under {out_dir}; run the same command again "
                 "to train the others")
    with user_errors(), bids_filters(bids_filter or []):
        path = run(chosen, data_dir, out_dir, folds=folds,
                   arms=[a.strip() for a in arms.split(",")] if arms else None, epochs=epochs,
                   seed=seed, device=checked_device(device), devices=devices, nodes=nodes, amp=amp,
                   compile_network=compile_network, patches_per_epoch=patches_per_epoch,
                   source_dir=source_dir, weights=weights, tta=tta, workers=workers,
                   progress=progress, register=register,
                   session=session.removeprefix("ses-") if session else None,
                   all_sessions=all_sessions, max_minutes=max_minutes)
    if rank_zero():
        typer.echo(f"wrote {path} and {Path(out_dir) / 'report.html'}")
