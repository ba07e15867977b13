"""contrast-amplify benchmark: the 40-prediction ensemble (5 folds x 8 flips) per case.

The task's network at its default size (residual 3D U-Net 32-64-128-256, two residual
units per level, 4 input channels) predicts a brain cropped as the task crops it
(160 x 192 x 160 mm: 80 x 96 x 80 voxels at 2 mm, 160 x 192 x 160 at 1 mm) with the
task's inference (Gaussian-blended sliding windows fitted to the volume), each of the 8
mirror flips, for 5 networks of the same size (untrained weights: time does not depend
on them). At 2 mm all 40 predictions run; at 1 mm on a CPU one fold x one flip runs and
the ensemble time is that times 40 (marked "estimated"); on CUDA all 40 run at both
sizes. Each measurement runs in a fresh process, whose peak resident memory (CPU) or
CUDA peak allocation is its peak. The study reports 15 s per case on a V100.

Run alone: ``python benchmarks/contrast_amplify_bench.py bench-out/contrast-amplify``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from common import in_child as _in_child
from common import timed as _timed

#: Network grid per resolution (mm): the task's 160 x 192 x 160 mm crop.
SHAPES = {2: (80, 96, 80), 1: (160, 192, 160)}
FOLDS, FLIPS = 5, 8


def _row(case: str, value: float, unit: str, **extra) -> dict:
    return {"benchmark": "contrast-amplify", "case": case, "value": float(value), "unit": unit,
            **extra}


def _ensemble_seconds(shape: tuple[int, int, int], device: str, folds: int, flips: int
                      ) -> tuple[float, float]:
    """Seconds and peak memory (MiB) of ``folds`` x ``flips`` predictions of one case,
    through the engine's own ensemble (:func:`lesionkit.infer.predict_arrays`)."""
    import numpy as np

    from lesionkit.infer import predict_arrays
    from lesionkit.model_folder import FoldModel, TrainedModel, make_network
    from lesionkit.tasks import get_task

    task = get_task("contrast-amplify")
    identity = {s.key: {"shift": 0.0, "scale": 1.0}
                for s in (*task.prediction_inputs, *task.dense_targets)}
    folds_ = tuple(FoldModel(make_network(task, len(task.inputs)).to(device).eval(), identity)
                   for _ in range(folds))
    model = TrainedModel(Path("."), task, {}, folds_)
    rng = np.random.default_rng(0)
    inputs = {s.key: rng.random((1, *shape), dtype=np.float32) for s in task.prediction_inputs}
    small = {k: v[..., :32, :32, :32] for k, v in inputs.items()}
    return _timed(lambda: predict_arrays(model, inputs, tta=flips, device=device),
                  lambda: predict_arrays(model, small, tta=1, device=device, folds=folds_[:1]),
                  device)


def bench_contrast_amplify(out_dir: Path | str) -> list[dict]:
    """Time the 40-prediction ensemble per case at 2 mm and 1 mm.

    Writes ``contrast_amplify_bench.json`` in ``out_dir``; returns one row per measurement.
    """
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = torch.get_num_threads()
    rows = []
    for resolution, shape in SHAPES.items():
        full = device == "cuda" or resolution == 2
        folds, flips = (FOLDS, FLIPS) if full else (1, 1)
        seconds, peak = _in_child(_ensemble_seconds, shape, device, folds, flips)
        total = seconds * (FOLDS * FLIPS) / (folds * flips)
        rows.append(_row(f"40 predictions, {resolution} mm case", total, "s",
                         peak_mib=round(peak, 1),
                         detail=(f"grid {shape}, {device} ({threads} threads), "
                                 + ("measured" if full else
                                    f"estimated: 1 prediction measured ({seconds:.1f} s) x 40")
                                 + "; study: 15 s on a V100")))
    (out_dir / "contrast_amplify_bench.json").write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from common import output_folder

    for row in bench_contrast_amplify(output_folder("bench-out/contrast-amplify", __doc__)):
        print(row)
