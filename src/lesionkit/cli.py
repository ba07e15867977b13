"""Command-line interface: a thin Typer layer over the public functions.

Heavy libraries (torch, MONAI, nibabel, ...) are imported inside the commands so that
``lesionkit --help`` answers quickly. Task modules add their own commands
(:data:`lesionkit.tasks.COMMANDS`); this module names no task. Every command goes through
one error path (:func:`run`; :mod:`lesionkit.console`). The training commands live in
:mod:`lesionkit.train_commands`, those that apply models and read their outputs in
:mod:`lesionkit.prediction_commands`, and the options several commands share, with their
checks, in :mod:`lesionkit.cli_options`; this module registers them all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import typer

from lesionkit.cli_options import MAX_SEED, ThreadsOption
from lesionkit.console import fail, progress_bar, run_app, user_errors
from lesionkit.prediction_commands import changes, evaluate, models, predict, report, view
from lesionkit.tasks import COMMANDS
from lesionkit.train_commands import crossval, train

app = typer.Typer(
    name="lesionkit",
    help="Train and apply 3D deep networks that make brain lesions easier to find on MRI.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def run(argv: Sequence[str] | None = None) -> int:
    """The ``lesionkit`` command: run the CLI and turn every failure into one line.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, 1 (error), 2 (usage) or 130 (interrupted).
    """
    return run_app(app, "lesionkit", argv)


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
        fail(f"unknown cohort {cohort!r}; expected one of {', '.join(COHORTS)}")
    with user_errors(), progress_bar(f"simulate {cohort}", subjects) as advance:
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

    with user_errors():
        summary = run_demo(out_dir, seed=seed, progress=progress_bar, workers=workers)
    typer.echo(summary)


#: The commands of the other command modules, in the order ``lesionkit --help`` lists them.
for _command_function in (train, predict, changes, models, view, evaluate, report, crossval):
    app.command()(_command_function)


def _with_user_errors(function: Callable[..., None]) -> Callable[..., None]:
    """A task command whose input errors end in one line and a non-zero exit."""

    @functools.wraps(function)
    def command(*args: object, **kwargs: object) -> None:
        with user_errors():
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
