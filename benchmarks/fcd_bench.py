"""fcd-classify benchmarks on the 2 mm phantom input: one training step (Adam, cross
entropy, batch of 2 whole volumes), whole-volume inference and Grad-CAM per subject.

Networks: the task's ResNet-18 (full width, shortcut A) and the quarter-width ResNet-18
used for the CPU cross-validation. Times are the best of ``REPEATS`` after a warm-up.

Run alone: ``python benchmarks/fcd_bench.py bench-out/fcd``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPEATS = 2
NETWORKS = (("resnet18", {}), ("resnet18", {"widen_factor": 0.25}))


def _best(function: Callable[[], object], repeats: int = REPEATS) -> float:
    """Best wall time (s) of ``repeats`` calls after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def _volumes(out_dir: Path) -> torch.Tensor:
    """Two 2 mm phantom FLAIR volumes, z-scored inside the brain, as (2, 1, X, Y, Z)."""
    from lesionkit.bids import BIDSDataset
    from lesionkit.io import load_volume
    from lesionkit.simulate.cohorts import simulate_cohort

    data = out_dir / "fcd-classify"
    if not (data / "participants.tsv").is_file():
        simulate_cohort("fcd-classify", data, subjects=2, seed=0, resolution=2)
    dataset, arrays = BIDSDataset(data), []
    for subject in dataset.subjects():
        image = load_volume(dataset.get(subject, "FLAIR").path).data
        brain = load_volume(dataset.get(subject, "mask", derivatives="phantom",
                                        desc="brain").path, kind="label").data > 0.5
        arrays.append((image - image[brain].mean()) / image[brain].std())
    return torch.from_numpy(np.stack(arrays)[:, None].astype(np.float32))


def bench_fcd(out_dir: str | Path) -> list[dict]:
    """Training step, whole-volume inference and Grad-CAM times (s) on the 2 mm input."""
    from lesionkit.explain import grad_cam
    from lesionkit.models import build_network

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x = _volumes(out_dir)
    y = torch.tensor([1, 0])
    shape = "x".join(str(n) for n in x.shape[2:])
    rows = []
    for name, kwargs in NETWORKS:
        torch.manual_seed(0)
        network = build_network(name, 1, 2, **kwargs)
        optimiser = torch.optim.Adam(network.parameters(), lr=1e-4)

        def step(network: torch.nn.Module = network, optimiser=optimiser) -> None:
            network.train()
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(network(x), y).backward()
            optimiser.step()

        def infer(network: torch.nn.Module = network) -> None:
            network.eval()
            with torch.inference_mode():
                torch.softmax(network(x[:1]), dim=1)

        label = name + (f" (widen {kwargs['widen_factor']})" if kwargs else "")
        common = {"benchmark": "fcd", "network": label, "input": f"{shape} (2 mm)",
                  "threads": torch.get_num_threads()}
        rows.append({**common, "case": "training step, batch of 2 volumes",
                     "value": _best(step), "unit": "s"})
        rows.append({**common, "case": "whole-volume inference, 1 subject",
                     "value": _best(infer), "unit": "s"})
        network.eval()
        rows.append({**common, "case": "Grad-CAM (layer4, upsampled to input), 1 subject",
                     "value": _best(lambda network=network: grad_cam(network, x[:1])),
                     "unit": "s"})
    return rows


if __name__ == "__main__":
    from common import output_folder

    target = Path(output_folder("bench-out/fcd", __doc__))
    print(json.dumps(bench_fcd(target), indent=2))
