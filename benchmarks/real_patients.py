"""Apply a trained lesion model to two real MS patients and score it against their change masks.

The real data (``/work/shared/realdata``, see its README.md) hold two multiple-sclerosis
patients (patient01, patient12) scanned twice (study1, study2): clinical 2D FLAIR, T1-weighted
and T2-weighted images in native scanner space, skull on, each modality on its own grid, with
ITK affine transform files and ``gt.nii.gz``, the white-matter lesion CHANGE mask (lesions that
changed between study1 and study2: new or enlarging ones, and, as :func:`change_directions`
measures, also ones that shrank or faded) in each patient's common space.

This module:

* lays the images out as a BIDS raw dataset (:func:`layout_bids`), as a user would;
* brings the change mask onto the study2 FLAIR grid (:func:`change_mask_on_flair`);
* scores a predicted lesion probability map against it (:func:`score`) and draws an overlay
  montage (:func:`montage`);
* writes the small cropped real sample shipped with the tests (:func:`make_test_sample`).

The change mask holds only the changed lesions, so it measures how many of those a lesion map
flags at study2; it is not a whole-lesion truth and supports no Dice.

Run the benchmark (``lesionkit predict`` on the laid-out data, then scoring)::

    python benchmarks/real_patients.py --work real-out --model MODEL_DIR

Lay the data out as BIDS with the study2 change masks as ``derivatives/manual`` truth
(for ``lesionkit evaluate ... --truth manual``)::

    python benchmarks/real_patients.py layout --out real-bids

The statistic behind the FLAIR contrast warning (99th percentile of the brain over its
median, on the model's grid, as ``lesionkit predict`` reads the image) for each FLAIR and
for each T2w read as the FLAIR (``lesionkit.data.DARK_CSF_BOUND``)::

    python benchmarks/real_patients.py contrast --model flair-lesion-dr
    python benchmarks/real_patients.py contrast --dataset PHANTOM   # every FLAIR of it

The FLAIR z-score of each study2 change-mask lesion, as ``predict`` reads the image (all,
and those brighter at study2; docs/real-data.md, "A brightness floor")::

    python benchmarks/real_patients.py brightness

Write the test sample (``tests/data/realpatient``)::

    python benchmarks/real_patients.py make-sample --out tests/data/realpatient

Data: the longitudinal MS lesion change database of the Laboratory of Imaging Technologies,
University of Ljubljana, CC BY. Lesjak Z, Pernus F, Likar B, Spiclin Z. Validation of
white-matter lesion change detection methods on a novel publicly available MRI image
database. Neuroinformatics 2016.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

DEFAULT_SOURCE = Path("/work/shared/realdata")
PATIENTS = ("patient01", "patient12")
STUDIES = ("study1", "study2")
#: Source modality name -> BIDS suffix.
MODALITIES = {"FLAIR": "FLAIR", "T1W": "T1w", "T2W": "T2w"}
LICENSE = "CC BY"
CITATION = ("Lesjak Z, Pernus F, Likar B, Spiclin Z. Validation of white-matter lesion change "
            "detection methods on a novel publicly available MRI image database. "
            "Neuroinformatics 2016.")
SOURCE_NAME = ("Longitudinal MS lesion change database, Laboratory of Imaging Technologies, "
               "University of Ljubljana")
BIDS_VERSION = "1.10.0"
#: 26-connectivity in 3D.
FULL = np.ones((3, 3, 3), dtype=bool)
#: Test sample: patient, session, in-plane size (mm; the whole field of view, so that the
#: head and skull are there for brain extraction) and number of slices of the crop.
SAMPLE_PATIENT = "patient01"
SAMPLE_STUDY = "study2"
SAMPLE_INPLANE_MM = 240.0
SAMPLE_SLICES = 12


# ----------------------------------------------------------------------------- layout


def _write_json(data: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def _description(name: str, dataset_type: str = "raw", **extra: Any) -> dict[str, Any]:
    """A ``dataset_description.json`` body naming the source, its licence and its paper."""
    body: dict[str, Any] = {
        "Name": name,
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": dataset_type,
        "License": LICENSE,
        "Authors": ["Ziga Lesjak", "Franjo Pernus", "Bostjan Likar", "Ziga Spiclin"],
        "ReferencesAndLinks": [CITATION],
        "HowToAcknowledge": f"Cite {CITATION}",
    }
    body.update(extra)
    return body


def _write_participants(out: Path, patients: list[str]) -> Path:
    lines = ["participant_id\tgroup"] + [f"sub-{p}\tpatient" for p in patients]
    path = out / "participants.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def layout_bids(source: Path, out: Path, copy: bool = False) -> Path:
    """Lay the real data out as a BIDS raw dataset, as a user's own data would be.

    ``source/patientNN/studyK_{FLAIR,T1W,T2W}.nii.gz`` become
    ``out/sub-patientNN/ses-studyK/anat/sub-patientNN_ses-studyK_{FLAIR,T1w,T2w}.nii.gz``.
    The images are not modified: they are symbolic links to the source files (or copies).

    Args:
        source: Folder of the real data (``patientNN/`` folders).
        out: BIDS root to write; created if missing.
        copy: Copy the images instead of linking them.

    Returns:
        The BIDS root ``out``.
    """
    source, out = Path(source).resolve(), Path(out)
    patients = sorted(p.name for p in source.glob("patient*") if p.is_dir())
    if not patients:
        raise FileNotFoundError(f"{source}: no patient* folders")
    for patient in patients:
        for image in sorted((source / patient).glob("study*_*.nii.gz")):
            study, modality = image.name.removesuffix(".nii.gz").split("_", 1)
            if modality not in MODALITIES:
                continue
            target = (out / f"sub-{patient}" / f"ses-{study}" / "anat"
                      / f"sub-{patient}_ses-{study}_{MODALITIES[modality]}.nii.gz")
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            if copy:
                shutil.copyfile(image, target)
            else:
                target.symlink_to(image)
    _write_json(_description("Real MS patients (longitudinal lesion change database)"),
                out / "dataset_description.json")
    _write_participants(out, patients)
    return out


def layout_with_truth(source: Path, out: Path) -> Path:
    """:func:`layout_bids`, with each study2 change mask on its FLAIR grid as the truth of
    a ``manual`` derivatives pipeline (``sub-<p>_ses-study2_label-lesion_mask.nii.gz``),
    so that ``lesionkit evaluate ... --truth manual`` scores study2 as a user would
    (study1 has no truth: the mask marks what changed by study2), and the same mask as
    ``..._label-change_mask.nii.gz``, the truth of ``lesionkit changes --truth``."""
    out = layout_bids(source, out)
    manual = Path(out) / "derivatives" / "manual"
    for patient in sorted(p.name for p in Path(source).glob("patient*") if p.is_dir()):
        path = (manual / f"sub-{patient}" / "ses-study2" / "anat"
                / f"sub-{patient}_ses-study2_label-lesion_mask.nii.gz")
        path.parent.mkdir(parents=True, exist_ok=True)
        mask = change_mask_on_flair(source, patient)
        mask.set_data_dtype(np.uint8)
        nib.save(mask, path)
        nib.save(mask, path.with_name(path.name.replace("label-lesion", "label-change")))
    _write_json(_description(
        "Change mask (changed lesions) on the FLAIR grid", dataset_type="derivative",
        GeneratedBy=[{"Name": "Manual", "Description": (
            "Change mask of the source database (common space), resampled onto the "
            "study2 FLAIR grid with nearest-neighbour interpolation")}],
        SourceDatasets=[{"URL": "../../"}]), manual / "dataset_description.json")
    return out


# ----------------------------------------------------------------------------- change mask


def change_mask_on_flair(source: Path, patient: str, study: str = "study2") -> nib.Nifti1Image:
    """The change mask ``gt.nii.gz`` resampled from the common space onto a study's FLAIR grid.

    Direction of the transform: ``studyK_FLAIR_to_common_space.txt`` follows the ITK
    convention of registration outputs, i.e. it is the transform that resamples the FLAIR
    (moving) INTO the common space (fixed): it maps a point of the common space to the FLAIR
    point that lands there. ``sitk.Resample(gt, flair, T_resample, ...)`` needs the opposite,
    a map from each FLAIR-grid point to the common space, so the stored transform is inverted
    (``T.GetInverse()``). Checked on both patients' study2 FLAIR: with the inverse the change
    mask sits on bright white-matter lesions (mean FLAIR inside the mask / mean in an Otsu
    head-and-brain mask = 1.21 for patient01, 1.10 for patient12; / mean in a 3-voxel shell around
    the mask = 1.42 and 1.13, and shifting the mapped mask by 2-3 mm along any axis lowers
    it), while the stored transform as is gives shell ratios of 0.98 and 1.06, which extra
    shifts of it raise (it is off target). The overlay montage shows the same. The
    transforms are close to identity (rotations of about 1-3 degrees, translations of a few
    mm), so the wrong direction misplaces the small lesions by a few mm.

    Args:
        source: Folder of the real data.
        patient: ``patient01`` or ``patient12``.
        study: ``study1`` or ``study2``.

    Returns:
        uint8 mask (1 = changed lesion) on the FLAIR's voxel grid, with the FLAIR's affine.
    """
    import SimpleITK as sitk  # noqa: N813

    folder = Path(source) / patient
    flair_path = folder / f"{study}_FLAIR.nii.gz"
    flair = sitk.ReadImage(str(flair_path))
    gt = sitk.ReadImage(str(folder / "gt.nii.gz"))
    stored = sitk.ReadTransform(str(folder / f"{study}_FLAIR_to_common_space.txt"))
    resampled = sitk.Resample(gt, flair, stored.GetInverse(), sitk.sitkNearestNeighbor, 0.0,
                              sitk.sitkUInt8)
    # sitk arrays are (z, y, x); nibabel's voxel order is (i, j, k) = (x, y, z).
    data = (sitk.GetArrayFromImage(resampled).transpose(2, 1, 0) > 0).astype(np.uint8)
    reference = nib.load(flair_path)
    image = nib.Nifti1Image(data, reference.affine)
    for form in ("qform", "sform"):  # the FLAIR's own qform and sform, with their codes
        matrix, code = getattr(reference.header, f"get_{form}")(coded=True)
        if matrix is not None:
            getattr(image.header, f"set_{form}")(matrix, code=int(code))
    image.header.set_xyzt_units("mm", "sec")
    return image


def brain_of(flair: nib.Nifti1Image) -> np.ndarray:
    """The FLAIR's brain mask as lesionkit computes it for a scan without one (BET,
    :func:`lesionkit.brainmask.brain_mask`), to count predicted components inside."""
    from lesionkit.brainmask import brain_mask

    return brain_mask(np.asarray(flair.dataobj, np.float32), flair.affine)[0]


# ----------------------------------------------------------------------------- scoring


def _image(value: Any) -> nib.spatialimages.SpatialImage:
    return value if isinstance(value, nib.spatialimages.SpatialImage) else nib.load(value)


def _on_grid(image: nib.spatialimages.SpatialImage, reference: nib.spatialimages.SpatialImage,
             order: int) -> np.ndarray:
    """``image``'s data on ``reference``'s grid (resampled only when the grids differ)."""
    if image.shape[:3] == reference.shape[:3] and np.allclose(image.affine, reference.affine,
                                                             atol=1e-3):
        return np.asarray(image.dataobj, dtype=np.float32).reshape(reference.shape[:3])
    from nibabel.processing import resample_from_to

    moved = resample_from_to(image, (reference.shape[:3], reference.affine), order=order)
    return np.asarray(moved.dataobj, dtype=np.float32)


def _lesion_mask(probability: np.ndarray, threshold: float, voxel_ml: float,
                 min_ml: float) -> np.ndarray:
    """Voxels at or above ``threshold``, in 26-connected components of at least ``min_ml``
    mL (as ``lesionkit predict --min-lesion-ml`` counts lesions)."""
    if min_ml <= 0:
        return probability >= threshold
    from lesionkit.lesions import lesion_components

    return lesion_components(probability, threshold,
                             max(1, int(np.ceil(min_ml / voxel_ml - 1e-9)))) > 0


def score(probability_path: Path, change_mask: Any, threshold: float = 0.33,
          brain_mask: Any = None, min_ml: float = 0.0) -> dict[str, Any]:
    """Score a lesion probability map on the study2 FLAIR grid against the change mask.

    Components are 26-connected. (The README's counts, 14 and 50 for patient01 and
    patient12, are 6-connected in the common space; 26-connected, the change masks hold 13
    and 46 lesions there and 13 and 45 on the study2 FLAIR grids.)

    The change mask holds only lesions that changed by study2 (most new or enlarging, some
    shrinking; :func:`change_directions`); the patient's other, unchanged MS lesions are not
    in it. ``components_elsewhere`` therefore counts
    predicted components away from the changed lesions: many of them are real (unchanged)
    lesions, so they are NOT necessarily false positives.

    Args:
        probability_path: Lesion probability map (0-1), on the FLAIR grid (resampled
            linearly onto the change mask's grid if it is on another).
        change_mask: Change mask image (or path) on the FLAIR grid, e.g. from
            :func:`change_mask_on_flair`.
        threshold: Probability at or above which a voxel counts as lesion.
        brain_mask: Optional brain mask (image, path or boolean array on the change mask's
            grid); predicted voxels outside it are ignored.
        min_ml: Components of the map smaller than this (mL, over the whole map, before
            the brain mask) are not lesions.

    Returns:
        ``change_lesions``, ``change_lesions_flagged``, ``fraction_flagged`` (flagged /
        change lesions; a change lesion is flagged when any of its voxels has probability
        >= threshold), ``predicted_components``, ``components_touching_change``,
        ``components_elsewhere``, ``predicted_volume_ml`` (mL), ``change_volume_ml`` (mL),
        ``median_component_ml``, ``components_over_speck`` (of ``SPECK_ML`` or more) and
        ``threshold``.
    """
    mask_image = _image(change_mask)
    change = np.asarray(mask_image.dataobj).reshape(mask_image.shape[:3]) > 0
    probability = _on_grid(_image(probability_path), mask_image, order=1)
    voxel_ml = float(np.prod(mask_image.header.get_zooms()[:3])) / 1000.0
    predicted = _lesion_mask(probability, threshold, voxel_ml, min_ml)
    if brain_mask is not None:
        brain = (np.asarray(brain_mask) if isinstance(brain_mask, np.ndarray)
                 else _on_grid(_image(brain_mask), mask_image, order=0))
        predicted &= brain > 0.5
    change_labels, change_count = ndimage.label(change, FULL)
    flagged = np.unique(change_labels[predicted & change])
    predicted_labels, predicted_count = ndimage.label(predicted, FULL)
    touching = np.unique(predicted_labels[predicted & change])
    return {
        "threshold": float(threshold),
        "change_lesions": int(change_count),
        "change_lesions_flagged": int(np.count_nonzero(flagged)),
        "fraction_flagged": (float(np.count_nonzero(flagged)) / change_count
                             if change_count else float("nan")),
        "predicted_components": int(predicted_count),
        "components_touching_change": int(np.count_nonzero(touching)),
        "components_elsewhere": int(predicted_count - np.count_nonzero(touching)),
        "predicted_volume_ml": float(np.count_nonzero(predicted)) * voxel_ml,
        "change_volume_ml": float(np.count_nonzero(change)) * voxel_ml,
        **_sizes(predicted_labels, predicted_count, voxel_ml),
    }


#: Components at least this large (mL) are counted apart from the specks below it.
SPECK_ML = 0.05


def _sizes(labels: np.ndarray, count: int, voxel_ml: float) -> dict[str, Any]:
    """Median component volume (mL) and the number of components of ``SPECK_ML`` or more."""
    volumes = np.bincount(labels.ravel(), minlength=count + 1)[1:] * voxel_ml
    return {"median_component_ml": float(np.median(volumes)) if count else None,
            "components_over_speck": int(np.count_nonzero(volumes >= SPECK_ML))}


def components(probability_path: Path, threshold: float = 0.33,
               brain_mask: np.ndarray | None = None, min_ml: float = 0.0) -> dict[str, Any]:
    """26-connected components and volume (mL) of a probability map at ``threshold`` (of
    at least ``min_ml`` mL), the median component volume (mL) and the components of
    ``SPECK_ML`` or more."""
    image = _image(probability_path)
    voxel_ml = float(np.prod(image.header.get_zooms()[:3])) / 1000.0
    predicted = _lesion_mask(np.asarray(image.dataobj, dtype=np.float32).reshape(
        image.shape[:3]), threshold, voxel_ml, min_ml)
    if brain_mask is not None:
        predicted &= brain_mask
    labels, count = ndimage.label(predicted, FULL)
    return {"threshold": float(threshold), "predicted_components": int(count),
            "predicted_volume_ml": float(np.count_nonzero(predicted)) * voxel_ml,
            **_sizes(labels, count, voxel_ml)}


# ----------------------------------------------------------------------------- montage


def montage(flair_path: Path, probability_path: Path, change_mask: Any, out_png: Path,
            slices: int = 6, threshold: float = 0.33, title: str | None = None) -> Path:
    """Axial slices through the changed lesions: FLAIR, prediction and change-mask outline.

    The slices are those holding the most change-mask voxels, shown from inferior to
    superior. Images are reoriented to the closest RAS axes and shown
    in neurological view (the patient's right on the right).

    Args:
        flair_path: FLAIR image; its grid is the display grid.
        probability_path: Lesion probability map (0-1), resampled onto the FLAIR if needed.
        change_mask: Change mask (image or path) on the FLAIR grid.
        out_png: PNG to write.
        slices: Number of axial slices.
        threshold: Probability at or above which the prediction is drawn.
        title: Figure title (default: patient and session from the FLAIR's file name).

    Returns:
        ``out_png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    flair_image = nib.as_closest_canonical(nib.load(flair_path))
    flair = np.asarray(flair_image.dataobj, dtype=np.float32).reshape(flair_image.shape[:3])
    change = _on_grid(_image(change_mask), flair_image, order=0) > 0
    probability = _on_grid(_image(probability_path), flair_image, order=1)
    counts = change.sum(axis=(0, 1))
    chosen = np.argsort(counts, kind="stable")[::-1][:slices]
    chosen = np.sort(chosen[counts[chosen] > 0]) if counts.any() else np.linspace(
        0, flair.shape[2] - 1, slices).round().astype(int)
    low, high = np.percentile(flair[flair > 0], [1, 99])
    # Crop the display to the head (voxels above the 1st percentile, with a margin).
    head = np.argwhere((flair > low).any(axis=2))
    margin = 8
    x0, y0 = np.maximum(head.min(axis=0) - margin, 0)
    x1, y1 = np.minimum(head.max(axis=0) + margin + 1, flair.shape[:2])
    view = (slice(x0, x1), slice(y0, y1))
    columns = min(3, len(chosen))
    rows = int(np.ceil(len(chosen) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.0 * columns, 4.2 * rows + 0.7),
                                squeeze=False, layout="constrained")
    overlay = matplotlib.colors.ListedColormap(["#ff8c00"])
    for axis in axes.ravel():
        axis.axis("off")
    for axis, k in zip(axes.ravel(), chosen, strict=False):
        section = (*view, k)
        axis.imshow(flair[section].T, cmap="gray", vmin=low, vmax=high, origin="lower",
                    interpolation="nearest")
        predicted = np.ma.masked_less(probability[section].T, threshold)
        axis.imshow(predicted, cmap=overlay, alpha=0.5, origin="lower",
                    interpolation="nearest")
        if change[section].any():
            axis.contour(change[section].T.astype(float), levels=[0.5], colors="#00e5ff",
                         linewidths=0.9, origin="lower")
        axis.set_title(f"axial slice {k}: {int(counts[k])} change voxels", fontsize=9)
    if title is None:
        parts = Path(flair_path).name.split("_")
        title = " ".join(p for p in parts if p.startswith(("sub-", "ses-"))) or str(flair_path)
    figure.suptitle(f"{title}: FLAIR, lesion probability >= {threshold:g}, change mask",
                    fontsize=11)
    figure.legend(handles=[Patch(color="#ff8c00", alpha=0.6,
                                 label=f"probability >= {threshold:g}"),
                           Line2D([], [], color="#00e5ff", label="change mask (changed lesions)")],
                  loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png, dpi=110)
    plt.close(figure)
    return out_png


# ----------------------------------------------------------------------------- test sample


def _sample_box(change: np.ndarray, size: tuple[int, int, int]) -> tuple[slice, ...]:
    """The box of ``size`` voxels holding the most change-mask voxels (inside the image)."""
    size = tuple(min(s, n) for s, n in zip(size, change.shape, strict=True))
    # Sum of the mask over every box position, by cumulative sums.
    total = np.pad(change.astype(np.int64), [(1, 0)] * 3).cumsum(0).cumsum(1).cumsum(2)
    sx, sy, sz = size
    sums = (total[sx:, sy:, sz:] - total[:-sx, sy:, sz:] - total[sx:, :-sy, sz:]
            - total[sx:, sy:, :-sz] + total[:-sx, :-sy, sz:] + total[:-sx, sy:, :-sz]
            + total[sx:, :-sy, :-sz] - total[:-sx, :-sy, :-sz])
    best = np.argwhere(sums == sums.max())
    centre = np.array(sums.shape) / 2.0
    start = best[np.argmin(np.abs(best - centre).sum(axis=1))]  # the most central optimum
    return tuple(slice(int(a), int(a) + s) for a, s in zip(start, size, strict=True))


def _covering_box(box: tuple[slice, ...], affine: np.ndarray, other: nib.Nifti1Image
                  ) -> tuple[slice, ...]:
    """Voxel box of ``other`` covering the world corners of ``box`` on the grid of ``affine``."""
    corners = np.array([[edge[0] - 0.5 if c == 0 else edge[1] - 0.5 for c, edge in
                         zip(choice, [(s.start, s.stop) for s in box], strict=True)]
                        for choice in np.ndindex(2, 2, 2)])
    world = nib.affines.apply_affine(affine, corners)
    voxels = nib.affines.apply_affine(np.linalg.inv(other.affine), world)
    low = np.clip(np.floor(voxels.min(axis=0) + 0.5), 0, None).astype(int)
    high = np.minimum(np.ceil(voxels.max(axis=0) + 0.5).astype(int), other.shape[:3])
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))


def _shape(image: nib.spatialimages.SpatialImage) -> str:
    return " x ".join(str(n) for n in image.shape[:3])


def _crop(image: nib.Nifti1Image, box: tuple[slice, ...]) -> nib.Nifti1Image:
    """``image.slicer[box]`` with the qform and sform (and their codes) both shifted.

    ``slicer`` moves the affine's translation so every kept voxel keeps its world position;
    here the original qform and sform are shifted the same way, so the header keeps its codes.
    """
    cropped = image.slicer[box]
    shift = np.eye(4)
    shift[:3, 3] = [s.start for s in box]
    header = image.header
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    if qform is not None:
        cropped.header.set_qform(qform @ shift, code=int(qcode))
    if sform is not None:
        cropped.header.set_sform(sform @ shift, code=int(scode))
    return cropped


def make_test_sample(source: Path, out: Path) -> dict[str, Any]:
    """Write the small cropped real sample used by the test suite.

    patient01's study2 FLAIR is cropped to the box of about 100 x 100 mm in plane x 11
    slices (each FLAIR's own voxel grid) holding the most change-mask voxels; the T1w is
    cropped to the box of its own grid covering that box's world corners, so the two stay
    on different grids. Each image keeps its dtype and header; ``image.slicer`` shifts the
    affine's translation (here the qform's and the sform's) so every kept voxel keeps its
    world position. The change mask
    (:func:`change_mask_on_flair`) is cropped with the FLAIR and written as a manual
    derivative.

    Args:
        source: Folder of the real data.
        out: Sample root to write (BIDS raw dataset with ``derivatives/manual``).

    Returns:
        The FLAIR and T1w boxes (voxel slices, as [start, stop] lists) and the files written.
    """
    source, out = Path(source), Path(out)
    patient, study = SAMPLE_PATIENT, SAMPLE_STUDY
    flair = nib.load(source / patient / f"{study}_FLAIR.nii.gz")
    t1 = nib.load(source / patient / f"{study}_T1W.nii.gz")
    change = change_mask_on_flair(source, patient, study)
    zooms = flair.header.get_zooms()[:3]
    size = (min(round(SAMPLE_INPLANE_MM / zooms[0]), flair.shape[0]),
            min(round(SAMPLE_INPLANE_MM / zooms[1]), flair.shape[1]), SAMPLE_SLICES)
    box = _sample_box(np.asarray(change.dataobj) > 0, size)
    t1_box = _covering_box(box, flair.affine, t1)
    anat = out / f"sub-{patient}" / f"ses-{study}" / "anat"
    stem = f"sub-{patient}_ses-{study}"
    written = []
    for image, crop, suffix in ((flair, box, "FLAIR"), (t1, t1_box, "T1w")):
        path = anat / f"{stem}_{suffix}.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(_crop(image, crop), path)
        written.append(path)
    mask = _crop(change, box)
    mask.set_data_dtype(np.uint8)
    manual = out / "derivatives" / "manual"
    mask_path = (manual / f"sub-{patient}" / f"ses-{study}" / "anat"
                 / f"{stem}_label-lesion_mask.nii.gz")
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(mask, mask_path)
    written.append(mask_path)
    change_path = mask_path.with_name(f"{stem}_label-change_mask.nii.gz")  # changes --truth
    nib.save(mask, change_path)
    written.append(change_path)
    written.append(_write_json(_description("Real MS patient sample (cropped)"),
                               out / "dataset_description.json"))
    written.append(_write_json(_description(
        "Change mask (changed lesions) on the FLAIR grid", dataset_type="derivative",
        GeneratedBy=[{"Name": "Manual", "Description": (
            "Change mask of the source database (common space), resampled onto the "
            "study2 FLAIR grid with nearest-neighbour interpolation, then cropped")}],
        SourceDatasets=[{"URL": "../../"}]), manual / "dataset_description.json"))
    written.append(_write_participants(out, [patient]))
    shutil.copyfile(source / "LICENSE.txt", out / "LICENSE.txt")
    written.append(out / "LICENSE.txt")

    def spans(crop: tuple[slice, ...]) -> list[list[int]]:
        return [[s.start, s.stop] for s in crop]

    def ranges(crop: tuple[slice, ...]) -> str:
        return ", ".join(f"{s.start}:{s.stop}" for s in crop)

    t1_zooms = t1.header.get_zooms()[:3]

    def extent_mm(crop: tuple[slice, ...], sizes: tuple[float, ...]) -> list[float]:
        return [round(float((s.stop - s.start) * z), 1) for s, z in zip(crop, sizes, strict=True)]

    extent, t1_extent = extent_mm(box, zooms), extent_mm(t1_box, t1_zooms)
    kept = int(np.count_nonzero(np.asarray(mask.dataobj)))
    whole = int(np.count_nonzero(np.asarray(change.dataobj)))
    paragraphs = [
        "# Real MS patient sample (cropped)",
        "A small piece of a real clinical MRI examination of a multiple-sclerosis patient, "
        f"for tests that run lesionkit on real, native-space data: `sub-{patient}`, session "
        f"`ses-{study}` (the second of two time points), FLAIR and T1-weighted, skull on, "
        "each on its own scanner grid as acquired.",
        "## Files",
        f"- `sub-{patient}/ses-{study}/anat/{stem}_FLAIR.nii.gz`: FLAIR voxels "
        f"{ranges(box)} of the original {_shape(flair)} grid ({size[0]} x {size[1]} x "
        f"{size[2]} voxels, {extent[0]} x {extent[1]} x {extent[2]} mm).",
        f"- `sub-{patient}/ses-{study}/anat/{stem}_T1w.nii.gz`: T1-weighted voxels "
        f"{ranges(t1_box)} of the original {_shape(t1)} grid ({t1_extent[0]} x "
        f"{t1_extent[1]} x {t1_extent[2]} mm), on its own grid.",
        f"- `derivatives/manual/`, same folders: `{stem}_label-lesion_mask.nii.gz`, "
        "the database's lesion CHANGE mask (lesions that changed since the first time "
        "point, most new or enlarging, some shrinking) on the FLAIR crop, uint8; "
        f"{kept} of its {whole} voxels on the whole FLAIR grid lie in the crop.",
        f"- `derivatives/manual/`, same folders: `{stem}_label-change_mask.nii.gz`, the "
        "same mask as the change truth that `lesionkit changes --truth` scores the changes "
        "read between two visits against.",
        "The change mask marks only the changed lesions; other lesions visible on the FLAIR "
        "are not in it, so it is not a whole-lesion truth.",
        "## How it was made",
        f"`python benchmarks/real_patients.py make-sample --out {out}` (function "
        "`make_test_sample` in `benchmarks/real_patients.py`) from the source's "
        f"`{patient}/{study}_FLAIR.nii.gz`, `{patient}/{study}_T1W.nii.gz`, "
        f"`{patient}/gt.nii.gz` and `{patient}/{study}_FLAIR_to_common_space.txt`:",
        f"1. The FLAIR crop is the slab of {size[2]} slices (the whole field of view in "
        "plane, with the skull, so that brain extraction has a head to work on) holding the "
        "most change-mask voxels.",
        "2. The T1-weighted crop is the smallest box of the T1 grid holding the FLAIR box's "
        "eight world corners, so both files cover the same region on different grids.",
        "3. Each crop keeps its image's voxel values, data type and header; only the "
        "translation of the affine (qform and sform) changes, as with nibabel's "
        "`image.slicer`, so every kept voxel keeps its world position.",
        "4. The change mask, given in the patient's common space, was brought onto the FLAIR "
        f"grid with the inverse of `{study}_FLAIR_to_common_space.txt` (nearest neighbour, "
        "SimpleITK) and cropped with the FLAIR.",
        "## Source, licence and citation",
        f"Source: {SOURCE_NAME}. Licence: {LICENSE} (see `LICENSE.txt`); the files here are "
        "cropped from the original images.",
        f"Cite: {CITATION}",
    ]
    wrapped = [p if p.startswith("#") else textwrap.fill(
        p, width=90, subsequent_indent="   " if p[0].isdigit() else "  " if p[0] == "-" else "",
        break_on_hyphens=False, break_long_words=False) for p in paragraphs]
    readme = "\n\n".join(wrapped) + "\n"
    (out / "README.md").write_text(readme)
    written.append(out / "README.md")
    return {"flair_box": spans(box), "t1w_box": spans(t1_box), "flair_extent_mm": extent,
            "t1w_extent_mm": t1_extent, "change_voxels_kept": kept, "change_voxels": whole,
            "files": [str(p) for p in written]}


BASELINE_STUDY = "study1"
#: Slices added above and below the study1 slab (head position differs between visits).
BASELINE_MARGIN_SLICES = 2


def _on_baseline(source: Path, patient: str, flair: nib.Nifti1Image, box: tuple[slice, ...],
                 baseline: nib.Nifti1Image) -> tuple[slice, ...]:
    """The box of the study1 FLAIR grid holding the anatomy of ``box`` of the study2 FLAIR:
    the box's world corners taken to study1 through the database's transforms (study2 to
    the common space, then to study1), the whole field of view in plane and
    ``BASELINE_MARGIN_SLICES`` more slices on each side."""
    import SimpleITK as sitk  # noqa: N813

    folder = Path(source) / patient
    to_common = {s: sitk.ReadTransform(str(folder / f"{s}_FLAIR_to_common_space.txt"))
                 for s in STUDIES}
    corners = np.array([[edge[0] - 0.5 if c == 0 else edge[1] - 0.5 for c, edge in
                         zip(choice, [(s.start, s.stop) for s in box], strict=True)]
                        for choice in np.ndindex(2, 2, 2)])
    lps = np.diag([-1.0, -1.0, 1.0])  # nibabel's world is RAS, ITK's LPS
    points = []
    for corner in nib.affines.apply_affine(flair.affine, corners) @ lps:
        common = to_common[SAMPLE_STUDY].GetInverse().TransformPoint([float(v) for v in corner])
        points.append(np.asarray(to_common[BASELINE_STUDY].TransformPoint(common)) @ lps)
    voxels = nib.affines.apply_affine(np.linalg.inv(baseline.affine), np.array(points))
    low = int(np.floor(voxels[:, 2].min() + 0.5)) - BASELINE_MARGIN_SLICES
    high = int(np.ceil(voxels[:, 2].max() + 0.5)) + BASELINE_MARGIN_SLICES
    return (slice(0, baseline.shape[0]), slice(0, baseline.shape[1]),
            slice(max(low, 0), min(high, baseline.shape[2])))


def make_baseline_sample(source: Path, out: Path) -> dict[str, Any]:
    """Write the first visit of the test sample's patient, cropped to the same anatomy: the
    study1 FLAIR slab holding the study2 sample's slab (:func:`_on_baseline`), as its own
    BIDS dataset (``tests/data/realpatient-study1``), for ``lesionkit changes``.

    Returns:
        The study1 box (voxel slices as [start, stop] lists) and the files written.
    """
    source, out = Path(source), Path(out)
    patient = SAMPLE_PATIENT
    flair = nib.load(source / patient / f"{SAMPLE_STUDY}_FLAIR.nii.gz")
    baseline = nib.load(source / patient / f"{BASELINE_STUDY}_FLAIR.nii.gz")
    zooms = flair.header.get_zooms()[:3]
    size = (min(round(SAMPLE_INPLANE_MM / zooms[0]), flair.shape[0]),
            min(round(SAMPLE_INPLANE_MM / zooms[1]), flair.shape[1]), SAMPLE_SLICES)
    change = change_mask_on_flair(source, patient, SAMPLE_STUDY)
    box = _on_baseline(source, patient, flair, _sample_box(np.asarray(change.dataobj) > 0, size),
                       baseline)
    stem = f"sub-{patient}_ses-{BASELINE_STUDY}"
    path = out / f"sub-{patient}" / f"ses-{BASELINE_STUDY}" / "anat" / f"{stem}_FLAIR.nii.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(_crop(baseline, box), path)
    written = [path, _write_json(_description("Real MS patient sample, first visit (cropped)"),
                                 out / "dataset_description.json"),
               _write_participants(out, [patient])]
    shutil.copyfile(source / "LICENSE.txt", out / "LICENSE.txt")
    ranges = ", ".join(f"{s.start}:{s.stop}" for s in box)
    paragraphs = [
        "# Real MS patient sample, first visit (cropped)",
        f"The first of the two visits of `sub-{patient}` whose second visit is "
        "`tests/data/realpatient`: the FLAIR of session `ses-study1`, skull on, on its own "
        "scanner grid, so that `lesionkit changes` can be tried on a real pair of visits "
        "(the head lies about 10 mm elsewhere in the scanner than at the second visit).",
        "## Files",
        f"- `sub-{patient}/ses-{BASELINE_STUDY}/anat/{stem}_FLAIR.nii.gz`: FLAIR voxels "
        f"{ranges} of the original {_shape(baseline)} grid.",
        "## How it was made",
        f"`python benchmarks/real_patients.py make-baseline-sample --out {out}` (function "
        "`make_baseline_sample` in `benchmarks/real_patients.py`) from the source's "
        f"`{patient}/{BASELINE_STUDY}_FLAIR.nii.gz` and both visits' "
        "`*_FLAIR_to_common_space.txt`: the corners of the second visit's slab were taken "
        "to this FLAIR through the database's transforms, and the slices holding them, "
        f"{BASELINE_MARGIN_SLICES} more on each side, kept with the whole field of view in "
        "plane. The crop keeps the image's voxel values, data type and header; only the "
        "affine's translation changes, so every kept voxel keeps its world position.",
        "## Source, licence and citation",
        f"Source: {SOURCE_NAME}. Licence: {LICENSE} (see `LICENSE.txt`); the file here is "
        "cropped from the original image.",
        f"Cite: {CITATION}",
    ]
    wrapped = [p if p.startswith("#") else textwrap.fill(
        p, width=90, subsequent_indent="  " if p[0] == "-" else "", break_on_hyphens=False,
        break_long_words=False) for p in paragraphs]
    (out / "README.md").write_text("\n\n".join(wrapped) + "\n")
    written += [out / "LICENSE.txt", out / "README.md"]
    return {"study1_box": [[s.start, s.stop] for s in box], "files": [str(p) for p in written]}


# ----------------------------------------------------------------------------- benchmark


def _prediction(predictions: Path, patient: str, study: str) -> Path | None:
    folder = predictions / f"sub-{patient}" / f"ses-{study}" / "anat"
    found = sorted(p for p in folder.glob("*label-lesion*_probseg.nii.gz")
                   if "desc-uncertainty" not in p.name)
    return found[0] if found else None


def _table(rows: list[dict[str, Any]]) -> str:
    columns = [("patient", "patient"), ("session", "session"),
               ("change_lesions", "change lesions"), ("change_lesions_flagged", "flagged"),
               ("fraction_flagged", "fraction flagged"),
               ("predicted_components", "predicted components"),
               ("components_touching_change", "touching change"),
               ("components_elsewhere", "elsewhere"), ("predicted_volume_ml", "volume (mL)"),
               ("median_component_ml", "median component (mL)"),
               ("components_over_speck", f"components >= {SPECK_ML:g} mL"),
               ("components_whole_field", "components, whole field of view"),
               ("change_outside_masks", "change voxels outside the brain masks (this "
                                        "benchmark's / predict's)")]

    def cell(value: Any, key: str) -> str:
        if value is None:
            return "-"
        digits = 3 if key == "median_component_ml" else 2
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(title for _, title in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(key), key) for key, _ in columns) + " |"
              for row in rows]
    return "\n".join(lines) + "\n"


def _written_mask(predictions: Path, patient: str, study: str) -> Path | None:
    """The brain mask ``predict`` computed and wrote beside its maps, if any."""
    folder = predictions / f"sub-{patient}" / f"ses-{study}" / "anat"
    found = sorted(folder.glob("*_label-brain_*mask.nii.gz"))
    return found[0] if found else None


def run_benchmark(source: Path, work: Path, model: Path, lesionkit: str,
                  threshold: float = 0.33, min_ml: float = 0.0) -> list[dict[str, Any]]:
    """Lay out the data, run ``lesionkit predict`` and score the predictions.

    Args:
        source: Folder of the real data.
        work: Output folder (``bids/``, ``predictions/``, montages, ``scores.json``/``.md``).
        model: Model folder written by ``lesionkit train``.
        lesionkit: The ``lesionkit`` command.
        threshold: Probability at or above which a voxel counts as lesion.
        min_ml: Smaller components are not lesions (``predict --min-lesion-ml``).

    Returns:
        One row of scores per patient and session.
    """
    work = Path(work)
    bids = layout_bids(source, work / "bids")
    predictions = work / "predictions"
    subprocess.run([lesionkit, "predict", str(model), str(bids), "--out-dir",
                    str(predictions), "--min-lesion-ml", f"{min_ml:g}"], check=True)
    rows: list[dict[str, Any]] = []
    for patient in PATIENTS:
        for study in STUDIES:
            row: dict[str, Any] = {"patient": patient, "session": study}
            path = _prediction(predictions, patient, study)
            flair_path = bids / f"sub-{patient}" / f"ses-{study}" / "anat" / (
                f"sub-{patient}_ses-{study}_FLAIR.nii.gz")
            if path is None:
                row["error"] = "no prediction"
                rows.append(row)
                continue
            row["prediction"] = str(path)
            flair = nib.load(flair_path)
            brain = brain_of(flair)
            if study == "study2":
                change = change_mask_on_flair(source, patient, study)
                row.update(score(path, change, threshold, brain_mask=brain, min_ml=min_ml))
                inside = np.asarray(change.dataobj) > 0
                written = _written_mask(predictions, patient, study)
                theirs = ("-" if written is None else
                          int((inside & (_on_grid(nib.load(written), change, 0) < 0.5)).sum()))
                row["change_outside_masks"] = f"{int((inside & ~brain).sum())} / {theirs}"
                row["montage"] = str(montage(
                    flair_path, path, change, work / f"montage_{patient}_{study}.png",
                    threshold=threshold, title=f"sub-{patient} ses-{study}"))
            else:
                row.update(components(path, threshold, brain_mask=brain, min_ml=min_ml))
            row["components_whole_field"] = components(path, threshold, min_ml=min_ml)[
                "predicted_components"]
            rows.append(row)
    _write_json({"threshold": threshold, "min_lesion_ml": min_ml,
                 "brain_mask": "lesionkit.brainmask (BET) of the FLAIR", "rows": rows},
                work / "scores.json")
    table = _table(rows)
    (work / "scores.md").write_text(
        f"# Real MS patients: lesion map vs change mask (threshold {threshold:g}"
        f"{f', lesions of {min_ml:g} mL or more' if min_ml > 0 else ''})\n\n"
        "Components are 26-connected and counted inside the FLAIR's brain mask (lesionkit's "
        "BET), except in the column 'whole field of view'. The change mask "
        "holds only changed lesions, so components elsewhere are not necessarily false "
        "positives; study1 has no change mask.\n\n" + table)
    print(table)
    return rows


# ----------------------------------------------------------------------------- changes


def study1_on_study2(source: Path, patient: str) -> np.ndarray:
    """The study1 FLAIR on the study2 FLAIR grid through the database's own transforms (a
    study2 point to the common space, then to study1; linear), independent of lesionkit's
    co-registration."""
    import SimpleITK as sitk  # noqa: N813

    folder = Path(source) / patient
    study2 = sitk.ReadImage(str(folder / "study2_FLAIR.nii.gz"), sitk.sitkFloat32)
    study1 = sitk.ReadImage(str(folder / "study1_FLAIR.nii.gz"), sitk.sitkFloat32)
    to_common = {s: sitk.ReadTransform(str(folder / f"{s}_FLAIR_to_common_space.txt"))
                 for s in STUDIES}
    # CompositeTransform applies its last transform first: study2 -> common -> study1.
    chain = sitk.CompositeTransform([to_common["study1"], to_common["study2"].GetInverse()])
    moved = sitk.Resample(study1, study2, chain, sitk.sitkLinear, 0.0)
    return sitk.GetArrayFromImage(moved).transpose(2, 1, 0)


def change_directions(source: Path, patient: str, brain: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The change mask's lesions on the study2 FLAIR grid (26-connected labels) and, per
    lesion, whether its FLAIR is brighter at study2 than at study1: the mean over the lesion
    of the difference of the two FLAIRs (study1 moved with the database's transforms), each
    scaled by its median and interquartile range over the study2 brain mask."""
    change = np.asarray(change_mask_on_flair(source, patient).dataobj) > 0
    labels, count = ndimage.label(change, FULL)
    study2 = np.asarray(nib.load(Path(source) / patient / "study2_FLAIR.nii.gz").dataobj,
                        dtype=np.float32)
    study1 = study1_on_study2(source, patient)

    def scaled(image: np.ndarray) -> np.ndarray:
        low, median, high = np.percentile(image[brain], [25, 50, 75])
        return (image - median) / (high - low)

    difference = scaled(study2) - scaled(study1)
    means = ndimage.mean(difference, labels, np.arange(1, count + 1)) if count else []
    return labels, np.asarray(means) > 0


def score_changes(label_path: Path, truth_labels: np.ndarray, brighter: np.ndarray
                  ) -> dict[str, Any]:
    """Score a ``lesionkit changes`` label map (on the study2 FLAIR grid) against the
    change mask's lesions: changes called (by kind, from the table beside it), those
    touching a change lesion and those elsewhere, and the change lesions flagged (touched
    by a change), apart for those brighter and darker at study2."""
    import csv

    called = np.asarray(nib.load(label_path).dataobj)
    table = label_path.with_name(label_path.name.removesuffix(".nii.gz") + ".tsv")
    with table.open(newline="") as handle:
        listed = list(csv.DictReader(handle, delimiter="\t"))
    kinds = {int(row["label"]): row["change"] for row in listed}
    truth = truth_labels > 0
    touching = set(np.unique(called[(called > 0) & truth]).tolist()) - {0}
    flagged = set(np.unique(truth_labels[(called > 0) & truth]).tolist()) - {0}
    up = {i + 1 for i in np.flatnonzero(brighter)}
    voxel_ml = float(np.prod(nib.load(label_path).header.get_zooms()[:3])) / 1000.0
    sizes = np.bincount(truth_labels.ravel(), minlength=len(brighter) + 1)[1:] * voxel_ml
    largest = np.argsort(-sizes, kind="stable")[:2]
    elsewhere = [r for r in listed if int(r["label"]) not in touching]
    return {
        "median_change_lesion_ml": round(float(np.median(sizes)), 3) if len(sizes) else None,
        "largest_change_lesions": ", ".join(
            f"{sizes[i]:.2f} mL {'brighter' if brighter[i] else 'darker'}" for i in largest),
        "calls_elsewhere_detail": "; ".join(
            f"{r['change']} {float(r['volume_mm3']):.0f} mm^3 z {float(r['mean_z']):.1f}"
            for r in elsewhere),
        "change_lesions": f"{len(brighter)} ({len(up)} / {len(brighter) - len(up)})",
        "changes_called": len(kinds),
        "called_by_kind": ", ".join(f"{sum(k == kind for k in kinds.values())} {kind}"
                                    for kind in ("new", "enlarging", "shrinking", "resolved")),
        "calls_touching_change": len(touching),
        "calls_elsewhere": len(kinds) - len(touching),
        "flagged": f"{len(flagged)} ({len(flagged & up)} / {len(flagged - up)})",
    }


def change_montage(source: Path, patient: str, label_path: Path, truth: np.ndarray,
                   out_png: Path, slices: int = 3) -> Path:
    """Axial slices through the largest changes: the study1 FLAIR on the study2 grid
    (database transforms, for display), the study2 FLAIR, and the study2 FLAIR with the
    changes (orange: new or enlarging; blue: shrinking or resolved) and the change mask
    (cyan outline). Slices in the FLAIR's storage order, not reoriented."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study2 = np.asarray(nib.load(Path(source) / patient / "study2_FLAIR.nii.gz").dataobj,
                        dtype=np.float32)
    study1 = study1_on_study2(source, patient)
    labels = np.asarray(nib.load(label_path).dataobj)
    table = label_path.with_name(label_path.name.removesuffix(".nii.gz") + ".tsv")
    with table.open(newline="") as handle:
        up = [int(r["label"]) for r in csv.DictReader(handle, delimiter="\t")
              if r["change"] in ("new", "enlarging")]
    counts = (labels > 0).sum(axis=(0, 1))
    chosen = np.sort(np.argsort(counts, kind="stable")[::-1][:slices])
    low, high = np.percentile(study2[study2 > 0], [1, 99.5])
    head = np.argwhere((study2 > low).any(axis=2))
    (x0, y0), (x1, y1) = head.min(axis=0), head.max(axis=0) + 1
    figure, axes = plt.subplots(len(chosen), 3, figsize=(10.5, 3.7 * len(chosen)),
                                squeeze=False, layout="constrained")
    for row, k in zip(axes, chosen, strict=True):
        view = (slice(x0, x1), slice(y0, y1), k)
        for axis, image, title in zip(row, (study1, study2, study2), (
                "study1 (on the study2 grid)", "study2", "study2, changes"), strict=True):
            axis.imshow(image[view].T, cmap="gray", vmin=low, vmax=high, origin="lower")
            axis.set_title(f"{title}, slice {k}", fontsize=9)
            axis.axis("off")
        for kind, colour in ((np.isin(labels, up), "#ff8c00"),
                             ((labels > 0) & ~np.isin(labels, up), "#3b7bff")):
            if kind[view].any():
                row[2].imshow(np.ma.masked_equal(kind[view].T.astype(float), 0),
                              cmap=matplotlib.colors.ListedColormap([colour]), alpha=0.6,
                              origin="lower")
        if truth[view].any():
            row[2].contour(truth[view].T.astype(float), levels=[0.5], colors="#00e5ff",
                           linewidths=0.8, origin="lower")
    figure.suptitle(f"sub-{patient}: lesionkit changes (orange new or enlarging, blue "
                    "shrinking or resolved), change mask in cyan", fontsize=10)
    figure.savefig(out_png, dpi=80)
    plt.close(figure)
    return out_png


def run_changes(source: Path, work: Path, lesionkit: str, z_threshold: float,
                threshold: float = 0.33) -> list[dict[str, Any]]:
    """``lesionkit changes`` on the predictions of an earlier benchmark run in ``work``,
    scored against the change masks (``work/changes-z<Z>/``, ``changes-z<Z>.md``)."""
    work = Path(work)
    out = work / f"changes-z{z_threshold:g}"
    subprocess.run([lesionkit, "changes", str(work / "predictions"), "--out-dir", str(out),
                    "--z-threshold", f"{z_threshold:g}", "--lesion-threshold",
                    f"{threshold:g}"], check=True)
    rows = []
    for patient in PATIENTS:
        brain = brain_of(nib.load(Path(source) / patient / "study2_FLAIR.nii.gz"))
        truth, brighter = change_directions(source, patient, brain)
        label = next((out / f"sub-{patient}" / "ses-study2" / "anat").glob(
            "*_label-lesion_*change_dseg.nii.gz"))
        rows.append({"patient": patient, **score_changes(label, truth, brighter)})
        change_montage(source, patient, label, truth > 0,
                       work / f"changes-z{z_threshold:g}_{patient}.png")
    titles = {"patient": "patient", "change_lesions": "change lesions (brighter / darker)",
              "changes_called": "changes called", "called_by_kind": "of which",
              "calls_touching_change": "touching a change lesion",
              "calls_elsewhere": "elsewhere", "flagged": "change lesions flagged "
                                                        "(brighter / darker)"}
    lines = ["| " + " | ".join(titles.values()) + " |", "|" + "---|" * len(titles)]
    lines += ["| " + " | ".join(str(row[key]) for key in titles) + " |" for row in rows]
    for row in rows:
        lines += ["", f"{row['patient']}: change lesions' median {row['median_change_lesion_ml']} "
                  f"mL, the largest {row['largest_change_lesions']}; calls elsewhere: "
                  f"{row['calls_elsewhere_detail'] or 'none'}"]
    text = "\n".join(lines) + "\n"
    (work / f"changes-z{z_threshold:g}.md").write_text(
        f"# lesionkit changes (z >= {z_threshold:g}, lesion threshold {threshold:g}) against "
        "the change masks\n\nChange lesions are 26-connected on the study2 FLAIR grid; "
        "brighter / darker: their FLAIR at study2 against study1 moved with the database's "
        "transforms.\n\n" + text)
    print(text)
    return rows


def _default_lesionkit() -> str:
    beside = Path(sys.executable).parent / "lesionkit"
    return str(beside) if beside.exists() else "lesionkit"


def contrast_ratios(source: Path, model: str) -> list[dict[str, Any]]:
    """For each session, the bright-CSF ratio (:func:`lesionkit.data.bright_csf_ratio`, as
    ``load_subject`` records it) of its FLAIR and of its T2w given as the FLAIR, each read
    with its T1w as ``predict --image`` reads them (the model's grid, the brain mask
    computed)."""
    import tempfile

    from lesionkit.bids import BIDSDataset
    from lesionkit.data import load_subject, prediction_specs
    from lesionkit.files import dataset_of_files
    from lesionkit.model_folder import read_config, task_from_config
    from lesionkit.shipped import resolve_model

    folder = resolve_model(model)
    task = task_from_config(read_config(folder), folder / "config.yaml")
    rows = []
    for patient in PATIENTS:
        for study in STUDIES:
            row: dict[str, Any] = {"patient": patient, "session": study}
            for given in ("FLAIR", "T2W"):
                with tempfile.TemporaryDirectory() as root:
                    dataset_of_files(task, {"flair": source / patient / f"{study}_{given}.nii.gz",
                                            "t1w": source / patient / f"{study}_T1W.nii.gz"},
                                     Path(root))
                    notes = load_subject(BIDSDataset(root), "01", task,
                                         prediction_specs(task))["notes"]
                ratio = notes["BrightCSFRatio"]["sub-01_FLAIR.nii.gz"]
                row[f"{given} as FLAIR"] = ratio
            rows.append(row)
    return rows


def dataset_contrast_ratios(root: Path, model: str) -> list[dict[str, Any]]:
    """The bright-CSF ratio of every subject's FLAIR in a BIDS dataset (a phantom cohort,
    say), read as ``lesionkit predict`` reads it."""
    from lesionkit.bids import BIDSDataset
    from lesionkit.data import load_subject, prediction_specs, prediction_units
    from lesionkit.model_folder import read_config, task_from_config
    from lesionkit.shipped import resolve_model

    folder = resolve_model(model)
    task = task_from_config(read_config(folder), folder / "config.yaml")
    dataset = BIDSDataset(root)
    rows = []
    for subject, session, run in prediction_units(dataset, task):
        notes = load_subject(dataset, subject, task, prediction_specs(task), session,
                             run=run)["notes"]
        rows.append({"subject": subject, "session": session, **notes["BrightCSFRatio"]})
    return rows


def lesion_brightness(flair: np.ndarray, lesions: np.ndarray, brain: np.ndarray
                      ) -> list[dict[str, Any]]:
    """How bright each lesion (26-connected component of ``lesions``) is on the FLAIR as
    ``lesionkit predict`` reads it: z-scored robustly inside ``brain``
    (:func:`lesionkit.normalisation.per_image_zscore`). One row per lesion: voxels,
    median and largest z. Whether a brightness floor could tell lesions from what a
    model marks on a healthy scan (docs/real-data.md, "A brightness floor")."""
    import torch

    from lesionkit.normalisation import per_image_zscore

    values = torch.from_numpy(np.asarray(flair, np.float32)[None])
    z = per_image_zscore(values, torch.from_numpy(np.asarray(brain) > 0.5)).numpy()[0]
    labels, count = ndimage.label(np.asarray(lesions) > 0.5, FULL)
    return [{"voxels": int((labels == k).sum()),
             "median_z": round(float(np.median(z[labels == k])), 2),
             "largest_z": round(float(z[labels == k].max()), 2)} for k in range(1, count + 1)]


def change_lesion_brightness(source: Path, patient: str) -> list[dict[str, Any]]:
    """:func:`lesion_brightness` of a patient's change-mask lesions on the study2 FLAIR, in
    the brain mask lesionkit computes for it (:func:`brain_of`), each with
    ``brighter_at_study2`` (:func:`change_directions`: new or enlarging, not fading)."""
    flair = nib.load(source / patient / "study2_FLAIR.nii.gz")
    brain = brain_of(flair)
    labels, brighter = change_directions(source, patient, brain)
    rows = lesion_brightness(np.asarray(flair.dataobj, np.float32), labels > 0, brain)
    return [{**row, "brighter_at_study2": bool(b)}
            for row, b in zip(rows, brighter, strict=True)]


def main(argv: list[str] | None = None) -> None:
    """Command line: the benchmark, ``layout`` (BIDS with manual truth) or ``make-sample``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["layout"]:
        parser = argparse.ArgumentParser(prog="real_patients.py layout",
                                         description="Lay the real data out as BIDS, with "
                                                     "the study2 change masks as manual truth.")
        parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
        parser.add_argument("--out", type=Path, required=True)
        args = parser.parse_args(argv[1:])
        print(layout_with_truth(args.source, args.out))
        return
    if argv[:1] == ["contrast"]:
        parser = argparse.ArgumentParser(prog="real_patients.py contrast",
                                         description="The bright-CSF ratio of each FLAIR and "
                                                     "of each T2w read as the FLAIR.")
        parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
        parser.add_argument("--model", default="flair-lesion-dr",
                            help="Model folder or shipped model name (its task's grid).")
        parser.add_argument("--dataset", type=Path,
                            help="Instead: every FLAIR of this BIDS dataset (a phantom).")
        args = parser.parse_args(argv[1:])
        rows = (dataset_contrast_ratios(args.dataset, args.model) if args.dataset else
                contrast_ratios(args.source, args.model))
        for row in rows:
            print(json.dumps(row))
        return
    if argv[:1] == ["brightness"]:
        parser = argparse.ArgumentParser(prog="real_patients.py brightness",
                                         description="Median FLAIR z-score of the study2 "
                                                     "change-mask lesions, all and those "
                                                     "brighter at study2.")
        parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
        args = parser.parse_args(argv[1:])
        for patient in PATIENTS:
            rows = change_lesion_brightness(args.source, patient)
            for kind, keep in (("all", None), ("brighter at study2", True)):
                medians = np.array([r["median_z"] for r in rows
                                    if keep is None or r["brighter_at_study2"] == keep])
                print(json.dumps({"patient": patient, "lesions": kind, "count": len(medians),
                                  "median_z": sorted(medians.tolist()),
                                  "below": {f"{t:g}": int((medians < t).sum())
                                            for t in (-1.0, 0.0, 0.5, 1.0, 1.5, 2.5)}}))
        return
    if argv[:1] == ["changes"]:
        parser = argparse.ArgumentParser(prog="real_patients.py changes",
                                         description="lesionkit changes on an earlier run's "
                                                     "predictions, scored against the change "
                                                     "masks.")
        parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
        parser.add_argument("--work", type=Path, required=True,
                            help="Output folder of an earlier benchmark run.")
        parser.add_argument("--lesionkit", default=_default_lesionkit())
        parser.add_argument("--z-threshold", type=float, default=2.0)
        parser.add_argument("--threshold", type=float, default=0.33)
        args = parser.parse_args(argv[1:])
        run_changes(args.source, args.work, args.lesionkit, args.z_threshold, args.threshold)
        return
    if argv[:1] == ["make-baseline-sample"]:
        parser = argparse.ArgumentParser(prog="real_patients.py make-baseline-sample",
                                         description="Write the sample's first visit.")
        parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
        parser.add_argument("--out", type=Path,
                            default=Path("tests/data/realpatient-study1"))
        args = parser.parse_args(argv[1:])
        print(json.dumps(make_baseline_sample(args.source, args.out), indent=1))
        return
    if argv[:1] == ["make-sample"]:
        parser = argparse.ArgumentParser(prog="real_patients.py make-sample",
                                         description="Write the cropped real test sample.")
        parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
        parser.add_argument("--out", type=Path, default=Path("tests/data/realpatient"))
        args = parser.parse_args(argv[1:])
        print(json.dumps(make_test_sample(args.source, args.out), indent=1))
        return
    parser = argparse.ArgumentParser(
        description="Predict lesions on two real MS patients and score against change masks. "
                    "(`make-sample --out DIR` writes the cropped test sample instead.)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help="Folder of the real data.")
    parser.add_argument("--work", type=Path, required=True, help="Output folder.")
    parser.add_argument("--model", type=Path, required=True,
                        help="Model folder written by lesionkit train.")
    parser.add_argument("--lesionkit", default=_default_lesionkit(),
                        help="The lesionkit command.")
    parser.add_argument("--threshold", type=float, default=0.33,
                        help="Lesion probability threshold.")
    parser.add_argument("--min-lesion-ml", type=float, default=0.0,
                        help="Smaller components are not lesions (predict's option).")
    args = parser.parse_args(argv)
    run_benchmark(args.source, args.work, args.model, args.lesionkit, args.threshold,
                  args.min_lesion_ml)


if __name__ == "__main__":
    main()
