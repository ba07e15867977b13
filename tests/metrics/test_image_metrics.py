import warnings

import numpy as np
import pytest
from scipy import ndimage

from lesionkit.metrics import (
    contrast_preservation,
    edge_profile,
    edge_sharpness,
    lesion_contrast,
    psnr,
    relative_deviation,
    relative_edge_sharpness,
    rmse,
    ssim,
    white_matter_texture,
)


def _ramp(shape=(16, 16, 16)):
    return np.arange(np.prod(shape), dtype=float).reshape(shape) / np.prod(shape)


def test_rmse_known_value_inside_mask():
    ref = np.zeros((4, 4, 4))
    pred = ref + 2.0
    mask = np.zeros_like(ref, bool)
    mask[:2] = True
    pred[2:] = 100.0  # outside the mask: must not count
    assert rmse(pred, ref, mask) == pytest.approx(2.0)


def test_psnr_known_value():
    ref = np.zeros((4, 4, 4))
    ref[0, 0, 0] = 10.0  # data range 10
    pred = ref + 1.0  # MSE 1
    assert psnr(pred, ref) == pytest.approx(20.0)
    assert psnr(pred, ref, data_range=100.0) == pytest.approx(40.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero on the way
        assert psnr(ref, ref.copy()) == float("inf")


def test_psnr_constant_reference_needs_data_range():
    with pytest.raises(ValueError, match="data_range"):
        psnr(np.ones((3, 3, 3)), np.ones((3, 3, 3)))


def test_ssim_identity_and_noise():
    rng = np.random.default_rng(0)
    ref = _ramp()
    mask = np.zeros(ref.shape, bool)
    mask[3:13, 3:13, 3:13] = True
    assert ssim(ref, ref, mask) == pytest.approx(1.0)
    noisy = ref + rng.normal(0, 0.1, ref.shape)
    assert ssim(noisy, ref, mask) < 0.9


def _half_step(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """GM and WM probabilities of a boundary across the last axis, at 1 mm: GM below
    slice 11, WM from slice 12, half of each in slice 11."""
    wm = np.zeros(shape)
    wm[..., 12:] = 1.0
    wm[..., 11] = 0.5
    return 1.0 - wm, wm


def test_edge_sharpness_falls_with_blur():
    from scipy.ndimage import gaussian_filter

    gm, wm = _half_step((12, 12, 24))
    image = 0.6 * gm + 1.0 * wm  # R1-like values, s^-1
    sharp = edge_sharpness(image, gm, wm)
    blurred = edge_sharpness(gaussian_filter(image, 2.0), gm, wm)
    assert blurred < sharp
    # step of 0.4 over two half-steps at 1 mm: central differences give 0.2 / mm
    assert sharp == pytest.approx(0.2)
    # half the spacing doubles the gradient in units per mm
    assert edge_sharpness(image, gm, wm, spacing=(0.5, 0.5, 0.5)) == pytest.approx(0.4)


def test_edge_sharpness_is_not_raised_by_noise():
    """Noise must not make a blurred map look sharper than a clean sharp one."""
    from scipy.ndimage import gaussian_filter

    shape = (40, 40, 24)
    gm, wm = _half_step(shape)
    sharp = 0.6 * gm + 1.0 * wm
    blurred = gaussian_filter(sharp, 1.5)
    noisy_blurred = blurred + np.random.default_rng(0).normal(0, 0.1, shape)
    clean = edge_sharpness(blurred, gm, wm)
    assert edge_sharpness(noisy_blurred, gm, wm) == pytest.approx(clean, rel=0.1)
    assert edge_sharpness(noisy_blurred, gm, wm) < edge_sharpness(sharp, gm, wm)


@pytest.mark.parametrize("normal", [(0, 0, 1), (0, 1, 1), (1, 1, 1)])
def test_edge_sharpness_is_the_slope_across_the_boundary(normal):
    """A 3 mm ramp of 0.4 s^-1 scores 0.4 / 3 per mm, whatever the boundary's orientation."""
    grid = np.meshgrid(*(np.arange(32.0) - 15.5,) * 3, indexing="ij")
    distance = sum(n * g for n, g in zip(normal, grid, strict=True)) / np.linalg.norm(normal)  # mm
    wm = np.clip(distance / 3 + 0.5, 0, 1)
    gm = 1.0 - wm
    image = 0.6 * gm + 1.0 * wm
    assert edge_sharpness(image, gm, wm) == pytest.approx(0.4 / 3)


def test_edge_profile_rises_from_gm_to_wm_and_shows_blur():
    from scipy.ndimage import gaussian_filter

    shape = (24, 24, 24)
    wm = np.zeros(shape)
    wm[12:] = 1.0
    gm = 1.0 - wm
    sharp = 0.6 * gm + 1.0 * wm  # s^-1
    distance, level = edge_profile(sharp, gm, wm, reach=3.0)
    # voxel centres half a voxel to 2.5 voxels from the boundary, on both sides
    assert distance.tolist() == [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]
    assert level.tolist() == pytest.approx([0, 0, 0, 1, 1, 1])
    _, blurred = edge_profile(gaussian_filter(sharp, 1.5), gm, wm, reach=3.0)
    assert 0.1 < blurred[2] < blurred[3] < 0.9
    # the same profile at twice the tissue values: the scaling takes the values out
    assert edge_profile(2 * sharp, gm, wm, reach=3.0)[1] == pytest.approx(level)
    with pytest.raises(ValueError, match="no GM-WM boundary"):
        edge_profile(sharp, np.zeros(shape), np.ones(shape))
    with pytest.raises(ValueError, match="no GM-WM contrast"):
        edge_profile(np.ones(shape), gm, wm)


def test_relative_edge_sharpness_ignores_tissue_values():
    gm, wm = _half_step((12, 12, 24))
    low_field = 0.6 * gm + 1.0 * wm  # contrast 0.4 s^-1
    high_field = 0.5 * gm + 0.7 * wm  # contrast 0.2 s^-1, same edge width
    doubled = 2 * edge_sharpness(high_field, gm, wm)
    assert edge_sharpness(low_field, gm, wm) == pytest.approx(doubled)
    # 0.2 /mm over the probability-weighted WM - GM means (the 0.5/0.5 slice, value 0.8,
    # counts half to each): (12 + 0.4) / 12.5 - (11 * 0.6 + 0.4) / 11.5
    expected = 0.2 / ((12 + 0.4) / 12.5 - (11 * 0.6 + 0.4) / 11.5)
    assert relative_edge_sharpness(low_field, gm, wm) == pytest.approx(expected)
    assert relative_edge_sharpness(high_field, gm, wm) == pytest.approx(expected)


def test_edge_sharpness_without_boundary_raises():
    with pytest.raises(ValueError, match="GM and WM"):
        edge_sharpness(np.ones((4, 4, 4)), np.ones((4, 4, 4)), np.zeros((4, 4, 4)))


def test_lesion_contrast_of_painted_lesion():
    image = np.full((20, 20, 20), 2.0)
    lesion = np.zeros(image.shape, bool)
    lesion[8:12, 8:12, 8:12] = True
    image[lesion] = 3.0
    assert lesion_contrast(image, lesion, 2.0) == pytest.approx(0.5)
    darker = np.where(lesion, 1.0, 2.0)
    assert lesion_contrast(darker, lesion, 2.0) == pytest.approx(-0.5)
    # the shell is limited by the brain mask: a bright region outside it is ignored
    brain = np.zeros(image.shape, bool)
    brain[:, :, :12] = True
    image2 = image.copy()
    image2[:, :, 12:] = 50.0
    image2[lesion] = 3.0
    assert lesion_contrast(image2, lesion, 2.0, brain_mask=brain) == pytest.approx(0.5)


def test_contrast_preservation_ratio():
    reference = np.full((20, 20, 20), 2.0)
    lesion = np.zeros(reference.shape, bool)
    lesion[8:12, 8:12, 8:12] = True
    reference[lesion] = 3.0
    output = np.where(lesion, 2.5, 2.0)
    assert contrast_preservation(output, reference, lesion, 2.0) == pytest.approx(0.5)


def test_relative_deviation_median_and_mean():
    b = np.array([100.0, 100.0, 100.0, 100.0])
    a = np.array([101.0, 102.0, 103.0, 110.0])
    assert relative_deviation(a, b, statistic="median") == pytest.approx(2.5)
    assert relative_deviation(a, b) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        relative_deviation(a, b, statistic="max")


def test_ssim_crop_around_mask_matches_full_map():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(4)
    ref = rng.random((30, 28, 26))
    pred = ref + rng.normal(0, 0.2, ref.shape)
    mask = np.zeros(ref.shape, bool)
    mask[12:16, 10:15, 9:13] = True
    peak = float(np.ptp(ref[mask]))
    _, full = structural_similarity(
        ref,
        pred,
        data_range=peak,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        full=True,
    )
    assert ssim(pred, ref, mask) == pytest.approx(full[mask].mean(), rel=1e-10)


def test_lesion_contrast_shell_width_in_mm():
    # shell values depend on distance: 1 mm ring = 4.0, further = 2.0
    image = np.full((21, 21, 21), 2.0)
    lesion = np.zeros(image.shape, bool)
    lesion[10, 10, 10] = True
    image[9:12, 9:12, 9:12] = 4.0
    image[lesion] = 6.0
    # 1 mm along axes only: the 6 face neighbours (all 4.0)
    assert lesion_contrast(image, lesion, 1.0) == pytest.approx(0.5)
    # with 2 mm voxels nothing lies within 1 mm
    with pytest.raises(ValueError, match="shell"):
        lesion_contrast(image, lesion, 1.0, spacing=(2.0, 2.0, 2.0))


def _smooth_volume(shape=(24, 28, 20)):
    """A blurred random volume with R1-like values (s^-1): no 2-voxel texture."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(3)
    return 1.0 + 0.3 * gaussian_filter(rng.normal(size=shape), 2.0) / 0.05


def test_nyquist_power_known_values():
    from lesionkit.metrics.image import nyquist_power

    checker = np.indices((8, 9, 10)).sum(axis=0) % 2 * 2.0 - 1.0
    assert nyquist_power(checker, taper=0) == pytest.approx(1.0)
    assert nyquist_power(checker) > 0.5  # a smooth window spreads it a little
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(64, 64, 64))
    for taper in (0, 1):  # white: 1 / line length
        assert nyquist_power(noise, taper=taper) == pytest.approx(1 / 64, rel=0.1)
    # a tenth of white noise's; the window removes the cut at the array's ends
    assert nyquist_power(_smooth_volume(), taper=0) < 0.1 / 24
    assert nyquist_power(_smooth_volume()) < 1e-5
    with pytest.raises(ValueError, match="constant"):
        nyquist_power(np.ones((8, 8, 8)))
    with pytest.raises(ValueError, match="eroded"):
        nyquist_power(noise[:5])


def test_nyquist_power_ratio_flags_a_checkerboard_not_a_smooth_image():
    from lesionkit.metrics.image import nyquist_power_ratio

    reference = _smooth_volume()
    rng = np.random.default_rng(1)
    reference = reference + rng.normal(0, 0.02, reference.shape)  # the 7T map's noise
    mask = np.zeros(reference.shape, bool)
    mask[3:21, 4:25, 2:18] = True
    # a transposed convolution's artefact: every other voxel 5 % brighter
    parity = np.indices(reference.shape).sum(axis=0) % 2
    textured = _smooth_volume() * (1.0 + 0.05 * parity)
    assert nyquist_power_ratio(textured, reference, mask) > 2.0
    assert nyquist_power_ratio(_smooth_volume(), reference, mask) < 1.0
    assert nyquist_power_ratio(reference, reference, mask) == pytest.approx(1.0)


def test_white_matter_texture_counts_grain_that_the_edge_scores_average_out():
    rng = np.random.default_rng(0)
    wm = np.zeros((32, 32, 32))
    wm[:, :, 12:] = 1.0  # white matter above, grey matter below
    wm[:, :, 11] = 0.5  # one partial-volume layer: the boundary
    gm = 1.0 - wm
    clean = 0.8 + 0.4 * wm
    grainy = clean + rng.normal(0.0, 0.03, clean.shape)
    assert white_matter_texture(clean, wm) < 1e-4  # the grey matter does not reach in
    texture = white_matter_texture(grainy, wm)
    # white noise of SD 0.03 over a mean of 1.2, less what the 1.5 mm Gaussian keeps
    assert 0.5 * 0.03 / 1.2 < texture < 0.03 / 1.2
    assert texture > 10 * white_matter_texture(ndimage.gaussian_filter(grainy, 2.0), wm)
    # the sharpness score, by design, hardly sees the same noise
    assert edge_sharpness(grainy, gm, wm) == pytest.approx(edge_sharpness(clean, gm, wm),
                                                           rel=0.1)
    assert np.isnan(white_matter_texture(clean, np.zeros_like(wm)))  # no deep WM
