"""Phantom contrast ratios (GM/WM, CSF/WM, lesion/WM) lie inside published ranges."""

from __future__ import annotations

import numpy as np
import pytest

from lesionkit.simulate import simulate_cohort
from lesionkit.simulate.realism import (
    PUBLISHED_RATIOS,
    contrast_ratios,
    dataset_ratios,
    ms_subject_ratios,
    out_of_range,
    tissue_masks,
)

SEEDS = (0, 1)


@pytest.fixture(scope="module", params=SEEDS)
def seed(request):
    return request.param


def test_contrast_ratios_is_a_median_ratio_and_skips_empty_masks():
    img = np.array([10.0, 10.0, 10.0, 8.0, 8.0, 8.0, 30.0, 30.0, 30.0])
    masks = tissue_masks(np.array([0, 0, 0, 1, 1, 0.95, 0, 0, 0]),
                         np.array([1, 1, 1, 0, 0, 0, 0, 0, 0.5]),
                         np.array([0, 0, 0, 0, 0, 0, 1, 1, 0.5]),
                         lesion=np.zeros(9))
    r = contrast_ratios({"T1w": img}, masks, min_voxels=2)
    assert r == {("T1w", "GM/WM"): pytest.approx(0.8), ("T1w", "CSF/WM"): pytest.approx(3.0)}
    assert out_of_range(r) == ["T1w CSF/WM = 3.000 outside 0.15-0.45"]
    with pytest.raises(ValueError, match="WM mask"):
        contrast_ratios({"T1w": img}, {"WM": np.zeros(9, bool)})


def test_published_ranges_hold_the_real_scan_reference_points():
    for key, value in {("T1w", "GM/WM"): (0.83, 0.87), ("T1w", "lesion/WM"): (0.76, 0.84),
                       ("FLAIR", "lesion/WM"): (1.33, 1.37)}.items():
        lo, hi, source = PUBLISHED_RATIOS[key]
        assert lo <= value[0] and value[1] <= hi and source


def test_ms_cohort_t1w_and_flair_ratios_are_realistic(seed, tmp_path):
    root = simulate_cohort("mrf-lesion", tmp_path / "ms", 1, seed, 2)
    (ratios,) = dataset_ratios(root).values()
    expected = {(i, r) for i in ("T1w", "FLAIR") for r in ("GM/WM", "CSF/WM", "lesion/WM")}
    assert expected <= set(ratios)
    assert out_of_range(ratios) == []
    assert ratios[("FLAIR", "lesion/WM")] > 1.2 > 0.9 > ratios[("T1w", "lesion/WM")]


def test_contrast_cohort_t1_and_t1c_ratios_are_realistic(seed, tmp_path):
    root = simulate_cohort("contrast-amplify", tmp_path / "ca", 1, seed, 2)
    (ratios,) = dataset_ratios(root, lesion=False).values()
    expected = {(i, r) for i in ("T1w-SPGR", "T1c", "T1c-TSE", "FLAIR")
                for r in ("GM/WM", "CSF/WM")}
    assert expected <= set(ratios)
    assert out_of_range(ratios) == []


def test_t2w_and_other_ms_ratios_are_realistic(seed):
    ratios = ms_subject_ratios(seed + 100)
    assert {("T2w", "GM/WM"), ("T2w", "CSF/WM"), ("T2w", "lesion/WM")} <= set(ratios)
    assert out_of_range(ratios) == []
