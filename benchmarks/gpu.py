"""Training steps and inference per task on CUDA, through the engine's own commands.

For every task of the demo: simulate a small phantom cohort (default 1 mm), train one
split for a fixed number of optimiser steps (float32, then ``--amp``; ``--compile``
when asked) and predict every subject, timing each. Seconds per step include data
loading, as in a real run; the first steps (start-up, cuDNN autotuning) are excluded by
subtracting a short run from a long one. Tasks that pretrain first train their arm
without pretraining. Peak memory is CUDA's allocator peak of the whole command.

Needs a CUDA device; without one it says so and exits with status 0 (nothing to time).
``--device cpu`` runs the same path on a CPU (bfloat16 for ``--amp``) as a check of the
script, with ``--resolution 2 --tasks enhance-r1`` to keep it short.

Run: ``python benchmarks/gpu.py --out bench-out/gpu [--resolution 1] [--compile]
[--workers 8]``;
add the printed table to BENCHMARKS.md with the GPU's name.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import in_child, peak_rss_mib, sync

SHORT_STEPS, LONG_STEPS = 5, 25


def _task_for(name: str):  # -> lesionkit.tasks.task.Task
    """The task, or its first arm that trains without pretraining."""
    from lesionkit.tasks import get_task
    from lesionkit.training import pretraining_stages

    task = get_task(name)
    if not pretraining_stages(task):
        return task
    for arm in task.arms:
        variant = task.arm(arm)
        if not pretraining_stages(variant):
            return variant
    return replace(task, pretraining=None)


def _peak(device: str) -> float:
    import torch

    return (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else peak_rss_mib())


def _train_seconds(name: str, data: Path, model: Path, steps: int, amp: bool,
                   compile_network: bool, device: str, workers: int = 0) -> dict:
    """Seconds of a training run of ``steps`` optimiser steps and its peak (MiB)."""
    from lesionkit.training import train

    options = {"compile_network": True} if compile_network else {}
    start = time.perf_counter()
    train(_task_for(name), data, model, folds=1, epochs=1000, max_steps=steps, device=device,
          amp=amp, progress=False, overwrite=True, workers=workers, **options)
    sync(device)
    return {"seconds": time.perf_counter() - start, "peak": _peak(device)}


def _predict_seconds(model: Path, data: Path, out: Path, amp: bool, device: str) -> dict:
    """Seconds per subject of ``predict`` and its peak (MiB)."""
    from lesionkit.bids import BIDSDataset
    from lesionkit.infer import predict

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    predict(model, data, device=device, progress=False, out_dir=out, amp=amp)
    sync(device)
    subjects = len(BIDSDataset(data).subjects())
    return {"seconds": (time.perf_counter() - start) / subjects, "peak": _peak(device)}


def bench_gpu(out_dir: str | Path, resolution: int = 1, subjects: int = 4,
              compile_network: bool = False, device: str = "cuda",
              tasks: tuple[str, ...] = (), workers: int = 0) -> list[dict]:
    """Time training steps and prediction per task; write ``gpu_bench.json``."""
    import torch

    from lesionkit.simulate import simulate_cohort
    from lesionkit.tasks import DEMO_STEPS

    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to time")
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "none (CPU)"
    rows = []
    for step in DEMO_STEPS:
        if tasks and step.task not in tasks:
            continue
        data = out_dir / f"{step.cohort}-{resolution}mm"
        if not data.is_dir():
            simulate_cohort(step.cohort, data, subjects=subjects, seed=0,
                            resolution=resolution, workers=workers)
            if step.prepare is not None:
                step.prepare(data)
        for amp in (False, True):
            precision = ("16-mixed" if device == "cuda" else "bf16-mixed") if amp else "32-true"
            model = out_dir / f"model-{step.task}-{precision}"
            runs = [in_child(_train_seconds, step.task, data, model, n, amp, compile_network,
                             device, workers) for n in (SHORT_STEPS, LONG_STEPS)]
            per_step = (runs[1]["seconds"] - runs[0]["seconds"]) / (LONG_STEPS - SHORT_STEPS)
            rows.append({"task": step.task, "case": "training step", "precision": precision,
                         "compile": compile_network, "value": round(per_step, 4),
                         "unit": "s", "peak_mib": round(runs[1]["peak"], 1), "gpu": gpu,
                         "resolution_mm": resolution, "workers": workers})
            result = in_child(_predict_seconds, model, data, out_dir / "predictions", amp,
                              device)
            rows.append({"task": step.task, "case": "predict, per subject",
                         "precision": precision, "compile": False,
                         "value": round(result["seconds"], 4), "unit": "s",
                         "peak_mib": round(result["peak"], 1), "gpu": gpu,
                         "resolution_mm": resolution})
            print(rows[-2], rows[-1], flush=True)
    (out_dir / "gpu_bench.json").write_text(json.dumps(rows, indent=2))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-out/gpu")
    parser.add_argument("--resolution", type=int, default=1, choices=(1, 2))
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tasks", default="", help="comma-separated (default: all)")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes that simulate and load training data")
    args = parser.parse_args(argv)
    rows = bench_gpu(args.out, args.resolution, args.subjects, args.compile, args.device,
                     tuple(t for t in args.tasks.split(",") if t), args.workers)
    if rows:
        from run import markdown_table

        print("\n".join(markdown_table(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
