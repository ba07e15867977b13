"""MS lesions on the 2 mm template: placement, rim+ fraction, sizes, determinism, effects."""

import dataclasses

import numpy as np
import pytest
from scipy import stats

from lesionkit.simulate.anatomy import load_template, to_spacing
from lesionkit.simulate.lesions import (
    Lesion,
    distance_mm,
    lesion_fractions,
    lesion_table_rows,
    ventricles,
)
from lesionkit.simulate.lesions_ms import (
    DIAMETER_MM,
    MS_LESION_RANGES,
    RIM_MIN_DIAMETER_MM,
    WhiteMatterSites,
    apply_ms_lesions,
    draw_ms_lesions,
    draw_rim_status,
)
from lesionkit.simulate.parameters import draw_tissue_values
from lesionkit.simulate.tissue import tissue_maps


@pytest.fixture(scope="module")
def anatomy():
    return to_spacing(load_template(), 2.0)


@pytest.fixture(scope="module")
def sites(anatomy):
    return WhiteMatterSites.from_anatomy(anatomy)


def _subjects(anatomy, sites, n, seed=0, **kw):
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]
    return [draw_ms_lesions(r, anatomy, sites=sites, **kw) for r in rngs]


def test_lesion_masks_inside_brain_and_white_matter(anatomy, sites):
    for lesions in _subjects(anatomy, sites, 3, n_range=(20, 30)):
        fractions, labels = lesion_fractions(lesions, anatomy)
        assert set(np.unique(labels)) - {0} == {les.label for les in lesions}
        assert anatomy.mask[labels > 0].all()
        assert (anatomy.wm[labels > 0] > 0).all()
        assert (fractions.total() <= anatomy.wm + 1e-6).all()


def test_number_of_lesions_within_range(anatomy, sites):
    counts = [len(les) for les in _subjects(anatomy, sites, 20, seed=1, n_range=(0, 30))]
    assert min(counts) >= 0 and max(counts) <= 30
    assert 0 in range(min(counts), 11) and max(counts) >= 20  # the range is used


def test_rim_status_fraction_binomial():
    rng = np.random.default_rng(5)
    n = 20000
    draws = [draw_rim_status(rng, 0.04, 0.12) for _ in range(n)]
    rims = sum(r for r, _ in draws)
    uniform = sum(u for _, u in draws)
    lo, hi = stats.binom.interval(0.999, n, 0.04)
    assert lo <= rims <= hi
    lo, hi = stats.binom.interval(0.999, n - rims, 0.12)
    assert lo <= uniform <= hi
    assert not any(r and u for r, u in draws)


def test_rim_fraction_of_placed_lesions_binomial(anatomy, sites):
    lesions = [les for subj in _subjects(anatomy, sites, 16, seed=2, n_range=(30, 30))
               for les in subj]
    n, rims = len(lesions), sum(les.rim for les in lesions)
    assert n >= 400
    lo, hi = stats.binom.interval(0.999, n, 0.04)
    assert lo <= rims <= hi


def test_deterministic_by_seed(anatomy, sites):
    a = _subjects(anatomy, sites, 1, seed=7, n_range=(5, 10))[0]
    b = _subjects(anatomy, sites, 1, seed=7, n_range=(5, 10))[0]
    c = _subjects(anatomy, sites, 1, seed=8, n_range=(5, 10))[0]
    assert [les.centre_mm for les in a] == [les.centre_mm for les in b]
    assert [les.properties for les in a] == [les.properties for les in b]
    np.testing.assert_array_equal(lesion_fractions(a, anatomy)[1], lesion_fractions(b, anatomy)[1])
    assert [les.centre_mm for les in a] != [les.centre_mm for les in c]


def test_sizes_values_and_locations(anatomy, sites):
    subjects = _subjects(anatomy, sites, 6, seed=3, n_range=(25, 30))
    lesions = [les for subj in subjects for les in subj]
    diam = np.array([2 * np.array(les.axes_mm) for les in lesions])
    assert diam.min() >= DIAMETER_MM[0] - 1e-9 and diam.max() <= DIAMETER_MM[1] + 1e-9
    assert diam[:, 0].min() < 5 and diam[:, 0].max() > 15  # spans the range
    assert all(min(les.axes_mm) * 2 >= RIM_MIN_DIAMETER_MM for les in lesions if les.rim)
    for key, (lo, hi) in MS_LESION_RANGES.items():
        values = [les.properties[key] for les in lesions if not les.uniform_paramagnetic]
        assert lo <= min(values) and max(values) <= hi
    locations = {les.properties["location"] for les in lesions}
    assert locations == {"periventricular", "juxtacortical", "deep"}
    first = subjects[0]
    fractions, _ = lesion_fractions(first, anatomy)
    for row, les in zip(lesion_table_rows(first, fractions, anatomy.affine), first,
                        strict=True):
        # measured from the painted lesion: at most the drawn size plus irregularity
        bump = 4 * les.irregularity * np.mean(les.axes_mm)  # +-2 SD on both sides
        assert row["long_axis_mm"] <= les.long_axis_mm + bump + 2.0
        assert 0 < row["volume_mm3"] <= 4 / 3 * np.pi * np.prod(les.axes_mm) * 1.6 + 8


def test_ventricles_are_the_lateral_ventricles(anatomy):
    vent = ventricles(anatomy)
    volume_ml = vent.sum() * 8 / 1000
    assert 10 < volume_ml < 30  # MNI152 lateral ventricles, not cisterns or sulci
    world = np.argwhere(vent) @ anatomy.affine[:3, :3].T + anatomy.affine[:3, 3]
    assert abs(world[:, 0].mean()) < 3 and -10 < world[:, 2].mean() < 30
    assert (np.abs(world[:, 0]) < 40).all()


def test_periventricular_lesions_touch_ventricles(anatomy, sites):
    to_vent = distance_mm(ventricles(anatomy), anatomy.affine)
    lesions = [les for subj in _subjects(anatomy, sites, 4, seed=4, n_range=(30, 30))
               for les in subj]
    inv = np.linalg.inv(anatomy.affine)
    for les in lesions:
        ijk = tuple(np.round(inv[:3, :3] @ les.centre_mm + inv[:3, 3]).astype(int))
        if les.properties["location"] == "periventricular":
            assert to_vent[ijk] <= 0.7 * max(les.axes_mm) + 2.0 + 1e-6
        elif les.properties["location"] == "deep":
            assert to_vent[ijk] > 3.0


def _values():
    return draw_tissue_values(np.random.default_rng(0))


def test_apply_paints_lesion_values_and_rim(anatomy):
    inv = np.linalg.inv(anatomy.affine)
    ijk = np.argwhere((anatomy.wm > 0.95) & anatomy.mask)
    # a deep WM voxel: the one farthest from non-WM among a few
    centre = anatomy.affine[:3, :3] @ ijk[len(ijk) // 2] + anatomy.affine[:3, 3]
    props = {"t1_ms": 1500.0, "t2_ms": 120.0, "t2s_ms": 70.0, "pd": 0.8, "adc": 1.2,
             "chi_ppb": 5.0, "rim_chi_ppb": 50.0, "rim_thickness_mm": 2.0}
    les = Lesion(1, "ms", tuple(centre), (6.0, 6.0, 6.0), rim=True, properties=props)
    fractions, labels = lesion_fractions([les], anatomy)
    maps = tissue_maps(anatomy, _values())
    out = apply_ms_lesions(maps, [les], fractions, anatomy.affine)
    core = tuple(np.round(inv[:3, :3] @ centre + inv[:3, 3]).astype(int))
    f = fractions[1]
    fc = f[core]
    assert fc > 0.9
    expected_t1 = 1 / ((1 - fc) / maps.t1_ms[core] + fc / 1500.0)  # rates mix linearly
    assert out.t1_ms[core] == pytest.approx(expected_t1, rel=1e-4)
    assert out.chi_ppb[core] == pytest.approx((1 - fc) * maps.chi_ppb[core] + fc * 5.0, abs=0.01)
    edge = (labels == 1) & (f > 0.9) & (out.chi_ppb > 20)
    assert edge.any()
    assert out.chi_ppb[labels == 1].max() > out.chi_ppb[core] + 20
    assert (out.adc[labels == 1] > maps.adc[labels == 1]).all()
    untouched = f == 0
    np.testing.assert_array_equal(out.t1_ms[untouched], maps.t1_ms[untouched])
    # mixing never leaves the range of the old value and the lesion's: the rim exceeds it,
    # its rim- twin does not
    bound = np.maximum(maps.chi_ppb, 5.0)[labels == 1] + 1e-3
    assert (out.chi_ppb[labels == 1] > bound + 20).any()
    plain = apply_ms_lesions(maps, [dataclasses.replace(les, rim=False)], fractions,
                             anatomy.affine)
    assert (plain.chi_ppb[labels == 1] <= bound).all()


def test_uniform_paramagnetic_lesions_are_bright_throughout(anatomy, sites):
    lesions = _subjects(anatomy, sites, 1, seed=9, n_range=(30, 30), rim_fraction=0.0,
                        uniform_paramagnetic_fraction=0.5)[0]
    fractions, _ = lesion_fractions(lesions, anatomy)
    out = apply_ms_lesions(tissue_maps(anatomy, _values()), lesions, fractions,
                           anatomy.affine)
    checked = set()
    for les in lesions:
        inside = fractions[les.label] > 0.99
        if not inside.any():
            continue
        chi = out.chi_ppb[inside]  # within 1 % of the lesion value (WM is -20 to -30 ppb)
        if les.uniform_paramagnetic:
            assert chi.min() >= 15.0 - 0.5
        else:
            assert chi.max() <= 15.0 + 0.5
        checked.add(les.uniform_paramagnetic)
    assert checked == {True, False}


def test_no_lesions_leaves_maps_and_labels_empty(anatomy, sites):
    lesions = draw_ms_lesions(np.random.default_rng(0), anatomy, n_range=(0, 0), sites=sites)
    assert lesions == []
    fractions, labels = lesion_fractions(lesions, anatomy)
    assert len(fractions) == 0 and labels.dtype == np.int16 and not labels.any()
    assert not fractions.total().any()
    maps = tissue_maps(anatomy, _values())
    assert apply_ms_lesions(maps, lesions, fractions, anatomy.affine) is maps
    assert lesion_table_rows(lesions, fractions, anatomy.affine) == []


def test_vein_partial_volume_follows_its_cross_section():
    from lesionkit.simulate.lesions_ms import Vein, vein_fraction

    affine = np.eye(4)
    affine[:3, 3] = -10.0  # voxel (10, 10, 10) at the origin
    for radius in (0.4, 0.8):
        vein = Vein((-8.0, 0.0, 0.0), (8.0, 0.0, 0.0), radius, 400.0)
        fraction = vein_fraction([vein], (21, 21, 21), affine)
        per_mm = fraction[4:17].sum() / 13  # 13 voxels along the axis, away from its ends
        # 5^3 points per voxel: the cross-section within 30 % for 0.4-0.8 mm radii
        assert per_mm == pytest.approx(np.pi * radius**2, rel=0.3)
        assert fraction[10, 10, 10] >= 0.3 and fraction[:, :8].max() == 0


def test_veins_run_beside_lesions_and_raise_chi(anatomy):
    from lesionkit.simulate.lesions_ms import (
        VEIN_CHI_PPB,
        apply_veins,
        draw_lesion_veins,
        vein_fraction,
    )

    labels = np.zeros(anatomy.shape, np.int16)
    centre = np.array(anatomy.shape) // 2
    grid = np.indices(anatomy.shape)
    labels[sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= 9] = 1  # r 6 mm
    veins = draw_lesion_veins(np.random.default_rng(0), labels, anatomy.affine, fraction=1.0)
    assert len(veins) == 1 and veins[0].lesion == 1
    assert VEIN_CHI_PPB[0] <= veins[0].chi_ppb <= VEIN_CHI_PPB[1]
    fraction = vein_fraction(veins, anatomy.shape, anatomy.affine)
    lesion = labels == 1
    assert fraction.sum() > 1.0 and fraction[lesion].sum() < 0.5 * fraction.sum()  # beside
    near = distance_mm(lesion, anatomy.affine) <= 2.0 + 2 * veins[0].radius_mm + 1.0
    assert fraction[near].sum() > 0.2 * fraction.sum()  # touching the surface
    maps = tissue_maps(anatomy, draw_tissue_values(np.random.default_rng(0), "3T"))
    painted = apply_veins(maps, veins, anatomy.affine, anatomy.mask)
    vessel = (fraction > 0.5) & anatomy.mask
    assert (painted.chi_ppb[vessel] > maps.chi_ppb[vessel] + 100).all()
    np.testing.assert_array_equal(painted.chi_ppb[fraction == 0], maps.chi_ppb[fraction == 0])
    assert draw_lesion_veins(np.random.default_rng(0), labels, anatomy.affine, 0.0) == []
