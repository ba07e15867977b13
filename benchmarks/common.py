"""Helpers shared by the benchmark suites: a fresh process per measurement, timing, peaks.

A process's peak resident memory only ever grows, so a figure taken after another
measurement in the same process reports the larger of the two. Each measurement runs
in a process of its own (:func:`in_child`) and reports its own peak (:func:`peak_mib`).
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import resource
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


def peak_rss_mib() -> float:
    """This process's peak resident memory (MiB).

    ``VmHWM`` belongs to the process image, so a spawned child reports its own peak;
    ``ru_maxrss`` would carry over the parent's peak across the exec.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device: str) -> None:
    """Wait for queued CUDA work (no-op on a CPU)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(run: Callable[[], object], warm_up: Callable[[], object], device: str
          ) -> tuple[float, float]:
    """Seconds of ``run()`` after ``warm_up()`` and the peak memory (MiB): CUDA's
    allocator peak of that run on a GPU, the process's resident peak on a CPU."""
    import torch

    warm_up()
    sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run()
    sync(device)
    seconds = time.perf_counter() - start
    if device.startswith("cuda"):
        return seconds, torch.cuda.max_memory_allocated() / 2**20
    return seconds, peak_rss_mib()


def _child(function: Callable[..., Any], args: tuple, results: multiprocessing.Queue,
           start_method: str) -> None:
    # A spawned child inherits "spawn" as its default start method; put back the
    # parent's (fork on Linux), so DataLoader and queue workers start as they would in
    # a training run instead of re-importing torch and unpickling the dataset.
    multiprocessing.set_start_method(start_method, force=True)
    try:
        results.put(("ok", function(*args)))
    except BaseException:  # reported to the parent, which raises
        results.put(("error", traceback.format_exc()))


def in_child(function: Callable[..., Any], *args: Any, timeout: float = 1800) -> Any:
    """Run ``function(*args)`` in a fresh process so its peak memory is its own."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_child, args=(function, args, results,
                                                   multiprocessing.get_start_method()))
    process.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                status, value = results.get(timeout=2)
                break
            except queue_module.Empty:
                if not process.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"{function.__name__} died or hung (exit code "
                                       f"{process.exitcode})") from None
    finally:
        process.join(timeout=60)
        if process.is_alive():
            process.kill()
    if status != "ok":
        raise RuntimeError(f"{function.__name__} failed in its process:\n{value}")
    return value


def output_folder(default: str, doc: str | None) -> str:
    """The output folder a benchmark run alone is given (its first argument, else
    ``default``); ``-h``/``--help`` prints the benchmark's docstring and exits, and any
    other option is refused, so that no option is taken for a folder."""
    import sys

    given = sys.argv[1] if len(sys.argv) > 1 else default
    if given in ("-h", "--help"):
        print((doc or "").strip() or f"usage: python {sys.argv[0]} [OUT_DIR]")
        raise SystemExit(0)
    if given.startswith("-"):
        print(f"usage: python {sys.argv[0]} [OUT_DIR] (default {default}); {given}: "
              "expected an output folder, found an option", file=sys.stderr)
        raise SystemExit(2)
    return given
