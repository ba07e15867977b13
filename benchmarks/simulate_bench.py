"""Phantom benchmarks: wall and CPU time and peak memory to simulate one subject per cohort.

Each cohort is written with one subject at ``--resolution 2`` and ``--resolution 1``
(enhance-r1: 3T 2 mm / 7T 1 mm, and 3T 1 mm / 7T 0.5 mm). The template is loaded once
before timing (it is cached per process; loading costs about 2-3 s). Peak memory is
what tracemalloc sees (numpy arrays included) during a second, traced run.

Run alone: ``python benchmarks/simulate_bench.py bench-out/simulate``.
"""

from __future__ import annotations

import shutil
import time
import tracemalloc
from pathlib import Path


def _timed(task: str, folder: Path, resolution: int) -> tuple[float, float]:
    """Wall and CPU seconds (all threads of this process) of one single-subject cohort."""
    from lesionkit.simulate import simulate_cohort

    start, cpu = time.perf_counter(), time.process_time()
    simulate_cohort(task, folder, 1, 0, resolution)
    return time.perf_counter() - start, time.process_time() - cpu


def bench_simulation(out_dir: str | Path, resolutions: tuple[int, ...] = (2, 1),
                     trace_memory: bool = True) -> list[dict]:
    """Seconds (and peak MiB) to simulate and write one subject of each cohort."""
    from lesionkit.simulate import COHORTS, simulate_cohort
    from lesionkit.simulate.anatomy import load_template

    out_dir = Path(out_dir)
    start = time.perf_counter()
    load_template()
    rows = [{"benchmark": "simulate", "case": "load template (once per process)",
             "resolution_mm": "", "seconds": time.perf_counter() - start}]
    for resolution in resolutions:
        for task in COHORTS:
            folder = out_dir / f"{task}-res{resolution}"
            shutil.rmtree(folder, ignore_errors=True)
            seconds, cpu = _timed(task, folder, resolution)
            row = {"benchmark": "simulate", "case": f"{task}, 1 subject",
                   "resolution_mm": resolution, "seconds": seconds, "cpu_seconds": cpu}
            if trace_memory:
                shutil.rmtree(folder, ignore_errors=True)
                tracemalloc.start()
                simulate_cohort(task, folder, 1, 0, resolution)
                row["peak_MiB"] = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
            row["output_MiB"] = sum(p.stat().st_size for p in folder.rglob("*")
                                    if p.is_file()) / 2**20
            rows.append(row)
            print(row, flush=True)
    return rows


if __name__ == "__main__":
    from common import output_folder

    bench_simulation(output_folder("bench-out/simulate", __doc__))
