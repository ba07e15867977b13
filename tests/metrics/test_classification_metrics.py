import numpy as np
import pytest
from sklearn.metrics import roc_curve

from lesionkit.metrics import (
    accuracy,
    count_mse,
    partial_auc,
    pr_auc,
    roc_auc,
    sensitivity,
    specificity,
)


def test_confusion_based_metrics():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    pred = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 1])
    assert accuracy(y, pred) == pytest.approx(0.7)
    assert sensitivity(y, pred) == pytest.approx(0.75)
    assert specificity(y, pred) == pytest.approx(4 / 6)
    assert np.isnan(sensitivity(np.zeros(3, int), np.zeros(3, int)))


def test_partial_auc_perfect_and_chance():
    y = np.array([0] * 50 + [1] * 50)
    perfect = partial_auc(y, y.astype(float), max_fpr=0.1)
    assert perfect.standardized == pytest.approx(1.0)
    assert perfect.raw == pytest.approx(0.1)
    # score with no information: the ROC is the diagonal
    flat = partial_auc(y, np.ones(100), max_fpr=0.1)
    assert flat.standardized == pytest.approx(0.5)
    assert flat.raw == pytest.approx(0.005)


def test_partial_auc_raw_matches_trapezoid_integration():
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(200), np.ones(40)].astype(int)
    score = rng.normal(size=240) + 1.2 * y
    fpr, tpr, _ = roc_curve(y, score)
    stop = np.searchsorted(fpr, 0.1, side="right")
    x = np.r_[fpr[:stop], 0.1]
    t = np.r_[tpr[:stop], np.interp(0.1, fpr, tpr)]
    assert partial_auc(y, score, 0.1).raw == pytest.approx(np.trapezoid(t, x))


def test_roc_and_pr_auc():
    y = np.array([0, 0, 1, 1])
    score = np.array([0.1, 0.4, 0.35, 0.8])
    assert roc_auc(y, score) == pytest.approx(0.75)
    # ranking: 0.8 (1), 0.4 (0), 0.35 (1) -> AP = 0.5 * 1 + 0.5 * 2/3
    assert pr_auc(y, score) == pytest.approx(0.5 + 1 / 3)


def test_count_mse():
    assert count_mse([1, 2, 3], [1, 2, 5]) == pytest.approx(4 / 3)
