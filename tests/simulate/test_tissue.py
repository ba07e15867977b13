"""Partial-volume tissue maps and the mix used to paint lesions."""

from __future__ import annotations

import numpy as np
import pytest

from lesionkit.simulate.anatomy import Anatomy
from lesionkit.simulate.tissue import TissueMaps, mix, tissue_maps

VALUES = {
    "wm": {"t1_ms": 900.0, "t2_ms": 75.0, "t2s_ms": 50.0, "pd": 0.7, "chi_ppb": -25.0,
           "adc": 0.75},
    "cortical_gm": {"t1_ms": 1450.0, "t2_ms": 92.0, "t2s_ms": 58.0, "pd": 0.8,
                    "chi_ppb": 15.0, "adc": 0.85},
    "deep_gm": {"t1_ms": 1250.0, "t2_ms": 72.0, "t2s_ms": 38.0, "pd": 0.82, "chi_ppb": 100.0,
                "adc": 0.8},
    "csf": {"t1_ms": 4000.0, "t2_ms": 1800.0, "t2s_ms": 1000.0, "pd": 1.0, "chi_ppb": 0.0,
            "adc": 3.0},
}


def tiny_anatomy() -> Anatomy:
    z = np.zeros((5, 1, 1), np.float32)
    gm, wm, csf, deep = z.copy(), z.copy(), z.copy(), z.copy()
    wm[0] = 1.0                      # pure WM
    gm[1], deep[1] = 1.0, 1.0        # pure deep GM
    wm[2], csf[2] = 0.5, 0.5         # WM/CSF partial volume
    wm[3] = 0.5                      # half WM, half outside the brain
    return Anatomy(gm, wm, csf, deep, (gm + wm + csf) > 0, np.eye(4))


def test_pure_voxels_take_tissue_values():
    maps = tissue_maps(tiny_anatomy(), VALUES)
    for prop, value in VALUES["wm"].items():
        assert float(getattr(maps, prop)[0, 0, 0]) == pytest.approx(value, rel=1e-5)
    assert float(maps.chi_ppb[1, 0, 0]) == pytest.approx(100.0)
    assert float(maps.t2s_ms[1, 0, 0]) == pytest.approx(38.0)


def test_rates_mix_linearly_and_pd_fades_outside_the_brain():
    maps = tissue_maps(tiny_anatomy(), VALUES)
    t1 = 1 / (0.5 / 900 + 0.5 / 4000)
    assert float(maps.t1_ms[2, 0, 0]) == pytest.approx(t1, rel=1e-5)
    assert float(maps.adc[2, 0, 0]) == pytest.approx(0.5 * 0.75 + 0.5 * 3.0, rel=1e-5)
    assert float(maps.pd[3, 0, 0]) == pytest.approx(0.35, rel=1e-5)
    assert float(maps.t1_ms[3, 0, 0]) == pytest.approx(900.0, rel=1e-5)
    assert float(maps.pd[4, 0, 0]) == 0.0  # no tissue at all
    assert all(v.dtype == np.float32 for v in maps.as_dict().values())


def test_mix_replaces_in_proportion_to_fraction():
    maps = tissue_maps(tiny_anatomy(), VALUES)
    frac = np.array([0.0, 1.0, 0.5, 0.0, 0.0], np.float32).reshape(5, 1, 1)
    out = mix(maps, frac, {"t1_ms": 1500.0, "adc": 1.2})
    assert float(out.t1_ms[0, 0, 0]) == pytest.approx(900.0)
    assert float(out.t1_ms[1, 0, 0]) == pytest.approx(1500.0, rel=1e-5)
    assert float(out.t1_ms[2, 0, 0]) == pytest.approx(
        1 / (0.5 / float(maps.t1_ms[2, 0, 0]) + 0.5 / 1500.0), rel=1e-5)
    assert float(out.adc[1, 0, 0]) == pytest.approx(1.2)
    np.testing.assert_array_equal(out.chi_ppb, maps.chi_ppb)  # untouched property
    arr = np.full(maps.shape, 2000.0, np.float32)
    assert float(mix(maps, frac, {"t2_ms": arr}).t2_ms[1, 0, 0]) == pytest.approx(2000.0)


def test_mix_rejects_unknown_property_and_wrong_shape():
    maps = tissue_maps(tiny_anatomy(), VALUES)
    with pytest.raises(ValueError, match="unknown tissue properties"):
        mix(maps, np.zeros(maps.shape), {"t3_ms": 1.0})
    with pytest.raises(ValueError, match="shape"):
        mix(maps, np.zeros((2, 2, 2)), {"t1_ms": 1.0})
    assert isinstance(maps, TissueMaps)
