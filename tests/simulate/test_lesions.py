"""Lesion geometry: partial-volume shapes, shells, label maps, axes and table rows."""

import numpy as np
import pytest

from lesionkit.simulate.lesions import (
    FractionMaps,
    Lesion,
    fraction_axes_mm,
    label_map,
    lesion_table_rows,
    random_rotation,
    shape_crop,
    shape_fraction,
)


def _affine(spacing: float) -> np.ndarray:
    """Rotated, flipped, offset grid: world = R @ (spacing * ijk) + t."""
    theta = 0.3
    rot = np.array(
        [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, -1]]
    )
    aff = np.eye(4)
    aff[:3, :3] = rot * spacing
    aff[:3, 3] = [-20.0, 5.0, 30.0]
    return aff


def _grid(spacing: float, extent_mm: float = 48.0):
    n = int(extent_mm / spacing)
    aff = _affine(spacing)
    centre = aff[:3, :3] @ np.full(3, (n - 1) / 2) + aff[:3, 3]
    return (n, n, n), aff, tuple(centre)


@pytest.mark.parametrize("spacing", [1.0, 2.0])
def test_sphere_volume_matches_analytic(spacing):
    shape, aff, centre = _grid(spacing)
    les = Lesion(1, "ms", centre, (7.0, 7.0, 7.0))
    volume = shape_fraction(les, shape, aff).sum() * spacing**3
    assert volume == pytest.approx(4 / 3 * np.pi * 7.0**3, rel=0.04)


def test_fraction_edge_is_partial_and_bounded():
    shape, aff, centre = _grid(1.0)
    f = shape_fraction(Lesion(1, "ms", centre, (6.0, 4.0, 3.0), random_rotation(
        np.random.default_rng(0))), shape, aff)
    assert f.dtype == np.float32 and f.min() >= 0 and f.max() == 1.0
    assert ((f > 0.05) & (f < 0.95)).sum() > 50


def test_axes_from_moments_match_drawn_diameters():
    shape, aff, centre = _grid(1.0)
    rot = random_rotation(np.random.default_rng(3))
    f = shape_fraction(Lesion(1, "ms", centre, (9.0, 5.0, 3.0), rot), shape, aff)
    long_mm, short_mm = fraction_axes_mm(f, aff)
    assert long_mm == pytest.approx(18.0, rel=0.05)
    assert short_mm == pytest.approx(6.0, rel=0.08)


def test_irregular_shape_fixed_by_seed_and_resolution_independent():
    shape1, aff1, centre = _grid(1.0)
    les = Lesion(1, "ms", centre, (8.0, 6.0, 5.0), irregularity=0.3, shape_seed=11)
    other = Lesion(1, "ms", centre, (8.0, 6.0, 5.0), irregularity=0.3, shape_seed=12)
    plain = Lesion(1, "ms", centre, (8.0, 6.0, 5.0))
    f1 = shape_fraction(les, shape1, aff1)
    np.testing.assert_array_equal(f1, shape_fraction(les, shape1, aff1))
    assert np.abs(f1 - shape_fraction(other, shape1, aff1)).sum() > 100
    assert np.abs(f1 - shape_fraction(plain, shape1, aff1)).sum() > 100
    shape2, aff2, centre2 = _grid(2.0)
    les2 = Lesion(1, "ms", centre2, les.axes_mm, irregularity=0.3, shape_seed=11)
    v1 = f1.sum()
    v2 = shape_fraction(les2, shape2, aff2).sum() * 8
    assert v2 == pytest.approx(v1, rel=0.08)


def test_shrunken_shape_shares_box_and_gives_shell_volume():
    shape, aff, centre = _grid(1.0)
    les = Lesion(1, "ms", centre, (8.0, 8.0, 8.0))
    box, outer = shape_crop(les, shape, aff)
    box_in, inner = shape_crop(les, shape, aff, grow_mm=-2.0)
    assert box == box_in
    shell = (outer - inner).sum()
    assert shell == pytest.approx(4 / 3 * np.pi * (8.0**3 - 6.0**3), rel=0.05)


def test_label_map_keeps_every_lesion_and_prefers_larger_fraction():
    shape = (10, 10, 10)
    big = np.zeros(shape, np.float32)
    big[2:6, 2:6, 2:6] = 0.9
    small = np.zeros(shape, np.float32)
    small[5, 5, 5] = 0.95  # overlaps the big one with a larger fraction
    tiny = np.zeros(shape, np.float32)
    tiny[8, 8, 8], tiny[8, 8, 9] = 0.3, 0.2  # never reaches 0.5
    crops = {
        1: ((slice(0, 10),) * 3, big),
        2: ((slice(0, 10),) * 3, small),
        3: ((slice(0, 10),) * 3, tiny),
    }
    labels = label_map(FractionMaps(shape, crops))
    assert labels.dtype == np.int16
    assert labels[5, 5, 5] == 2 and labels[3, 3, 3] == 1
    assert labels[8, 8, 8] == 3 and labels[8, 8, 9] == 0
    assert (labels == 1).sum() == 63


def test_fraction_maps_full_items_and_table_rows():
    shape, aff, centre = _grid(2.0)
    les = Lesion(4, "metastasis", centre, (6.0, 5.0, 4.0))
    box, local = shape_crop(les, shape, aff)
    fractions = FractionMaps(shape, {4: (box, local)})
    np.testing.assert_array_equal(fractions[4], shape_fraction(les, shape, aff))
    (row,) = lesion_table_rows([les], fractions, aff)
    assert row["label"] == 4 and row["type"] == "metastasis" and row["rim"] == 0
    assert row["long_axis_mm"] == pytest.approx(12.0, rel=0.1)
    assert row["short_axis_mm"] == pytest.approx(8.0, rel=0.15)
    # the one-voxel ramp over-counts a convex surface by about 4 pi r h^2 / 12 (~5 % here)
    assert row["volume_mm3"] == pytest.approx(4 / 3 * np.pi * 120.0, rel=0.08)
    assert row["centre_x"] == pytest.approx(centre[0], abs=0.01)


def test_fraction_is_full_at_a_voxel_centre_lesion_centre():
    shape, aff, _ = _grid(2.0)
    centre = tuple(aff[:3, :3] @ np.array([10, 11, 12]) + aff[:3, 3])
    for irregularity in (0.0, 0.2):
        les = Lesion(1, "ms", centre, (5.0, 3.0, 4.0), random_rotation(np.random.default_rng(1)),
                     irregularity=irregularity, shape_seed=3)
        f = shape_fraction(les, shape, aff)
        assert f[10, 11, 12] == 1.0  # no singularity at the centre
        faces = [f[9, 11, 12], f[11, 11, 12], f[10, 10, 12], f[10, 12, 12], f[10, 11, 11],
                 f[10, 11, 13]]
        assert min(faces) > (0.99 if irregularity == 0 else 0.5)
