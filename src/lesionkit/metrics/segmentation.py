"""Segmentation metrics: Dice, lesion detection rate, lesion-wise F1 and threshold sweeps.

Probability maps are in 0-1. A voxel is positive at threshold ``t`` when its
probability is ``>= t``, everywhere in this module. Lesions are the 3D connected
components of the ground-truth mask (26-connectivity by default).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

__all__ = [
    "detection_rate",
    "dice",
    "lesion_hits",
    "lesion_wise",
    "probability_dice",
    "threshold_sweep",
]


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap 2|A & B| / (|A| + |B|) of two binary masks (0-1).

    Two empty masks agree perfectly: Dice 1.0.
    """
    pred = np.asarray(pred).astype(bool)
    truth = np.asarray(truth).astype(bool)
    if pred.shape != truth.shape:
        raise ValueError(f"shapes differ: prediction {pred.shape}, truth {truth.shape}")
    total = np.count_nonzero(pred) + np.count_nonzero(truth)
    if total == 0:
        return 1.0
    return 2.0 * np.count_nonzero(pred & truth) / total


def probability_dice(
    pred_prob: np.ndarray, truth_prob: np.ndarray, threshold: float = 0.8
) -> float:
    """Dice of two probability maps after binarising both at ``threshold`` (>=).

    Used for NAWM and GM maps at 0.8 (80 %).
    """
    return dice(np.asarray(pred_prob) >= threshold, np.asarray(truth_prob) >= threshold)


def _components(truth: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    truth = np.asarray(truth).astype(bool)
    structure = ndimage.generate_binary_structure(truth.ndim, connectivity)
    return ndimage.label(truth, structure=structure)


def _component_peaks(prob: np.ndarray, truth: np.ndarray, connectivity: int) -> np.ndarray:
    """Highest probability inside each ground-truth component (empty when none)."""
    prob = np.asarray(prob, dtype=np.float64)
    if prob.shape != np.shape(truth):
        raise ValueError(f"shapes differ: probability {prob.shape}, truth {np.shape(truth)}")
    labels, n = _components(truth, connectivity)
    if n == 0:
        return np.empty(0)
    return np.asarray(ndimage.maximum(prob, labels, index=np.arange(1, n + 1)), dtype=np.float64)


def lesion_hits(
    prob: np.ndarray, truth: np.ndarray, threshold: float = 0.33, connectivity: int = 3
) -> np.ndarray:
    """Per ground-truth lesion, whether any of its voxels has probability >= ``threshold``.

    Args:
        prob: lesion probability map (0-1).
        truth: binary ground-truth lesion mask.
        threshold: probability threshold (0-1).
        connectivity: 1 (6-), 2 (18-) or 3 (26-connectivity) for the 3D components.

    Returns:
        Boolean array, one entry per connected component in label order.
    """
    return _component_peaks(prob, truth, connectivity) >= threshold


def detection_rate(
    prob: np.ndarray, truth: np.ndarray, threshold: float = 0.33, connectivity: int = 3
) -> float:
    """Fraction (0-1) of ground-truth lesions touched by a voxel with probability >= threshold.

    Lesions are the 3D connected components of ``truth``. NaN when ``truth`` is empty.
    """
    hits = lesion_hits(prob, truth, threshold, connectivity)
    return float(hits.mean()) if hits.size else float("nan")


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def lesion_wise(
    prob: np.ndarray,
    truth: np.ndarray,
    threshold: float = 0.5,
    mask: np.ndarray | None = None,
    connectivity: int = 3,
    min_voxels: int = 1,
) -> dict[str, float | int | None]:
    """Lesion-wise detection counts, precision, recall and F1.

    Follows the convention of the MS lesion challenges (ISBI 2015, MSSEG): lesions
    are connected components and a detection is an overlap of at least one voxel.

    - True lesions are the connected components of ``truth`` (the mask is not applied
      to them; ``min_voxels`` neither).
    - Predicted lesions are the connected components of ``prob >= threshold`` inside
      ``mask`` that have at least ``min_voxels`` voxels; smaller ones are discarded
      before anything else is counted.
    - A true lesion is detected (true positive) when at least one voxel of it is in a
      predicted lesion; otherwise it is a false negative.
    - A predicted lesion is a true-positive component when at least one of its voxels
      is a true lesion voxel; otherwise it is a false-positive component. One predicted
      lesion touching two true lesions is one true-positive component and detects both.
    - Lesion precision = true-positive components / predicted lesions, lesion recall =
      detected true lesions / true lesions, lesion F1 = their harmonic mean
      (0.0 when both are 0).

    Args:
        prob: lesion probability map (0-1), 3D (any dimension works).
        truth: binary ground-truth lesion mask, same shape.
        threshold: probability threshold (0-1); a voxel is predicted when ``>=``.
        mask: voxels that may be predicted positive (e.g. the brain); None for all.
        connectivity: 1 (6-), 2 (18-) or 3 (26-connectivity in 3D) for both the true
            and the predicted components, as in ``lesion_hits``.
        min_voxels: smallest predicted component kept, in voxels (>= 1).

    Returns:
        Dict with counts (int, number of components) ``n_true_lesions``,
        ``n_predicted_lesions``, ``true_positive_lesions``, ``false_negative_lesions``,
        ``true_positive_components``, ``false_positive_components`` and fractions
        (float, 0-1) ``lesion_precision``, ``lesion_recall``, ``lesion_f1``. A fraction
        is None when its denominator is zero: precision without predicted lesions,
        recall without true lesions, F1 when either of them is None.
    """
    prob = np.asarray(prob, dtype=np.float64)
    truth = np.asarray(truth).astype(bool)
    if prob.shape != truth.shape:
        raise ValueError(f"shapes differ: probability {prob.shape}, truth {truth.shape}")
    region = np.ones(prob.shape, bool) if mask is None else np.asarray(mask).astype(bool)
    if region.shape != prob.shape:
        raise ValueError(f"mask has shape {region.shape}, expected {prob.shape}")
    if min_voxels < 1:
        raise ValueError(f"min_voxels must be >= 1, got {min_voxels}")

    true_labels, n_true = _components(truth, connectivity)
    pred_labels, n_pred = _components((prob >= threshold) & region, connectivity)
    if min_voxels > 1 and n_pred:
        keep = np.bincount(pred_labels.ravel(), minlength=n_pred + 1) >= min_voxels
        keep[0] = False
        relabel = np.where(keep, np.cumsum(keep), 0)
        pred_labels = relabel[pred_labels]
        n_pred = int(keep.sum())

    overlap = (true_labels > 0) & (pred_labels > 0)
    detected = np.count_nonzero(np.bincount(true_labels[overlap], minlength=n_true + 1)[1:])
    tp_components = np.count_nonzero(np.bincount(pred_labels[overlap], minlength=n_pred + 1)[1:])
    precision = _ratio(tp_components, n_pred)
    recall = _ratio(detected, n_true)
    if precision is None or recall is None:
        f1 = None
    elif precision + recall == 0:
        f1 = 0.0
    else:
        f1 = 2.0 * precision * recall / (precision + recall)
    return {
        "n_true_lesions": int(n_true),
        "n_predicted_lesions": int(n_pred),
        "true_positive_lesions": int(detected),
        "false_negative_lesions": int(n_true - detected),
        "true_positive_components": int(tp_components),
        "false_positive_components": int(n_pred - tp_components),
        "lesion_precision": precision,
        "lesion_recall": recall,
        "lesion_f1": f1,
    }


def threshold_sweep(
    prob: np.ndarray,
    truth: np.ndarray,
    thresholds: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    connectivity: int = 3,
) -> pd.DataFrame:
    """Lesion Dice and detection rate at each threshold.

    Args:
        prob: lesion probability map (0-1).
        truth: binary ground-truth lesion mask.
        thresholds: probability thresholds; default ``np.linspace(0, 1, 101)``.
        mask: voxels that may be predicted positive (e.g. the brain); None for all.
        connectivity: connectivity of the ground-truth components (see ``lesion_hits``).

    Returns:
        DataFrame with columns ``threshold``, ``dice``, ``detection_rate``,
        ``predicted_voxels``. Detection rate is NaN when ``truth`` has no lesion.
    """
    prob = np.asarray(prob, dtype=np.float64)
    truth = np.asarray(truth).astype(bool)
    thresholds = np.linspace(0.0, 1.0, 101) if thresholds is None else np.asarray(thresholds)
    region = np.ones(prob.shape, bool) if mask is None else np.asarray(mask).astype(bool)
    if region.shape != prob.shape:
        raise ValueError(f"mask has shape {region.shape}, expected {prob.shape}")
    # Counts of voxels >= t from sorted values: exact and one pass for all thresholds.
    inside = np.sort(prob[region])
    in_truth = np.sort(prob[region & truth])
    n_pred = inside.size - np.searchsorted(inside, thresholds, side="left")
    n_both = in_truth.size - np.searchsorted(in_truth, thresholds, side="left")
    n_truth = np.count_nonzero(truth)
    denominator = n_pred + n_truth
    dice_values = np.where(denominator > 0, 2.0 * n_both / np.maximum(denominator, 1), 1.0)
    peaks = _component_peaks(np.where(region, prob, -np.inf), truth, connectivity)
    if peaks.size:
        rates = (peaks[None, :] >= thresholds[:, None]).mean(axis=1)
    else:
        rates = np.full(thresholds.shape, np.nan)
    return pd.DataFrame(
        {
            "threshold": thresholds,
            "dice": dice_values,
            "detection_rate": rates,
            "predicted_voxels": n_pred,
        }
    )
