"""Speed and memory of the training and inference engine (enhance-r1's network).

Measures, on CPU or CUDA:
- training throughput (32^3 patches per second, forward + backward + Adam step);
- whole-brain inference at 1 mm (160 x 192 x 160 voxels) by Gaussian-blended sliding
  window, without and with 8-flip test-time augmentation;
- one forward pass of the same network over the whole padded volume as one tensor
  (the lower bound that sliding windows trade for bounded memory);
- peak memory (resident set size on CPU, ``torch.cuda.max_memory_allocated`` on CUDA).

Run: ``python benchmarks/engine_bench.py --out bench-out [--device cuda] [--channels 16,32,64]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path


def _peak_mib(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_engine(
    out_dir: str | Path,
    device: str = "cpu",
    shape: tuple[int, int, int] = (160, 192, 160),
    channels: tuple[int, ...] | None = None,
    train_steps: int = 5,
    batch_size: int = 8,
    flips: tuple[int, ...] = (1, 8),
) -> list[dict]:
    """Benchmark the engine; write ``engine_bench.json`` under ``out_dir``.

    Args:
        out_dir: Folder for the JSON results.
        device: "cpu" or "cuda".
        shape: Whole-brain grid in voxels (1 mm).
        channels: U-Net features per level (default: enhance-r1's).
        train_steps: Timed optimiser steps (after one warm-up step).
        batch_size: Patches per training step.
        flips: Test-time flip counts to time.

    Returns:
        One dict per measurement: name, value, unit, device, network, shape.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F  # noqa: N812

    from lesionkit.infer import flips as flip_axes
    from lesionkit.models import build_network
    from lesionkit.tasks import get_task

    task = get_task("enhance-r1")
    kwargs = dict(task.network_kwargs)
    if channels:
        kwargs.update(channels=tuple(channels), strides=(2,) * (len(channels) - 1))
    task = replace(task, network_kwargs=kwargs)
    torch.manual_seed(0)
    network = build_network(task.network, 1, 1, **kwargs).to(device)
    common = {"device": device, "network": f"unet {tuple(kwargs['channels'])}",
              "shape": "x".join(map(str, shape))}
    rows: list[dict] = []

    def record(name: str, value: float, unit: str) -> None:
        rows.append({"name": name, "value": round(float(value), 4), "unit": unit, **common})

    optimiser = torch.optim.Adam(network.parameters(), lr=task.learning_rate)
    patches = torch.randn(batch_size, 1, *task.sampler.patch_size, device=device)
    network.train()
    for step in range(train_steps + 1):
        if step == 1:
            _sync(device)
            start = time.perf_counter()
        loss = F.mse_loss(network(patches), patches)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    _sync(device)
    record("training throughput", train_steps * batch_size / (time.perf_counter() - start),
           "patches/s")

    network.eval()
    volume = torch.randn(1, 1, *shape, device=device)
    for count in flips:
        _sync(device)
        start = time.perf_counter()
        with torch.inference_mode():
            for axes in flip_axes(count):
                output = task.inference.predict(network, volume.flip(axes) if axes else volume)
        _sync(device)
        record(f"sliding window, {count} flip(s)", time.perf_counter() - start, "s")
    multiple = 2 ** (len(kwargs["channels"]) - 1)
    padding = [p for s in reversed(shape) for p in (0, (-s) % multiple)]
    padded = F.pad(volume, padding)
    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        output = network(padded)
    _sync(device)
    record("one forward pass, whole padded volume", time.perf_counter() - start, "s")
    assert np.isfinite(output.float().mean().item())
    record("peak memory", _peak_mib(device), "MiB")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "engine_bench.json").write_text(json.dumps(rows, indent=2))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-out")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--channels", default=None, help="e.g. 16,32,64")
    parser.add_argument("--shape", default="160,192,160")
    args = parser.parse_args(argv)
    channels = tuple(int(c) for c in args.channels.split(",")) if args.channels else None
    shape = tuple(int(s) for s in args.shape.split(","))
    for row in bench_engine(args.out, args.device, shape, channels):
        print(f"{row['name']:<40} {row['value']:>10} {row['unit']}", file=sys.stdout)


if __name__ == "__main__":
    main()
