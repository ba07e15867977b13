"""MNI152 anatomy from nilearn: derived CSF, deep GM, resampling and per-subject deformation."""

from __future__ import annotations

import numpy as np
import pytest

from lesionkit.simulate.anatomy import (
    DeformationParams,
    deform,
    draw_deformation,
    load_template,
    subject_anatomy,
    to_spacing,
)


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
