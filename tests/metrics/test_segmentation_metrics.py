import numpy as np
import pytest

from lesionkit.metrics import (
    detection_rate,
    dice,
    lesion_hits,
    probability_dice,
    threshold_sweep,
)


def _two_lesions():
    truth = np.zeros((16, 16, 16), bool)
    truth[2:5, 2:5, 2:5] = True  # 27 voxels
    truth[10:14, 10:14, 10:14] = True  # 64 voxels
    prob = np.zeros(truth.shape)
    prob[3, 3, 3] = 0.9  # one voxel hits the first lesion only
    return prob, truth


def test_dice_of_two_cubes():
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros_like(a)
    a[0:4, 0:4, 0:4] = True  # 64
    b[2:6, 0:4, 0:4] = True  # 64, overlap 32
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, a) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_probability_dice_binarises_at_threshold():
    truth = np.array([0.9, 0.85, 0.1, 0.0])
    pred = np.array([0.95, 0.5, 0.81, 0.0])
    # binarised: truth [1,1,0,0], pred [1,0,1,0] -> 2*1/(2+2)
    assert probability_dice(pred, truth, 0.8) == pytest.approx(0.5)


def test_detection_rate_two_components_one_hit():
    prob, truth = _two_lesions()
    assert detection_rate(prob, truth, 0.5) == pytest.approx(0.5)
    assert lesion_hits(prob, truth, 0.5).tolist() == [True, False]
    assert detection_rate(prob, truth, 0.95) == 0.0
    assert np.isnan(detection_rate(prob, np.zeros_like(truth), 0.5))


def test_detection_connectivity_counts_diagonal_neighbours():
    truth = np.zeros((5, 5, 5), bool)
    truth[1, 1, 1] = truth[2, 2, 2] = True  # touch by a corner only
    prob = np.zeros(truth.shape)
    prob[1, 1, 1] = 1.0
    assert detection_rate(prob, truth, 0.5, connectivity=3) == 1.0
    assert detection_rate(prob, truth, 0.5, connectivity=1) == 0.5


def test_threshold_sweep_matches_pointwise_and_is_monotonic():
    rng = np.random.default_rng(1)
    prob, truth = _two_lesions()
    noise = 0.6 * truth * rng.random(truth.shape) + 0.3 * rng.random(truth.shape)
    prob = np.clip(prob + noise, 0, 1)
    sweep = threshold_sweep(prob, truth)
    assert len(sweep) == 101
    assert list(sweep.columns) == ["threshold", "dice", "detection_rate", "predicted_voxels"]
    assert np.all(np.diff(sweep["detection_rate"]) <= 0)
    assert np.all(np.diff(sweep["predicted_voxels"]) <= 0)
    assert sweep["detection_rate"].iloc[0] == 1.0
    for t in (0.0, 0.33, 0.5, 0.77):
        row = sweep.iloc[round(t * 100)]
        assert row["dice"] == pytest.approx(dice(prob >= row["threshold"], truth))
        assert row["detection_rate"] == pytest.approx(detection_rate(prob, truth, row["threshold"]))


def test_threshold_sweep_respects_mask():
    prob, truth = _two_lesions()
    prob[0, 0, 0] = 1.0  # false positive outside the mask
    mask = np.ones(truth.shape, bool)
    mask[0, 0, 0] = False
    sweep = threshold_sweep(prob, truth, thresholds=[0.5], mask=mask)
    assert sweep["predicted_voxels"].iloc[0] == 1
    assert sweep["dice"].iloc[0] == pytest.approx(2 / (1 + 91))
