"""Accuracy of inference layouts: fitted sliding windows against fixed ones and one pass.

Predicts a dataset with a trained dense-output model folder three ways and scores each
with the task's own evaluation:

- ``fixed``: MONAI's sliding windows of the model's largest window at 25 % overlap
  (what lesionkit did before windows were fitted to the volume);
- ``fitted``: the engine's windows fitted to the volume (the model's own settings:
  the brain mask's box plus a margin);
- ``fitted, whole grid``: the same windows over the whole grid (no box);
- ``whole``: one forward pass over the whole volume, padded to the network's multiple.

The three copies of the model folder differ only in ``task.inference`` of their
``config.yaml``; the two variants are classes of this file, loaded as trusted modules.

Run: ``python benchmarks/window_accuracy.py MODEL_DIR DATA_DIR OUT_DIR``
(for example on an enhance-r1 model trained on a phantom cohort).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FixedWindows:
    """MONAI sliding windows of one fixed size and overlap fraction."""

    window: tuple[int, int, int] = (96, 96, 96)
    overlap: float = 0.25
    flips: int = 1

    def predict(self, network: Any, x: Any, lesions: Any = None) -> Any:
        from monai.inferers import sliding_window_inference

        return sliding_window_inference(x, self.window, sw_batch_size=2, predictor=network,
                                        overlap=self.overlap, mode="gaussian")


@dataclass(frozen=True)
class PaddedWholeVolume:
    """One pass over the whole volume, zero-padded to a multiple of ``multiple``."""

    multiple: int = 8
    flips: int = 1

    def predict(self, network: Any, x: Any, lesions: Any = None) -> Any:
        import torch.nn.functional as F  # noqa: N812

        shape = x.shape[2:]
        padded = F.pad(x, [p for s in reversed(shape) for p in (0, (-s) % self.multiple)])
        return network(padded)[..., :shape[0], :shape[1], :shape[2]]


def _variant(model_dir: Path, out: Path, inference: dict | None) -> Path:
    """A copy of the model folder whose task uses ``inference`` (None: unchanged)."""
    import yaml

    copy = out / "model"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(model_dir, copy)
    if inference is not None:
        config = yaml.safe_load((copy / "config.yaml").read_text())
        config["task"]["inference"] = inference
        (copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return copy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    import yaml

    from lesionkit.evaluation import evaluate
    from lesionkit.infer import predict
    from lesionkit.model_folder import load_model

    task = load_model(args.model_dir).task
    own = yaml.safe_load((args.model_dir / "config.yaml").read_text())["task"]["inference"]
    window = list(own.get("window", (96, 96, 96)))
    variants = {
        "fixed": {"class": "window_accuracy:FixedWindows", "window": window, "overlap": 0.25},
        "fitted": None,
        "fitted, whole grid": {**own, "crop_margin": None},
        "whole": {"class": "window_accuracy:PaddedWholeVolume",
                  "multiple": int(own.get("multiple", 8))},
    }
    rows = []
    for name, inference in variants.items():
        out = args.out_dir / name.replace(", ", "-").replace(" ", "-")
        model = _variant(args.model_dir, out, inference)
        shutil.rmtree(out / "predictions", ignore_errors=True)
        start = time.perf_counter()
        predict(model, args.data_dir, device="cpu", progress=False,
                out_dir=out / "predictions", trusted=("window_accuracy",))
        seconds = time.perf_counter() - start
        _, table = evaluate(task, args.data_dir, out_dir=out / "scores",
                            predictions=out / "predictions")
        summary = json.loads(table.read_text())["summary"]
        means = {method: {metric: round(v["mean"], 5) for metric, v in values.items()
                          if v.get("mean") is not None}
                 for method, values in summary.items()}
        rows.append({"inference": name, "seconds": round(seconds, 1), "mean": means})
        print(name, f"{seconds:.1f} s", json.dumps(means), flush=True)
    (args.out_dir / "window_accuracy.json").write_text(json.dumps(rows, indent=2, default=str))
    print(f"wrote {args.out_dir / 'window_accuracy.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
