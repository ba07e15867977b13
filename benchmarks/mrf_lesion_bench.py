"""mrf-lesion benchmark: whole-brain reference reconstruction against the network.

The reference is MP-PCA denoising (dipy) plus dictionary matching of the 35 frames
(:func:`lesionkit.mrf_reference.match_dataset`); the network is the task's 2D U-Net
(35 -> 5 channels, depth 4, 32 first-level filters) predicting the same brain with the
task's inference (whole slices). Network time does not depend on its weights, so an
untrained network of the task's size is timed. One 2 mm phantom subject; on CUDA the
network also on the 1 mm grid (on a CPU that takes minutes, and the reference at 1 mm
about eight times its 2 mm time, so neither runs there). Each measurement runs in a
fresh process, whose peak resident memory (``VmHWM``; CPU) or CUDA peak allocation
is its peak.

Run alone: ``python benchmarks/mrf_lesion_bench.py bench-out/mrf-lesion``.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _row(case: str, value: float, unit: str, **extra) -> dict:
    return {"benchmark": "mrf-lesion", "case": case, "value": float(value), "unit": unit,
            **extra}


def _network_seconds(shape: tuple[int, int, int], device: str) -> tuple[float, float]:
    """Seconds and peak memory (MiB) of one prediction of a 35-frame series."""
    import torch

    from lesionkit.models import build_network
    from lesionkit.tasks import get_task

    task = get_task("mrf-lesion")
    network = build_network(task.network, 35, task.out_channels, **task.network_kwargs)
    network = network.to(device).eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 35, *shape),
                                                                  dtype=np.float32)).to(device)
    infer = task.inference.predict
    with torch.inference_mode():
        return _timed(lambda: infer(network, x), lambda: infer(network, x[..., :2]), device)


def _timed(run: Callable[[], object], warm_up: Callable[[], object], device: str
           ) -> tuple[float, float]:
    """Seconds of ``run()`` after ``warm_up()`` and the peak memory (MiB): CUDA's
    allocator peak of that run on a GPU, the process's resident peak on a CPU."""
    import torch

    warm_up()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device == "cuda":
        return seconds, torch.cuda.max_memory_allocated() / 2**20
    return seconds, _peak_rss_mib()


def _reference_seconds(data: Path, denoise: bool) -> tuple[float, float]:
    """Seconds and peak resident memory (MiB) of the reference pipeline on one subject."""
    from lesionkit.mrf import build_dictionary
    from lesionkit.mrf_reference import match_dataset

    dictionary = build_dictionary()
    start = time.perf_counter()
    match_dataset(data, denoise=denoise, dictionary=dictionary)
    return time.perf_counter() - start, _peak_rss_mib()


def _peak_rss_mib() -> float:
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


def _child(function: Callable[..., tuple[float, float]], args: tuple,
           queue: multiprocessing.Queue) -> None:
    queue.put(function(*args))


def _in_child(function: Callable[..., tuple[float, float]], *args) -> tuple[float, float]:
    """Run ``function(*args)`` in a fresh process so its peak memory is its own."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(function, args, queue))
    process.start()
    try:
        result = queue.get(timeout=1800)
    except Exception as error:  # queue.Empty: the child died (e.g. out of memory)
        raise RuntimeError(f"{function.__name__} failed (exit code {process.exitcode})"
                           ) from error
    process.join()
    return result


def bench_mrf_lesion(out_dir: Path | str) -> list[dict]:
    """Time MP-PCA + matching against the network on one 2 mm phantom subject.

    Writes ``mrf_lesion_bench.json`` in ``out_dir``; returns one row per measurement.
    """
    import nibabel as nib
    import torch

    from lesionkit.bids import BIDSDataset
    from lesionkit.mrf import build_dictionary
    from lesionkit.simulate.cohorts import simulate_cohort

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = simulate_cohort("mrf-lesion", out_dir / "phantom-2mm", subjects=1, seed=0,
                           resolution=2)
    mrf_file = BIDSDataset(data).get("01", "MRF").path
    shape = tuple(int(n) for n in nib.load(str(mrf_file)).shape[:3])
    rows = []
    seconds, peak = _in_child(_network_seconds, shape, device)
    rows.append(_row("network, 2 mm brain", seconds, "s", peak_mib=round(peak, 1),
                     detail=f"grid {shape}, {device}, untrained weights of the task's size"))
    shape_1mm = tuple(2 * n for n in shape)
    if device == "cuda":  # about 8x the 2 mm time: minutes on a CPU
        seconds_1mm, peak_1mm = _in_child(_network_seconds, shape_1mm, device)
        rows.append(_row("network, 1 mm brain", seconds_1mm, "s", peak_mib=round(peak_1mm, 1),
                         detail=f"grid {shape_1mm}, {device}"))
    atoms = len(build_dictionary())
    for denoise, name in ((False, "matching only"), (True, "MP-PCA + matching")):
        elapsed, reference_peak = _in_child(_reference_seconds, data, denoise)
        rows.append(_row(f"reference {name}, 2 mm brain", elapsed, "s",
                         peak_mib=round(reference_peak, 1),
                         detail=f"{atoms} atoms, chunked matching"))
    rows.append(_row("speed-up, 2 mm (MP-PCA + matching / network)", elapsed / seconds, "x",
                     detail="goal >= 50x; study: about 3 h against 1 min"))
    (out_dir / "mrf_lesion_bench.json").write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    for row in bench_mrf_lesion(sys.argv[1] if len(sys.argv) > 1 else "bench-out/mrf-lesion"):
        print(row)
