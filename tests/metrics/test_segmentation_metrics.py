import numpy as np
import pytest

from lesionkit.metrics import (
    detection_rate,
    dice,
    lesion_hits,
    lesion_wise,
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


def _three_lesions():
    truth = np.zeros((20, 20, 20), bool)
    truth[1:4, 1:4, 1:4] = True
    truth[8:11, 8:11, 8:11] = True
    truth[15:18, 15:18, 15:18] = True
    prob = np.zeros(truth.shape)
    prob[2:6, 2, 2] = 0.9  # hits lesion 1, spills outside it
    prob[9, 9, 9] = 0.7  # hits lesion 2
    prob[1:3, 15:17, 1:3] = 0.8  # separate false component, 8 voxels
    prob[16, 16, 16] = 0.3  # below threshold: lesion 3 missed
    return prob, truth


def test_lesion_wise_counts_and_ratios():
    prob, truth = _three_lesions()
    result = lesion_wise(prob, truth, threshold=0.5)
    assert result == {
        "n_true_lesions": 3,
        "n_predicted_lesions": 3,
        "true_positive_lesions": 2,
        "false_negative_lesions": 1,
        "true_positive_components": 2,
        "false_positive_components": 1,
        "lesion_precision": pytest.approx(2 / 3),
        "lesion_recall": pytest.approx(2 / 3),
        "lesion_f1": pytest.approx(2 / 3),
    }
    # Recall agrees with detection_rate when nothing is masked or dropped.
    assert result["lesion_recall"] == pytest.approx(detection_rate(prob, truth, 0.5))
    low = lesion_wise(prob, truth, threshold=0.2)
    assert low["true_positive_lesions"] == 3
    assert low["lesion_recall"] == 1.0
    assert low["lesion_precision"] == pytest.approx(3 / 4)
    assert low["lesion_f1"] == pytest.approx(2 * 0.75 / 1.75)


def test_lesion_wise_bridge_component_detects_two_lesions():
    truth = np.zeros((10, 10, 10), bool)
    truth[1:3, 1:3, 1:3] = True
    truth[6:8, 1:3, 1:3] = True
    prob = np.zeros(truth.shape)
    prob[1:8, 1, 1] = 1.0  # one bar through both lesions
    result = lesion_wise(prob, truth)
    assert result["n_predicted_lesions"] == 1
    assert result["true_positive_components"] == 1
    assert result["false_positive_components"] == 0
    assert result["true_positive_lesions"] == 2
    assert result["lesion_precision"] == 1.0
    assert result["lesion_recall"] == 1.0
    assert result["lesion_f1"] == 1.0


def test_lesion_wise_diagonal_contact_depends_on_connectivity():
    truth = np.zeros((6, 6, 6), bool)
    truth[1, 1, 1] = truth[2, 2, 2] = True  # corner contact only
    prob = np.zeros(truth.shape)
    prob[0, 0, 0] = prob[1, 1, 1] = 1.0  # also corner contact; (0,0,0) is outside truth
    full = lesion_wise(prob, truth, connectivity=3)
    assert full["n_true_lesions"] == 1
    assert full["n_predicted_lesions"] == 1
    assert full["true_positive_lesions"] == 1
    assert full["false_positive_components"] == 0
    assert full["lesion_f1"] == 1.0
    faces = lesion_wise(prob, truth, connectivity=1)
    assert faces["n_true_lesions"] == 2
    assert faces["n_predicted_lesions"] == 2
    assert faces["true_positive_lesions"] == 1
    assert faces["false_negative_lesions"] == 1
    assert faces["false_positive_components"] == 1
    assert faces["lesion_precision"] == 0.5
    assert faces["lesion_recall"] == 0.5
    # Adjacency alone is no detection: an overlap of one voxel is needed.
    touching = np.zeros(truth.shape)
    touching[3, 3, 3] = 1.0
    assert lesion_wise(touching, truth)["true_positive_lesions"] == 0


def test_lesion_wise_mask_removes_outside_predictions():
    prob, truth = _three_lesions()
    mask = np.ones(truth.shape, bool)
    mask[:, 14:, :5] = False  # covers the false component only
    result = lesion_wise(prob, truth, mask=mask)
    assert result["n_predicted_lesions"] == 2
    assert result["false_positive_components"] == 0
    assert result["lesion_precision"] == 1.0
    assert result["n_true_lesions"] == 3  # the mask does not touch the reference
    # Masking away a lesion's only hit turns it into a false negative.
    mask[9, 9, 9] = False
    assert lesion_wise(prob, truth, mask=mask)["true_positive_lesions"] == 1


def test_lesion_wise_min_voxels_drops_small_components():
    prob, truth = _three_lesions()
    result = lesion_wise(prob, truth, min_voxels=2)
    # The one-voxel hit on lesion 2 is dropped; the 4- and 8-voxel components stay.
    assert result["n_predicted_lesions"] == 2
    assert result["true_positive_lesions"] == 1
    assert result["false_negative_lesions"] == 2
    assert result["false_positive_components"] == 1
    assert result["lesion_precision"] == 0.5
    assert result["lesion_recall"] == pytest.approx(1 / 3)
    assert lesion_wise(prob, truth, min_voxels=9)["n_predicted_lesions"] == 0
    with pytest.raises(ValueError, match="min_voxels"):
        lesion_wise(prob, truth, min_voxels=0)


def test_lesion_wise_empty_cases_give_none():
    empty = np.zeros((5, 5, 5), bool)
    nothing = lesion_wise(np.zeros(empty.shape), empty)
    assert nothing["n_true_lesions"] == nothing["n_predicted_lesions"] == 0
    assert nothing["false_positive_components"] == 0
    assert nothing["false_negative_lesions"] == 0
    assert nothing["lesion_precision"] is None
    assert nothing["lesion_recall"] is None
    assert nothing["lesion_f1"] is None

    prob = np.zeros(empty.shape)
    prob[2, 2, 2] = 1.0
    only_false = lesion_wise(prob, empty)
    assert only_false["false_positive_components"] == 1
    assert only_false["lesion_precision"] == 0.0
    assert only_false["lesion_recall"] is None
    assert only_false["lesion_f1"] is None

    truth = empty.copy()
    truth[2, 2, 2] = True
    missed = lesion_wise(np.zeros(empty.shape), truth)
    assert missed["false_negative_lesions"] == 1
    assert missed["lesion_precision"] is None
    assert missed["lesion_recall"] == 0.0
    assert missed["lesion_f1"] is None

    prob[0, 0, 0], prob[2, 2, 2] = 1.0, 0.0
    all_wrong = lesion_wise(prob, truth)
    assert all_wrong["lesion_precision"] == all_wrong["lesion_recall"] == 0.0
    assert all_wrong["lesion_f1"] == 0.0


def test_lesion_wise_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        lesion_wise(np.zeros((3, 3, 3)), np.zeros((3, 3, 4), bool))
    with pytest.raises(ValueError, match="mask"):
        lesion_wise(np.zeros((3, 3, 3)), np.zeros((3, 3, 3), bool), mask=np.ones((2, 3, 3)))
