import numpy as np
import pytest

from lesionkit.metrics import cep, cnr, detection_table, lbr, match_detections


def _case():
    brain = np.zeros((10, 10, 10), bool)
    brain[1:9, 1:9, 1:9] = True
    lesion = np.zeros_like(brain)
    lesion[4:6, 4:6, 4:6] = True
    image = np.where(brain, 100.0, 0.0)
    image[1:9, 1:9, 1:5] = 90.0  # normal brain: half 90, half 110 -> mean 100, SD 10
    image[1:9, 1:9, 5:9] = 110.0
    image[lesion] = 150.0
    return image, lesion, brain


def test_cnr_and_lbr_known_values():
    image, lesion, brain = _case()
    normal = image[brain & ~lesion]
    expected_cnr = (150.0 - normal.mean()) / normal.std()
    assert cnr(image, lesion, brain) == pytest.approx(expected_cnr)
    assert lbr(image, lesion, brain) == pytest.approx(150.0 / normal.mean())
    # the lesion itself must not enter the brain statistics
    assert normal.mean() == pytest.approx(100.0)


def test_cep_percent():
    image, lesion, _ = _case()
    pre = np.where(lesion, 80.0, 100.0)
    assert cep(image, pre, lesion) == pytest.approx(87.5)
    with pytest.raises(ValueError):
        cep(image, pre, np.zeros_like(lesion))


def test_match_detections_radius_and_strata():
    reference = np.array([[0.0, 0, 0], [50, 0, 0], [100, 0, 0]])
    long_mm = np.array([12.0, 6.0, 4.0])
    short_mm = np.array([8.0, 2.0, 2.0])  # radii 5, 2, 1.5 mm
    detected = np.array(
        [
            [4.9, 0, 0],  # lesion 0 (inside 5 mm)
            [0, 3, 0],  # lesion 0 again: duplicate, not false
            [52.5, 0, 0],  # 2.5 mm from lesion 1: outside its 2 mm radius -> false
            [200, 0, 0],  # nothing
        ]
    )
    match = match_detections(detected, reference, long_mm, short_mm)
    assert match.found.tolist() == [True, False, False]
    assert match.false_detections == 2
    assert match.counts(0.0) == {"tp": 1, "fn": 2, "fp": 2, "true_detections": 2}
    assert match.counts(10.0) == {"tp": 1, "fn": 0, "fp": 2, "true_detections": 2}

    empty = match_detections(np.empty((0, 3)), reference, long_mm, short_mm)
    table = detection_table([match, empty])
    assert table["min_long_mm"].tolist() == [0.0, 5.0, 10.0]
    row = table.iloc[0]
    assert row["tp"] == 1 and row["fn"] == 5 and row["fp"] == 2
    assert row["sensitivity"] == pytest.approx(1 / 6)
    assert row["false_detections_per_case"] == pytest.approx(1.0)
    assert row["ppv"] == pytest.approx(0.5)
    assert row["f1"] == pytest.approx(2 * 0.5 * (1 / 6) / (0.5 + 1 / 6))
    big = table.iloc[2]
    assert big["tp"] == 1 and big["fn"] == 1
    assert big["sensitivity"] == pytest.approx(0.5)


def test_detection_table_without_detections_gives_zero_f1_or_nan():
    reference = np.array([[0.0, 0, 0]])
    match = match_detections(np.empty((0, 3)), reference, [10.0], [10.0])
    row = detection_table([match], strata_mm=[0.0]).iloc[0]
    assert row["sensitivity"] == 0.0
    assert np.isnan(row["ppv"])
    assert np.isnan(row["f1"])
