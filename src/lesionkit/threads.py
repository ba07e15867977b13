"""CPU threads: one count for torch and BLAS that does not oversubscribe the machine.

torch starts with one thread per core of the whole machine. On a busy or shared machine
(another job on the same cores, a cgroup quota, a SLURM allocation of a few cores on a
large node) that oversubscribes: on a 2-core machine with one other busy process, a
training step took 0.33 s with torch's two threads and 0.20 s with one (BENCHMARKS.md,
"engine"). :func:`default_threads` counts the cores this process may use (affinity
mask and cgroup quota), minus data-loader workers and the cores other processes are
running on now; :func:`use_threads` applies a count to torch and to the BLAS libraries
(OpenBLAS/MKL through threadpoolctl) alike.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: cgroup v2 CPU quota ("max" or "<quota> <period>" in microseconds).
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")

#: Kernel load figures; the fourth field is "runnable/total" scheduling entities.
LOADAVG = Path("/proc/loadavg")


def available_cores() -> int:
    """Cores this process may run on: its affinity mask, capped by a cgroup v2 quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def busy_cores(samples: int = 5, interval_s: float = 0.01) -> int:
    """Runnable threads of other processes now (median of a few readings; 0 if unknown).

    Reads the kernel's count of runnable threads (``/proc/loadavg``), less this one.
    """
    counts = []
    for i in range(samples):
        try:
            running = int(LOADAVG.read_text().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(max(0, running - 1))
        if i < samples - 1:
            time.sleep(interval_s)
    return sorted(counts)[len(counts) // 2]


def default_threads(workers: int = 0, processes: int = 1) -> int:
    """Threads for each of ``processes`` training processes on this machine (CPU DDP):
    the free cores shared among them, less ``workers`` data-loader processes each."""
    return max(1, (available_cores() - busy_cores()) // max(1, processes) - workers)


def use_threads(threads: int | None = None, workers: int = 0, processes: int = 1) -> int:
    """Set torch's and the BLAS libraries' thread counts; return the count used.

    Args:
        threads: Threads (None: :func:`default_threads`).
        workers: Data-loader worker processes that will run beside this one (each runs
            one thread: torch sets that in its workers).
        processes: Processes of one distributed run on this machine (CPU DDP).

    Returns:
        The thread count now in force.
    """
    import torch
    from threadpoolctl import threadpool_limits

    count = threads or default_threads(workers, processes)
    torch.set_num_threads(count)
    threadpool_limits(limits=count)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(count)  # for processes started from this one
    return count


def worker_init(worker_id: int, rank: int = 0) -> None:
    """DataLoader ``worker_init_fn``: one BLAS thread per worker (torch already uses one).

    Lightning seeds workers through ``worker_init_fn`` only when a loader has none
    (``seed_everything(workers=True)``); this one seeds them the same way first.
    """
    from threadpoolctl import threadpool_limits

    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id, rank=rank)
    threadpool_limits(limits=1)
