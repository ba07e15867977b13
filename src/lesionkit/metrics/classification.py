"""Classification metrics for subjects (FCD vs control) and lesions (rim+ vs rim-).

Labels are 0/1 with 1 the positive class (patient, rim+); scores are any monotone
measure of the positive class (probabilities 0-1). ROC, partial ROC and PR curves come
from scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    mean_squared_error,
    roc_auc_score,
)

__all__ = [
    "PartialAUC",
    "accuracy",
    "count_mse",
    "partial_auc",
    "pr_auc",
    "roc_auc",
    "sensitivity",
    "specificity",
    "subject_bootstrap",
]


def _binary(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[int, int, int, int]:
    """(tn, fp, fn, tp) of binary labels."""
    matrix = confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=[0, 1])
    tn, fp, fn, tp = (int(v) for v in matrix.ravel())
    return tn, fp, fn, tp


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction (0-1) of correct binary predictions."""
    return float(accuracy_score(np.asarray(y_true), np.asarray(y_pred)))


def sensitivity(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """True-positive rate TP / (TP + FN) (0-1); NaN without positives."""
    _, _, fn, tp = _binary(y_true, y_pred)
    return tp / (tp + fn) if tp + fn else float("nan")


def specificity(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """True-negative rate TN / (TN + FP) (0-1); NaN without negatives."""
    tn, fp, _, _ = _binary(y_true, y_pred)
    return tn / (tn + fp) if tn + fp else float("nan")


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (0-1)."""
    return float(roc_auc_score(np.asarray(y_true), np.asarray(score)))


@dataclass(frozen=True)
class PartialAUC:
    """Partial ROC AUC over false-positive rates 0..max_fpr.

    Attributes:
        raw: area under the ROC curve for FPR <= max_fpr (0..max_fpr).
        standardized: McClish (1989) standardised area (0.5 = chance, 1 = perfect).
        max_fpr: upper false-positive rate.
    """

    raw: float
    standardized: float
    max_fpr: float


def partial_auc(y_true: np.ndarray, score: np.ndarray, max_fpr: float = 0.1) -> PartialAUC:
    """Partial ROC AUC for FPR <= ``max_fpr``, raw and McClish-standardised.

    The raw area lies in 0..max_fpr (0.1 at most for max_fpr 0.1, chance 0.005); the
    McClish value maps it onto 0.5 (chance) .. 1 (perfect).

    scikit-learn's ``roc_auc_score(max_fpr=...)`` returns the McClish value
    ``0.5 * (1 + (A - A_min) / (A_max - A_min))`` with ``A_min = max_fpr**2 / 2`` and
    ``A_max = max_fpr``; the raw area ``A`` is recovered by inverting it.
    """
    standardized = float(roc_auc_score(np.asarray(y_true), np.asarray(score), max_fpr=max_fpr))
    min_area, max_area = 0.5 * max_fpr**2, max_fpr
    raw = min_area + (2.0 * standardized - 1.0) * (max_area - min_area)
    return PartialAUC(raw=float(raw), standardized=standardized, max_fpr=float(max_fpr))


def pr_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (0-1)."""
    return float(average_precision_score(np.asarray(y_true), np.asarray(score)))


def count_mse(predicted_counts: np.ndarray, true_counts: np.ndarray) -> float:
    """Mean squared error of per-subject counts (lesions^2), e.g. rim+ lesions per subject.

    Pair with ``lesionkit.stats.pearson_ci`` for the correlation and its CI.
    """
    return float(mean_squared_error(np.asarray(true_counts), np.asarray(predicted_counts)))


def subject_bootstrap(metric: Callable[[np.ndarray, np.ndarray], float], y_true: np.ndarray,
                      score: np.ndarray, subjects: np.ndarray, n_resamples: int = 1000,
                      seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """A lesion-level metric with a percentile interval from resampling subjects.

    Lesions of one subject are not independent, so subjects (clusters) are drawn with
    replacement and all their lesions enter each resample. Resamples without both
    classes are redrawn (at most ``10 * n_resamples`` draws in all).

    Args:
        metric: ``metric(y_true, score) -> float`` (e.g. :func:`pr_auc`).
        y_true: (N,) 0/1 lesion labels.
        score: (N,) scores.
        subjects: (N,) subject of each lesion.
        n_resamples: Number of resamples.
        seed: Seed of the draws.
        confidence: Interval coverage.

    Returns:
        (estimate, low, high).
    """
    y_true, score, subjects = (np.asarray(a) for a in (y_true, score, subjects))
    names, index = np.unique(subjects, return_inverse=True)
    members = [np.flatnonzero(index == i) for i in range(len(names))]
    rng = np.random.default_rng(seed)
    values: list[float] = []
    for _ in range(10 * n_resamples):
        if len(values) == n_resamples:
            break
        chosen = np.concatenate([members[i] for i in rng.integers(0, len(names), len(names))])
        if len(np.unique(y_true[chosen])) == 2:
            values.append(metric(y_true[chosen], score[chosen]))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail]) if values else (np.nan, np.nan)
    return float(metric(y_true, score)), float(low), float(high)
