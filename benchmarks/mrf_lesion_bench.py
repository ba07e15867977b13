"""mrf-lesion benchmark: whole-brain reference reconstruction against the network.

The reference is MP-PCA denoising (dipy) plus dictionary matching of the 35 frames
(:func:`lesionkit.mrf_reference.match_dataset`); the network is the task's 2D U-Net
(35 -> 5 channels, depth 4, 32 first-level filters) predicting the same brain with the
task's inference as the engine runs it (whole slices of the brain mask's bounding box
plus the task's margin, passes of a few slices, channels-last weights on a CPU; the
median of 3 runs, each after a warm-up run), in float32 and with mixed precision
(``--amp``: bfloat16 on a CPU, float16 on CUDA; its largest deviation from float32 is
reported). Network time does not depend on its weights, so an untrained network of the
task's size is timed.
One phantom subject at 2 mm and one at 1 mm (the 1 mm reference takes several minutes
on a CPU), the network in float32 and mixed precision at both. Each measurement runs
in a fresh process, whose peak resident memory (``VmHWM``; CPU) or CUDA peak allocation
is its peak.

On a CPU the suite also counts the network's floating-point operations and sets its
rate against a matrix product's (:func:`work_rates`), and from that the largest speed-up
the reference allows at that rate.

Run alone: ``python benchmarks/mrf_lesion_bench.py bench-out/mrf-lesion``. The padding
check (slices padded to a multiple of 16 against unpadded, timed alternately in one
process on a 2 mm grid): ``python benchmarks/mrf_lesion_bench.py --padding``; the
same two ways compared on what the shipped model predicts for one 2 mm phantom subject:
``python benchmarks/mrf_lesion_bench.py --padding-accuracy OUT``. The network's work and
rate against a matrix product's on the same CPU (float32 and bfloat16):
``python benchmarks/mrf_lesion_bench.py --rates``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import in_child as _in_child
from common import peak_rss_mib as _peak_rss_mib
from common import timed as _timed


def _row(case: str, value: float, unit: str, **extra) -> dict:
    return {"benchmark": "mrf-lesion", "case": case, "value": float(value), "unit": unit,
            **extra}


def _network_seconds(shape: tuple[int, int, int], device: str, amp: bool = False
                     ) -> tuple[float, float, float]:
    """Seconds, peak memory (MiB) of one prediction of a 35-frame series, as the engine
    runs it (channels-last on a CPU; ``amp``: mixed precision), and the largest
    difference from the float32 output relative to that output's standard deviation
    (0 without ``amp``)."""
    import torch

    from lesionkit.infer import channels_last
    from lesionkit.models import build_network
    from lesionkit.tasks import get_task

    task = get_task("mrf-lesion")
    network = build_network(task.network, 35, task.out_channels, **task.network_kwargs)
    network = network.to(device).eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 35, *shape),
                                                                  dtype=np.float32)).to(device)
    x = channels_last(network, x)
    infer = task.inference.predict
    with torch.inference_mode():
        runs = [_timed(lambda: _run(infer, network, x, device, amp),
                       lambda: _run(infer, network, x, device, amp), device) for _ in range(3)]
        seconds, peak = sorted(runs)[1]  # the median of 3 runs, each after a warm-up run
        deviation = 0.0
        if amp:
            exact = infer(network, x[..., ::8]).float()
            mixed = _run(infer, network, x[..., ::8], device, amp).float()
            deviation = float((mixed - exact).abs().max() / exact.std())
    return seconds, peak, deviation


def _run(infer, network, x, device: str, amp: bool):
    from lesionkit.infer import autocast

    with autocast(device, amp):
        return infer(network, x)


def _reference_seconds(data: Path, denoise: bool) -> tuple[float, float]:
    """Seconds and peak resident memory (MiB) of the reference pipeline on one subject."""
    from lesionkit.mrf import build_dictionary
    from lesionkit.mrf_reference import match_dataset

    dictionary = build_dictionary()
    start = time.perf_counter()
    match_dataset(data, denoise=denoise, dictionary=dictionary)
    return time.perf_counter() - start, _peak_rss_mib()


def _predicted_shape(data: Path) -> tuple[int, int, int]:
    """The grid the network predicts for the phantom's subject 01: the brain mask's
    bounding box plus the task's margin (:func:`lesionkit.infer.brain_box`)."""
    import nibabel as nib

    from lesionkit.infer import brain_box
    from lesionkit.tasks import get_task

    (mask_file,) = (data / "derivatives" / "phantom" / "sub-01").rglob("*desc-brain_mask.nii*")
    mask = np.asarray(nib.load(str(mask_file)).dataobj) > 0
    box = brain_box(mask, get_task("mrf-lesion").inference.crop_margin)
    return tuple(mask.shape) if box is None else tuple(b.stop - b.start for b in box)


def bench_mrf_lesion(out_dir: Path | str, full: bool = True) -> list[dict]:
    """Time MP-PCA + matching against the network on one phantom subject at 2 mm and
    (``full``) at 1 mm.

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
    shape = _predicted_shape(data)
    grid = tuple(int(n) for n in nib.load(str(BIDSDataset(data).get("01", "MRF").path)).shape[:3])
    rows = []
    seconds, peak, _ = _in_child(_network_seconds, shape, device)
    rows.append(_row("network, 2 mm brain", seconds, "s", peak_mib=round(peak, 1),
                     detail=f"brain box {shape} (of the grid {grid}), {device}, untrained "
                            "weights of the task's size"))
    mixed, mixed_peak, deviation = _in_child(_network_seconds, shape, device, True)
    precision = "bfloat16" if device == "cpu" else "float16"
    rows.append(_row(f"network, 2 mm brain, {precision} mixed precision (--amp)", mixed, "s",
                     peak_mib=round(mixed_peak, 1),
                     detail=f"largest difference from float32: {deviation:.4f} output SD"))
    atoms = len(build_dictionary())
    for denoise, name in ((False, "matching only"), (True, "MP-PCA + matching")):
        elapsed, reference_peak = _in_child(_reference_seconds, data, denoise)
        rows.append(_row(f"reference {name}, 2 mm brain", elapsed, "s",
                         peak_mib=round(reference_peak, 1),
                         detail=f"{atoms} atoms, chunked matching"))
    goal = "goal >= 50x; study: about 3 h against 1 min"
    rows.append(_row("speed-up, 2 mm (MP-PCA + matching / network)", elapsed / seconds, "x",
                     detail=goal))
    rows.append(_row(f"speed-up, 2 mm, {precision} network", elapsed / mixed, "x", detail=goal))
    if device == "cpu":
        rates = _in_child(work_rates, shape)
        rows.append(_row("network work, 2 mm brain", rates["network GFLOP"], "GFLOP",
                         detail="FlopCounterMode, a multiply-add counts 2"))
        for kind in ("float32", "bfloat16"):
            ceiling = rates[f"matmul {kind} GFLOP/s"]
            rows.append(_row(f"network rate, 2 mm brain, {kind}",
                             rates[f"network {kind} GFLOP/s"], "GFLOP/s",
                             detail=f"a 2048 x 2048 {kind} matrix product on this CPU: "
                                    f"{ceiling:.0f} GFLOP/s"))
            rows.append(_row(f"speed-up bound, 2 mm, {kind}",
                             elapsed / rates[f"network at the {kind} matmul rate s"], "x",
                             detail=f"the network's work at the {kind} matrix-product rate"))
    if full:
        data_1mm = simulate_cohort("mrf-lesion", out_dir / "phantom-1mm", subjects=1, seed=0,
                                   resolution=1)
        shape_1mm = _predicted_shape(data_1mm)
        seconds_1mm, peak_1mm, _ = _in_child(_network_seconds, shape_1mm, device)
        rows.append(_row("network, 1 mm brain", seconds_1mm, "s", peak_mib=round(peak_1mm, 1),
                         detail=f"brain box {shape_1mm}, {device}"))
        elapsed_1mm, reference_peak = _in_child(_reference_seconds, data_1mm, True)
        rows.append(_row("reference MP-PCA + matching, 1 mm brain", elapsed_1mm, "s",
                         peak_mib=round(reference_peak, 1), detail=f"{atoms} atoms"))
        mixed_1mm, mixed_peak_1mm, deviation_1mm = _in_child(_network_seconds, shape_1mm,
                                                             device, True)
        rows.append(_row(f"network, 1 mm brain, {precision} mixed precision (--amp)", mixed_1mm,
                         "s", peak_mib=round(mixed_peak_1mm, 1),
                         detail=f"largest difference from float32: {deviation_1mm:.4f} "
                                "output SD"))
        rows.append(_row("speed-up, 1 mm (MP-PCA + matching / network)",
                         elapsed_1mm / seconds_1mm, "x", detail=goal))
        rows.append(_row(f"speed-up, 1 mm, {precision} network", elapsed_1mm / mixed_1mm, "x",
                         detail=goal))
    (out_dir / "mrf_lesion_bench.json").write_text(json.dumps(rows, indent=2))
    return rows


def padding_seconds(shape: tuple[int, int, int] = (82, 100, 82), repeats: int = 7
                    ) -> dict[int, list[float]]:
    """Seconds of the task's untrained network over a 35-frame volume of ``shape`` with
    slices zero-padded to a multiple of 16 and unpadded (``SliceWise.multiple`` 16 and 1),
    the two timed alternately ``repeats`` times after one warm-up each."""
    import torch

    from lesionkit.infer import channels_last
    from lesionkit.models import build_network
    from lesionkit.tasks import get_task

    task = get_task("mrf-lesion")
    network = build_network(task.network, 35, task.out_channels, **task.network_kwargs).eval()
    x = channels_last(network, torch.randn(1, 35, *shape))
    seconds: dict[int, list[float]] = {16: [], 1: []}
    with torch.inference_mode():
        for multiple in seconds:
            network.multiple = multiple
            network(x)
        for _ in range(repeats):
            for multiple, runs in seconds.items():
                network.multiple = multiple
                start = time.perf_counter()
                network(x)
                runs.append(time.perf_counter() - start)
    return seconds


def work_rates(shape: tuple[int, int, int] = (82, 100, 82), repeats: int = 5,
               size: int = 2048) -> dict[str, float]:
    """Where the network's time goes against what this CPU can do: the floating-point
    operations of the task's untrained network over a 35-frame volume of ``shape``
    (PyTorch's ``FlopCounterMode``; a multiply-add counts 2), its seconds in float32 and
    in bfloat16 mixed precision, and the rate of a ``size`` x ``size`` matrix product in each,
    a practical ceiling of the machine's arithmetic. Each time is the median of
    ``repeats`` runs after a warm-up, the four timed in turn."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lesionkit.infer import autocast, channels_last
    from lesionkit.models import build_network
    from lesionkit.tasks import get_task

    task = get_task("mrf-lesion")
    network = build_network(task.network, 35, task.out_channels, **task.network_kwargs).eval()
    x = channels_last(network, torch.randn(1, 35, *shape))
    infer = task.inference.predict  # as the engine runs it (passes of a few slices)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a16, b16 = a.bfloat16(), b.bfloat16()

    def mixed() -> None:
        with autocast("cpu", True):
            infer(network, x)

    runs = {"network float32": lambda: infer(network, x), "network bfloat16": mixed,
            "matmul float32": lambda: a @ b, "matmul bfloat16": lambda: a16 @ b16}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            infer(network, x)
        work = {"network": counter.get_total_flops(), "matmul": 2 * size**3}
        for run in runs.values():
            run()
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - start)
    result = {"network GFLOP": work["network"] / 1e9}
    for name, times in seconds.items():
        median = float(np.median(times))
        result[f"{name} s"] = median
        result[f"{name} GFLOP/s"] = work[name.split()[0]] / median / 1e9
    for precision in ("float32", "bfloat16"):
        result[f"network at the {precision} matmul rate s"] = (
            work["network"] / 1e9 / result[f"matmul {precision} GFLOP/s"])
    return result


def padding_accuracy(out: Path | str) -> dict[str, float]:
    """The shipped mrf-lesion model on phantom subject 01 (seed 0, 2 mm; simulated into
    ``out/mrf1`` once), predicted with slices padded to a multiple of 16 and unpadded:
    lesion Dice at 33 % of each against the phantom's lesion mask, and inside the brain
    the median relative T1 difference, the 99th percentile of each map's absolute
    difference, and the voxels more than 5 % apart in T1 (all, and within 12 voxels of
    the grid's far x edge)."""
    import nibabel as nib

    from lesionkit import models
    from lesionkit.infer import predict
    from lesionkit.metrics import dice
    from lesionkit.shipped import resolve_model
    from lesionkit.simulate.cohorts import simulate_cohort

    out = Path(out)
    data = out / "mrf1"
    if not data.is_dir():
        simulate_cohort("mrf-lesion", data, subjects=1, seed=0, resolution=2)
    build = models.NETWORKS["unet2d"]
    maps: dict[int, dict[str, np.ndarray]] = {}
    try:
        for multiple in (16, 1):
            def padded(*args, multiple=multiple, **kwargs):
                network = build(*args, **kwargs)
                network.multiple = multiple
                return network

            models.NETWORKS["unet2d"] = padded
            folder = out / f"padded-{multiple}"
            predict(resolve_model("mrf-lesion"), data, out_dir=folder, progress=False)
            maps[multiple] = {f.name.removeprefix("sub-01_"): np.asarray(
                nib.load(str(f)).dataobj, np.float64) for f in folder.rglob("*.nii.gz")}
    finally:
        models.NETWORKS["unet2d"] = build
    truth = data / "derivatives" / "phantom" / "sub-01"
    (brain_file,) = truth.rglob("*desc-brain_mask.nii*")
    (lesion_file,) = truth.rglob("*label-lesion*mask.nii*")
    brain = np.asarray(nib.load(str(brain_file)).dataobj) > 0
    lesion = np.asarray(nib.load(str(lesion_file)).dataobj) > 0.5
    result: dict[str, float] = {}
    for name, padded_map in maps[16].items():
        if padded_map.ndim == 3:
            result[f"p99 abs difference {name}"] = float(np.percentile(
                np.abs(padded_map - maps[1][name])[brain], 99))
    (lesion_map,) = [k for k in maps[16] if k.startswith("label-lesion")]
    for multiple in (16, 1):
        result[f"lesion Dice at 33 %, multiple {multiple}"] = float(
            dice(maps[multiple][lesion_map] >= 0.33, lesion))
    (t1,) = [k for k in maps[16] if "T1map" in k]
    relative = np.abs(maps[16][t1] - maps[1][t1]) / np.maximum(np.abs(maps[16][t1]), 1.0)
    result["median relative T1 difference"] = float(np.median(relative[brain]))
    off = (relative > 0.05) & brain
    result["brain voxels"] = int(brain.sum())
    result["voxels > 5 % apart in T1"] = int(off.sum())
    result["of them within 12 voxels of the far x edge"] = int(off[-12:].sum())
    return result


if __name__ == "__main__" and sys.argv[1:2] == ["--padding-accuracy"]:
    for key, value in padding_accuracy(sys.argv[2]).items():
        print(f"{key}: {value}" if isinstance(value, int) else f"{key}: {value:.4g}")
elif __name__ == "__main__" and sys.argv[1:] == ["--rates"]:
    for key, value in work_rates().items():
        print(f"{key}: {value:.4g}")
elif __name__ == "__main__" and sys.argv[1:] == ["--padding"]:
    for multiple, runs in padding_seconds().items():
        print(f"slices padded to a multiple of {multiple}: median {np.median(runs):.3f} s "
              f"of {[round(r, 2) for r in runs]}")
elif __name__ == "__main__":
    from common import output_folder

    for row in bench_mrf_lesion(output_folder("bench-out/mrf-lesion", __doc__)):
        print(row)
