"""Distributed training on a CPU: 2 DDP processes (gloo) against 1 process.

Trains enhance-r1 (a small U-Net, 16-32-64) on a 2 mm phantom cohort through the
command line, once with one process using every core and once with ``--devices 2``
(Lightning DDP, gloo backend, one thread per process on a 2-core machine), the same
seed, epochs and examples per epoch. Reports seconds per optimiser step and training
examples per second in the steady state (epochs after the first, from rank 0's
``fold-0/metrics.csv``; an epoch includes its validation), the ratios, and the start-up
(first epoch and the whole command). Each rank sees its own share of an epoch, so 2
processes take half the steps, each on a batch of its own.

Run alone: ``python benchmarks/ddp_bench.py bench-out/ddp``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

EPOCHS, EXAMPLES = 3, 512


def _row(case: str, value: float, unit: str, **extra) -> dict:
    return {"benchmark": "ddp", "case": case, "value": float(value), "unit": unit, **extra}


def _train(data: Path, model: Path, processes: int) -> dict:
    """Train through the CLI; return rank 0's fold metrics and the wall time."""
    shutil.rmtree(model, ignore_errors=True)
    command = [str(Path(sys.executable).parent / "lesionkit"), "train", "enhance-r1", str(data),
               str(model),
               "--device", "cpu", "--devices", str(processes), "--folds", "1",
               "--epochs", str(EPOCHS), "--patches-per-epoch", str(EXAMPLES),
               "--channels", "16,32,64", "--no-progress", "--seed", "0"]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True,
                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - start
    import csv

    with (model / "fold-0" / "metrics.csv").open() as handle:
        epochs = list(csv.DictReader(handle))
    first, last = epochs[0], epochs[-1]
    return {"steps": int(last["step"]) - int(first["step"]),
            "seconds": float(last["seconds"]) - float(first["seconds"]),
            "first_epoch": float(first["seconds"]), "wall": wall}


def bench_ddp(out_dir: Path | str) -> list[dict]:
    """Time one and two CPU training processes; write ``ddp_bench.json``."""
    from lesionkit.simulate import simulate_cohort
    from lesionkit.tasks import get_task

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / "enhance-r1-2mm"
    if not data.is_dir():
        simulate_cohort("enhance-r1", data, subjects=6, seed=0, resolution=2)
    batch = get_task("enhance-r1").batch_size
    rows, per_step, rate = [], {}, {}
    for processes in (1, 2):
        result = _train(data, out_dir / f"model-{processes}", processes)
        per_step[processes] = result["seconds"] / max(result["steps"], 1)
        rate[processes] = result["steps"] * batch * processes / result["seconds"]
        rows.append(_row(f"{processes} process(es): seconds per optimiser step",
                         per_step[processes], "s",
                         detail=f"epochs 2-{EPOCHS}: {result['steps']} steps of {batch} x "
                                f"{processes} examples in {result['seconds']:.2f} s; first epoch "
                                f"{result['first_epoch']:.1f} s, command {result['wall']:.1f} s"))
    rows.append(_row("2-process DDP step time / 1-process", per_step[2] / per_step[1], "x",
                     detail="each DDP step trains on twice the examples"))
    rows.append(_row("2-process DDP throughput / 1-process", rate[2] / rate[1], "x",
                     detail="training examples per second"))
    (out_dir / "ddp_bench.json").write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    from common import output_folder

    for row in bench_ddp(output_folder("bench-out/ddp", __doc__)):
        print(row)
