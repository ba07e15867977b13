"""contrast-amplify: a squared error weighted by the enhancement, tried against small metastases.

The paragraph "Weighting the squared error by the enhancement: tried, not adopted" of
docs/results.md comes from this script. T1c-pro erases small metastases (docs/results.md):
the network learns from low-dose inputs, in which a metastasis of one or two voxels is
lost in the noise, and the squared error over a 32^3 patch gives its few voxels almost
no weight. The ``weighted`` arms pay each voxel's squared error 1 + ALPHA x its
enhancement, the standard-dose target's robust z-score above the low-dose input's (both
are the task's normalised images; 0 where the target is not brighter), normalised by
the sum of the weights. Everything else is the task's: the same 30-subject 2 mm
phantom cohort (seed 0), five folds by subject, 8 epochs of 800 patches, features
16-32-64-128, 8 flips. One thread; about 22 minutes of training and 7 of prediction and
scoring per arm on a 2-core CPU.

Any other arm's cross-validation (``lesionkit crossval contrast-amplify COHORT DIR --arms
ARM``) is summarised the same way by ``python benchmarks/contrast_amplify_weighted.py DIR
--summarise ARM --data COHORT``.

Run: ``python benchmarks/contrast_amplify_weighted.py OUT --arm weighted-1`` (arms:
``unclipped``, the plain residual U-Net (the task as it was for these runs; its default
now adds the output to the T1c), and ``weighted-1``, ``weighted-4``: ALPHA 1 and 4;
simulates the cohort into ``OUT/ca30`` once; writes the cross-validation into
``OUT/ARM``). It prints the T1c-pro figures of ``comparison.json``, the reader
stand-in's sensitivity at its best-F1 threshold and, by lesion size
(long axis under 5 mm, 5-10 mm, 10 mm or more), the median over lesions of the peak
robust z-score within one voxel of the lesion's centre on T1c, T1c-pro and the
phantom's quadruple dose.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

SIZES_MM = (0.0, 5.0, 10.0, np.inf)


def _weighted(alpha: float, network, batch) -> object:
    prediction = network(batch["input"])
    target = batch["target"]
    weight = 1.0 + alpha * (target - batch["input"][:, :1]).clamp(min=0)  # T1c is channel 0
    return (weight * (prediction - target) ** 2).sum() / weight.sum()


def weighted_1(network, loss, batch) -> object:
    """Training step: squared error weighted by 1 + the enhancement (z)."""
    return _weighted(1.0, network, batch)


def weighted_4(network, loss, batch) -> object:
    """Training step: squared error weighted by 1 + 4 x the enhancement (z)."""
    return _weighted(4.0, network, batch)


def _robust_z(image: np.ndarray, brain: np.ndarray) -> np.ndarray:
    q1, median, q3 = np.percentile(image[brain], [25, 50, 75])
    return (image - median) / ((q3 - q1) / 1.349)


def peaks(data: Path, predictions: Path) -> dict[str, dict[str, float]]:
    """Median peak robust z-score (3^3 voxels about the lesion's centre; z inside the
    brain mask of each image itself) by lesion size band, for T1c, T1c-pro and the
    quadruple dose; and the number of lesions in each band."""
    import nibabel as nib
    import pandas as pd
    from scipy import ndimage

    rows = []
    for subject in sorted(p.name for p in data.glob("sub-*")):
        truth = data / "derivatives" / "phantom" / subject / "anat"
        table = pd.read_csv(next(truth.glob("*_lesions.tsv")), sep="\t")
        if not len(table):
            continue
        t1c = nib.load(next((data / subject / "anat").glob("*acq-standard_ce-gadolinium_T1w.nii*")))
        brain = np.asarray(nib.load(next(truth.glob("*desc-brain_mask.nii*"))).dataobj) > 0
        images = {"T1c": t1c.dataobj,
                  "T1c-pro": nib.load(next((predictions / subject).rglob(
                      "*desc-amplified*T1w.nii*"))).dataobj,
                  "quadruple dose": nib.load(next(truth.glob(
                      "*acq-quadruple*T1w.nii*"))).dataobj}
        peak = {name: ndimage.maximum_filter(_robust_z(np.asarray(image, float), brain), size=3)
                for name, image in images.items()}
        to_voxel = np.linalg.inv(t1c.affine)
        for _, lesion in table.iterrows():
            centre = to_voxel @ [lesion.centre_x, lesion.centre_y, lesion.centre_z, 1.0]
            ijk = tuple(np.rint(centre[:3]).astype(int))
            rows.append({"size": lesion.long_axis_mm, **{n: p[ijk] for n, p in peak.items()}})
    frame = pd.DataFrame(rows)
    result = {}
    for low, high in itertools.pairwise(SIZES_MM):
        band = frame[(frame["size"] >= low) & (frame["size"] < high)]
        result[f"{low:g}-{high:g} mm"] = {"lesions": len(band),
                                         **band.drop(columns="size").median().round(2).to_dict()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--arm", choices=("unclipped", "weighted-1", "weighted-4"),
                        default="weighted-1")
    parser.add_argument("--summarise", metavar="ARM",
                        help="Only print the figures of a cross-validation already in "
                             "OUT (`lesionkit crossval ... OUT --arms ARM` on OUT/../ca30 "
                             "or the cohort given by --data).")
    parser.add_argument("--data", type=Path, help="Cohort of --summarise (default OUT/../ca30).")
    args = parser.parse_args()
    if args.summarise:
        data = args.data or args.out.parent / "ca30"
        expected = (args.out / "comparison.json",
                    args.out / f"arm-{args.summarise}" / "predictions"
                    / "task-contrast-amplify_metrics.json", data / "dataset_description.json")
        for path in expected:
            if not path.is_file():
                raise SystemExit(f"{path}: expected it (a finished `lesionkit crossval "
                                 f"contrast-amplify {data} {args.out} --arms "
                                 f"{args.summarise}`), found no such file")
        summarise(data, args.out, args.summarise)
        return

    import contrast_amplify_weighted as hooks  # by module name, so that folders store it
    import torch

    from lesionkit.crossval import crossval
    from lesionkit.simulate.cohorts import simulate_cohort
    from lesionkit.tasks import get_task

    torch.set_num_threads(1)
    data = args.out / "ca30"
    if not data.is_dir():
        simulate_cohort("contrast-amplify", data, subjects=30, seed=0, resolution=2)
    task = get_task("contrast-amplify")
    plain = "residual-unet"  # the task's network when these runs were made (arm unclipped)
    task = replace(task, network=plain,
                   network_kwargs={**task.network_kwargs, "channels": (16, 32, 64, 128),
                                   "strides": (2, 2, 2)},
                   arms={"unclipped": {}, "weighted-1": {"training_step": hooks.weighted_1},
                         "weighted-4": {"training_step": hooks.weighted_4}})
    out = args.out / args.arm
    crossval(task, data, out, folds=5, epochs=8, seed=0, arms=[args.arm],
                    patches_per_epoch=800, tta=8, device="cpu", progress=False,
                    trusted=("contrast_amplify_weighted",))
    summarise(data, out, args.arm)


def summarise(data: Path, out: Path, arm: str) -> None:
    """Print the T1c-pro figures of ``OUT/ARM/comparison.json``, the reader stand-in's
    sensitivity at its best-F1 threshold on T1c and T1c-pro, and the peaks by size."""
    from lesionkit.tasks.contrast_amplify import detection_summary

    summary = json.loads((out / "comparison.json").read_text())["arms"][arm]["metrics"]
    for row in summary:
        if row["method"] == "T1c-pro" and row["metric"] in (
                "cnr", "lbr", "cep", "rmse_quadruple", "ssim_quadruple",
                "contrast_over_quadruple", "found_f1", "false_f1", "found_fp1", "false_fp1"):
            print(f"T1c-pro {row['metric']}: {row['estimate']:.3f}")
    predictions = out / f"arm-{arm}" / "predictions"
    rows = json.loads((predictions / "task-contrast-amplify_metrics.json").read_text())["rows"]
    for row in detection_summary(rows, "f1"):
        if row["image"] in ("T1c", "T1c-pro"):
            print(f"best F1, {row['image']}, lesions {row['lesions']}: sensitivity "
                  f"{row['sensitivity']:.3f}, false detections per case "
                  f"{row['false detections per case']:.2f}, McNemar mid-p "
                  f"{row.get('McNemar mid-p vs T1c', float('nan')):.3f}, Wilcoxon p "
                  f"{row.get('Wilcoxon p (false detections) vs T1c', float('nan')):.3f}")
    for band, values in peaks(data, predictions).items():
        print(f"peak z, lesions {band}: {values}")

if __name__ == "__main__":
    main()
