"""Command-line interface: a thin Typer layer over the public functions.

Heavy libraries (torch, MONAI, nibabel, ...) are imported inside the commands so that
``lesionkit --help`` answers quickly.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="lesionkit",
    help="Train and apply 3D deep networks that make brain lesions easier to find on MRI.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> None:
    """Print one error line to stderr and exit with status 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


@app.command()
def version() -> None:
    """Print the lesionkit version."""
    from lesionkit import __version__

    typer.echo(f"lesionkit {__version__}")


@app.callback()
def main() -> None:
    """lesionkit: enhance-r1, mrf-lesion, fcd-classify, contrast-amplify, rim-classify."""
