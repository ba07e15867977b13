"""How deep inside the brain mask real MS lesions lie, and the lesions a model marks.

``predict`` calls a component of a lesion map a lesion only where its deepest voxel lies
at least ``--min-lesion-depth-mm`` (default :data:`lesionkit.lesions.LESION_MIN_DEPTH_MM`)
inside the brain mask's outline (:func:`lesionkit.lesions.depth_inside`). This benchmark
measures what that default rests on:

- ``library``: every lesion (26-connected component) of the 27 real MS lesion masks
  shipped with the phantom (MNI space, 1 mm), by the depth of its deepest voxel inside
  the outline of the phantom template's MNI152 brain mask;
- ``truth --predictions P --truth DATA``: every lesion of the masks under
  ``DATA/derivatives`` (``label-change_mask``, or ``--label``), by its
  depth inside the brain mask that ``predict`` computed for the same session
  (``label-brain`` mask under P, on the input's grid);
- ``predicted --predictions P``: every lesion table of P (written with
  ``--min-lesion-depth-mm 0``, so that it keeps every component), the components at each
  depth and, with ``--truth``, those touching its masks (``label-change_mask``, or
  ``--label lesion`` for a phantom's lesion masks).

Usage::

    python benchmarks/lesion_depth.py library
    python benchmarks/real_patients.py layout --out real-bids
    lesionkit predict flair-only-lesion-dr real-bids --out-dir P --min-lesion-depth-mm 0
    python benchmarks/lesion_depth.py truth --predictions P --truth real-bids
    python benchmarks/lesion_depth.py predicted --predictions P --truth real-bids

Each prints a JSON summary; depths are in mm, volumes in mm^3.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

#: Depths (mm) at which the counts are given.
DEPTHS_MM = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
FULL = np.ones((3, 3, 3))


def _shallower(depths: np.ndarray, volumes: np.ndarray) -> dict[str, dict[str, float]]:
    """Components (and their volume, mm^3) whose deepest voxel lies less than each depth
    (as ``predict`` reads it, :func:`lesionkit.lesions.reaches`)."""
    from lesionkit.lesions import reaches

    short = {d: ~reaches(depths, d) for d in DEPTHS_MM}
    return {f"under {d:g} mm": {"components": int(short[d].sum()),
                                "volume_mm3": round(float(volumes[short[d]].sum()), 1)}
            for d in DEPTHS_MM}


def _depths(labels: np.ndarray, count: int, depth: np.ndarray, voxel_mm3: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """Deepest-voxel depth (mm) and volume (mm^3) of components 1..count."""
    from lesionkit.lesions import component_depths

    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:] * voxel_mm3
    return component_depths(labels, depth, count), sizes


def library() -> dict:
    """Depths of the shipped lesion library's lesions inside the template's brain mask."""
    from importlib.resources import files

    from lesionkit.geometry import voxel_size
    from lesionkit.io import load_volume
    from lesionkit.lesions import depth_inside
    from lesionkit.simulate.template import load_template
    from lesionkit.writers import on_input_grid

    template = load_template()
    depth = depth_inside(template.mask, template.spacing)
    root = Path(str(files("lesionkit.simulate.lesionmasks")))
    depths, volumes, paths = [], [], sorted(root.glob("*_lesions.nii.gz"))
    for path in paths:
        masks = load_volume(path, kind="label")
        on_grid = on_input_grid(depth.astype(np.float32), template.affine, masks, "intensity")
        labels, count = ndimage.label(masks.data > 0.5, FULL)
        d, v = _depths(labels, count, on_grid, float(np.prod(voxel_size(masks.affine))))
        depths.append(d)
        volumes.append(v)
    depths, volumes = np.concatenate(depths), np.concatenate(volumes)
    return {"masks": len(paths), "lesions": int(depths.size),
            "volume_mm3": round(float(volumes.sum()), 1),
            "depth_mm percentiles 1/5/50": [round(float(q), 1)
                                            for q in np.percentile(depths, (1, 5, 50))],
            **_shallower(depths, volumes)}


def _brain_mask(predictions: Path, name: str) -> Path | None:
    """``predict``'s brain mask of the session a manual mask belongs to."""
    prefix = "_".join(p for p in name.split("_") if p.startswith(("sub-", "ses-")))
    found = sorted(predictions.rglob(f"{prefix}_label-brain_*mask.nii.gz"))
    return found[0] if found else None


def _manual(truth: Path, label: str) -> list[Path]:
    return sorted((truth / "derivatives").rglob(f"*_label-{label}_mask.nii.gz"))


def truth_depths(predictions: Path, truth: Path, label: str = "change") -> dict:
    """Depths of the manual masks' lesions inside ``predict``'s brain masks."""
    from lesionkit.geometry import voxel_size
    from lesionkit.io import load_volume
    from lesionkit.lesions import depth_inside

    out = {}
    masks = _manual(truth, label)
    if not masks:
        raise SystemExit(f"{truth / 'derivatives'}: expected masks named *_label-{label}"
                         "_mask.nii.gz, found none")
    for path in masks:
        brain_path = _brain_mask(predictions, path.name)
        if brain_path is None:  # a session predict did not compute a brain mask for
            out[path.name] = {"lesions": None, "note": f"no label-brain mask under "
                                                       f"{predictions} for this session"}
            continue
        brain, lesions = load_volume(brain_path, kind="label"), load_volume(path, kind="label")
        if brain.shape != lesions.shape or not np.allclose(brain.affine, lesions.affine,
                                                           atol=1e-3):
            raise SystemExit(f"{path}: expected the grid of {brain_path.name}, found another")
        spacing = voxel_size(brain.affine)
        labels, count = ndimage.label(lesions.data > 0.5, FULL)
        d, v = _depths(labels, count, depth_inside(brain.data > 0.5, spacing),
                       float(np.prod(spacing)))
        out[path.name] = {"lesions": int(count),
                          "depths_mm": sorted(round(float(x), 1) for x in d),
                          **{k: c for k, c in _shallower(d, v).items()
                             if k in ("under 3 mm", "under 5 mm")}}
    return out


def predicted(predictions: Path, truth: Path | None, label: str = "change") -> dict:
    """Every lesion table of ``predictions`` by depth; components touching a manual mask."""
    import pandas as pd

    from lesionkit.io import load_volume

    manual = {p.name.split("_label-")[0]: p for p in _manual(truth, label)} if truth else {}
    out = {}
    for table in sorted(predictions.rglob("*_lesions.tsv")):
        rows = pd.read_csv(table, sep="\t")
        if "depth_mm" not in rows.columns:  # written by a lesionkit before the depth
            raise SystemExit(f"{table}: expected a depth_mm column (lesionkit predict "
                             f"--min-lesion-depth-mm 0), found {list(rows.columns)}")
        d = rows["depth_mm"].to_numpy(float)
        entry = {"components": len(rows), **{k: c for k, c in _shallower(
            d, rows["volume_mm3"].to_numpy(float)).items() if k in ("under 3 mm", "under 5 mm")}}
        key = table.name.split("_desc-")[0]
        if key in manual:
            labels = load_volume(table.with_name(table.name.replace("_lesions.tsv",
                                                                    "_dseg.nii.gz"))).data
            change = load_volume(manual[key], kind="label").data > 0.5
            touching = np.unique(labels[change & (labels > 0)]).astype(int)
            hit = rows["label"].isin(touching).to_numpy()
            entry[f"touching the {label} mask"] = int(hit.sum())
            entry["touching, depths_mm"] = sorted(round(float(x), 1) for x in d[hit])
        out[table.name] = entry
    return out


def main(argv: list[str] | None = None) -> None:
    """Print the chosen summary as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("library", "truth", "predicted"))
    parser.add_argument("--predictions", type=Path)
    parser.add_argument("--truth", type=Path)
    parser.add_argument("--label", default="change",
                        help="manual masks read: label-LABEL_mask (default: change)")
    args = parser.parse_args(argv)
    if args.what != "library" and args.predictions is None:
        raise SystemExit(f"{args.what}: expected --predictions DIR, found none")
    if args.what == "truth" and args.truth is None:
        raise SystemExit("truth: expected --truth DATA (a dataset with masks under derivatives), "
                         "found none")
    result = (library() if args.what == "library"
              else truth_depths(args.predictions, args.truth, args.label)
              if args.what == "truth" else predicted(args.predictions, args.truth, args.label))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
