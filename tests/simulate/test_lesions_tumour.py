"""Tumours on the 2 mm template: sizes, compartments, values, contrast uptake."""

import dataclasses

import numpy as np
import pytest

from lesionkit.simulate.anatomy import load_template, to_spacing
from lesionkit.simulate.lesions import lesion_table_rows
from lesionkit.simulate.lesions_tumour import (
    GLIOMA_DIAMETER_MM,
    METASTASIS_DIAMETER_MM,
    UPTAKE_MM_PER_MMOL_KG,
    apply_tumours,
    concentration_mM,
    draw_tumour,
    draw_tumours,
    r1_with_contrast,
    tumour_maps,
    tumour_sites,
)
from lesionkit.simulate.parameters import R1_RELAXIVITY_PER_MM_S, draw_tissue_values
from lesionkit.simulate.tissue import tissue_maps


@pytest.fixture(scope="module")
def anatomy():
    return to_spacing(load_template(), 2.0)


@pytest.fixture(scope="module")
def glioma_case(anatomy):
    rng = np.random.default_rng(4)
    les = draw_tumour(rng, anatomy, "glioma", 1)
    les = dataclasses.replace(les, properties={**les.properties, "necrosis_ratio": 0.6})
    return [les], tumour_maps([les], anatomy)


def test_size_ranges(anatomy):
    rng = np.random.default_rng(0)
    sites = {k: tumour_sites(anatomy, k, 10.0) for k in ("metastasis", "glioma")}
    for kind, (lo, hi) in (("metastasis", METASTASIS_DIAMETER_MM),
                           ("glioma", GLIOMA_DIAMETER_MM)):
        diam = np.array([2 * np.array(draw_tumour(rng, anatomy, kind, 1, sites[kind]).axes_mm)
                         for _ in range(200)])
        assert diam.min() >= lo * (0.6 if kind == "glioma" else 0.8) - 1e-9
        assert lo - 1e-9 <= diam[:, 0].min() and diam[:, 0].max() <= hi + 1e-9
        assert diam[:, 0].max() - diam[:, 0].min() > 0.5 * (hi - lo)


def test_metastases_inside_brain_and_deterministic(anatomy):
    lesions = draw_tumours(np.random.default_rng(1), anatomy, "metastasis")
    again = draw_tumours(np.random.default_rng(1), anatomy, "metastasis")
    assert [les.centre_mm for les in lesions] == [les.centre_mm for les in again]
    assert draw_tumours(np.random.default_rng(1), anatomy, "none") == []
    tm = tumour_maps(lesions, anatomy)
    assert set(np.unique(tm.labels)) - {0} == {les.label for les in lesions}
    assert anatomy.mask[tm.labels > 0].all()
    for f in (tm.enhancing, tm.necrosis, tm.oedema):
        assert f.dtype == np.float32 and f.min() >= 0 and not f[~anatomy.mask].any()
    assert (tm.enhancing + tm.necrosis + tm.oedema).max() <= 1 + 1e-5
    assert (tm.oedema <= np.clip(anatomy.wm, 0, 1) + 1e-6).all()


def test_glioma_necrotic_core_enhancing_rim_and_oedema(anatomy, glioma_case):
    (les,), tm = glioma_case
    core, rim = tm.necrosis > 0.9, tm.enhancing > 0.9
    assert core.any() and rim.any() and (tm.oedema > 0.9).any()
    ijk = np.argwhere(core)
    world = ijk @ anatomy.affine[:3, :3].T + anatomy.affine[:3, 3]
    centre = np.asarray(les.centre_mm)
    core_r = np.linalg.norm(world - centre, axis=1).mean()
    rim_ijk = np.argwhere(rim) @ anatomy.affine[:3, :3].T + anatomy.affine[:3, 3]
    assert np.linalg.norm(rim_ijk - centre, axis=1).mean() > core_r + 2.0
    conc = concentration_mM(tm.enhancing, 0.1, tm.uptake)
    assert conc[core].max() < 0.1 * conc[rim].mean()  # necrosis does not enhance


def test_contrast_proportional_to_dose(glioma_case):
    (les,), tm = glioma_case
    standard = concentration_mM(tm.enhancing, 0.1, tm.uptake)
    low = concentration_mM(tm.enhancing, 0.025, tm.uptake)
    np.testing.assert_allclose(low, standard / 4, rtol=1e-5, atol=1e-8)
    full = tm.enhancing > 0.999
    lo, hi = UPTAKE_MM_PER_MMOL_KG
    assert (standard[full] >= 0.1 * lo - 1e-6).all() and (standard[full] <= 0.1 * hi + 1e-6).all()
    np.testing.assert_allclose(standard[full], 0.1 * les.properties["uptake_mM_per_mmol_kg"],
                               rtol=2e-3)
    r1 = np.full(standard.shape, 0.7, np.float32)
    np.testing.assert_allclose(r1_with_contrast(r1, standard),
                               0.7 + R1_RELAXIVITY_PER_MM_S * standard, rtol=1e-6)
    assert r1_with_contrast(r1, standard, relaxivity=4.0)[full].min() > 0.7


def test_apply_paints_compartment_values(anatomy, glioma_case):
    lesions, tm = glioma_case
    (les,) = lesions
    maps = tissue_maps(anatomy, draw_tissue_values(np.random.default_rng(0)))
    out = apply_tumours(maps, lesions, tm)
    p = les.properties
    for name, frac in (("enhancing", tm.enhancing), ("necrosis", tm.necrosis),
                       ("oedema", tm.oedema)):
        pure = frac > 0.999
        assert pure.any(), name
        np.testing.assert_allclose(out.t1_ms[pure], p[f"{name}_t1_ms"], rtol=0.01)
        np.testing.assert_allclose(out.adc[pure], p[f"{name}_adc"], rtol=0.01)
    untouched = (tm.enhancing + tm.necrosis + tm.oedema) == 0
    np.testing.assert_array_equal(out.t2_ms[untouched], maps.t2_ms[untouched])
    # a voxel half oedema, half enhancing keeps each share (rates mix linearly)
    mixed = (np.abs(tm.oedema - 0.5) < 0.1) & (tm.enhancing > 0.2)
    assert mixed.any()
    for i in map(tuple, np.argwhere(mixed)[:20]):
        fo, fe, fn = tm.oedema[i], tm.enhancing[i], tm.necrosis[i]
        rate = ((1 - fo - fe - fn) / maps.t1_ms[i] + fo / p["oedema_t1_ms"]
                + fe / p["enhancing_t1_ms"] + fn / p["necrosis_t1_ms"])
        assert out.t1_ms[i] == pytest.approx(1 / rate, rel=1e-3)


def test_table_rows_give_long_and_short_axes(anatomy):
    lesions = draw_tumours(np.random.default_rng(2), anatomy, "metastasis")
    tm = tumour_maps(lesions, anatomy)
    rows = lesion_table_rows(lesions, tm.fractions, anatomy.affine)
    for row, les in zip(rows, lesions, strict=True):
        assert row["type"] == "metastasis"
        assert 0 <= row["short_axis_mm"] <= row["long_axis_mm"]
        bump = 4 * les.irregularity * np.mean(les.axes_mm)  # +-2 SD on both sides
        assert row["long_axis_mm"] <= les.long_axis_mm + bump + 2.0
