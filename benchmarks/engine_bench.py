"""Speed and memory of the training and inference engine (enhance-r1's network).

Measures, on CPU or CUDA, each case in a fresh process so that its peak memory is its
own (resident set on a CPU, ``torch.cuda.max_memory_allocated`` on CUDA):

- training throughput (32^3 patches per second, forward + backward + Adam step);
- at 2 mm (80 x 96 x 80) and 1 mm (160 x 192 x 160): one forward pass of the network
  over the whole volume (padded to the network's multiple) and the task's sliding-window
  inference (windows fitted to the volume, Gaussian blending), each with its own peak,
  and their time ratio, timed alternately in one process;
- the 40-member ensemble (5 folds x 8 mirror flips) through the engine's own
  :func:`lesionkit.infer.predict_arrays` (streamed mean and variance);
- how time and peak memory grow from 2 mm to 1 mm (8 times the voxels);
- threads: one training step with 1 and with all cores, on an idle machine and beside
  one busy process, and the count :func:`lesionkit.threads.default_threads` picks.

Times are the median of 3 runs after a warm-up; network weights are untrained (time
does not depend on them). On a CPU both inference paths use channels-last memory, as
the engine does.

Run: ``python benchmarks/engine_bench.py --out bench-out [--device cuda]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import in_child, peak_rss_mib, sync

#: Brain grids (voxels) per resolution (mm).
SHAPES = {2: (80, 96, 80), 1: (160, 192, 160)}
FOLDS, FLIPS = 5, 8
REPEATS = 3


def _network(device: str):  # -> (task, network)
    import torch

    from lesionkit.models import build_network
    from lesionkit.tasks import get_task

    task = get_task("enhance-r1")
    torch.manual_seed(0)
    return task, build_network(task.network, 1, 1, **task.network_kwargs).to(device)


def _median_seconds(run, device: str) -> float:
    """Median seconds of ``run()`` over :data:`REPEATS` runs after one warm-up run."""
    run()
    times = []
    for _ in range(REPEATS):
        sync(device)
        start = time.perf_counter()
        run()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peak(device: str) -> float:
    import torch

    return (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else peak_rss_mib())


def _training_rate(device: str, batch_size: int = 8, steps: int = 5) -> dict:
    """Patches per second of training steps (forward, backward, Adam)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    task, network = _network(device)
    optimiser = torch.optim.Adam(network.parameters(), lr=task.learning_rate)
    patches = torch.randn(batch_size, 1, *task.sampler.patch_size, device=device)
    network.train()

    def step() -> None:
        loss = F.mse_loss(network(patches), patches)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    seconds = _median_seconds(lambda: [step() for _ in range(steps)], device)
    return {"value": steps * batch_size / seconds, "peak": _peak(device)}


def _inference(shape: tuple[int, int, int], device: str, how: str) -> dict:
    """Seconds and peak of one whole-volume pass ("whole") or sliding windows ("sliding")."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    from lesionkit.infer import channels_last

    task, network = _network(device)
    network.eval()
    x = torch.randn(1, 1, *shape, device=device)
    detail = ""
    if how == "whole":
        multiple = 2 ** len(task.network_kwargs["strides"])
        x = F.pad(x, [p for s in reversed(shape) for p in (0, (-s) % multiple)])
        x = channels_last(network, x)
        run = lambda: network(x)  # noqa: E731
        detail = f"padded to {tuple(x.shape[2:])}"
    else:
        x = channels_last(network, x)
        run = lambda: task.inference.predict(network, x)  # noqa: E731
        window, overlap = task.inference.tiling(shape)
        detail = (f"windows {window}, overlap {tuple(round(o, 3) for o in overlap)} "
                  f"(largest {task.inference.window}, least {task.inference.overlap})")
    with torch.inference_mode():
        seconds = _median_seconds(run, device)
    return {"seconds": seconds, "peak": _peak(device), "detail": detail}


def _interleaved(shape: tuple[int, int, int], device: str, repeats: int = 5) -> dict:
    """Median seconds of the whole-volume pass and of sliding windows, timed alternately
    in one process with one network (the fairest ratio: same memory, same caches)."""
    import statistics

    import torch
    import torch.nn.functional as F  # noqa: N812

    from lesionkit.infer import channels_last

    task, network = _network(device)
    network.eval()
    x = channels_last(network, torch.randn(1, 1, *shape, device=device))
    multiple = 2 ** len(task.network_kwargs["strides"])
    padded = F.pad(x, [p for s in reversed(shape) for p in (0, (-s) % multiple)])
    runs = {"whole": lambda: network(padded), "sliding": lambda: task.inference.predict(network, x)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.inference_mode():
        for run in runs.values():
            run()
        for _ in range(repeats):
            for name, run in runs.items():
                sync(device)
                start = time.perf_counter()
                run()
                sync(device)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _ensemble(shape: tuple[int, int, int], device: str) -> dict:
    """Seconds and peak of 5 folds x 8 flips through ``predict_arrays``."""
    import numpy as np

    from lesionkit.infer import predict_arrays
    from lesionkit.model_folder import FoldModel, TrainedModel, make_network

    task, _ = _network(device)
    identity = {s.key: {"shift": 0.0, "scale": 1.0}
                for s in (*task.prediction_inputs, *task.dense_targets)}
    folds = tuple(FoldModel(make_network(task, 1).to(device).eval(), identity)
                  for _ in range(FOLDS))
    model = TrainedModel(Path("."), task, {}, folds)
    inputs = {s.key: np.random.default_rng(0).random((1, *shape), dtype=np.float32)
              for s in task.prediction_inputs}
    small = {k: v[..., :32, :32, :32] for k, v in inputs.items()}
    predict_arrays(model, small, tta=1, device=device, folds=folds[:1])  # warm-up
    sync(device)
    start = time.perf_counter()
    predict_arrays(model, inputs, tta=FLIPS, device=device)
    sync(device)
    return {"seconds": time.perf_counter() - start, "peak": _peak(device)}


def _thread_step(threads: int, busy: bool) -> dict:
    """Seconds of one training step (batch of 8 32^3 patches) with ``threads`` threads,
    on an idle machine or beside one busy process; and the default thread count."""
    import torch

    from lesionkit.threads import default_threads

    competitor = (subprocess.Popen([sys.executable, "-c", "while True: pass"])
                  if busy else None)
    try:
        time.sleep(1.0)
        chosen = default_threads()
        torch.set_num_threads(threads)
        rate = _training_rate("cpu", steps=2)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    return {"seconds": 8 / rate["value"], "default": chosen}


def bench_engine(out_dir: str | Path, device: str = "cpu") -> list[dict]:
    """Benchmark the engine; write ``engine_bench.json`` under ``out_dir``.

    Args:
        out_dir: Folder for the JSON results.
        device: "cpu" or "cuda".

    Returns:
        One dict per measurement: case, resolution_mm, value, unit, peak_mib, goal, detail.
    """
    import os

    import numpy as np
    import torch

    threads = torch.get_num_threads()
    rows: list[dict] = []

    def record(case: str, value: float, unit: str, resolution: int | str = "",
               peak: float | None = None, goal: str = "", detail: str = "") -> None:
        rows.append({"case": case, "resolution_mm": resolution, "value": round(float(value), 4),
                     "unit": unit, "peak_mib": "" if peak is None else round(peak, 1),
                     "goal": goal, "detail": detail})

    result = in_child(_training_rate, device)
    record("training throughput", result["value"], "patches/s", peak=result["peak"],
           detail=f"U-Net 32-64-128-256, batch 8 of 32^3, {device}, {threads} threads")
    times: dict[int, dict[str, float]] = {}
    peaks: dict[int, dict[str, float]] = {}
    for resolution, shape in SHAPES.items():
        grid = "x".join(map(str, shape))
        for how, name in (("whole", "one forward pass, whole volume"),
                          ("sliding", "sliding window, 1 flip")):
            result = in_child(_inference, shape, device, how)
            times.setdefault(resolution, {})[how] = result["seconds"]
            peaks.setdefault(resolution, {})[how] = result["peak"]
            record(name, result["seconds"], "s", resolution, result["peak"],
                   detail=f"{grid}; {result['detail']}")
        paired = in_child(_interleaved, shape, device)
        record("sliding window / whole volume", paired["sliding"] / paired["whole"], "x",
               resolution, goal="<= 1.1",
               detail=f"timed alternately in one process, median of 5: {paired['sliding']:.3f} "
                      f"s against {paired['whole']:.3f} s (channels-last on CPU)")
        result = in_child(_ensemble, shape, device)
        times[resolution]["ensemble"] = result["seconds"]
        peaks[resolution]["ensemble"] = result["peak"]
        record(f"ensemble, {FOLDS} folds x {FLIPS} flips", result["seconds"], "s", resolution,
               result["peak"], goal="peak < 4096 MiB" if resolution == 1 else "",
               detail=f"{grid}; predict_arrays, streamed mean and variance")
    voxels = np.prod(SHAPES[1]) / np.prod(SHAPES[2])
    for how in ("whole", "sliding", "ensemble"):
        record(f"1 mm / 2 mm, {how}", times[1][how] / times[2][how], "x (time)",
               peak=None, detail=f"peak {peaks[1][how] / peaks[2][how]:.2f}x; "
                                 f"voxels {voxels:.0f}x")
    if device == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        for busy in (False, True):
            for count in sorted({1, cores}):
                result = in_child(_thread_step, count, busy)
                record(f"training step, {count} thread(s), "
                       + ("beside 1 busy process" if busy else "idle machine"),
                       result["seconds"], "s",
                       detail=f"default_threads() picks {result['default']}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "engine_bench.json").write_text(json.dumps(rows, indent=2))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-out")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    for row in bench_engine(args.out, args.device):
        print(f"{row['case']:<48} {row['resolution_mm']!s:>3} {row['value']:>10} "
              f"{row['unit']:<10} {row['peak_mib']!s:>8} {row['detail']}")


if __name__ == "__main__":
    main()
