"""Every `lesionkit` and `lesionkit-bids` command in the README and docs/ parses: the
command and its options exist, values have the right type and choices, required
arguments are there. Documentation that drifts from the CLI fails here, not in a user's
terminal. Nothing is run: the commands come from the fenced code blocks and go through
the CLI's own argument parsing only (synopsis lines with ``{a,b}`` choices are skipped;
``[--option value]``, the documents' optional part, is read as given, and a shell
command substitution ``$(...)`` as the word ``01``)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROGRAMS = ("lesionkit", "lesionkit-bids")


def _blocks(text: str) -> list[str]:
    """The fenced code blocks of a Markdown text, line continuations joined."""
    found = re.findall(r"^\s*```[a-z]*\n(.*?)^\s*```", text, flags=re.S | re.M)
    return [re.sub(r"\\\n\s*", " ", block) for block in found]


def _commands(block: str) -> list[list[str]]:
    """The argument lists of the block's lesionkit calls, shell variables of the block
    (``NAME="..."``) expanded; ``$NAME`` of a variable set elsewhere is dropped."""
    variables: dict[str, str] = {}
    calls = []
    for line in block.splitlines():
        line = line.split(" #")[0].strip()
        if line.startswith("#"):
            continue
        assignment = re.fullmatch(r"([A-Z_][A-Z0-9_]*)=\"(.*)\"", line)
        if assignment:
            variables[assignment[1]] = assignment[2]
            continue
        line = re.sub(r"\$\{?([A-Z_][A-Z0-9_]*)\}?", lambda m: variables.get(m[1], ""), line)
        line = re.sub(r"\$\([^)]*\)", "01", line).replace("[--", "--").replace("]", "")
        for part in re.split(r"&&|;|\|", line):
            try:
                words = shlex.split(part)
            except ValueError:
                continue
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # OMP_NUM_THREADS=1 ...
                words = words[1:]
            if words and words[0] in PROGRAMS and not any("{" in w for w in words):
                calls.append(words)
    return calls


def _documented() -> list[tuple[str, list[str]]]:
    return [(f"{path.name}: {' '.join(words)[:80]}", words) for path in DOCUMENTS
            for block in _blocks(path.read_text()) for words in _commands(block)]


def _cli(program: str) -> typer.core.TyperCommand | typer.core.TyperGroup:
    if program == "lesionkit":
        from lesionkit.cli import app
    else:
        from lesionkit.bids_app import app
    return typer.main.get_command(app)


def _options(command: typer.core.TyperCommand) -> set[str]:
    return {name for param in command.params for name in (*param.opts, *param.secondary_opts)
            if name.startswith("-")} | {"--help"}


DOCUMENTED = _documented()


def test_the_documents_hold_commands() -> None:
    assert len(DOCUMENTED) > 50
    assert {words[0] for _, words in DOCUMENTED} == set(PROGRAMS)


@pytest.mark.parametrize(("where", "words"), DOCUMENTED, ids=[w for w, _ in DOCUMENTED])
def test_documented_command_and_options_exist(where: str, words: list[str]) -> None:
    command = _cli(words[0])
    arguments = words[1:]
    if hasattr(command, "commands"):  # a group: the first word names the command
        if not arguments or arguments[0] in ("--help", "--version"):
            return
        assert arguments[0] in command.commands, f"{where}: no command {arguments[0]!r}"
        command, arguments = command.commands[arguments[0]], arguments[1:]
    known = _options(command)
    unknown = [w.split("=")[0] for w in arguments
               if w.startswith("--") and w.split("=")[0] not in known]
    assert not unknown, f"{where}: {words[0]} has no option {', '.join(unknown)}"
    if words[0] == "lesionkit-bids":
        from lesionkit.bids_app import spread

        arguments = spread(arguments)
    command.make_context(words[0], list(arguments))  # types, choices, required arguments


def test_every_command_has_an_example_in_the_readme() -> None:
    shown = {words[1] for where, words in DOCUMENTED
             if where.startswith("README.md") and words[0] == "lesionkit" and len(words) > 1}
    assert set(_cli("lesionkit").commands) <= shown
