"""Normal FLAIR hyperintensities: where they lie, how often, what they change."""

from __future__ import annotations

import numpy as np
import pytest

from lesionkit.simulate import normal_variants as nv
from lesionkit.simulate import parameters as phys
from lesionkit.simulate.anatomy import draw_deformation, source_coordinates, subject_anatomy
from lesionkit.simulate.signal import flair
from lesionkit.simulate.template import load_template
from lesionkit.simulate.tissue import tissue_maps


def _world(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World coordinates (mm) of a mask's voxels, one row each."""
    return np.argwhere(mask) @ affine[:3, :3].T + affine[:3, 3]


@pytest.fixture(scope="module")
def template():
    maps, affine = nv.template_variants()
    return maps, affine, load_template()


def test_the_lining_outlines_the_midline_ventricles(template):
    maps, affine, _t = template
    xyz = _world(maps["lining"] > 0.5, affine)
    assert len(xyz) > 500
    assert np.abs(xyz[:, 0]).max() <= 12.0  # beside the third and fourth ventricles
    assert xyz[:, 2].max() <= 16.0 + nv.LINING_MM + 1  # below the corpus callosum


def test_the_corticospinal_tract_lies_in_white_matter_on_both_sides(template):
    maps, affine, t = template
    tract = maps["cst"] > 0.5
    assert np.median(t.wm[tract]) > 0.7
    x = _world(tract, affine)[:, 0]
    assert (x < -5).sum() == pytest.approx((x > 5).sum(), rel=0.05)
    assert np.abs(x).min() > 4.0
    arc = maps["cst_arc"][tract]
    assert arc.min() < -20.0 < 20.0 < arc.max()  # the capsule point lies inside the tract


def test_caps_sit_at_the_tips_of_their_own_lateral_ventricle(template):
    maps, affine, t = template
    centres = {cap: _world(maps[cap] > 0.5, affine).mean(0) for cap in nv.CAPS}
    for cap, (x, y, _) in centres.items():
        assert (x < 0) == cap.endswith("left")
        assert (y > 0) if cap.startswith("frontal") else (y < -30)
    for cap in nv.CAPS:
        near = maps[cap] > 0.5
        assert np.median(t.csf[near]) < 0.5  # tissue, not ventricle


def test_draw_frequencies_and_factors_follow_the_sources():
    rng = np.random.default_rng(0)
    draws = [nv.draw_variants(rng) for _ in range(3000)]
    for cap in nv.CAPS:
        seen = np.mean([cap in d for d in draws])
        assert seen == pytest.approx(nv.CAP_FREQUENCY[cap.split("_")[0]], abs=0.03)
    factors = [v for d in draws for k, v in d.items() if k != "cst_cm"]
    assert nv.T2_FACTOR[0] <= min(factors) and max(factors) <= nv.T2_FACTOR[1]
    assert all("lining" in d and "cst" in d for d in draws)  # in every subject
    extents = [d["cst_cm"] for d in draws]
    assert nv.CST_EXTENT_CM[0] <= min(extents) and max(extents) <= nv.CST_EXTENT_CM[1]


@pytest.fixture(scope="module")
def subject():
    deformation = draw_deformation(np.random.default_rng(5))
    anatomy = subject_anatomy(deformation, 2.0)
    maps = tissue_maps(anatomy, phys.draw_tissue_values(np.random.default_rng(6)))
    return anatomy, maps, source_coordinates(deformation, 2.0)


def test_only_t2_lengthens_and_only_inside_the_structures(subject):
    _anatomy, maps, coords = subject
    draw = {"lining": 1.2, "cst": 1.1, "cst_cm": 3.0, "frontal_left": 1.15}
    out = nv.add_normal_variants(maps, coords, draw)
    for prop in ("t1_ms", "t2s_ms", "pd", "chi_ppb", "adc"):
        np.testing.assert_array_equal(getattr(out, prop), getattr(maps, prop))
    fractions = nv.variant_fractions(coords, draw)
    assert set(fractions) == {"lining", "cst", "frontal_left"}
    anywhere = sum(fractions.values()) > 0
    np.testing.assert_array_equal(out.t2_ms[~anywhere], maps.t2_ms[~anywhere])
    ratio = out.t2_ms[anywhere] / maps.t2_ms[anywhere]
    assert ratio.min() >= 1.0 and ratio.max() <= 1.2 * 1.1 * 1.15 * (1 + 1e-4)
    core = fractions["cst"] > 0.99
    np.testing.assert_allclose(out.t2_ms[core] / maps.t2_ms[core], 1.1, rtol=1e-4)


def test_the_tract_extent_follows_the_draw(subject):
    _anatomy, _maps, coords = subject
    short = nv.variant_fractions(coords, {"cst": 1.1, "cst_cm": 1.0})["cst"].sum()
    long = nv.variant_fractions(coords, {"cst": 1.1, "cst_cm": 6.0})["cst"].sum()
    assert long > 3 * short > 0


def test_on_flair_they_are_brighter_than_white_matter_and_fainter_than_lesions(subject):
    """FLAIR (noise-free, the phantom's protocol) of the tract and the caps against NAWM:
    above 1, below the lowest published MS lesion/WM ratio."""
    from lesionkit.simulate.realism import PUBLISHED_RATIOS

    anatomy, maps, coords = subject
    draw = {"cst": nv.T2_FACTOR[1], "cst_cm": 6.0, "frontal_right": nv.T2_FACTOR[1]}
    a = phys.FLAIR

    def image(m):
        return flair(m.pd, m.t1_ms, m.t2_ms, a.tr_ms, a.te_ms, a.ti_ms, 1.0)

    before, after = image(maps), image(nv.add_normal_variants(maps, coords, draw))
    wm = np.median(before[anatomy.wm > 0.9])
    lesion_low = PUBLISHED_RATIOS[("FLAIR", "lesion/WM")][0]
    for name, frac in nv.variant_fractions(coords, draw).items():
        core = frac > 0.9
        gain = np.median(after[core] / before[core])
        assert 1.05 < gain < lesion_low, name
        assert np.median(after[core]) / wm > 1.05, name
