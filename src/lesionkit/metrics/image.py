"""Image-quality and lesion-contrast metrics for quantitative maps.

All functions are pure and take numpy arrays on one voxel grid. Results carry the
unit of the input image (for R1 maps: s^-1) unless stated otherwise. ``mask`` is a
boolean region (usually the brain mask); ``None`` means the whole array.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from lesionkit.volume import mask_box

__all__ = [
    "contrast_preservation",
    "edge_profile",
    "edge_sharpness",
    "lesion_contrast",
    "nyquist_power",
    "nyquist_power_ratio",
    "psnr",
    "relative_deviation",
    "relative_edge_sharpness",
    "rmse",
    "ssim",
    "white_matter_texture",
]


def _region(shape: tuple[int, ...], mask: np.ndarray | None) -> np.ndarray:
    """Return ``mask`` as a boolean array of ``shape`` (all True when None)."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(mask).astype(bool)
    if mask.shape != shape:
        raise ValueError(f"mask has shape {mask.shape}, expected {shape}")
    if not mask.any():
        raise ValueError("mask is empty")
    return mask


def _pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape:
        raise ValueError(f"shapes differ: prediction {pred.shape}, reference {ref.shape}")
    return pred, ref


def _data_range(ref_values: np.ndarray, data_range: float | None) -> float:
    if data_range is not None:
        return float(data_range)
    span = float(ref_values.max() - ref_values.min())
    if span <= 0:
        raise ValueError("reference is constant inside the mask; give data_range")
    return span


def rmse(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Root-mean-square error inside ``mask``, in the unit of the images (e.g. s^-1)."""
    pred, ref = _pair(pred, ref)
    region = _region(ref.shape, mask)
    return float(np.sqrt(mean_squared_error(ref[region], pred[region])))


def psnr(
    pred: np.ndarray,
    ref: np.ndarray,
    mask: np.ndarray | None = None,
    data_range: float | None = None,
) -> float:
    """Peak signal-to-noise ratio inside ``mask``, in dB (inf where the images agree).

    Args:
        pred: image to score.
        ref: reference image (same unit).
        mask: region to score; None for the whole array.
        data_range: peak value range; by default max - min of ``ref`` inside the mask.
    """
    pred, ref = _pair(pred, ref)
    region = _region(ref.shape, mask)
    peak = _data_range(ref[region], data_range)
    if np.array_equal(ref[region], pred[region]):
        return float("inf")  # no error: skimage would divide by zero
    return float(peak_signal_noise_ratio(ref[region], pred[region], data_range=peak))


def ssim(
    pred: np.ndarray,
    ref: np.ndarray,
    mask: np.ndarray | None = None,
    data_range: float | None = None,
) -> float:
    """Structural similarity (dimensionless, <= 1) averaged inside ``mask``.

    The full SSIM map is computed by ``skimage.metrics.structural_similarity`` with
    the Wang et al. (2004) settings (Gaussian window, sigma 1.5 voxels, population
    covariance) on the whole array; its mean over ``mask`` is returned, so voxels just
    outside the mask influence the boundary through the window. Every axis needs at
    least 11 voxels.

    Args:
        pred: image to score.
        ref: reference image.
        mask: region to average over; None for the whole array.
        data_range: dynamic range; by default max - min of ``ref`` inside the mask.
    """
    pred, ref = _pair(pred, ref)
    region = _region(ref.shape, mask)
    peak = _data_range(ref[region], data_range)
    # The Gaussian window reaches 5 voxels: cropping 6 voxels around the mask leaves
    # the map inside the mask unchanged and saves memory on large grids.
    box = mask_box(region, [6] * ref.ndim)
    _, ssim_map = structural_similarity(
        ref[box],
        pred[box],
        data_range=peak,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        full=True,
    )
    return float(ssim_map[region[box]].mean())


def edge_sharpness(
    image: np.ndarray,
    gm_prob: np.ndarray,
    wm_prob: np.ndarray,
    mask: np.ndarray | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    band: float = 0.2,
) -> float:
    """Mean slope of the image across the GM-WM boundary, in image units per mm.

    The boundary is the partial-volume band where both the GM and the WM probability
    are at least ``band`` (inside ``mask``). At each of its voxels the image gradient
    (``np.gradient`` with the voxel spacing) is projected onto the boundary's normal,
    the direction in which the WM probability minus the GM probability rises; the
    absolute value of the mean projection is returned. A blurred image scores lower
    than a sharp one with the same tissue values (for R1 maps: s^-1 / mm).

    Projecting before averaging keeps the score free of noise: noise adds a zero-mean
    term to the slope along a fixed direction, whereas it adds to the gradient's
    magnitude, so that a noisy blurred map would out-score a clean sharp one.

    Args:
        image: 3D image.
        gm_prob: grey-matter probability (0-1) on the image grid.
        wm_prob: white-matter probability (0-1) on the image grid.
        mask: brain mask; None for the whole array.
        spacing: voxel size in mm along each axis.
        band: minimum probability of both tissues for a voxel to count as boundary.
    """
    image = np.asarray(image, dtype=np.float64)
    region = _region(image.shape, mask)
    gm_prob, wm_prob = (np.asarray(p, dtype=np.float64) for p in (gm_prob, wm_prob))
    spacing = [float(s) for s in spacing]
    normal = np.gradient(wm_prob - gm_prob, *spacing)
    length = np.sqrt(sum(n**2 for n in normal))
    boundary = (gm_prob >= band) & (wm_prob >= band) & region & (length > 0)
    if not boundary.any():
        raise ValueError(f"no voxel has both GM and WM probability >= {band}")
    gradient = np.gradient(image, *spacing)
    slope = sum(g[boundary] * n[boundary]
                for g, n in zip(gradient, normal, strict=True)) / length[boundary]
    return float(abs(slope.mean()))


def relative_edge_sharpness(
    image: np.ndarray,
    gm_prob: np.ndarray,
    wm_prob: np.ndarray,
    mask: np.ndarray | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    band: float = 0.2,
) -> float:
    """GM-WM edge sharpness over the image's own GM-WM contrast, in 1/mm.

    :func:`edge_sharpness` divided by the difference of the probability-weighted mean
    intensities of WM and GM inside ``mask``. Scale-free, so maps with different tissue
    values (R1 at 3T and at 7T) compare by edge width alone: a step edge blurred over w
    mm scores about 1/w. NaN when the two means are equal.
    """
    gm_mean, wm_mean = _tissue_means(image, gm_prob, wm_prob, mask)
    contrast = abs(wm_mean - gm_mean)
    if not contrast > 0:
        return float("nan")
    return edge_sharpness(image, gm_prob, wm_prob, mask, spacing, band) / contrast


def _tissue_means(image: np.ndarray, gm_prob: np.ndarray, wm_prob: np.ndarray,
                  mask: np.ndarray | None) -> tuple[float, float]:
    """Probability-weighted mean intensities of GM and WM inside ``mask`` (NaN if none)."""
    image = np.asarray(image, dtype=np.float64)
    region = _region(image.shape, mask)
    weights = [np.asarray(p, dtype=np.float64) * region for p in (gm_prob, wm_prob)]
    gm_mean, wm_mean = (float((w * image).sum() / w.sum()) if w.sum() > 0 else float("nan")
                        for w in weights)
    return gm_mean, wm_mean


def edge_profile(
    image: np.ndarray,
    gm_prob: np.ndarray,
    wm_prob: np.ndarray,
    mask: np.ndarray | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    reach: float = 4.0,
    min_voxels: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean GM-WM edge of an image: its intensity against the distance from the boundary.

    The boundary is where the WM probability overtakes the GM probability; each voxel of
    GM or WM (probabilities summing to at least 0.9, so CSF partial volume is left out)
    inside ``mask`` gets its signed distance from it (mm, negative on the GM side; the
    Euclidean distance transform with the voxel spacing, less half a voxel). Voxels are
    averaged per distance, and intensities are scaled so that the probability-weighted
    GM mean is 0 and the WM mean 1: images of different tissue values (3T and 7T R1)
    share one axis, and a blurred image shows a shallower ramp. Averaging over the
    boundary takes the noise out.

    Args:
        image: 3D image.
        gm_prob, wm_prob: tissue probabilities (0-1) on the image grid.
        mask: brain mask; None for the whole array.
        spacing: voxel size in mm along each axis.
        reach: largest distance from the boundary shown, in mm.
        min_voxels: distances with fewer voxels are left out.

    Returns:
        (distances in mm, scaled mean intensity at each), distances ascending.

    Raises:
        ValueError: no boundary (WM everywhere or nowhere inside ``mask``), or equal GM
            and WM means.
    """
    image = np.asarray(image, dtype=np.float64)
    region = _region(image.shape, mask)
    gm_prob, wm_prob = (np.asarray(p, dtype=np.float64) for p in (gm_prob, wm_prob))
    spacing = [float(s) for s in spacing]
    wm_side = wm_prob > gm_prob
    if wm_side[region].all() or not wm_side[region].any():
        raise ValueError("no GM-WM boundary: the WM probability exceeds the GM probability "
                         f"in {int(wm_side[region].sum())} of {int(region.sum())} voxels")
    gm_mean, wm_mean = _tissue_means(image, gm_prob, wm_prob, mask)
    if not abs(wm_mean - gm_mean) > 0:
        raise ValueError(f"no GM-WM contrast: GM mean {gm_mean:g}, WM mean {wm_mean:g}")
    half = 0.5 * min(spacing)
    distance = np.where(wm_side, ndimage.distance_transform_edt(wm_side, sampling=spacing),
                        -ndimage.distance_transform_edt(~wm_side, sampling=spacing))
    distance -= np.sign(distance) * half
    used = region & (gm_prob + wm_prob >= 0.9) & (np.abs(distance) <= reach)
    levels, inverse, counts = np.unique(np.round(distance[used], 2), return_inverse=True,
                                        return_counts=True)
    sums = np.bincount(inverse, weights=image[used], minlength=levels.size)
    keep = counts >= min_voxels
    return levels[keep], (sums[keep] / counts[keep] - gm_mean) / (wm_mean - gm_mean)


def nyquist_power(image: np.ndarray, mask: np.ndarray | None = None,
                  taper: float = 1.0) -> float:
    """Fraction of an image's power at the 2-voxel period, mean over axes (dimensionless).

    The image minus its mean is weighted by a window inside ``mask``: the mask eroded by
    ``3 * taper`` voxels and smoothed with a Gaussian of ``taper`` voxels, so that the
    mask's own hard edge adds no power (``taper=0``: the mask itself). Along each axis,
    every line's component at the Nyquist frequency (half a cycle per voxel: the sign
    alternating from voxel to voxel) is ``sum_n x[n] (-1)^n``; its power summed over the
    lines, over the axis length times the total power, is the share of the power at that
    frequency (the DFT's Nyquist bin and Parseval's theorem). A checkerboard scores 1,
    white noise about 1 / (voxels per line), a smooth image nearly 0; up-sampling
    layers that leave a 2-voxel texture raise it.

    Args:
        image: 3D image (any unit; the result is a ratio).
        mask: region whose voxels count (e.g. the brain); None for the whole array.
        taper: width of the window's edge in voxels (Gaussian sigma).

    Raises:
        ValueError: The image is constant in the window, or the mask vanishes when eroded.
    """
    image = np.asarray(image, dtype=np.float64)
    region = _region(image.shape, mask)
    box = mask_box(region, [0] * image.ndim)
    window = region[box].astype(np.float64)
    if taper > 0:
        eroded = ndimage.binary_erosion(region[box], iterations=int(np.ceil(3 * taper)))
        if not eroded.any():
            raise ValueError(f"the mask vanishes when eroded by {int(np.ceil(3 * taper))} "
                             "voxels; give a smaller taper")
        window = ndimage.gaussian_filter(eroded.astype(np.float64), taper)
    values = image[box]
    centred = window * (values - (window * values).sum() / window.sum())
    total = float((centred**2).sum())
    if not total > 0:
        raise ValueError("the image is constant inside the mask")
    shares = []
    for axis, length in enumerate(centred.shape):
        sign = (-1.0) ** np.arange(length)
        component = np.tensordot(centred, sign, axes=([axis], [0]))
        shares.append(float((component**2).sum()) / (length * total))
    return float(np.mean(shares))


def nyquist_power_ratio(
    image: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None = None,
    taper: float = 1.0,
) -> float:
    """:func:`nyquist_power` of ``image`` over that of ``reference`` (ratio).

    Above 1: more power at the 2-voxel period than the reference has (a checkerboard or
    other periodic texture); below 1: less (a smoother image, or a denoised one). Against
    a noisy reference the ratio of a clean image is near 0, since white noise alone
    puts power there.
    """
    return nyquist_power(image, mask, taper) / nyquist_power(reference, mask, taper)


def white_matter_texture(
    image: np.ndarray,
    wm_prob: np.ndarray,
    mask: np.ndarray | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    sigma_mm: float = 1.5,
    pure: float = 0.95,
    erosion: int | None = None,
) -> float:
    """Fine texture inside deep white matter, relative to its mean (dimensionless).

    Deep white matter is flat in tissue models and nearly so in real R1 maps, so what
    varies there over a few voxels is noise or texture that a method added. Inside the
    voxels whose WM probability is at least ``pure``, eroded by ``erosion`` voxels (by
    default three Gaussian SDs, so that no other tissue reaches in), the score is the
    standard deviation of the image minus its Gaussian smoothing (``sigma_mm``; the
    high-pass part) over the mean of the image there. A noise-free map scores near 0, a
    noisy one about its noise SD over the WM mean (times the high-pass gain). Unlike
    :func:`nyquist_power`, which looks at the 2-voxel period only, it counts grain of
    any fine scale; unlike :func:`edge_sharpness`, which averages noise out, it
    measures it.

    Args:
        image: 3D image (any unit; the result is a ratio).
        wm_prob: white-matter probability (0-1) on the image grid.
        mask: brain mask; None for the whole array.
        spacing: voxel size in mm along each axis.
        sigma_mm: SD (mm) of the Gaussian whose residual is the high-pass part.
        pure: least WM probability of a deep-WM voxel.
        erosion: voxels removed from the deep-WM region's surface (None: the voxels
            within ``3 * sigma_mm`` along the finest axis).

    Returns:
        The relative texture; NaN when no deep-WM voxel is left or its mean is 0.
    """
    image = np.asarray(image, dtype=np.float64)
    region = _region(image.shape, mask) & (np.asarray(wm_prob) >= pure)
    if erosion is None:
        erosion = int(np.ceil(3 * sigma_mm / min(float(s) for s in spacing)))
    if erosion > 0:
        region = ndimage.binary_erosion(region, iterations=erosion)
    if not region.any():
        return float("nan")
    sigma = [sigma_mm / float(s) for s in spacing]
    high = image - ndimage.gaussian_filter(image, sigma)
    mean = float(image[region].mean())
    return float(high[region].std() / abs(mean)) if mean != 0 else float("nan")


def _shell(
    lesion: np.ndarray,
    width_mm: float,
    spacing: Sequence[float],
    brain_mask: np.ndarray | None,
    exclude: np.ndarray | None,
) -> np.ndarray:
    """Voxels within ``width_mm`` of the lesion, outside it, inside the brain."""
    sampling = [float(s) for s in spacing]
    box = mask_box(lesion, [int(np.ceil(width_mm / s)) + 1 for s in sampling])
    shell = np.zeros(lesion.shape, dtype=bool)
    if box is None:  # no lesion, no shell
        return shell
    distance = ndimage.distance_transform_edt(~lesion[box], sampling=sampling)
    shell[box] = (distance > 0) & (distance <= width_mm)
    if brain_mask is not None:
        shell &= np.asarray(brain_mask).astype(bool)
    if exclude is not None:
        shell &= ~np.asarray(exclude).astype(bool)
    return shell


def lesion_contrast(
    image: np.ndarray,
    lesion_mask: np.ndarray,
    surround_width_mm: float = 2.0,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    brain_mask: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
) -> float:
    """Relative contrast of a lesion to its surroundings (dimensionless).

    ``(mean(lesion) - mean(shell)) / mean(shell)``, where the shell holds the voxels
    within ``surround_width_mm`` (Euclidean distance in mm) of the lesion, outside the
    lesion, inside ``brain_mask`` and outside ``exclude`` (e.g. other lesions).
    Negative for a lesion darker than its surroundings (FCD on R1 maps).

    Args:
        image: 3D image (any unit with a meaningful zero, e.g. R1 in s^-1).
        lesion_mask: boolean mask of one lesion (or of all lesions).
        surround_width_mm: shell thickness in mm.
        spacing: voxel size in mm.
        brain_mask: restrict the shell to the brain; None for no restriction.
        exclude: voxels never used in the shell.
    """
    image = np.asarray(image, dtype=np.float64)
    lesion = _region(image.shape, lesion_mask)
    shell = _shell(lesion, surround_width_mm, spacing, brain_mask, exclude)
    if not shell.any():
        raise ValueError("the surrounding shell is empty")
    background = image[shell].mean()
    return float((image[lesion].mean() - background) / background)


def contrast_preservation(
    output: np.ndarray,
    reference: np.ndarray,
    lesion_mask: np.ndarray,
    surround_width_mm: float = 2.0,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    brain_mask: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
) -> float:
    """Lesion contrast in ``output`` over lesion contrast in ``reference`` (ratio).

    1 means the lesion keeps its contrast, 0 that it was erased, above 1 that it was
    amplified. Both contrasts use the same lesion and shell (see ``lesion_contrast``);
    the ratio is unstable when the reference contrast is near zero.
    """
    args = (lesion_mask, surround_width_mm, spacing, brain_mask, exclude)
    return lesion_contrast(output, *args) / lesion_contrast(reference, *args)


def relative_deviation(
    a: np.ndarray,
    b: np.ndarray,
    mask: np.ndarray | None = None,
    statistic: str = "mean",
) -> float:
    """Relative deviation of ``a`` from the reference ``b`` inside ``mask``, in percent.

    ``statistic`` ("mean", the MRF study's choice, or "median") of
    ``100 * |a - b| / |b|`` over the voxels of ``mask`` where ``b`` is non-zero.
    Used for T1 / T2* (ms) of the network against dictionary matching.
    """
    a, b = _pair(a, b)
    region = _region(b.shape, mask) & (b != 0)
    if not region.any():
        raise ValueError("the reference is zero everywhere inside the mask")
    deviation = 100.0 * np.abs(a[region] - b[region]) / np.abs(b[region])
    reducers = {"median": np.median, "mean": np.mean}
    if statistic not in reducers:
        raise ValueError(f"statistic must be 'median' or 'mean', got {statistic!r}")
    return float(reducers[statistic](deviation))
