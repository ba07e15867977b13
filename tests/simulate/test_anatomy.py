"""MNI152 anatomy from nilearn: derived CSF, deep GM, resampling, per-subject deformation and
atrophy."""

from __future__ import annotations

import numpy as np
import pytest

from lesionkit.simulate import variety
from lesionkit.simulate.anatomy import (
    DeformationParams,
    deform,
    draw_deformation,
    load_template,
    source_coordinates,
    subject_anatomy,
    template_at,
    thin_cortex,
    to_spacing,
)
from lesionkit.simulate.lesions import ventricles


@pytest.fixture(scope="module")
def template():
    return load_template()


def _volume_ml(a) -> float:
    return float(a.mask.sum() * np.prod(a.spacing) / 1000.0)


def test_template_maps_are_consistent(template):
    t = template
    assert t.spacing == (1.0, 1.0, 1.0)
    assert t.gm.shape == t.wm.shape == t.csf.shape == t.deep_gm.shape == t.mask.shape
    total = t.gm + t.wm + t.csf
    assert total.max() <= 1.0 + 1e-5 and total.min() >= 0.0
    assert (t.gm[~t.mask] == 0).all() and (t.wm[~t.mask] == 0).all()
    # cropped to the brain: the outer faces hold no brain
    assert not t.mask[0].any() and not t.mask[:, :, -1].any()
    assert 1200 < _volume_ml(t) < 2200
    # CSF fills the lateral ventricles (atria at MNI x = +-20, y = -30, z = 20)
    for x in (20, -20):
        ijk = np.round(np.linalg.solve(t.affine, [x, -30, 20, 1])[:3]).astype(int)
        assert t.csf[tuple(ijk)] > 0.8
    assert 60 < (t.csf > 0.5).sum() / 1000.0 < 300


def test_deep_gm_lies_deep(template):
    t = template
    deep = t.gm * t.deep_gm
    assert 0.05 < deep.sum() / t.gm.sum() < 0.35
    # cortex (near the surface) holds almost no deep GM
    from scipy import ndimage

    shell = t.mask & ~ndimage.binary_erosion(t.mask, iterations=8)
    assert deep[shell].sum() < 0.01 * deep.sum()


def test_to_spacing_keeps_fov_and_tissue_volume(template):
    c = to_spacing(template, 2.0)
    assert c.spacing == (2.0, 2.0, 2.0)
    assert c.shape == tuple(s // 2 for s in template.shape)
    gm_ml = template.gm.sum() / 1000.0
    assert c.gm.sum() * 8 / 1000.0 == pytest.approx(gm_ml, rel=0.01)
    # voxel (0,0,0) of the 2 mm grid is centred between 1 mm voxels 0 and 1
    np.testing.assert_allclose(c.affine[:3, 3], template.affine[:3, 3] + 0.5)


def test_deformation_is_seeded_and_scales_the_brain(template):
    small = to_spacing(template, 2.0)
    p1 = draw_deformation(np.random.default_rng(0))
    p2 = draw_deformation(np.random.default_rng(0))
    np.testing.assert_array_equal(p1.control_mm, p2.control_mm)
    a = deform(small, p1)
    np.testing.assert_array_equal(a.gm, deform(small, p2).gm)
    other = deform(small, draw_deformation(np.random.default_rng(1)))
    assert not np.array_equal(a.gm, other.gm)
    identity = DeformationParams(np.zeros((3, 5, 6, 5)), 1.0)
    np.testing.assert_allclose(deform(small, identity).gm, small.gm, atol=1e-5)
    bigger = deform(small, DeformationParams(np.zeros((3, 5, 6, 5)), 1.05))
    assert _volume_ml(bigger) / _volume_ml(small) == pytest.approx(1.05**3, rel=0.03)
    shift = np.zeros((3, 5, 6, 5))
    shift[0] = 4.0  # sample 4 mm to the right: the brain moves 4 mm to the left
    moved = deform(small, DeformationParams(shift, 1.0))
    com = lambda m: np.array(np.nonzero(m)).mean(1) * 2.0  # noqa: E731
    assert (com(moved.mask) - com(small.mask))[0] == pytest.approx(-4.0, abs=0.5)


@pytest.mark.slow
def test_same_subject_at_both_resolutions(template):
    p = draw_deformation(np.random.default_rng(7))
    a2 = subject_anatomy(p, 2.0)
    a1 = subject_anatomy(p, 1.0)
    assert _volume_ml(a2) == pytest.approx(_volume_ml(a1), rel=0.02)
    assert float(a2.gm.sum() * 8) == pytest.approx(float(a1.gm.sum()), rel=0.02)


# Anatomical variety (lesionkit.simulate.variety; ranges in docs/phantom.md)


def _central_csf_ml(a) -> float:
    """CSF volume (mL) within 35 mm of MNI (0, -10, 15): the lateral ventricles' region."""
    ijk = np.indices(a.shape).reshape(3, -1).T
    world = (ijk @ a.affine[:3, :3].T + a.affine[:3, 3]).reshape(*a.shape, 3)
    near = np.linalg.norm(world - np.array([0.0, -10.0, 15.0]), axis=-1) < 35.0
    return float(a.csf[near].sum() * np.prod(a.spacing) / 1000.0)


def test_drawn_variety_stays_within_stated_ranges(template):
    small = to_spacing(template, 2.0)
    atrophy = []
    for seed in range(40):
        p = draw_deformation(np.random.default_rng(seed))
        assert p.scales.shape == (3,)
        assert ((p.scales >= variety.SCALE_RANGE[0]) & (p.scales <= variety.SCALE_RANGE[1])).all()
        assert variety.ATROPHY_RANGE[0] <= p.atrophy <= variety.ATROPHY_RANGE[1]
        assert np.linalg.norm(p.control_mm, axis=0).max() <= variety.MAX_CONTROL_MM + 1e-9
        atrophy.append(p.atrophy)
        if seed < 4:
            d = variety.smooth_displacement(small, p)
            length = np.linalg.norm(d, axis=0)
            assert length.max() <= variety.MAX_DISPLACEMENT_MM + 1e-4
            assert length.max() > 4.0  # larger than the former 2.5 mm SD field, typically
    assert min(atrophy) < 0.15 and max(atrophy) > 0.85


def test_ventricles_grow_and_tissue_shrinks_with_atrophy(template):
    small = to_spacing(template, 2.0)
    zero = np.zeros((3, 5, 6, 5))
    steps = [subject_anatomy(DeformationParams(zero, 1.0, a), 2.0) for a in (0.0, 0.5, 1.0)]
    csf = [_central_csf_ml(a) for a in steps]
    vent = [float(ventricles(a).sum() * 8 / 1000) for a in steps]
    assert csf[0] < csf[1] < csf[2] and vent[0] < vent[1] < vent[2]
    assert vent[0] == pytest.approx(float(ventricles(small).sum() * 8 / 1000), rel=0.02)
    assert 2.0 < vent[2] / vent[0] < 3.0  # lateral ventricles up to about 2.5 x
    tissue = [float((a.gm + a.wm).sum() * 8 / 1000) for a in steps]
    loss = 1 - tissue[2] / tissue[0]
    assert tissue[0] > tissue[1] > tissue[2] and 0.02 < loss < 0.06  # a few percent
    assert steps[2].gm.sum() < steps[0].gm.sum()
    np.testing.assert_array_equal(steps[2].mask, steps[0].mask)  # the outline stays


def test_fractions_sum_to_one_and_warp_does_not_fold(template):
    from scipy import ndimage

    small = to_spacing(template, 2.0)
    p = draw_deformation(np.random.default_rng(3))
    p = DeformationParams(p.control_mm, p.scale, 1.0)  # strongest atrophy
    a = subject_anatomy(p, 2.0)
    total = a.gm + a.wm + a.csf
    assert total.max() <= 1.0 + 1e-5 and min(a.gm.min(), a.wm.min(), a.csf.min()) >= 0.0
    inner = ndimage.binary_erosion(a.mask, iterations=4)
    np.testing.assert_allclose(total[inner], 1.0, atol=1e-3)
    assert ((a.deep_gm >= 0) & (a.deep_gm <= 1)).all()
    src = variety.source_points(small, p)
    jac = np.stack([np.stack(np.gradient(src[i], 2.0)) for i in range(3)])
    det = np.linalg.det(np.moveaxis(jac, (0, 1), (-2, -1)))
    assert det[small.mask].min() > 0.0


def test_thin_cortex_moves_cortical_gm_to_csf(template):
    small = to_spacing(template, 2.0)
    thin = thin_cortex(small, 0.3)
    np.testing.assert_allclose(thin.gm + thin.wm + thin.csf, small.gm + small.wm + small.csf,
                               atol=1e-5)
    np.testing.assert_array_equal(thin.wm, small.wm)
    np.testing.assert_allclose(thin.gm * thin.deep_gm, small.gm * small.deep_gm, atol=1e-5)
    lost = float((small.gm - thin.gm).sum() * 8 / 1000)
    assert 0.01 * small.gm.sum() * 8 / 1000 < lost < 0.06 * small.gm.sum() * 8 / 1000
    assert (small.gm - thin_cortex(small, 0.1).gm).sum() < (small.gm - thin.gm).sum()


def test_same_seed_same_anatomy():
    a = subject_anatomy(draw_deformation(np.random.default_rng(9)), 2.0)
    b = subject_anatomy(draw_deformation(np.random.default_rng(9)), 2.0)
    c = subject_anatomy(draw_deformation(np.random.default_rng(10)), 2.0)
    for name in ("gm", "wm", "csf", "deep_gm", "mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.csf, c.csf)


def test_what_is_computed_once_is_shared_read_only_and_the_same_as_computed_afresh(template):
    """The template at a voxel size is resampled once per process; a subject's anatomy and
    its source coordinates share one sampling of the draw. Shared arrays are read-only,
    and a new draw of the same values (another object) gives the same arrays afresh."""
    import dataclasses

    coarse = template_at(2.0)
    assert template_at(2.0) is coarse
    np.testing.assert_array_equal(coarse.gm, to_spacing(template, 2.0).gm)
    with pytest.raises(ValueError, match="read-only"):
        coarse.gm[0, 0, 0] = 1.0

    draw = draw_deformation(np.random.default_rng(4))
    anatomy = subject_anatomy(draw, 2.0)
    coords = source_coordinates(draw, 2.0)
    assert source_coordinates(draw, 2.0) is coords
    assert coords.shape == (3, *anatomy.shape) and not coords.flags.writeable
    again = dataclasses.replace(draw)
    np.testing.assert_array_equal(source_coordinates(again, 2.0), coords)
    np.testing.assert_array_equal(subject_anatomy(again, 2.0).gm, anatomy.gm)
