"""Rim coverage features: a band around the whole edge against a crescent on one side."""

from __future__ import annotations

import numpy as np
import pytest

from lesionkit.lesion_edge import (
    EDGE_FEATURES,
    edge_features,
    radiomics_and_edge,
    sector_directions,
)
from lesionkit.lesions import radiomics_features

RADIUS = 5.0


def _ball(shape: tuple[int, int, int] = (25, 25, 25), spacing=(1.0, 1.0, 1.0)
          ) -> tuple[np.ndarray, np.ndarray]:
    """Offsets from the crop's centre (3, x, y, z) in mm, and a ball of RADIUS mm."""
    grid = (np.indices(shape).astype(float) - (np.array(shape) // 2)[:, None, None, None]
            ) * np.asarray(spacing)[:, None, None, None]
    return grid, np.sqrt((grid ** 2).sum(0)) <= RADIUS


def _noise(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(0).normal(0.0, 10.0, shape)  # ppb


def test_sector_directions_are_unit_vectors_spread_over_the_sphere() -> None:
    directions = sector_directions(26)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0)
    np.testing.assert_allclose(directions.mean(axis=0), 0.0, atol=0.05)
    cosine = directions @ directions.T
    np.fill_diagonal(cosine, -1.0)
    nearest = np.degrees(np.arccos(cosine.max(axis=1)))
    assert nearest.min() > 30 and nearest.max() < 50  # no two close, no gap


def test_a_band_around_the_edge_lifts_every_quantile_a_crescent_does_not() -> None:
    grid, lesion = _ball()
    radius = np.sqrt((grid ** 2).sum(0))
    noise = _noise(lesion.shape)
    rim = edge_features(noise + 40.0 * (lesion & (radius > RADIUS - 1.5)), lesion, (1, 1, 1))
    # a vein beside the lesion: +350 ppb in the first 2 mm outside one side
    vein = ~lesion & (radius <= RADIUS + 2) & (grid[0] > 3)
    crescent = edge_features(noise + 350.0 * vein, lesion, (1, 1, 1))
    plain = edge_features(noise, lesion, (1, 1, 1))
    assert list(rim) == list(EDGE_FEATURES)
    assert rim["edge_over_core_q33"] > 15 and rim["edge_over_surround_q33"] > 15
    assert rim["edge_coverage"] == 1.0
    for features in (crescent, plain):
        assert abs(features["edge_over_core_q33"]) < 5
        assert features["edge_coverage"] < 0.6
    assert crescent["edge_over_core_q67"] < rim["edge_over_core_q33"]


def test_a_uniformly_paramagnetic_lesion_is_bright_against_its_surround_only() -> None:
    _, lesion = _ball()
    features = edge_features(_noise(lesion.shape) + 25.0 * lesion, lesion, (1, 1, 1))
    assert abs(features["edge_over_core_q50"]) < 5
    assert features["edge_over_surround_q33"] > 5


def test_sectors_are_cut_in_millimetres_on_thick_slices() -> None:
    spacing = (1.0, 1.0, 3.0)
    grid, lesion = _ball((25, 25, 9), spacing)
    radius = np.sqrt((grid ** 2).sum(0))
    band = lesion & (radius > RADIUS - 2.0)
    features = edge_features(_noise(lesion.shape) + 40.0 * band, lesion, spacing)
    assert features["edge_over_core_q33"] > 15
    assert features["edge_coverage"] > 0.9


def test_a_lesion_too_small_for_sectors_gets_nan() -> None:
    mask = np.zeros((7, 7, 7), bool)
    mask[3, 3, 3] = True
    features = edge_features(_noise(mask.shape), mask, (1, 1, 1))
    assert all(np.isnan(v) for v in features.values())


@pytest.mark.parametrize("corner", [False, True])
def test_radiomics_read_the_narrow_crop_whatever_the_context(corner: bool) -> None:
    _, lesion = _ball((21, 21, 21))
    volume = _noise(lesion.shape) + 30.0 * lesion
    if corner:  # a lesion at the volume's edge: the crop is cut there
        volume, lesion = volume[8:, 8:, 8:], lesion[8:, 8:, 8:]
    settings = {"image_types": ("Original", "Wavelet"), "feature_classes": ("firstorder",),
                "bin_width": 25.0}
    both = radiomics_and_edge({"qsm": volume[None]}, lesion, (1, 1, 1), **settings)
    found = np.argwhere(lesion)
    box = tuple(slice(max(a - 2, 0), b + 3) for a, b in zip(found.min(0), found.max(0),
                                                              strict=True))
    alone = radiomics_features({"qsm": volume[None][(slice(None), *box)]}, lesion[box],
                               (1, 1, 1), **settings)
    assert list(both) == [*alone, *EDGE_FEATURES]
    np.testing.assert_allclose([both[k] for k in alone], list(alone.values()))
