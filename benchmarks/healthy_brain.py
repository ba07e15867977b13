"""False-positive lesions of a lesion model on a healthy brain with real intensities.

Two kinds of healthy subject:

- assembled from two averages of real scans in MNI space: the MNI152 2009a T1w template
  shipped inside nilearn (as T1w) and the normative FLAIR mean of the
  ``swane-supplement`` package (MIT licence; ``pip install swane-supplement==0.1.2``, not
  a lesionkit dependency), with nilearn's MNI152 brain mask as the dataset's mask;
- ``--native``: one real FLAIR as scanned (``--flair FILE``: skull on, its own grid, no
  T1w), for a model that reads the FLAIR alone (``flair-only-lesion-dr``); ``predict``
  computes the brain mask, as for a user's scan. Every component is also placed by how
  deep inside that mask it reaches, since a mask that leaks at the skull base or into
  the scalp lets the model mark what is not brain.

A lesion model applied to a healthy brain should find no lesion; every component of its
lesion map at the threshold is a false positive.

Usage::

    python benchmarks/healthy_brain.py --model MODEL_DIR --work OUT [--flair mean_flair.nii.gz]
    python benchmarks/healthy_brain.py --model flair-only-lesion-dr --work OUT --native \
        --flair FLAIR.nii.gz

``--each-network`` also predicts with each network of an averaged model (``train
--folds``) alone and counts its components (``"each network"`` in ``healthy.json``):
networks of one recipe can differ far more on a healthy scan than their average does
from another recipe's. ``"lesions shared between networks"`` says which networks mark
each lesion of the averaged model (one that most of them mark is systematic: more
networks would not remove it) and how many of each network's own lesions another one
marks too.

Writes ``OUT/bids`` (the subject), ``OUT/predictions``, ``OUT/healthy.json`` (components
and volume of the map at 33 % and 50 %; the lesions ``predict`` itself tabled, which
leaves out components that stay near the brain mask's edge, ``--min-lesion-depth-mm``;
for the template subject the FLAIR's GM/WM ratio and each
component's median over the WM median, beside the published FLAIR lesion/WM range: is a
component brighter than real lesions are?; for a native FLAIR the components reaching
3, 5 and 10 mm inside the brain mask, and the median and largest z-score of the FLAIR in
each lesion ``predict`` called: is it bright at all?) and ``OUT/healthy.png`` (axial
slices with the map; for a native FLAIR, through its ten largest components, each
outlined).
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


def layout_native(root: Path, flair: Path) -> Path:
    """A one-subject BIDS dataset of one FLAIR as scanned: no T1w and no brain mask, so
    that ``predict`` computes the mask as for a user's scan."""
    anat = root / "sub-healthy" / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "healthy brain (one FLAIR as scanned)", "BIDSVersion": "1.10.0"}))
    (root / "participants.tsv").write_text("participant_id\tgroup\nsub-healthy\tcontrol\n")
    nib.save(nib.load(flair), anat / "sub-healthy_FLAIR.nii.gz")
    return root


#: Depths (mm) inside the brain mask that :func:`by_depth` counts components reaching.
DEPTHS_MM = (3.0, 5.0, 10.0)


def by_depth(probability: np.ndarray, mask: np.ndarray, spacing: tuple[float, ...],
             threshold: float = THRESHOLDS[0]) -> dict[str, dict[str, float]]:
    """Components (26-connected) at ``threshold`` whose deepest voxel lies at least each
    of :data:`DEPTHS_MM` inside ``mask`` (mm, to its outline, as ``predict`` reads it:
    :func:`lesionkit.lesions.depth_inside`), and their
    volume (mL). A component that stays within a few mm of the mask's edge may lie on
    what the mask wrongly holds (bone, scalp, the edge of the field of view)."""
    from lesionkit.lesions import component_depths, depth_inside, reaches

    labels, n = ndimage.label(probability >= threshold, np.ones((3, 3, 3)))
    deepest = component_depths(labels, depth_inside(mask, spacing), n)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:] * voxel_ml
    return {f"reaching {d:g} mm": {"components": int(reaches(deepest, d).sum()),
                                   "volume_ml": round(float(sizes[reaches(deepest, d)].sum()), 2)}
            for d in DEPTHS_MM}


def count(probability: np.ndarray, voxel_ml: float) -> dict[str, dict[str, float]]:
    """Components (26-connected) and volume (mL) of the map at each threshold."""
    out = {}
    for threshold in THRESHOLDS:
        labels, n = ndimage.label(probability >= threshold, np.ones((3, 3, 3)))
        out[f"{threshold:.2f}"] = {"components": int(n),
                                   "volume_ml": round(float((labels > 0).sum()) * voxel_ml, 2)}
    return out


def predicted_lesions(predictions: Path) -> dict[str, float]:
    """What ``predict`` itself called lesions: the rows of its lesion load table (count,
    volume in mL, and the reading: threshold, smallest lesion, depth inside the brain)."""
    import csv

    [table] = predictions.glob("task-*_lesionload.tsv")
    with table.open() as handle:
        [row] = csv.DictReader(handle, delimiter="\t")
    return {"components": int(row["lesion_count"]),
            "volume_ml": round(float(row["lesion_volume_ml"]), 2),
            "threshold": float(row["lesion_threshold"]),
            "min_depth_mm": float(row.get("min_lesion_depth_mm") or 0.0)}


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


def largest_components(flair: Path, probability: np.ndarray, out: Path, title: str,
                       count: int = 10, depth: np.ndarray | None = None,
                       min_depth_mm: float = 0.0) -> Path:
    """An axial slice through each of the ``count`` largest components at 33 %, each
    outlined over the FLAIR, with its volume (mm^3); given the ``depth`` (mm) of each voxel
    inside the brain mask, also the depth its deepest voxel reaches, outlined in red where
    it reaches ``min_depth_mm`` (a lesion for ``predict``) and in yellow where not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = nib.load(flair)
    values = np.asarray(image.dataobj, np.float32)
    labels, n = ndimage.label(probability >= THRESHOLDS[0], np.ones((3, 3, 3)))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    chosen = np.argsort(-sizes)[:count] + 1
    voxel_mm3 = float(abs(np.linalg.det(image.affine[:3, :3])))
    columns = 5
    rows = max(1, -(-len(chosen) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.6 * rows),
                                squeeze=False)
    high = float(np.percentile(values, 99.5))
    for axis in axes.flat:
        axis.axis("off")
    from lesionkit.lesions import component_depths, reaches

    deepest = component_depths(labels, depth, n) if depth is not None else None
    for axis, label in zip(axes.flat, chosen, strict=False):
        z = round(float(ndimage.center_of_mass(labels == label)[2]))
        axis.imshow(values[:, :, z].T, cmap="gray", origin="lower", vmin=0, vmax=high)
        lesion = deepest is None or bool(reaches(deepest[label - 1], min_depth_mm))
        axis.contour((labels[:, :, z] == label).T, [0.5], linewidths=1.2, origin="lower",
                     colors="red" if lesion else "yellow")
        where = ("" if deepest is None else
                 f"\n{deepest[label - 1]:.1f} mm deep{'' if lesion else ': no lesion'}")
        axis.set_title(f"{sizes[label - 1] * voxel_mm3:.0f} mm^3, axial slice {z}{where}",
                       fontsize=10)
    figure.suptitle(title)
    figure.savefig(out, dpi=90, bbox_inches="tight")
    plt.close(figure)
    return out


def single_network(model: Path, fold: int, out: Path) -> Path:
    """A model folder at ``out`` holding fold ``fold`` of ``model`` alone: its config with
    that fold's entry only, and a link to the fold's folder (weights not copied)."""
    from lesionkit.model_folder import fold_dir, read_config, write_config

    config = read_config(model)
    entries = [e for e in config["folds"] if e["fold"] == fold]
    if not entries:
        raise SystemExit(f"{model / 'config.yaml'}: expected a fold {fold}, found folds "
                         f"{[e['fold'] for e in config['folds']]}")
    out.mkdir(parents=True, exist_ok=True)
    write_config(out, {**config, "folds": entries})
    link = fold_dir(out, fold)
    if not link.exists():
        link.symlink_to(fold_dir(model, fold).resolve(), target_is_directory=True)
    return out


def shared_lesions(averaged: np.ndarray, networks: dict[str, np.ndarray],
                   voxel_mm3: float) -> dict[str, list]:
    """Which networks mark each lesion of the averaged model, and how many of each
    network's own lesions another network marks too.

    Args:
        averaged: The averaged model's lesion label map (one integer per lesion).
        networks: Each network's lesion label map (non-zero: lesion), by fold.
        voxel_mm3: Volume of one voxel (mm^3).

    Returns:
        ``"averaged lesions"``: one ``[label, volume_mm3, [folds marking it]]`` per lesion;
        ``"own lesions"``: one ``[fold, lesions, of them marked by at least one other
        network, by at least two others]`` per network.
    """
    marked = {k: labels > 0 for k, labels in networks.items()}
    rows = []
    for label in range(1, int(averaged.max()) + 1):
        lesion = averaged == label
        if lesion.any():
            rows.append([label, round(float(lesion.sum()) * voxel_mm3, 1),
                         [k for k, m in marked.items() if m[lesion].any()]])
    own = []
    for k, m in marked.items():
        labels, n = ndimage.label(m, np.ones((3, 3, 3)))
        others = [sum(bool(o[labels == i].any()) for j, o in marked.items() if j != k)
                  for i in range(1, n + 1)]
        own.append([k, n, sum(c >= 1 for c in others), sum(c >= 2 for c in others)])
    return {"averaged lesions": rows, "own lesions": own}


def _one(predictions: Path, pattern: str, what: str) -> Path:
    """The one file ``predict`` wrote under ``predictions`` matching ``pattern``."""
    found = sorted(p for p in predictions.rglob(pattern) if "desc-uncertainty" not in p.name)
    if len(found) != 1:
        raise SystemExit(f"{predictions}: expected one {what} ({pattern}) written by predict, "
                         f"found {len(found)}")
    return found[0]


def _label_map(predictions: Path) -> tuple[np.ndarray, float]:
    """The lesion label map ``predict`` wrote under ``predictions`` and its voxel (mm^3)."""
    image = nib.load(_one(predictions, "*_dseg.nii.gz", "lesion label map"))
    return (np.asarray(image.dataobj, np.int32),
            float(abs(np.linalg.det(image.affine[:3, :3]))))


def lesion_brightness(flair: Path, brain: np.ndarray, labels: np.ndarray
                      ) -> list[dict[str, float]]:
    """How bright each lesion ``predict`` called is on the FLAIR, z-scored as the engine
    z-scores it (robustly, inside the brain mask, :func:`lesionkit.normalisation.per_image_zscore`)
    but on the scan's own grid: the brain's median is 0, a lesion brighter than the tissue
    around it lies well above it. One row per lesion label: volume (mm^3), median and
    largest z."""
    import torch

    from lesionkit.normalisation import per_image_zscore

    image = nib.load(flair)
    values = torch.from_numpy(np.asarray(image.dataobj, np.float32)[None])
    z = per_image_zscore(values, torch.from_numpy(brain)).numpy()[0]
    voxel_mm3 = float(abs(np.linalg.det(image.affine[:3, :3])))
    rows = []
    for label in range(1, int(labels.max()) + 1):
        inside = labels == label
        if inside.any():
            rows.append({"label": label, "volume_mm3": round(float(inside.sum()) * voxel_mm3, 1),
                         "median_z": round(float(np.median(z[inside])), 2),
                         "largest_z": round(float(z[inside].max()), 2)})
    return rows


def predict_and_count(lesionkit: str, model: Path, data: Path, predictions: Path
                      ) -> tuple[dict, np.ndarray, nib.Nifti1Image]:
    """``predict`` (2 flips) with ``model`` into ``predictions``; the components of its
    lesion map at 33 % and 50 %, the lesions it tabled, the map and its image."""
    subprocess.run([lesionkit, "predict", str(model), str(data), "--out-dir",
                    str(predictions), "--tta", "2"], check=True)
    image = nib.load(_one(predictions, "*label-lesion*_probseg.nii.gz", "lesion map"))
    probability = np.asarray(image.dataobj, np.float32)
    voxel_ml = float(abs(np.linalg.det(image.affine[:3, :3]))) / 1000.0
    return ({**count(probability, voxel_ml), "predict's lesions": predicted_lesions(predictions)},
            probability, image)


def main(argv: list[str] | None = None) -> None:
    """Lay out the healthy subject, predict with the model, count the components."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--flair", type=Path, default=None)
    parser.add_argument("--native", action="store_true",
                        help="--flair is one FLAIR as scanned (own grid, skull on, no T1w)")
    parser.add_argument("--lesionkit", default=str(Path(sys.executable).with_name("lesionkit")))
    parser.add_argument("--each-network", action="store_true",
                        help="also predict with each network of an averaged model alone "
                             "(under WORK/networks) and count its components")
    args = parser.parse_args(argv)
    if args.native and args.flair is None:
        raise SystemExit("--native: expected --flair FILE (one FLAIR as scanned), found none")
    flair = args.flair or swane_flair()
    data = (layout_native if args.native else layout)(args.work / "bids", flair)
    predictions = args.work / "predictions"
    counted, probability, image = predict_and_count(args.lesionkit, args.model, data,
                                                    predictions)
    written = data / "sub-healthy" / "anat" / "sub-healthy_FLAIR.nii.gz"
    result = {"model": str(args.model), "flair": str(flair), **counted}
    if args.each_network:
        from lesionkit.model_folder import read_config
        from lesionkit.shipped import resolve_model

        model, networks = resolve_model(args.model), args.work / "networks"
        folds = [entry["fold"] for entry in read_config(model)["folds"]]
        result["each network"] = {
            str(k): predict_and_count(args.lesionkit,
                                      single_network(model, k, networks / f"fold-{k}"), data,
                                      networks / f"predictions-{k}")[0]
            for k in folds}
        averaged, voxel_mm3 = _label_map(predictions)
        result["lesions shared between networks"] = shared_lesions(
            averaged, {str(k): _label_map(networks / f"predictions-{k}")[0] for k in folds},
            voxel_mm3)
    if args.native:
        from lesionkit.lesions import depth_inside

        [mask] = predictions.rglob("*label-brain_*_mask.nii.gz")
        brain = np.asarray(nib.load(mask).dataobj) > 0
        spacing = tuple(float(z) for z in image.header.get_zooms()[:3])
        result["components at 33 % by depth inside the brain mask"] = by_depth(
            probability, brain, spacing)
        result["predict's lesions on the FLAIR, z-scored in its brain mask"] = \
            lesion_brightness(written, brain, _label_map(predictions)[0])
        lesions = result["predict's lesions"]
        largest_components(written, probability, args.work / "healthy.png",
                           f"healthy FLAIR as scanned: the largest of "
                           f"{result['0.33']['components']} components at 33 %\nred: the "
                           f"{lesions['components']} that predict calls lesions (reaching "
                           f"{lesions['min_depth_mm']:g} mm inside the brain mask), yellow: "
                           "the others", depth=depth_inside(brain, spacing),
                           min_depth_mm=lesions["min_depth_mm"])
    else:
        result["FLAIR intensity over WM"] = intensities(written, probability)
        montage(written, probability, args.work / "healthy.png",
                f"healthy brain: lesion probability >= 33 % "
                f"({result['0.33']['components']} components)")
    (args.work / "healthy.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
