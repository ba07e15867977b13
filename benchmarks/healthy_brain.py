"""False-positive lesions of a lesion model on a healthy brain with real intensities.

A healthy subject is assembled from two averages of real scans in MNI space: the
MNI152 2009a T1w template shipped inside nilearn (as T1w) and the normative FLAIR mean
of the ``swane-supplement`` package (MIT licence; ``pip install swane-supplement==0.1.2``,
not a lesionkit dependency), with nilearn's MNI152 brain mask as the dataset's mask. A
lesion model applied to it should find no lesion; every component of its lesion map at
the threshold is a false positive.

Usage::

    python benchmarks/healthy_brain.py --model MODEL_DIR --work OUT [--flair mean_flair.nii.gz]

Writes ``OUT/bids`` (the subject), ``OUT/predictions``, ``OUT/healthy.json`` (components
and volume at 33 % and 50 %; the FLAIR's GM/WM ratio and each component's median over
the WM median, beside the published FLAIR lesion/WM range: is a component brighter than
real lesions are?) and ``OUT/healthy.png`` (axial slices with the map).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

THRESHOLDS = (0.33, 0.5)


def swane_flair() -> Path:
    """The normative FLAIR mean of the installed ``swane_supplement`` package."""
    try:
        import swane_supplement
    except ImportError as error:
        raise SystemExit("expected the swane-supplement package (pip install "
                         "swane-supplement==0.1.2) or --flair PATH, found neither") from error
    return (Path(swane_supplement.__file__).parent / "resources" / "doMAP_template"
            / "mean_flair.nii.gz")


def layout(root: Path, flair: Path) -> Path:
    """A one-subject BIDS dataset: FLAIR, T1w and a brain mask under derivatives/template."""
    from nilearn import datasets

    anat = root / "sub-healthy" / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "healthy brain (MNI152 T1w template, normative FLAIR mean)",
         "BIDSVersion": "1.10.0"}))
    (root / "participants.tsv").write_text("participant_id\tgroup\nsub-healthy\tcontrol\n")
    nib.save(nib.load(flair), anat / "sub-healthy_FLAIR.nii.gz")
    nib.save(datasets.load_mni152_template(resolution=1), anat / "sub-healthy_T1w.nii.gz")
    masks = root / "derivatives" / "template"
    (masks / "sub-healthy" / "anat").mkdir(parents=True, exist_ok=True)
    (masks / "dataset_description.json").write_text(json.dumps(
        {"Name": "MNI152 brain mask", "BIDSVersion": "1.10.0", "DatasetType": "derivative"}))
    nib.save(datasets.load_mni152_brain_mask(resolution=1),
             masks / "sub-healthy" / "anat" / "sub-healthy_desc-brain_mask.nii.gz")
    return root


def count(probability: np.ndarray, voxel_ml: float) -> dict[str, dict[str, float]]:
    """Components (26-connected) and volume (mL) of the map at each threshold."""
    out = {}
    for threshold in THRESHOLDS:
        labels, n = ndimage.label(probability >= threshold, np.ones((3, 3, 3)))
        out[f"{threshold:.2f}"] = {"components": int(n),
                                   "volume_ml": round(float((labels > 0).sum()) * voxel_ml, 2)}
    return out


def intensities(flair: Path, probability: np.ndarray, threshold: float = THRESHOLDS[0]
                ) -> dict[str, float | str]:
    """How bright the FLAIR is in grey matter and in the components at ``threshold``,
    against its white matter (pure-tissue masks of the phantom's MNI152 2009a template,
    probability >= 0.9, resampled onto the FLAIR's grid): the contrast ratios of
    ``lesionkit.simulate.realism`` and, per component, its median over the WM median."""
    from nibabel.processing import resample_from_to

    from lesionkit.simulate.realism import PUBLISHED_RATIOS, tissue_masks
    from lesionkit.simulate.template import load_template

    image = nib.load(flair)
    values = np.asarray(image.dataobj, np.float32)
    anatomy = load_template()

    def on_flair(tissue: np.ndarray) -> np.ndarray:
        moved = resample_from_to(nib.Nifti1Image(tissue.astype(np.float32), anatomy.affine),
                                 image, order=1)
        return np.asarray(moved.dataobj)

    masks = tissue_masks(on_flair(anatomy.gm), on_flair(anatomy.wm), on_flair(anatomy.csf))
    wm = float(np.median(values[masks["WM"]]))
    labels, n = ndimage.label(probability >= threshold, np.ones((3, 3, 3)))
    ratios = [float(np.median(values[labels == i])) / wm for i in range(1, n + 1)]
    low, high, _ = PUBLISHED_RATIOS[("FLAIR", "lesion/WM")]
    gm = values[masks["GM"]]
    out: dict[str, float | str] = {
        "GM/WM": float(np.median(gm)) / wm,
        "GM 95th percentile/WM": float(np.percentile(gm, 95)) / wm,
        "published FLAIR lesion/WM": f"{low}-{high}"}
    if ratios:
        out.update({"components/WM, least": min(ratios),
                    "components/WM, median": float(np.median(ratios)),
                    "components/WM, largest": max(ratios)})
    return {key: round(value, 2) if isinstance(value, float) else value
            for key, value in out.items()}


def montage(flair: Path, probability: np.ndarray, out: Path, title: str) -> Path:
    """Axial slices of the FLAIR with the map at 33 % overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = np.asarray(nib.load(flair).dataobj, np.float32)
    slices = np.linspace(0.3, 0.75, 5) * image.shape[2]
    figure, axes = plt.subplots(1, len(slices), figsize=(3.2 * len(slices), 3.6))
    for axis, z in zip(axes, slices.astype(int), strict=True):
        axis.imshow(image[:, :, z].T, cmap="gray", origin="lower")
        axis.imshow(np.ma.masked_less(probability[:, :, z].T, THRESHOLDS[0]), cmap="autumn",
                    vmin=0, vmax=1, alpha=0.7, origin="lower")
        axis.set_title(f"axial slice {z}")
        axis.axis("off")
    figure.suptitle(title)
    figure.savefig(out, dpi=90, bbox_inches="tight")
    plt.close(figure)
    return out


def main(argv: list[str] | None = None) -> None:
    """Lay out the healthy subject, predict with the model, count the components."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--flair", type=Path, default=None)
    parser.add_argument("--lesionkit", default=str(Path(sys.executable).with_name("lesionkit")))
    args = parser.parse_args(argv)
    flair = args.flair or swane_flair()
    data = layout(args.work / "bids", flair)
    predictions = args.work / "predictions"
    subprocess.run([args.lesionkit, "predict", str(args.model), str(data), "--out-dir",
                    str(predictions), "--tta", "2"], check=True)
    found = [p for p in predictions.rglob("*label-lesion*_probseg.nii.gz")
             if "desc-uncertainty" not in p.name]
    image = nib.load(found[0])
    probability = np.asarray(image.dataobj, np.float32)
    voxel_ml = float(abs(np.linalg.det(image.affine[:3, :3]))) / 1000.0
    result = {"model": str(args.model), "flair": str(flair), **count(probability, voxel_ml),
              "FLAIR intensity over WM": intensities(data / "sub-healthy" / "anat"
                                                     / "sub-healthy_FLAIR.nii.gz", probability)}
    (args.work / "healthy.json").write_text(json.dumps(result, indent=2) + "\n")
    montage(data / "sub-healthy" / "anat" / "sub-healthy_FLAIR.nii.gz", probability,
            args.work / "healthy.png", f"healthy brain: lesion probability >= 33 % "
            f"({result['0.33']['components']} components)")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
