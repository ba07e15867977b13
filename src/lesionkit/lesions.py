"""Lesions of a label map: centres, patches around them, their tables and their scores.

A lesion label map holds one integer per lesion (0 outside lesions). Per-lesion
targets live in a TSV beside it with the map's name (``..._dseg.tsv`` beside
``..._dseg.nii.gz``): a ``label`` column naming the lesion's integer and one column
per target (e.g. ``rim``). Predictions are ``_lesions.tsv`` tables written by
``lesionkit predict``: one row per lesion with label, centre, volume, probability and
uncertainty.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.io import InputError, load_volume

#: Default depth (mm) inside the brain mask that a lesion's deepest voxel must reach for
#: ``predict`` and ``changes`` to call it a lesion (:func:`depth_inside`). None of the 2961
#: lesions of the 27 real MS lesion masks shipped with the phantom lies less than 4 mm
#: inside the outline of the MNI152 brain mask (``python benchmarks/lesion_depth.py
#: library``; docs/real-data.md, "Lesions at the edge of the brain mask"); what a lesion
#: model marks nearer the outline of a computed mask lies on what the mask wrongly holds
#: (the skull base, the dura, the scalp) or on the cortex.
LESION_MIN_DEPTH_MM = 3.0
#: Depths this much short of a bound still reach it: voxel sizes read from affines carry
#: rounding (a "3 mm" slice of 2.9999979 mm), and one such slice inside is 3 mm inside.
DEPTH_TOLERANCE_MM = 0.01


def crop(array: np.ndarray, start: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """A (C, *size) region of a (C, X, Y, Z) array from ``start``, zero outside the array.

    Args:
        array: Channels-first volume (a memory map works: only the region is read).
        start: First voxel of the region (may be negative).
        size: Region shape in voxels.
    """
    out = np.zeros((array.shape[0], *size), dtype=np.float32)
    src, dst = [], []
    for begin, n, length in zip(start, size, array.shape[1:], strict=True):
        lo, hi = max(begin, 0), min(begin + n, length)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - begin, hi - begin))
    out[(slice(None), *dst)] = array[(slice(None), *src)]
    return out


def centred_start(centre: Sequence[int], size: Sequence[int]) -> tuple[int, ...]:
    """First voxel of a ``size`` region centred on ``centre``."""
    return tuple(int(c) - n // 2 for c, n in zip(centre, size, strict=True))


def lesion_components(probability: np.ndarray, threshold: float, min_voxels: int = 1,
                      depth_mm: np.ndarray | None = None, min_depth_mm: float = 0.0
                      ) -> np.ndarray:
    """The lesions of a probability map as a label map.

    Lesions are the 26-connected components of the voxels at or above ``threshold`` (as
    every lesion count of lesionkit's evaluation), each of at least ``min_voxels`` voxels
    and, given ``depth_mm``, reaching at least ``min_depth_mm`` inside the brain; they are
    numbered 1, 2, ... by decreasing volume (ties: in scan order).

    Args:
        probability: (X, Y, Z) lesion probability (0-1).
        threshold: Probability at or above which a voxel is lesion.
        min_voxels: Smaller components are dropped.
        depth_mm: (X, Y, Z) depth of each voxel inside the brain mask, to its outline
            (mm; 0 outside), as :func:`depth_inside`; None keeps components at any depth.
        min_depth_mm: Components whose deepest voxel lies less deep are dropped.

    Returns:
        (X, Y, Z) int32 label map, 0 outside lesions.
    """
    from scipy import ndimage

    labels, count = ndimage.label(np.asarray(probability) >= threshold, np.ones((3, 3, 3)))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    keep = sizes >= max(min_voxels, 1)
    if depth_mm is not None and min_depth_mm > 0 and count:
        keep &= reaches(component_depths(labels, depth_mm, count), min_depth_mm)
    kept = [i + 1 for i in np.argsort(-sizes, kind="stable") if keep[i]]
    renumber = np.zeros(count + 1, np.int32)
    renumber[kept] = np.arange(1, len(kept) + 1, dtype=np.int32)
    return renumber[labels]


def depth_inside(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Depth (mm) of each voxel's centre inside ``mask``: its distance to the mask's outline,
    the faces between voxels inside and outside; 0 outside.

    Measured to the outline, not to the centre of the nearest voxel outside, depths of
    scans with thick slices and of isotropic scans agree: on 4 mm slices the outermost
    slice inside the mask lies 2 mm deep, not 4. The nearest voxel outside is found by
    Euclidean distance between centres (``spacing``: the voxel size in mm) and along each
    axis alone, and the way to each is shortened by the part of it that lies in that
    voxel; the least is the depth (where the outline is nearest along no axis and no
    straight line to a centre, up to half a voxel too deep). A mask that reaches the edge
    of the array is not cut there (the brain may go on beyond the field of view); a mask
    that fills the array lies infinitely deep.
    """
    from scipy import ndimage

    inside = np.asarray(mask) > 0
    if not inside.any():
        return np.zeros(inside.shape)
    if inside.all():
        return np.full(inside.shape, np.inf)
    step = np.asarray([float(s) for s in spacing])
    where = np.nonzero(inside)
    nearest = ndimage.distance_transform_edt(inside, sampling=step, return_distances=False,
                                             return_indices=True)
    offsets = np.stack([(nearest[axis][where] - where[axis]) * step[axis]
                        for axis in range(inside.ndim)])
    del nearest
    with np.errstate(divide="ignore"):
        within = np.min(np.where(offsets != 0, (step[:, None] / 2) / np.abs(offsets), np.inf),
                        axis=0)
    depth_at = np.sqrt((offsets**2).sum(0)) * (1.0 - within)
    for axis in range(inside.ndim):
        straight = _voxels_to_outside(inside, axis)[where] * step[axis]
        depth_at = np.minimum(depth_at, straight - step[axis] / 2)
    depth = np.zeros(inside.shape)
    depth[where] = depth_at
    return depth


def _voxels_to_outside(inside: np.ndarray, axis: int) -> np.ndarray:
    """Voxels from each voxel to the nearest voxel outside along ``axis`` alone (inf where
    its line holds none; 0 outside)."""
    moved = np.moveaxis(inside, axis, -1)
    index = np.arange(moved.shape[-1], dtype=float)
    before = np.maximum.accumulate(np.where(moved, -np.inf, index), axis=-1)
    after = np.flip(np.minimum.accumulate(np.flip(np.where(moved, np.inf, index), -1),
                                          axis=-1), -1)
    return np.moveaxis(np.minimum(index - before, after - index), -1, axis)


def reaches(depths_mm: np.ndarray, min_depth_mm: float) -> np.ndarray:
    """Whether each depth (mm) reaches ``min_depth_mm``, within :data:`DEPTH_TOLERANCE_MM`."""
    return np.asarray(depths_mm, float) >= min_depth_mm - DEPTH_TOLERANCE_MM


def component_depths(labels: np.ndarray, depth_mm: np.ndarray, count: int | None = None
                     ) -> np.ndarray:
    """The depth (mm) of the deepest voxel of components 1..``count`` of a label map."""
    from scipy import ndimage

    count = int(labels.max()) if count is None else count
    if not count:
        return np.zeros(0)
    return np.asarray(ndimage.maximum(depth_mm, labels, np.arange(1, count + 1)), float)


def lesion_centres(label_map: np.ndarray) -> dict[int, tuple[int, int, int]]:
    """Label -> rounded centre of mass (voxel indices) of every lesion in a label map.

    Each lesion's centre is measured inside its bounding box (``ndimage.find_objects``),
    not over the whole volume: the same figures, in a time that grows with the lesions'
    size, not the scan's (a 1 mm brain holds millions of voxels, its lesions thousands).
    """
    from scipy import ndimage

    labels = np.asarray(label_map).astype(np.int64, copy=False)
    if labels.size and labels.min() < 0:  # not lesions; find_objects counts from 1
        labels = np.maximum(labels, 0)
    centres = {}
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        local = ndimage.center_of_mass(labels[box] == label)
        centres[label] = tuple(round(c + s.start) for c, s in zip(local, box, strict=True))
    return centres


def lesion_table(map_path: Path, specs: Sequence[Any], label_map: np.ndarray | None = None
                 ) -> list[dict[str, Any]]:
    """Lesions of a label map: label, centre (voxels) and the task's per-lesion targets.

    ``specs`` are the task's per-lesion targets (``LesionLabelSpec``: key, column,
    classes). The targets come from the TSV beside the map (same name, ``.tsv``), whose
    ``label`` column holds the lesion's integer in the map.

    Args:
        map_path: The lesion label map file (its table is found beside it).
        specs: The task's per-lesion targets.
        label_map: The (X, Y, Z) map as the network sees it (on the model's grid); the
            centres are voxels of this grid. None: the file's own voxels.
    """
    import pandas as pd

    if label_map is None:
        label_map = load_volume(map_path, kind="label").data
    centres = lesion_centres(np.rint(label_map).astype(np.int64))
    targets: dict[int, dict[str, int]] = {label: {} for label in centres}
    if specs:
        path = table_path(map_path)
        if not path.is_file():
            raise InputError(f"{path}: expected the lesion table of {map_path.name}, found no "
                             "such file")
        table = pd.read_csv(path, sep="\t", dtype=str)
        for spec in specs:
            if "label" not in table.columns or spec.column not in table.columns:
                raise InputError(f"{path}: expected 'label' and {spec.column!r} columns, found "
                                 f"{list(table.columns)}")
            labels = pd.to_numeric(table["label"], errors="coerce")
            if labels.isna().any() or (labels % 1 != 0).any():
                bad = table["label"][labels.isna() | (labels % 1 != 0)].iloc[0]
                raise InputError(f"{path}: expected integer lesion labels in the 'label' "
                                 f"column, found {bad!r}")
            for label, value in zip(labels.astype(int), table[spec.column], strict=True):
                if int(label) in targets:
                    if str(value) not in spec.classes:
                        raise InputError(f"{path}: expected {spec.column} in {spec.classes} "
                                         f"for lesion {label}, found {value!r}")
                    targets[int(label)][spec.key] = spec.classes.index(str(value))
        missing = [label for label, values in targets.items() if len(values) < len(specs)]
        if missing:
            raise InputError(f"{path}: expected a row for every lesion of {map_path.name}, "
                             f"found none for labels {missing[:5]}")
    return [{"label": label, "centre": list(centres[label]), "labels": targets[label]}
            for label in sorted(centres)]


def table_path(map_path: str | os.PathLike[str]) -> Path:
    """The lesion table beside a label map: the map's name with ``.tsv`` (BIDS look-up
    table of a segmentation), else the subject's ``sub-XX[_ses-YY]_lesions.tsv`` in the
    same folder (the phantom's table) when only that exists."""
    path = Path(map_path)
    beside = path.with_name(path.name.removesuffix(".gz").removesuffix(".nii") + ".tsv")
    if beside.is_file():
        return beside
    prefix = [part for part in path.name.split("_") if part.startswith(("sub-", "ses-"))]
    subject_table = path.with_name("_".join([*prefix, "lesions.tsv"]))
    return subject_table if prefix and subject_table.is_file() else beside


def evaluate_lesion_tables(task: Any, data_root: Path, predictions_root: Path,
                           subjects: Sequence[str]) -> list[dict[str, Any]]:
    """One row per lesion: its true class (``label``) and predicted ``probability``.

    Truth: the lesion table of the task's lesion map and its first per-lesion target;
    predictions: the task's ``desc-<output>_lesions.tsv`` tables under
    ``predictions_root`` (a lesion map's table of another task beside them is not one of
    them). A generic
    ``evaluate`` hook for binary per-lesion tasks.
    """
    import pandas as pd

    from lesionkit.bids import BIDSDataset

    spec, target = task.lesions, task.targets[0]
    dataset, predictions = BIDSDataset(data_root), BIDSDataset(predictions_root)
    rows = []
    for subject in subjects:
        found = predictions.find(subject=subject, suffix="lesions", extension=".tsv",
                                 desc=task.outputs[-1].desc)  # the task's, not another's
        if not found:
            continue
        truth = {t["label"]: t["labels"][target.key] for t in lesion_table(
            dataset.get(subject, spec.suffix, **spec.query()).path, [target])}
        table = pd.read_csv(found[0].path, sep="\t")
        for lesion in table.to_dict("records"):
            rows.append({"participant_id": f"sub-{subject}", "lesion": int(lesion["label"]),
                         "label": truth.get(int(lesion["label"])),
                         "probability": float(lesion["probability"]),
                         "uncertainty": float(lesion["uncertainty"]),
                         "volume_mm3": float(lesion["volume_mm3"])})
    return rows


def radiomics_version() -> str:
    """Version of the installed PyRadiomics (``pyradiomics-bhklab`` wheel)."""
    import radiomics

    return str(radiomics.__version__)


def radiomics_features(images: dict[str, np.ndarray], mask: np.ndarray,
                       spacing: Sequence[float], image: str = "qsm",
                       image_types: Sequence[str] = ("Original", "Wavelet"),
                       feature_classes: Sequence[str] = ("shape", "firstorder", "glcm", "glrlm"),
                       bin_width: float = 25.0,
                       excluded: Sequence[str] = ()) -> dict[str, float]:
    """PyRadiomics features of one image inside one lesion (a ``LesionFeatures`` function).

    Args:
        images: Input key -> (C, x, y, z) crop around the lesion in physical units (the
            first channel of ``images[image]`` is used).
        mask: (x, y, z) lesion mask of the crop.
        spacing: Voxel size (mm).
        image: Key of the image the features describe.
        image_types: PyRadiomics image types (``"Original"``, ``"Wavelet"``: the 8
            undecimated wavelet decompositions, coif1).
        feature_classes: PyRadiomics feature classes; shape is computed on the original
            image only.
        bin_width: Grey-level bin width in the image's unit (25 ppb for QSM).
        excluded: Feature names (PyRadiomics names without the image type, e.g.
            ``"glcm_MCC"``) left out.

    Returns:
        Feature name (``original_glcm_Contrast``, ...) -> value, in PyRadiomics' order;
        NaN for every feature of a lesion PyRadiomics refuses (a single voxel, or voxels
        along one line only).
    """
    settings = (image, tuple(image_types), tuple(feature_classes), float(bin_width),
                tuple(excluded))
    if int(np.count_nonzero(mask)) >= 2:
        try:
            return _radiomics(images[image][0], mask, spacing, *settings)
        except ValueError:  # PyRadiomics' checkMask: too few voxels or dimensions
            pass
    return dict.fromkeys(_radiomics_names(*settings), float("nan"))


@functools.cache
def _radiomics_names(image: str, image_types: tuple[str, ...], feature_classes: tuple[str, ...],
                     bin_width: float, excluded: tuple[str, ...]) -> tuple[str, ...]:
    """Feature names of a settings, from a synthetic 5^3 lesion."""
    rng = np.random.default_rng(0)
    mask = np.zeros((9, 9, 9), bool)
    mask[2:7, 2:7, 2:7] = True
    return tuple(_radiomics(rng.normal(0.0, 50.0, mask.shape), mask, (1.0, 1.0, 1.0), image,
                            image_types, feature_classes, bin_width, excluded))


def _radiomics(volume_array: np.ndarray, mask: np.ndarray, spacing: Sequence[float],
               image: str, image_types: Sequence[str], feature_classes: Sequence[str],
               bin_width: float, excluded: Sequence[str]) -> dict[str, float]:
    import logging

    import SimpleITK as sitk  # noqa: N813
    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    extractor = featureextractor.RadiomicsFeatureExtractor(binWidth=bin_width, force2D=False,
                                                           label=1)
    extractor.disableAllFeatures()
    extractor.disableAllImageTypes()
    for name in feature_classes:
        extractor.enableFeatureClassByName(name)
    for name in image_types:
        extractor.enableImageTypeByName(name)
    # SimpleITK arrays are (z, y, x): transpose so that the spacing follows the axes.
    volume = sitk.GetImageFromArray(np.ascontiguousarray(
        np.asarray(volume_array, np.float64).transpose(2, 1, 0)))
    labels = sitk.GetImageFromArray(np.ascontiguousarray(
        np.asarray(mask, np.uint8).transpose(2, 1, 0)))
    for item in (volume, labels):
        item.SetSpacing(tuple(float(s) for s in spacing))
    with warnings.catch_warnings():  # numpy warnings of PyRadiomics on tiny lesions
        warnings.simplefilter("ignore", RuntimeWarning)
        result = extractor.execute(volume, labels)
    skipped = set(excluded)
    return {name: float(np.real(value)) for name, value in result.items()
            if not name.startswith("diagnostics")
            and name.split("_", 1)[1] not in skipped}
