"""Signal equations against hand-computed values; noise, fields, blur, decimation, reslicing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from lesionkit.simulate import signal


def test_spgr_matches_hand_computed_value():
    # PD 0.8, T1 1000 ms, T2* 50 ms, TR 20 ms, TE 5 ms, 15 deg:
    # 0.8 sin15 (1 - e^-0.02) / (1 - cos15 e^-0.02) e^-0.1 = 0.0697321
    s = signal.spgr(0.8, 1000.0, 50.0, tr_ms=20, te_ms=5, flip_deg=15)
    assert float(s) == pytest.approx(0.0697321, rel=1e-5)


def test_spgr_peaks_at_the_ernst_angle_and_scales_with_b1():
    flips = np.linspace(1, 60, 600)
    s = signal.spgr(1.0, 1000.0, 50.0, tr_ms=20, te_ms=0, flip_deg=flips)
    ernst = math.degrees(math.acos(math.exp(-20 / 1000)))
    assert flips[np.argmax(s)] == pytest.approx(ernst, abs=0.2)
    # B1 = 1.2 at 10 deg equals nominal at 12 deg.
    assert float(signal.spgr(1, 900, 40, 8, 3, 10, b1=1.2)) == pytest.approx(
        float(signal.spgr(1, 900, 40, 8, 3, 12)), rel=1e-5)


def test_inversion_recovery_hand_values_and_csf_null():
    # 1 - 2 e^(-1000/900) + e^(-2300/900) = 0.419263
    assert float(signal.inversion_mz(900.0, 2300, 1000)) == pytest.approx(0.419263, rel=1e-5)
    t1 = 4000.0
    null_ti = t1 * math.log(2 / (1 + math.exp(-9000 / t1)))
    assert abs(float(signal.inversion_mz(t1, 9000, null_ti))) < 1e-5


def test_mprage_and_flair_tissue_order():
    pd = np.array([0.70, 0.80, 1.0])  # WM, GM, CSF
    t1 = np.array([900.0, 1450.0, 4000.0])
    t1w = signal.ir_gradient_echo(pd, t1, np.array([50.0, 58, 1000]), 2300, 2.5, 1000, 9)
    assert t1w[0] > t1w[1] > t1w[2]  # WM > GM > CSF
    fl = signal.flair(pd, t1, np.array([75.0, 92, 1800]), 9000, 90, 2500)
    assert fl[1] > fl[0] > fl[2]  # GM > WM > nulled CSF
    assert fl[2] < 0.2 * fl[0]


def test_spin_echo_and_r1_hand_values():
    # 0.7 (1 - e^(-500/900)) e^(-10/75) = 0.261128
    assert float(signal.spin_echo(0.7, 900.0, 75.0, 500, 10)) == pytest.approx(0.261128, rel=1e-5)
    assert signal.r1_from_t1(np.array([1000.0, 250.0])).tolist() == [1.0, 4.0]


def test_rician_noise_statistics():
    rng = np.random.default_rng(0)
    zero = signal.rician_noise(np.zeros(200_000, np.float32), 2.0, rng)
    assert zero.mean() == pytest.approx(2.0 * math.sqrt(math.pi / 2), rel=0.01)
    high = signal.rician_noise(np.full(200_000, 100.0, np.float32), 2.0, rng)
    assert high.mean() == pytest.approx(100.0 + 4.0 / 200, abs=0.05)
    assert high.std() == pytest.approx(2.0, rel=0.02)
    img = np.full((10, 10), 50.0)
    assert signal.noise_sd(img, img > 0, snr=25) == pytest.approx(2.0)


def test_smooth_field_in_range_smooth_and_grid_independent():
    control = signal.draw_smooth_field(np.random.default_rng(3))
    f = signal.smooth_field(control, (40, 48, 40), 0.8, 1.2)
    assert f.min() >= 0.8 and f.max() <= 1.2 and f.max() - f.min() > 0.15
    assert np.abs(np.diff(f, axis=0)).max() < 0.05
    coarse = signal.smooth_field(control, (20, 24, 20), 0.8, 1.2)
    assert np.abs(coarse - f[::2, ::2, ::2]).mean() < 0.02
    g = ndimage.map_coordinates(control, np.meshgrid(
        *[(np.arange(n) + 0.5) * 4 / n - 0.5 for n in (40, 48, 40)], indexing="ij"),
        order=3, mode="nearest")
    np.testing.assert_allclose(signal.separable_interpolate(control, [
        (np.arange(n) + 0.5) * 4 / n - 0.5 for n in (40, 48, 40)]), g, atol=1e-5)


def test_blur_has_the_stated_fwhm():
    img = np.zeros((41, 41, 41), np.float32)
    img[20, 20, 20] = 1.0
    out = signal.blur(img, (0.5, 0.5, 0.5), fwhm_mm=3.0)
    profile = out[20, 20, :] / out[20, 20, 20]
    above = np.nonzero(profile >= 0.5)[0]
    assert (above[-1] - above[0] + 1) * 0.5 == pytest.approx(3.0, abs=0.5)


def test_blur_decimate_keeps_constants_and_voxel_centres():
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    affine[:3, 3] = [-10.0, -20.0, 5.0]
    img = np.full((16, 16, 16), 3.0, np.float32)
    out, new = signal.blur_decimate(img, affine, 2.0, 1.2)
    assert out.shape == (8, 8, 8)
    np.testing.assert_allclose(out, 3.0, rtol=1e-5)
    np.testing.assert_allclose(np.diag(new)[:3], [1.0, 1.0, 1.0])
    # the first coarse voxel is centred between fine voxels 0 and 1
    np.testing.assert_allclose(new[:3, 3], affine[:3, 3] + 0.25)


def test_reslice_order4_equals_affine_transform():
    rng = np.random.default_rng(1)
    img = ndimage.gaussian_filter(rng.normal(size=(12, 14, 10)), 1.5).astype(np.float32)
    src = np.diag([2.0, 2.0, 2.0, 1.0])
    src[:3, 3] = [-5.5, 3.5, 0.5]
    dst = np.diag([1.0, 1.0, 1.0, 1.0])
    dst[:3, 3] = [-6.0, 3.0, 0.0]
    out = signal.reslice(img, src, (24, 28, 20), dst, order=4)
    m = np.linalg.inv(src) @ dst
    ref = ndimage.affine_transform(img, m[:3, :3], offset=m[:3, 3], output_shape=(24, 28, 20),
                                   order=4, mode="nearest")
    np.testing.assert_allclose(out, ref, atol=1e-5)
    # same grid: unchanged
    np.testing.assert_allclose(signal.reslice(img, src, img.shape, src), img, atol=1e-5)
