"""Command-line interface: a thin Typer layer over the public functions.

Heavy libraries (torch, MONAI, nibabel, ...) are imported inside the commands so that
``lesionkit --help`` answers quickly. Errors in the user's input end the command with
one line on stderr and exit status 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="lesionkit",
    help="Train and apply 3D deep networks that make brain lesions easier to find on MRI.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

TASK_NAMES = ("enhance-r1", "mrf-lesion", "fcd-classify", "contrast-amplify", "rim-classify")


def _fail(message: str) -> None:
    """Print one error line to stderr and exit with status 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn lesionkit's input errors into one line and a non-zero exit."""
    from lesionkit.io import InputError

    try:
        yield
    except (InputError, FileExistsError) as error:
        _fail(str(error))


@contextlib.contextmanager
def _progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar; yields ``advance(n)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        task_id = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task_id, n)


@app.callback()
def main() -> None:
    """lesionkit: enhance-r1, mrf-lesion, fcd-classify, contrast-amplify, rim-classify."""


@app.command()
def version() -> None:
    """Print the lesionkit version."""
    from lesionkit import __version__

    typer.echo(f"lesionkit {__version__}")


@app.command()
def simulate(
    task: Annotated[str, typer.Argument(help=f"Cohort to simulate: {', '.join(TASK_NAMES)}.")],
    out_dir: Annotated[Path, typer.Argument(help="Folder for the BIDS dataset (new or empty).")],
    subjects: Annotated[int, typer.Option(min=1, help="Number of subjects.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed: one seed gives the same cohort anywhere.")] = 0,
    resolution: Annotated[int, typer.Option(min=1, max=2, help="1 (1 mm) or 2 (2 mm).")] = 2,
    preview: Annotated[bool, typer.Option(help="Write a PNG montage per subject.")] = False,
) -> None:
    """Simulate a phantom cohort with ground truth as a BIDS dataset."""
    if task not in TASK_NAMES:
        _fail(f"unknown task {task!r}; expected one of {', '.join(TASK_NAMES)}")
    from lesionkit.simulate import simulate_cohort

    with _user_errors(), _progress(f"simulate {task}", subjects) as advance:
        path = simulate_cohort(task, out_dir, subjects=subjects, seed=seed,
                               resolution=resolution, preview=preview, progress=advance)
    typer.echo(f"wrote {path}")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Argument(help="Folder for the demo's data and outputs.")] = Path(
        "demo"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the phantom cohorts.")] = 0,
) -> None:
    """Run the end-to-end demonstration on small phantom cohorts (2 mm)."""
    from lesionkit.demo import run_demo

    with _user_errors():
        summary = run_demo(out_dir, seed=seed, progress=_progress)
    typer.echo(summary)


# Engine commands (train, predict, evaluate, report) follow.


def _task(name: str):  # -> lesionkit.tasks.task.Task
    """The registered task, or a one-line error listing the known ones."""
    from lesionkit.tasks import get_task

    try:
        return get_task(name)
    except KeyError as error:
        _fail(str(error.args[0]))


def _subject_list(subjects: str | None) -> list[str] | None:
    return [s.strip().removeprefix("sub-") for s in subjects.split(",")] if subjects else None


@app.command()
def train(
    task: Annotated[str, typer.Argument(help="Task name, e.g. enhance-r1.")],
    data_dir: Annotated[Path, typer.Argument(help="BIDS dataset with inputs and targets.")],
    model_dir: Annotated[Path, typer.Argument(help="Model folder to write.")],
    folds: Annotated[int, typer.Option(min=1, help="1: one validation split; K: K folds.")] = 1,
    epochs: Annotated[int | None, typer.Option(min=1, help="Epoch cap (default: task's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of splits, sampling and weights.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    gpus: Annotated[int, typer.Option(min=1, help="CUDA devices; DDP when more than 1.")] = 1,
    amp: Annotated[bool, typer.Option(help="16-bit mixed precision (CUDA only).")] = False,
    patches_per_epoch: Annotated[int | None, typer.Option(help="Examples per epoch cap.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Examples per step.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Adam learning rate.")] = None,
    patience: Annotated[int | None, typer.Option(min=1, help="Early-stopping patience.")] = None,
    channels: Annotated[str | None, typer.Option(help="U-Net features, e.g. 16,32,64.")] = None,
    patch_size: Annotated[int | None, typer.Option(
        min=4, help="Patch edge (2D tasks: in-plane).")] = None,
    subjects: Annotated[str | None, typer.Option(help="Comma-separated subjects to use.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoints.")] = False,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
) -> None:
    """Train a task on a BIDS dataset; write a self-describing model folder."""
    chosen = _task(task)
    from dataclasses import replace

    from lesionkit.training import train as fit
    from lesionkit.training import with_overrides

    kwargs = dict(chosen.network_kwargs)
    if channels:
        levels = [int(c) for c in channels.split(",")]
        kwargs.update(channels=levels, strides=[2] * (len(levels) - 1))
    sampler = chosen.sampler
    if patch_size:
        # 2D tasks (patches one slice thick) keep their thickness.
        size = tuple(1 if n == 1 else patch_size for n in sampler.patch_size)
        sampler = replace(sampler, patch_size=size,
                          step=tuple(min(s, n) for s, n in zip(sampler.step, size, strict=True)))
    chosen = with_overrides(chosen, batch_size=batch_size, learning_rate=learning_rate,
                            patience=patience, network_kwargs=kwargs, sampler=sampler)
    with _user_errors():
        path = fit(chosen, data_dir, model_dir, folds=folds, epochs=epochs, seed=seed,
                   device=device, gpus=gpus, amp=amp, patches_per_epoch=patches_per_epoch,
                   subjects=_subject_list(subjects), resume=resume, progress=progress)
    typer.echo(f"wrote {path}")


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="Model folder written by train.")],
    data_dir: Annotated[Path, typer.Argument(help="BIDS dataset with the task's inputs.")],
    tta: Annotated[int, typer.Option(min=1, max=8, help="Mirror flips averaged (1-8).")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    subjects: Annotated[str | None, typer.Option(help="Comma-separated subjects.")] = None,
) -> None:
    """Apply a model folder; write derivatives/lesionkit with uncertainty maps."""
    from lesionkit.infer import predict as run

    with _user_errors():
        written = run(model_dir, data_dir, tta=tta, device=device,
                      subjects=_subject_list(subjects))
    typer.echo(f"wrote {len(written)} files under {data_dir / 'derivatives' / 'lesionkit'}")


@app.command()
def evaluate(
    task: Annotated[str, typer.Argument(help="Task name, e.g. enhance-r1.")],
    data_dir: Annotated[Path, typer.Argument(help="BIDS dataset with truth and predictions.")],
    subjects: Annotated[str | None, typer.Option(help="Comma-separated subjects.")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Folder of the tables.")] = None,
) -> None:
    """Score predictions against the truth; write a metrics table (TSV and JSON)."""
    chosen = _task(task)
    from lesionkit.infer import evaluate as score

    with _user_errors():
        tsv, json_path = score(chosen, data_dir, _subject_list(subjects), out_dir)
    typer.echo(f"wrote {tsv} and {json_path}")


@app.command()
def report(
    task: Annotated[str, typer.Argument(help="Task name, e.g. enhance-r1.")],
    data_dir: Annotated[Path, typer.Argument(help="BIDS dataset with truth and predictions.")],
    out: Annotated[Path | None, typer.Option(help="HTML file to write.")] = None,
    subjects: Annotated[str | None, typer.Option(help="Comma-separated subjects.")] = None,
) -> None:
    """Write one HTML page with the task's metric tables and figures."""
    chosen = _task(task)
    from lesionkit.infer import report as write

    with _user_errors():
        path = write(chosen, data_dir, out, _subject_list(subjects))
    typer.echo(f"wrote {path}")


@app.command("mrf-match")
def mrf_match(
    data_dir: Annotated[Path, typer.Argument(help="BIDS dataset with 4D MRF series.")],
    subjects: Annotated[str | None, typer.Option(help="Comma-separated subjects.")] = None,
    denoise: Annotated[bool, typer.Option(help="MP-PCA denoising (dipy) first.")] = True,
) -> None:
    """Reference MRF maps by dictionary matching: T1 and T2* (ms), B1 and PD."""
    from lesionkit.bids import BIDSDataset
    from lesionkit.mrf_reference import match_dataset

    names = _subject_list(subjects)
    with _user_errors():
        total = len(names or BIDSDataset(data_dir).subjects())
        with _progress("mrf-match", total) as advance:
            written = match_dataset(data_dir, names, denoise=denoise, progress=advance)
    typer.echo(f"wrote {len(written)} files under {Path(data_dir) / 'derivatives' / 'lesionkit'}")


@app.command()
def explain(
    model_dir: Annotated[Path, typer.Argument(help="fcd-classify model folder.")],
    data_dir: Annotated[Path, typer.Argument(help="BIDS dataset to explain.")],
    subjects: Annotated[str | None, typer.Option(help="Comma-separated subjects.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    layer: Annotated[str, typer.Option(help="Network layer for Grad-CAM.")] = "layer4",
) -> None:
    """Grad-CAM maps (MONAI) of the patient class, on each input's grid, as derivatives."""
    from lesionkit.tasks.fcd_classify import explain as write_cams

    with _user_errors():
        written = write_cams(model_dir, data_dir, _subject_list(subjects), device=device,
                             target_layer=layer)
    typer.echo(f"wrote {len(written)} Grad-CAM maps under "
               f"{Path(data_dir) / 'derivatives' / 'lesionkit'}")


@app.command("fcd-compare")
def fcd_compare(
    data_dir: Annotated[Path, typer.Argument(help="fcd-classify BIDS dataset.")],
    out_dir: Annotated[Path, typer.Argument(help="Folder for arm model folders and report.")],
    arms: Annotated[str, typer.Option(help="scratch, segmentation and/or medicalnet.")] = (
        "scratch,segmentation"),
    source_dir: Annotated[Path | None, typer.Option(
        help="Lesion-segmentation cohort (e.g. mrf-lesion phantom) to pretrain on.")] = None,
    medicalnet: Annotated[Path | None, typer.Option(
        help="MedicalNet checkpoint for the medicalnet arm.")] = None,
    folds: Annotated[int, typer.Option(min=2, help="Stratified folds.")] = 4,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs per fold.")] = 3,
    network: Annotated[str, typer.Option(help="resnet10, resnet18, resnet34, resnet50.")] = (
        "resnet18"),
    modality: Annotated[str, typer.Option(help="FLAIR or T1w.")] = "FLAIR",
    widen_factor: Annotated[float, typer.Option(
        min=0.0625, help="ResNet width relative to the standard one (1: 64 first features).")
    ] = 1.0,
    learning_rate: Annotated[float | None, typer.Option(help="Adam learning rate.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of folds and weights.")] = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
) -> None:
    """Cross-validate transfer-learning arms on the same folds; write the comparison report."""
    from lesionkit.crossval import compare_arms
    from lesionkit.tasks.fcd_classify import comparison_report, fcd_task

    weights = {"medicalnet": medicalnet} if medicalnet else None
    with _user_errors():
        result = compare_arms(data_dir, out_dir, arms=tuple(a.strip() for a in arms.split(",")),
                              folds=folds, epochs=epochs,
                              task=fcd_task(modality=modality, network=network,
                                            network_kwargs={"widen_factor": widen_factor},
                                            **({"learning_rate": learning_rate}
                                               if learning_rate is not None else {})),
                              weights=weights, source_dir=source_dir, seed=seed, device=device)
        html = comparison_report(out_dir, data_dir)
    typer.echo(f"wrote {result} and {html}")
