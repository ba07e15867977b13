"""What the command line prints when something goes wrong, and its progress bars.

One error path for every lesionkit command (:func:`run_app`, used by the ``lesionkit``
and ``lesionkit-bids`` entry points):

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
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import typer

#: What an interrupted command keeps and how to continue (set by the running command).
_ON_INTERRUPT: list[str] = []


def one_line(text: str) -> str:
    """``text`` on one line, runs of white space as one space."""
    return " ".join(str(text).split())


def fail(message: str) -> None:
    """Print one error line to stderr and exit with status 1."""
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code=1)


def on_interrupt(message: str) -> None:
    """Say what Ctrl-C keeps for the command that is running."""
    _ON_INTERRUPT[:] = [message]


def traceback_file(prog_name: str = "lesionkit") -> str:
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
        typer.echo(f"{kind}: {one_line(error.format_message())}{where}", err=True)
        return error.exit_code
    except (typer.Abort, KeyboardInterrupt):
        status = 130
    except InputError as error:
        typer.echo(f"error: {one_line(str(error))}", err=True)
        return 1
    except OSError as error:
        # Unwritable folders, full disks, paths that are files: the file and the reason.
        typer.echo(f"error: {one_line(os_error(error))}", err=True)
        return 1
    except Exception as error:  # the one place that catches everything
        path = traceback_file(prog_name)
        typer.echo(f"error: unexpected {type(error).__name__}: "
                   f"{one_line(str(error))[:300]} (a lesionkit bug; full traceback in "
                   f"{path})", err=True)
        return 1
    if status == 130:  # Ctrl-C (Typer turns it into exit status 130)
        kept = _ON_INTERRUPT[0] if _ON_INTERRUPT else "nothing was half-written"
        typer.echo(f"interrupted: {kept}", err=True)
    return status if isinstance(status, int) else 0


def os_error(error: OSError) -> str:
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
def user_errors() -> Iterator[None]:
    """Turn lesionkit's input errors into one line and a non-zero exit."""
    from lesionkit.io import InputError

    try:
        yield
    except InputError as error:
        fail(str(error))
    except FileExistsError as error:
        fail(os_error(error))


@contextlib.contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar; yields ``advance(n)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        task_id = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task_id, n)
