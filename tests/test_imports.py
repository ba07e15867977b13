"""Import structure: no cycles inside lesionkit, tasks import only the contract and leaves,
and the engine names no task."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from lesionkit.tasks import TASKS

SOURCE = Path(__file__).resolve().parents[1] / "src" / "lesionkit"

#: Modules a task module may import: the contract and leaf modules.
TASK_IMPORTS = ("lesionkit.tasks", "lesionkit.metrics", "lesionkit.stats", "lesionkit.report",
                "lesionkit.io", "lesionkit.bids", "lesionkit.volume", "lesionkit.summaries",
                "lesionkit.lesions", "lesionkit.lesion_edge", "lesionkit.explain", "lesionkit.mrf",
                "lesionkit.models", "lesionkit.pretrained", "lesionkit.slicewise",
                "lesionkit.units", "lesionkit")

#: Engine modules that must not name a task.
ENGINE = ("training.py", "infer.py", "data.py", "cli.py", "demo.py", "crossval.py",
          "evaluation.py", "model_folder.py", "shipped.py", "build_models.py", "bids_app.py",
          "changes.py", "session_maps.py", "longitudinal.py", "losses.py", "callbacks.py",
          "distributed.py", "writers.py", "splits.py", "normalisation.py", "store.py",
          "files.py", "console.py", "cli_options.py", "train_commands.py",
          "prediction_commands.py")


def _module(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every lesionkit module a file imports, at top level or inside functions; importing
    ``a.b.c`` also imports the packages ``a.b`` and ``a`` (their ``__init__``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            found |= {".".join(parts[:n]) for n in range(2, len(parts) + 1)}
    modules = {_module(p) for p in SOURCE.rglob("*.py")}
    return {name for name in found if name in modules and name.startswith("lesionkit.")}


# A module's own parent packages are initialised before it (no cycle through them).
GRAPH = {_module(p): {m for m in _imports(p) if not _module(p).startswith(f"{m}.")} - {_module(p)}
         for p in SOURCE.rglob("*.py")}


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = 1, stack.append(node)
        for child in sorted(GRAPH.get(node, ())):
            if state.get(child) == 1:
                return [*stack[stack.index(child):], child]
            if child not in state and (found := visit(child)):
                return found
        state[node], _ = 2, stack.pop()
        return None

    for node in sorted(GRAPH):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_inside_lesionkit() -> None:
    assert _cycle() is None, " -> ".join(_cycle() or [])


def test_the_cycle_check_finds_a_cycle() -> None:
    GRAPH["lesionkit.io"] = GRAPH["lesionkit.io"] | {"lesionkit.bids"}
    try:
        assert _cycle() is not None
    finally:
        GRAPH["lesionkit.io"] = GRAPH["lesionkit.io"] - {"lesionkit.bids"}


@pytest.mark.parametrize("path", sorted((SOURCE / "tasks").glob("*.py")), ids=lambda p: p.name)
def test_tasks_import_only_the_contract_and_leaves(path: Path) -> None:
    allowed = {m for m in GRAPH if m.startswith(TASK_IMPORTS[:-1]) or m == "lesionkit"}
    assert _imports(path) <= allowed, sorted(_imports(path) - allowed)


@pytest.mark.parametrize("name", ENGINE)
def test_engine_names_no_task(name: str) -> None:
    text = (SOURCE / name).read_text()
    code = re.sub(r'""".*?"""', "", text, flags=re.DOTALL)  # docstrings may give examples
    code = "\n".join(line for line in code.splitlines() if "help=" not in line)
    named = [task for task in TASKS if task in code]
    assert not named, f"{name} names {named}"
