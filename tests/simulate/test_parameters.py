"""Physical values: literature ranges, per-subject draws, field consistency."""

from __future__ import annotations

import numpy as np
import pytest

from lesionkit.simulate import parameters as phys


def test_draws_lie_in_the_literature_ranges():
    for field in phys.FIELDS:
        values = phys.draw_tissue_values(np.random.default_rng(5), field)
        for tissue, props in values.items():
            ranges = phys.TISSUE_RANGES[field][tissue]
            for prop, v in props.items():
                lo, hi = getattr(ranges, prop)
                assert lo <= v <= hi, (field, tissue, prop, v)


def test_draws_are_seeded_and_vary_between_subjects():
    a = phys.draw_tissue_values(np.random.default_rng(1))
    b = phys.draw_tissue_values(np.random.default_rng(1))
    c = phys.draw_tissue_values(np.random.default_rng(2))
    assert a == b
    assert a["wm"]["t1_ms"] != c["wm"]["t1_ms"]


def test_one_quantile_maps_onto_both_fields():
    q = phys.draw_tissue_quantiles(np.random.default_rng(0))
    v3, v7 = phys.tissue_values(q, "3T"), phys.tissue_values(q, "7T")
    for tissue in phys.TISSUES:
        assert v7[tissue]["t1_ms"] >= v3[tissue]["t1_ms"]  # R1 falls with field
        assert v7[tissue]["t2s_ms"] < v3[tissue]["t2s_ms"]
        assert v7[tissue]["chi_ppb"] == v3[tissue]["chi_ppb"]
    with pytest.raises(ValueError, match="unknown field"):
        phys.tissue_values(q, "9.4T")


def test_tissue_order_matches_physiology():
    r = phys.TISSUE_RANGES["3T"]
    assert r["wm"].t1_ms[1] < r["cortical_gm"].t1_ms[0] < r["csf"].t1_ms[0]
    assert r["deep_gm"].chi_ppb[0] > r["cortical_gm"].chi_ppb[1] > r["wm"].chi_ppb[1]
    assert r["deep_gm"].t2s_ms[1] < r["wm"].t2s_ms[1]
    assert phys.R1_3T.snr < phys.R1_7T.snr and phys.R1_3T.blur_factor > phys.R1_7T.blur_factor
    assert 1.0 < phys.QSM_NOISE_PPB < 3.0
