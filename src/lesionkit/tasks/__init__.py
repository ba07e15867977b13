"""Task registry: CLI names -> :class:`~lesionkit.tasks.task.Task` objects.

Adding a task is one module in this package and one line below.
"""

from __future__ import annotations

from lesionkit.tasks.enhance_r1 import ENHANCE_R1
from lesionkit.tasks.fcd_classify import FCD_TASKS
from lesionkit.tasks.mrf_lesion import MRF_LESION_TASKS
from lesionkit.tasks.task import Task

TASKS: dict[str, Task] = {
    ENHANCE_R1.name: ENHANCE_R1,
    **FCD_TASKS,
    **MRF_LESION_TASKS,
}


def get_task(name: str) -> Task:
    """The registered task called ``name``.

    Raises:
        KeyError: Unknown name; the message lists the known tasks.
    """
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


__all__ = ["TASKS", "Task", "get_task"]
