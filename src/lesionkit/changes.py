"""Lesion changes between two sessions of a subject: new, enlarging, shrinking, resolved.

``lesionkit predict`` reads each session on its own. In MS the number of new and
enlarging lesions between two scans is what a follow-up is read for, and lesion maps of
two sessions, each with its own small errors, do not give it by subtraction: a speck
above the threshold at one visit and just below it at the other is no change. This
module follows the design of LST's longitudinal pipeline (Schmidt et al., NeuroImage:
Clinical 2019): the lesion maps of both sessions say *where* a change may be, the image
says *whether* it changed.

For each pair of sessions (each follow-up against the session before it):

1. the baseline's image (the first input the map was predicted from, the FLAIR of the
   flair-lesion models) is rigidly co-registered onto the follow-up's
   (:func:`lesionkit.geometry.rigid_matrix`, mutual information, inside the follow-up's
   brain mask) and moved with its lesion map onto the follow-up's grid (linear); the
   sessions are compared only inside the follow-up's brain mask where the moved
   baseline's field of view covers it (clinical slabs of two visits rarely cover the
   same brain);
2. both images are scaled by their median and interquartile range over the normal-appearing
   brain (the brain mask less the lesions of both sessions and a voxel around them), and
   their difference is expressed in robust standard deviations of itself there (1.4826 x
   median absolute deviation): a z-score of change whose noise is the scans' own;
3. a lesion is, as ``predict`` reads one, a 26-connected component of the map at or
   above the threshold whose deepest voxel lies at least ``LESION_MIN_DEPTH_MM`` inside
   the follow-up's brain mask; an *increase* is a voxel that is lesion at follow-up and
   not at baseline, and at least ``Z_THRESHOLD`` brighter than at
   baseline; a *decrease* a voxel that is lesion at baseline and not at follow-up, and
   at least as much darker: a change of the maps that the images confirm. Each is taken
   in 26-connected components of at least ``MIN_CHANGE_ML``;
4. an increase is *new* when its follow-up lesion touches no baseline lesion voxel,
   else *enlarging*; a decrease is *resolved* when its baseline lesion touches no
   follow-up lesion voxel, else *shrinking*.

This module holds the reading on arrays (:func:`lesion_changes`) and its score against a
change truth (:func:`score_changes`); :mod:`lesionkit.session_maps` finds the maps of a
predictions folder and :mod:`lesionkit.longitudinal` registers, reads and writes each
pair (``lesionkit changes``). The outputs, beside the follow-up's map:
``desc-<model>change_dseg.nii.gz`` (changes numbered by decreasing volume, on the
follow-up's grid), its table ``desc-<model>change_dseg.tsv`` (kind, centre, changed
volume, mean z; the volume of the lesion the change lies in and of the other visit's
lesions within a voxel of it) and a row per pair in ``task-<name>_lesionchange.tsv``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lesionkit.lesions import LESION_MIN_DEPTH_MM

#: Change, in robust standard deviations of the two scans' difference over the
#: normal-appearing brain, that a voxel inside a lesion needs to count (one-sided).
Z_THRESHOLD = 2.0
#: Smallest change counted (mL): a ball of 3 mm diameter, the smallest lesion the
#: MAGNIMS criteria count.
MIN_CHANGE_ML = float(np.pi / 6 * 3.0**3 / 1000.0)
#: Kinds of change, in the order of the summary table.
KINDS = ("new", "enlarging", "shrinking", "resolved")
#: Codes of a change truth map (``label-change_dseg``; the phantom's ``--follow-up`` writes
#: them); the kinds of an increase, the others are decreases.
CHANGE_CODES = {kind: code for code, kind in enumerate(KINDS, start=1)}
INCREASES = ("new", "enlarging")
#: Columns of the table of changes.
CHANGE_COLUMNS = ("label", "change", "centre_i", "centre_j", "centre_k", "centre_x_mm",
                  "centre_y_mm", "centre_z_mm", "volume_mm3", "mean_z",
                  "lesion_volume_baseline_mm3", "lesion_volume_followup_mm3")
#: 26-connectivity.
_FULL = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class ChangeReading:
    """How two sessions' lesion maps and images are read as lesion changes.

    Attributes:
        threshold: Lesion probability at or above which a voxel is lesion.
        z_threshold: Change (robust SD of the difference) a voxel needs.
        min_ml: Smallest change counted (mL).
        min_depth_mm: Depth inside the brain mask (mm) that a lesion's deepest voxel must
            reach to be a lesion of either session, as ``predict`` reads its maps
            (:data:`lesionkit.lesions.LESION_MIN_DEPTH_MM`); 0 reads lesions at any depth.
    """

    threshold: float = 0.33
    z_threshold: float = Z_THRESHOLD
    min_ml: float = MIN_CHANGE_ML
    min_depth_mm: float = LESION_MIN_DEPTH_MM


@dataclass
class Changes:
    """The lesion changes of one pair of sessions, on the follow-up's grid.

    Attributes:
        labels: (X, Y, Z) int32, 0 = no change, 1.. = changes by decreasing volume.
        rows: One dict per change (:data:`CHANGE_COLUMNS`).
        noise_sd: Robust SD of the scaled difference over the normal-appearing brain.
        counts: Number of changes of each kind in :data:`KINDS`.
        volumes_ml: Changed volume (mL) of each kind.
    """

    labels: np.ndarray
    rows: list[dict[str, Any]]
    noise_sd: float
    counts: dict[str, int] = field(default_factory=dict)
    volumes_ml: dict[str, float] = field(default_factory=dict)


def _scaled(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``image`` minus its median over ``reference``, divided by its interquartile range there."""
    values = image[reference]
    low, median, high = np.percentile(values, [25, 50, 75])
    spread = high - low
    if not np.isfinite(spread) or spread <= 0:
        raise ValueError("the image is constant over the normal-appearing brain")
    return (image - median) / spread


def change_z(followup: np.ndarray, baseline: np.ndarray, normal: np.ndarray
             ) -> tuple[np.ndarray, float]:
    """The z-score of change between two co-registered images of one grid.

    Args:
        followup, baseline: (X, Y, Z) intensities, any unit or scale each.
        normal: (X, Y, Z) boolean normal-appearing brain (no lesion of either session).

    Returns:
        (z, noise SD): z is the difference of the two images, each scaled by its median
        and interquartile range over ``normal``, less its median there, over its robust SD
        there (1.4826 x median absolute deviation); the SD is in interquartile ranges.
    """
    from scipy.stats import median_abs_deviation

    difference = _scaled(followup, normal) - _scaled(baseline, normal)
    centre = float(np.median(difference[normal]))
    sd = float(median_abs_deviation(difference[normal], scale="normal"))
    if not np.isfinite(sd) or sd <= 0:
        raise ValueError("the two images do not differ over the normal-appearing brain")
    return ((difference - centre) / sd).astype(np.float32), sd


def lesion_changes(followup_probability: np.ndarray, baseline_probability: np.ndarray,
                   followup_image: np.ndarray, baseline_image: np.ndarray, brain: np.ndarray,
                   affine: np.ndarray, reading: ChangeReading = ChangeReading()) -> Changes:
    """The lesion changes between two sessions already on one grid (the follow-up's).

    Args:
        followup_probability, baseline_probability: (X, Y, Z) lesion probability (0-1).
        followup_image, baseline_image: (X, Y, Z) the image each map was read from (FLAIR).
        brain: (X, Y, Z) boolean brain mask of the follow-up.
        affine: The grid's 4x4 voxel-to-world matrix (mm).
        reading: Thresholds.

    Returns:
        The changes (see :class:`Changes`).

    Raises:
        ValueError: the brain holds no normal-appearing voxel or the images are constant.
    """
    from scipy import ndimage

    from lesionkit.geometry import voxel_size
    from lesionkit.lesions import depth_inside, lesion_centres, lesion_components

    brain = np.asarray(brain, bool)
    depth = (depth_inside(brain, voxel_size(np.asarray(affine, float)))
             if reading.min_depth_mm > 0 else None)
    follow, base = (lesion_components(np.where(brain, probability, 0.0), reading.threshold, 1,
                                      depth, reading.min_depth_mm) > 0
                    for probability in (followup_probability, baseline_probability))
    normal = brain & ~ndimage.binary_dilation(follow | base, _FULL)
    if normal.sum() < 100:
        raise ValueError("the brain mask holds almost no voxel outside the lesions")
    z, sd = change_z(np.asarray(followup_image, np.float32),
                     np.asarray(baseline_image, np.float32), normal)
    voxel_mm3 = float(abs(np.linalg.det(np.asarray(affine, float)[:3, :3])))
    min_voxels = max(1, int(np.ceil(reading.min_ml * 1000.0 / voxel_mm3 - 1e-9)))
    follow_lesions, _ = ndimage.label(follow, _FULL)
    base_lesions, _ = ndimage.label(base, _FULL)
    found: list[tuple[str, np.ndarray, float, float]] = []
    for sign, own, own_labels, other_labels in ((1, follow, follow_lesions, base_lesions),
                                                (-1, base, base_lesions, follow_lesions)):
        other = other_labels > 0
        candidates = lesion_components(own & ~other & (sign * z >= reading.z_threshold),
                                       0.5, min_voxels)
        for index, box in enumerate(ndimage.find_objects(candidates), start=1):
            where = np.argwhere(candidates[box] == index) + [s.start for s in box]
            lesion = np.isin(own_labels, np.unique(own_labels[tuple(where.T)]))
            near = np.unique(other_labels[ndimage.binary_dilation(lesion, _FULL)])
            near = near[near > 0]
            other_mm3 = float(np.isin(other_labels, near).sum()) * voxel_mm3
            kind = (("enlarging" if len(near) else "new") if sign > 0
                    else ("shrinking" if len(near) else "resolved"))
            own_mm3 = float(lesion.sum()) * voxel_mm3
            found.append((kind, where, *((other_mm3, own_mm3) if sign > 0
                                         else (own_mm3, other_mm3))))
    found.sort(key=lambda item: -len(item[1]))
    labels = np.zeros(follow.shape, np.int32)
    for label, (_, where, _, _) in enumerate(found, start=1):
        labels[tuple(where.T)] = label
    centres = lesion_centres(labels)
    rows = []
    for label, (kind, where, base_mm3, follow_mm3) in enumerate(found, start=1):
        index = tuple(where.T)
        centre = centres[label]
        world = np.asarray(affine, float) @ np.array([*centre, 1.0])
        rows.append({"label": label, "change": kind, "centre_i": int(centre[0]),
                     "centre_j": int(centre[1]), "centre_k": int(centre[2]),
                     "centre_x_mm": round(float(world[0]), 2),
                     "centre_y_mm": round(float(world[1]), 2),
                     "centre_z_mm": round(float(world[2]), 2),
                     "volume_mm3": round(len(where) * voxel_mm3, 3),
                     "mean_z": round(float(z[index].mean()), 2),
                     "lesion_volume_baseline_mm3": round(base_mm3, 3),
                     "lesion_volume_followup_mm3": round(follow_mm3, 3)})
    counts = {kind: sum(row["change"] == kind for row in rows) for kind in KINDS}
    volumes = {kind: round(sum(row["volume_mm3"] for row in rows if row["change"] == kind)
                           / 1000.0, 4) for kind in KINDS}
    return Changes(labels=labels, rows=rows, noise_sd=sd, counts=counts, volumes_ml=volumes)



def score_changes(labels: np.ndarray, kinds: dict[int, str], truth: np.ndarray,
                  coded: bool) -> dict[str, Any]:
    """Lesion-wise scores of a change label map against a change truth on its grid, with
    :func:`lesionkit.metrics.segmentation.lesion_wise` (the MS challenges' convention: a
    true change is found when a call overlaps it by a voxel; a call is false when it
    overlaps none) and :func:`~lesionkit.metrics.segmentation.dice`.

    Where the truth is coded, a call counts only against true changes of its direction
    (increase: new or enlarging; decrease: shrinking or resolved), and found/true per kind
    is given too; calls/false calls per direction always. Sensitivity, PPV and F1 are over
    all of a map's changes and calls (None where a denominator is 0, as ``lesion_wise``).

    Args:
        labels: (X, Y, Z) change labels as :func:`compare` writes them.
        kinds: Label -> its kind (the table beside the map).
        truth: (X, Y, Z) truth: :data:`CHANGE_CODES` where ``coded``, else any non-zero
            voxel is a change of either direction.
        coded: Whether ``truth`` holds the kinds.
    """
    from lesionkit.metrics.segmentation import dice, lesion_wise

    up_calls = np.isin(labels, [label for label, kind in kinds.items() if kind in INCREASES])
    calls = {"increase": up_calls, "decrease": (labels > 0) & ~up_calls}
    row: dict[str, Any] = {}
    if coded:
        for kind in KINDS:
            scores = lesion_wise(calls["increase" if kind in INCREASES else "decrease"],
                                 truth == CHANGE_CODES[kind])
            row[f"{kind}_true"] = scores["n_true_lesions"]
            row[f"{kind}_found"] = scores["true_positive_lesions"]
        true = sum(row[f"{kind}_true"] for kind in KINDS)
        found = sum(row[f"{kind}_found"] for kind in KINDS)
    else:
        scores = lesion_wise(labels > 0, truth > 0)
        true, found = scores["n_true_lesions"], scores["true_positive_lesions"]
    for direction, mine in calls.items():  # the components of one direction are its labels
        kinds_of = [k for k in KINDS if (k in INCREASES) == (direction == "increase")]
        against = np.isin(truth, [CHANGE_CODES[k] for k in kinds_of]) if coded else truth > 0
        scores = lesion_wise(mine, against)
        row[f"{direction}_calls"] = scores["n_predicted_lesions"]
        row[f"{direction}_false"] = scores["false_positive_components"]
    called = row["increase_calls"] + row["decrease_calls"]
    false_calls = row["increase_false"] + row["decrease_false"]
    sensitivity = round(found / true, 4) if true else None
    ppv = round((called - false_calls) / called, 4) if called else None
    f1 = (None if sensitivity is None or ppv is None else 0.0 if sensitivity + ppv == 0
          else round(2 * sensitivity * ppv / (sensitivity + ppv), 4))
    return {"true_changes": true, "found": found, "sensitivity": sensitivity,
            "calls": called, "false_calls": false_calls, "ppv": ppv, "f1": f1,
            "dice": round(float(dice(labels > 0, truth > 0)), 4), **row}
