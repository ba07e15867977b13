"""Data benchmarks: training peak memory against the number of subjects, and data-loader
throughput of the subject store with and without worker processes.

On a 2 mm enhance-r1 phantom cohort of 16 subjects (simulated once, kept in ``out_dir``):

- training peak memory: ``lesionkit.training.train`` for one epoch of 64 patches on
  4 and on 16 subjects (a small 16-32-64 U-Net, CPU, one train/validation split). The
  store memory-maps its arrays, so the goal is a 16/4 peak ratio of at most 1.10;
- loader throughput: examples per second of a ``DataLoader`` (batch of 16, shuffled)
  over 8 subjects, for enhance-r1's grid sampler (32^3 patches read from memory-mapped
  arrays; 200 batches timed) and for a TorchIO queue sampler (16 patches per whole
  subject loaded; 40 batches, i.e. 5 passes of the queue), with 0 and 2 workers. Two
  warm-up batches are not timed; the page cache is warm (the arrays were just written).

Each measurement runs in a fresh (spawned) process, whose peak resident memory
(``VmHWM``: anonymous and file-backed pages, i.e. touched memory-mapped arrays too) is
its own; DataLoader and queue worker processes are not included in it.

Run alone: ``python benchmarks/data_bench.py bench-out/data``.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import in_child as _in_child
from common import peak_rss_mib as _peak_rss_mib

COHORT_SUBJECTS = 16
MEMORY_SUBJECTS = (4, 16)
LOADER_SUBJECTS = 8
LOADER_WORKERS = (0, 2)
BATCH_SIZE = 16
WARMUP_BATCHES = 2
#: Timed batches per sampler (a grid batch takes milliseconds, a queue refill seconds).
TIMED_BATCHES = {"grid": 200, "queue": 40}
RATIO_GOAL = 1.10
NETWORK_KWARGS = {"channels": (16, 32, 64), "strides": (2, 2), "norm": "batch"}


def _row(case: str, value: float, unit: str, peak_mib: float | None = None,
         seconds: float | None = None, detail: str = "") -> dict:
    """One table row; every row has every column, so the table's columns keep this order."""
    return {"benchmark": "data", "case": case, "value": float(value), "unit": unit,
            "peak_MiB": "" if peak_mib is None else round(peak_mib, 1),
            "seconds": "" if seconds is None else round(seconds, 2), "detail": detail}


def _labels(count: int) -> list[str]:
    return [f"{i:02d}" for i in range(1, count + 1)]


def _task(sampler: str = "grid"):
    """enhance-r1 with a small U-Net, every group, and the grid or a queue sampler."""
    from dataclasses import replace

    from lesionkit.tasks import get_task
    from lesionkit.tasks.strategies import QueueSampler

    task = replace(get_task("enhance-r1"), train_on={}, network_kwargs=NETWORK_KWARGS)
    if sampler == "queue":
        task = replace(task, sampler=QueueSampler(patch_size=(32, 32, 32),
                                                  samples_per_volume=16, centre_on="mask"))
    return task


def _train_peak(data: Path, model_dir: Path, count: int) -> dict:
    """Peak memory (MiB) and seconds of one short training run on the first subjects."""
    from lesionkit.training import train

    shutil.rmtree(model_dir, ignore_errors=True)
    start = time.perf_counter()
    train(_task(), data, model_dir, subjects=_labels(count), epochs=1, patches_per_epoch=64,
          device="cpu", progress=False, folds=1)
    seconds = time.perf_counter() - start
    from lesionkit.model_folder import read_config

    folds = read_config(model_dir).get("folds") or [{}]
    shutil.rmtree(model_dir, ignore_errors=True)
    return {"peak": _peak_rss_mib(), "seconds": seconds,
            "train": len(folds[0].get("train", [])),
            "validation": len(folds[0].get("validation", []))}


def _prepare(data: Path, cache: Path, count: int) -> dict:
    """Seconds and peak memory (MiB) to load, preprocess and write ``count`` subjects."""
    import numpy as np

    from lesionkit.store import SubjectStore

    store = SubjectStore(data, _task(), cache)
    start = time.perf_counter()
    store.prepare(_labels(count))
    seconds = time.perf_counter() - start
    shapes = {path.stem: list(np.load(path, mmap_mode="r").shape)
              for path in sorted((cache / "sub-01").glob("*.npy"))}
    size = sum(p.stat().st_size for p in cache.rglob("*.npy")) / 2**20
    return {"peak": _peak_rss_mib(), "seconds": seconds, "shapes": shapes, "MiB": size}


def _loader_rate(data: Path, cache: Path, count: int, sampler: str, workers: int) -> dict:
    """Examples per second of a shuffled DataLoader over the sampler's dataset."""
    import torch
    from torch.utils.data import DataLoader

    from lesionkit.store import SubjectStore

    torch.manual_seed(0)
    task, names = _task(sampler), _labels(count)
    store = SubjectStore(data, task, cache, workers=workers)
    store.prepare(names)
    stats = store.fit_normalisation(names)
    start = time.perf_counter()
    dataset = task.sampler.dataset(store, names, task, stats)
    index_seconds = time.perf_counter() - start
    loader_workers = 0 if sampler == "queue" else workers  # the queue has its own workers
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True,
                        num_workers=loader_workers, persistent_workers=loader_workers > 0)

    def batches():
        while True:  # the queue's epoch is 16 patches per subject: start it again
            yield from loader

    stream = batches()
    start = time.perf_counter()
    for _ in range(WARMUP_BATCHES):
        next(stream)
    warmup = time.perf_counter() - start
    examples = 0
    start = time.perf_counter()
    for _ in range(TIMED_BATCHES[sampler]):
        examples += len(next(stream)["input"])
    seconds = time.perf_counter() - start
    return {"rate": examples / seconds, "seconds": seconds, "examples": examples,
            "warmup": warmup, "index": index_seconds, "length": len(dataset),
            "peak": _peak_rss_mib()}


def _cohort(out_dir: Path) -> Path:
    """The 16-subject 2 mm enhance-r1 phantom, simulated once and reused."""
    from lesionkit.simulate import simulate_cohort

    data = out_dir / f"enhance-r1-2mm-{COHORT_SUBJECTS}"
    if not all((data / f"sub-{label}").is_dir() for label in _labels(COHORT_SUBJECTS)):
        simulate_cohort("enhance-r1", data, subjects=COHORT_SUBJECTS, seed=0, resolution=2)
    return data


def bench_data(out_dir: Path | str) -> list[dict]:
    """Training peak memory (4 vs 16 subjects) and loader throughput (0 vs 2 workers).

    Writes ``data_bench.json`` in ``out_dir``; returns one row per measurement.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data = _cohort(out_dir)
    rows = [_row("phantom cohort (cached)", COHORT_SUBJECTS, "subjects",
                 seconds=time.perf_counter() - start,
                 detail="enhance-r1, 2 mm (3T 2 mm / 7T 1 mm), seed 0")]

    peaks = {}
    for count in MEMORY_SUBJECTS:
        result = _in_child(_train_peak, data, out_dir / f"model-{count}", count)
        peaks[count] = result["peak"]
        rows.append(_row(f"training peak memory, {count} subjects", result["peak"], "MiB",
                         peak_mib=result["peak"],
                         seconds=result["seconds"],
                         detail=f"1 epoch of 64 patches (batch 16), U-Net 16-32-64, CPU; "
                                f"{result['train']} train / {result['validation']} "
                                "validation subjects; store prepare included"))
    low, high = MEMORY_SUBJECTS
    ratio = peaks[high] / peaks[low]
    rows.append(_row(f"training peak ratio, {high} / {low} subjects", ratio, "x",
                     detail=f"goal <= {RATIO_GOAL:.2f}: "
                            + ("met" if ratio <= RATIO_GOAL else "not met")
                            + f" ({peaks[high] - peaks[low]:+.0f} MiB)"))

    cache = out_dir / "loader-cache"
    shutil.rmtree(cache, ignore_errors=True)
    prepared = _in_child(_prepare, data, cache, LOADER_SUBJECTS)
    shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in prepared["shapes"].items())
    rows.append(_row(f"store prepare, {LOADER_SUBJECTS} subjects", prepared["seconds"], "s",
                     peak_mib=prepared["peak"], seconds=prepared["seconds"],
                     detail=f"{prepared['MiB']:.0f} MiB of arrays; per subject {shapes}"))
    for sampler, description in (("grid", "GridSampler 32^3, step 8x8x4 (memory-mapped)"),
                                 ("queue", "QueueSampler 32^3, 16 per subject, on the mask")):
        for workers in LOADER_WORKERS:
            result = _in_child(_loader_rate, data, cache, LOADER_SUBJECTS, sampler, workers)
            where = (f"DataLoader workers {workers}" if sampler == "grid"
                     else f"queue workers {workers}, DataLoader workers 0")
            rows.append(_row(f"loader, {sampler} sampler, {workers} workers", result["rate"],
                             "examples/s", peak_mib=result["peak"],
                             seconds=result["seconds"],
                             detail=f"{description}; {where}; {LOADER_SUBJECTS} subjects, "
                                    f"{result['length']} examples per epoch; "
                                    f"{result['examples']} timed after "
                                    f"{WARMUP_BATCHES} warm-up batches "
                                    f"({result['warmup']:.1f} s); dataset built in "
                                    f"{result['index']:.1f} s"))
    shutil.rmtree(cache, ignore_errors=True)
    (out_dir / "data_bench.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    from common import output_folder

    for row in bench_data(output_folder("bench-out/data", __doc__)):
        print(row)
