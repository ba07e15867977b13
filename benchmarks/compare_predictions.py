"""Compare two prediction folders of the same model and data, map by map.

For every probability map (``*_probseg.nii*``, less the ``desc-uncertainty`` maps of an
ensemble, a spread and not a probability) of the first folder and its namesake in the
second: the largest and the mean absolute difference, the voxels at or above the
threshold in each and the Dice of those two masks, the predicted box (sidecar
``PredictedBox``) as a fraction of the network's grid, and at each lower threshold of
``--low`` the 26-connected components and the volume (mL) of each map (what a user who
thresholds a map lower finds, e.g. with and without ``predict --keep-outside-brain``).
Used to check that predicting the brain's box only (``crop_margin``) leaves a lesion map
as a whole-grid pass gives it: copy the model folder, set ``task.inference.crop_margin``
to null in the copy's ``config.yaml``, predict with both and compare.

Run: ``python benchmarks/compare_predictions.py PRED_BOX PRED_WHOLE [--threshold 0.33]
[--low 0.1 0.05]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np


def _box_fraction(sidecar: Path) -> str:
    """The predicted box's share of the network's grid, from a map's sidecar."""
    if not sidecar.is_file():
        return "-"
    meta = json.loads(sidecar.read_text())
    box = meta.get("PredictedBox")
    if box is None or not meta.get("ModelVoxelSize"):
        return "whole grid"
    source = nib.load(meta["Sources"][0])
    extent = np.asarray(source.shape[:3]) * np.asarray(source.header.get_zooms()[:3])
    grid = np.round(extent / np.asarray(meta["ModelVoxelSize"], float))
    size = [stop - start for start, stop in box["Voxels"]]
    return f"{np.prod(size) / np.prod(grid):.2f} ({'x'.join(map(str, size))})"


def _at(values: np.ndarray, threshold: float, voxel_ml: float) -> tuple[int, float]:
    """26-connected components and volume (mL) of the voxels at or above ``threshold``."""
    from scipy import ndimage

    mask = values >= threshold
    return int(ndimage.label(mask, np.ones((3, 3, 3)))[1]), float(mask.sum()) * voxel_ml


def compare(first: Path, second: Path, threshold: float = 0.33,
            low: tuple[float, ...] = ()) -> list[str]:
    """One Markdown table row per map of ``first`` with a namesake in ``second``."""
    rows = []
    for path in sorted(first.rglob("*_probseg.nii*")):
        other = second / path.relative_to(first)
        if "_desc-uncertainty_" in path.name or not other.is_file():
            continue
        image = nib.load(str(path))
        a, b = (np.asarray(nib.load(str(p)).dataobj, np.float32) for p in (path, other))
        ma, mb = a >= threshold, b >= threshold
        dice = 2 * (ma & mb).sum() / max(int(ma.sum() + mb.sum()), 1)
        sidecar = path.with_name(path.name.split(".nii")[0] + ".json")
        voxel_ml = float(np.prod(image.header.get_zooms()[:3])) / 1000.0
        lower = ""
        for t in low:
            (ca, va), (cb, vb) = _at(a, t, voxel_ml), _at(b, t, voxel_ml)
            lower += f" {ca} / {cb} | {va:.1f} / {vb:.1f} |"
        rows.append(f"| {path.name.split('_label')[0]} | {_box_fraction(sidecar)} | "
                    f"{np.abs(a - b).max():.3f} | {np.abs(a - b).mean():.1e} | "
                    f"{int(ma.sum())} / {int(mb.sum())} | {dice:.4f} |{lower}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--threshold", type=float, default=0.33)
    parser.add_argument("--low", type=float, nargs="*", default=[],
                        help="Lower thresholds: components and volume of each map at each.")
    args = parser.parse_args(argv)
    lower = "".join(f" components at {t:g} (first / second) | mL at {t:g} (first / second) |"
                    for t in args.low)
    print("| map | box / grid | largest abs. difference | mean abs. difference | "
          f"voxels >= {args.threshold} (first / second) | Dice |{lower}")
    print("|---|---|---|---|---|---|" + "---|" * (2 * len(args.low)))
    print("\n".join(compare(args.first, args.second, args.threshold, tuple(args.low))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
