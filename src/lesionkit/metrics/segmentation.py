"""Segmentation metrics: Dice, lesion detection rate and threshold sweeps.

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
