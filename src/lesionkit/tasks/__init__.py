"""Task registry: CLI names -> :class:`~lesionkit.tasks.task.Task` objects.

Adding a task is one module in this package and one line below. A task module may also
declare extra CLI commands (``COMMANDS``), its demo step (``DEMO``) and the recipes
of its shipped models (``SHIPPED_MODELS``); ``lesionkit``'s
CLI and demo iterate the lists here and name no task themselves.
"""

from __future__ import annotations

from lesionkit.tasks import (
    contrast_amplify,
    enhance_r1,
    fcd_classify,
    mrf_lesion,
    rim_classify,
)
from lesionkit.tasks.task import Command, DemoStep, Task

#: The modules of the registered tasks, in demo order.
MODULES = (enhance_r1, mrf_lesion, fcd_classify, contrast_amplify, rim_classify)

TASKS: dict[str, Task] = {
    enhance_r1.ENHANCE_R1.name: enhance_r1.ENHANCE_R1,
    **mrf_lesion.MRF_LESION_TASKS,
    **fcd_classify.FCD_TASKS,
    **contrast_amplify.CONTRAST_AMPLIFY_TASKS,
    rim_classify.RIM_CLASSIFY.name: rim_classify.RIM_CLASSIFY,
}

#: Extra CLI commands declared by task modules.
COMMANDS: tuple[Command, ...] = tuple(c for m in MODULES for c in getattr(m, "COMMANDS", ()))

#: Demo steps declared by task modules, in order.
DEMO_STEPS: tuple[DemoStep, ...] = tuple(m.DEMO for m in MODULES if hasattr(m, "DEMO"))

#: Recipes of the shipped phantom-trained models (``make models``), in order.
SHIPPED_RECIPES: tuple[DemoStep, ...] = tuple(
    r for m in MODULES for r in getattr(m, "SHIPPED_MODELS", ()))


def get_task(name: str) -> Task:
    """The registered task called ``name``.

    Raises:
        KeyError: Unknown name; the message lists the known tasks.
    """
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


__all__ = ["COMMANDS", "DEMO_STEPS", "SHIPPED_RECIPES", "TASKS", "Task", "get_task"]
