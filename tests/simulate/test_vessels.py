"""Normally enhancing structures and the contrast-amplify cohort's calibration and truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lesionkit.io import load_volume
from lesionkit.simulate import simulate_cohort
from lesionkit.simulate.anatomy import load_template, to_spacing
from lesionkit.simulate.lesions import ventricles
from lesionkit.simulate.vessels import (
    Tube,
    draw_vessels,
    tube_fraction,
    vessel_concentration_mM,
    vessel_maps,
)


@pytest.fixture(scope="module")
def anatomy():
    return to_spacing(load_template(), 2.0)


def test_tube_fraction_has_the_tube_volume() -> None:
    affine = np.eye(4)
    tube = Tube(((10.0, 10.0, 5.0), (10.0, 10.0, 35.0)), diameter_mm=4.0)
    fraction = tube_fraction(tube, (21, 21, 41), affine)
    assert fraction[10, 10, 20] == 1.0 and fraction[0, 0, 20] == 0.0
    assert fraction[:, :, 10:30].sum() == pytest.approx(np.pi * 2.0 ** 2 * 20, rel=0.15)


def test_vessels_in_the_brain_choroid_in_the_ventricles(anatomy) -> None:
    params = draw_vessels(np.random.default_rng(0), anatomy)
    maps = vessel_maps(params, anatomy)
    assert maps.blood.max() == 1.0 and not maps.blood[~anatomy.mask].any()
    assert maps.choroid.any() and not maps.choroid[~ventricles(anatomy)].any()
    assert (maps.blood + maps.choroid).max() <= 1.0 + 1e-6
    standard = vessel_concentration_mM(maps, params, 0.1)
    np.testing.assert_allclose(vessel_concentration_mM(maps, params, 0.4), 4 * standard,
                               rtol=1e-5)
    assert standard[maps.blood >= 0.999].min() == pytest.approx(0.1 * params.blood_uptake)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """contrast-amplify, seed 0, one subject (one metastasis), 2 mm."""
    return simulate_cohort("contrast-amplify", tmp_path_factory.mktemp("ca") / "ds", 1, 0, 2)


def _image(root: Path, pattern: str) -> np.ndarray:
    return np.asarray(load_volume(next(root.glob(pattern))).data, float)


def test_quadruple_dose_is_truth_and_doses_order_the_contrast(cohort: Path) -> None:
    truth = cohort / "derivatives" / "phantom" / "sub-01" / "anat"
    assert not list((cohort / "sub-01").rglob("*quadruple*"))  # never a raw input
    enhancing = _image(truth, "*label-enhancing_probseg.nii.gz") >= 0.5
    nawm = _image(truth, "*label-NAWM_probseg.nii.gz") >= 0.9
    blood = _image(truth, "*label-vessel_probseg.nii.gz") >= 0.5
    images = {name: _image(cohort / "sub-01" / "anat", f"*acq-{name}_ce-gadolinium_T1w.nii.gz")
              for name in ("low", "standard")}
    images["quadruple"] = _image(truth, "*acq-quadruple_ce-gadolinium_T1w.nii.gz")
    lbr = {k: v[enhancing].mean() / v[nawm].mean() for k, v in images.items()}
    vessel = {k: v[blood].mean() / v[nawm].mean() for k, v in images.items()}
    assert lbr["low"] < lbr["standard"] < lbr["quadruple"]
    assert vessel["low"] < vessel["standard"] < vessel["quadruple"]
    # Calibrated to the study's gradient-echo T1c (lesion-to-brain ratio 1.31).
    assert 1.1 < lbr["standard"] < 1.5
    assert not (blood & enhancing).any()
