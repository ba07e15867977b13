"""Domain randomisation of the phantom: drawn acquisitions, geometry, reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lesionkit.simulate import parameters as phys
from lesionkit.simulate import randomise as dr
from lesionkit.simulate import signal
from lesionkit.simulate.cohorts import simulate_cohort

RANDOM_KEYS = {"MRAcquisitionType", "SliceThickness", "DomainRandomisation", "SliceOrientation"}


@pytest.fixture(scope="module")
def randomised(tmp_path_factory) -> Path:
    return simulate_cohort("mrf-lesion", tmp_path_factory.mktemp("dr") / "ms", subjects=2,
                           seed=3, resolution=2, randomise=True)


def _img(root: Path, pattern: str) -> nib.Nifti1Image:
    (path,) = sorted(root.glob(pattern))
    return nib.load(path)


def _meta(root: Path, pattern: str) -> dict:
    (path,) = sorted(root.glob(pattern))
    return json.loads(path.read_text())


def test_draws_lie_in_their_clinical_ranges():
    rng = np.random.default_rng(0)
    for _ in range(50):
        f = dr.draw_sequence(rng, "FLAIR")
        assert f.field in ("1.5T", "3T") and 6000 <= f.tr_ms <= 11000 and 80 <= f.te_ms <= 140
        ti = dr.flair_null_ti(f.tr_ms)
        assert 0.9 * ti - 1e-6 <= f.ti_ms <= 1.1 * ti + 1e-6
        t1 = dr.draw_sequence(rng, "T1w")
        if t1.sequence == "se":
            assert 400 <= t1.tr_ms <= 700 and 8 <= t1.te_ms <= 15
        if t1.sequence == "ir-gre":  # the readout train fits between TI and TR
            signal.mprage(1.0, 900.0, 50.0, t1.tr_ms, t1.te_ms, t1.ti_ms, t1.flip_deg,
                          t1.echo_spacing_ms, t1.readouts)
        g = dr.draw_geometry(rng, f, 1)
        assert 0.5 <= g.voxel_mm[0] <= 1.2 and 1.0 <= g.voxel_mm[2] <= 6.0
        assert abs(g.tilt_deg) <= 15
    mz = signal.inversion_mz(dr.T1_CSF_MS, 9000.0, dr.flair_null_ti(9000.0))
    assert abs(float(mz)) < 1e-5  # the TI nulls CSF


def test_1p5t_ranges_are_shorter_t1_and_longer_t2s_than_3t():
    for tissue in ("wm", "cortical_gm", "deep_gm"):
        lo, hi = phys.TISSUE_RANGES["1.5T"][tissue], phys.TISSUE_RANGES["3T"][tissue]
        assert lo.t1_ms[1] < hi.t1_ms[1] and lo.t2s_ms[0] > hi.t2s_ms[0]
    r = phys.TISSUE_RANGES["1.5T"]
    assert r["wm"].t1_ms[0] <= 884 <= r["wm"].t1_ms[1]  # Stanisz et al. 2005
    assert r["cortical_gm"].t1_ms[0] <= 1124 <= r["cortical_gm"].t1_ms[1]


def test_thick_oblique_slices_keep_world_positions():
    shape, spacing = (40, 48, 36), 2.0
    affine = np.diag([spacing] * 3 + [1.0])
    affine[:3, 3] = [-40, -50, -30]
    ijk = np.indices(shape).reshape(3, -1)
    world = (affine[:3, :3] @ ijk + affine[:3, 3:4]).reshape(3, *shape)
    centre = np.array([12.0, -8.0, 6.0])
    ball = (np.linalg.norm(world - centre[:, None, None, None], axis=0) < 8).astype(np.float32)
    for orientation in dr.ORIENTATIONS:
        g = dr.Geometry((1.5, 1.5, 6.0), orientation, (-1, 1, -1), 12.0, "2D")
        img, aff = dr.acquire(ball, affine, g)
        assert np.allclose(np.linalg.norm(aff[:3, :3], axis=0), g.voxel_mm)
        idx = np.indices(img.shape).reshape(3, -1)
        w = np.clip(img.reshape(-1), 0, None)
        found = aff[:3, :3] @ (idx @ w / w.sum()) + aff[:3, 3]
        assert np.linalg.norm(found - centre) < 6.0 / 2, (orientation, found)
        assert abs(w.sum() * np.prod(g.voxel_mm) / (ball.sum() * 8) - 1) < 0.05


def test_subjects_differ_in_acquisition_and_grid(randomised):
    a, b = (_meta(randomised, f"sub-0{i}/anat/*_FLAIR.json") for i in (1, 2))
    assert set(a) >= RANDOM_KEYS
    assert a["RepetitionTime"] != b["RepetitionTime"] and a["EchoTime"] != b["EchoTime"]
    ia, ib = (_img(randomised, f"sub-0{i}/anat/*_FLAIR.nii.gz") for i in (1, 2))
    assert ia.shape != ib.shape or not np.allclose(ia.affine, ib.affine)
    truth = _img(randomised, "derivatives/phantom/sub-01/anat/*label-lesion_mask.nii.gz")
    assert not np.allclose(ia.affine, truth.affine)  # own grid; truth on the phantom's
    t1w = _meta(randomised, "sub-01/anat/*_T1w.json")
    assert {"RepetitionTime", "EchoTime", "FlipAngle", "MagneticFieldStrength", "SNR"} <= set(t1w)


def test_one_seed_gives_the_same_files(randomised, tmp_path):
    again = simulate_cohort("mrf-lesion", tmp_path / "ms", subjects=1, seed=3, randomise=True)
    for pattern in ("sub-01/anat/*_FLAIR", "sub-01/anat/*_T1w", "sub-01/anat/*_MRF"):
        assert _meta(again, pattern + ".json") == _meta(randomised, pattern + ".json")
        x, y = _img(again, pattern + ".nii.gz"), _img(randomised, pattern + ".nii.gz")
        assert np.array_equal(x.affine, y.affine)
        assert np.array_equal(np.asanyarray(x.dataobj), np.asanyarray(y.dataobj))


def test_flair_lesions_are_bright_where_the_truth_puts_them(randomised):
    checked = 0
    for sub in ("01", "02"):
        flair = _img(randomised, f"sub-{sub}/anat/*_FLAIR.nii.gz")
        truth = _img(randomised, f"derivatives/phantom/sub-{sub}/anat/*label-lesion_mask.nii.gz")
        wm = _img(randomised, f"derivatives/phantom/sub-{sub}/anat/*label-WM_probseg.nii.gz")
        data = np.asarray(flair.dataobj, np.float32)
        idx = np.indices(data.shape).reshape(3, -1)
        to_truth = np.linalg.inv(truth.affine) @ flair.affine
        ijk = np.rint(to_truth[:3, :3] @ idx + to_truth[:3, 3:4]).astype(int)
        inside = np.all((ijk >= 0) & (ijk < np.array(truth.shape)[:, None]), axis=0)
        lesion, white = np.zeros(idx.shape[1], bool), np.zeros(idx.shape[1], bool)
        lesion[inside] = np.asarray(truth.dataobj)[tuple(ijk[:, inside])] > 0
        white[inside] = np.asarray(wm.dataobj)[tuple(ijk[:, inside])] > 0.95
        if lesion.sum() < 5:
            continue
        values = data.reshape(-1)
        assert values[lesion].mean() > 1.15 * np.median(values[white & ~lesion]), sub
        checked += 1
    assert checked


def test_quantitative_maps_keep_units_grid_and_physics(randomised):
    mrf = _img(randomised, "sub-01/anat/*_MRF.nii.gz")
    truth = _img(randomised, "derivatives/phantom/sub-01/anat/*_T1map.nii.gz")
    assert np.allclose(mrf.affine, truth.affine) and mrf.shape[:3] == truth.shape
    meta = _meta(randomised, "sub-01/anat/*_MRF.json")
    assert meta["Units"] == "a.u." and 0.6 * 25 <= meta["SNR"] <= 1.5 * 25
    t1 = np.asarray(truth.dataobj)
    assert _meta(randomised, "derivatives/phantom/sub-01/anat/*_T1map.json")["Units"] == "ms"
    assert np.percentile(t1[t1 > 0], 1) > 500 and np.percentile(t1[t1 > 0], 99) < 5000


def test_contrast_cohort_adc_units_and_shared_t1_draw(tmp_path):
    root = simulate_cohort("contrast-amplify", tmp_path / "ca", subjects=1, seed=1,
                           randomise="strong")
    adc = _img(root, "sub-01/anat/*_ADC.nii.gz")
    assert _meta(root, "sub-01/anat/*_ADC.json")["Units"] == "1e-3 mm^2/s"
    values = np.asarray(adc.dataobj)
    assert 0.5 < np.median(values[values > 0]) < 1.5  # brain ADC, 1e-3 mm^2/s
    pre = _img(root, "sub-01/anat/sub-01_T1w.nii.gz")
    post = _img(root, "sub-01/anat/*acq-standard_ce-gadolinium_T1w.nii.gz")
    assert np.allclose(pre.affine, post.affine)  # one session protocol, pre and post
    flair = _meta(root, "sub-01/anat/*_FLAIR.json")
    assert flair["DomainRandomisation"] == "strong" and "ClassIntensities" in flair


def test_without_randomise_nothing_changes(tmp_path):
    plain = simulate_cohort("mrf-lesion", tmp_path / "p", subjects=1, seed=3)
    meta = _meta(plain, "sub-01/anat/*_FLAIR.json")
    assert not RANDOM_KEYS & set(meta)
    assert meta["RepetitionTime"] == phys.FLAIR.tr_ms / 1000 and meta["SNR"] == phys.FLAIR.snr
    flair = _img(plain, "sub-01/anat/*_FLAIR.nii.gz")
    truth = _img(plain, "derivatives/phantom/sub-01/anat/*label-lesion_mask.nii.gz")
    assert np.array_equal(flair.affine, truth.affine) and flair.shape == truth.shape
    assert _meta(plain, "sub-01/anat/*_MRF.json")["SNR"] == phys.MRF_SNR
    with pytest.raises(ValueError, match="randomise"):
        simulate_cohort("mrf-lesion", tmp_path / "q", subjects=1, randomise="wild")
