"""Signal equations, noise, smooth fields and resolution effects (pure array functions).

Times in ms, flip angles in degrees, B1 relative (1 = nominal), R1 in s^-1. Random noise
is drawn by the caller with a numpy Generator and passed in, or drawn here from a given
Generator in the ``*_noise`` helpers; everything else is deterministic.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def r1_from_t1(t1_ms: np.ndarray) -> np.ndarray:
    """Longitudinal relaxation rate R1 (s^-1) from T1 (ms)."""
    return (1000.0 / np.asarray(t1_ms, np.float32)).astype(np.float32)


def spgr(pd, t1_ms, t2s_ms, tr_ms: float, te_ms: float, flip_deg: float, b1=1.0) -> np.ndarray:
    """Spoiled gradient echo: PD sin(a)(1-E1)/(1-cos(a)E1) exp(-TE/T2*), a = B1 x flip.

    Example:
        >>> round(float(spgr(1.0, 1000.0, 50.0, tr_ms=10, te_ms=0, flip_deg=90)), 5)
        0.00995
    """
    a = np.deg2rad(flip_deg) * np.asarray(b1, np.float32)
    e1 = np.exp(-tr_ms / np.asarray(t1_ms, np.float32))
    s = pd * np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1) * np.exp(-te_ms / np.asarray(t2s_ms))
    return np.asarray(s, np.float32)


def inversion_mz(t1_ms, tr_ms: float, ti_ms: float, b1=1.0) -> np.ndarray:
    """Longitudinal magnetisation (relative to M0) at the readout of an inversion recovery.

    Mz before the inversion is ``1 - exp(-(TR - TI)/T1)`` (saturated by the previous
    readout); the inversion rotates it by 180 x B1 degrees; recovery over TI follows.
    With B1 = 1: ``1 - 2 exp(-TI/T1) + exp(-TR/T1)``.
    """
    t1 = np.asarray(t1_ms, np.float32)
    mz0 = 1 - np.exp(-(tr_ms - ti_ms) / t1)
    mz_inv = mz0 * np.cos(np.pi * np.asarray(b1, np.float32))
    return np.asarray(1 - (1 - mz_inv) * np.exp(-ti_ms / t1), np.float32)


def ir_gradient_echo(pd, t1_ms, t2s_ms, tr_ms: float, te_ms: float, ti_ms: float,
                     flip_deg: float, b1=1.0) -> np.ndarray:
    """MPRAGE-like T1w magnitude: PD |Mz(TI)| sin(B1 a) exp(-TE/T2*)."""
    mz = inversion_mz(t1_ms, tr_ms, ti_ms, b1)
    a = np.deg2rad(flip_deg) * np.asarray(b1, np.float32)
    return np.asarray(pd * np.abs(mz) * np.sin(a) * np.exp(-te_ms / np.asarray(t2s_ms)),
                      np.float32)


def mprage(pd, t1_ms, t2s_ms, tr_ms: float, te_ms: float, ti_ms: float, flip_deg: float,
           echo_spacing_ms: float, readouts: int, b1=1.0) -> np.ndarray:
    """MPRAGE magnitude with its readout train, at the steady state of the inversions.

    Each cycle of ``tr_ms`` (inversion to inversion) is: inversion (180 x B1 degrees),
    recovery, ``readouts`` excitations of ``flip_deg`` x B1 spaced ``echo_spacing_ms``,
    recovery to the next inversion. ``ti_ms`` runs from the inversion to the central
    (middle) excitation, which carries the k-space centre (linear ordering). Every
    segment maps Mz affinely (Mz -> a Mz + b), so the steady state and the Mz at the
    central excitation are closed-form (Deichmann et al. 2000, NeuroImage 12:112).

    Returns:
        PD |Mz| sin(B1 flip) exp(-TE/T2*) at the central excitation (per unit M0).

    Example:
        >>> s = mprage(1.0, [900.0, 1450.0], [50.0, 58.0], 1900, 2.5, 900, 9, 7.0, 176)
        >>> bool(s[0] > s[1])
        True
    """
    t1 = np.asarray(t1_ms, np.float32)
    b1 = np.asarray(b1, np.float32)
    a = np.deg2rad(flip_deg) * b1
    centre = readouts // 2
    t_before = ti_ms - centre * echo_spacing_ms
    t_after = tr_ms - t_before - readouts * echo_spacing_ms
    if t_before < 0 or t_after < 0:
        raise ValueError("readout train does not fit between TI and TR: "
                         f"TR {tr_ms}, TI {ti_ms}, {readouts} x {echo_spacing_ms} ms")

    def relax(t: float):
        e = np.exp(-t / t1)
        return e, 1 - e

    def train(n: int):
        e = np.exp(-echo_spacing_ms / t1)
        r = np.cos(a) * e  # < 1 for any flip > 0
        return r ** n, (1 - e) * (1 - r ** n) / (1 - r)

    def then(first, second):
        return second[0] * first[0], second[0] * first[1] + second[1]

    inversion = (np.cos(np.pi * b1) * np.ones_like(t1), np.zeros_like(t1))
    to_centre = then(then(inversion, relax(t_before)), train(centre))
    cycle = then(then(to_centre, train(readouts - centre)), relax(t_after))
    mz_steady = cycle[1] / (1 - cycle[0])
    mz = to_centre[0] * mz_steady + to_centre[1]
    return np.asarray(pd * np.abs(mz) * np.sin(a) * np.exp(-te_ms / np.asarray(t2s_ms)),
                      np.float32)


def flair(pd, t1_ms, t2_ms, tr_ms: float, te_ms: float, ti_ms: float, b1=1.0) -> np.ndarray:
    """FLAIR (inversion-recovery spin echo) magnitude: PD |Mz(TI)| exp(-TE/T2)."""
    mz = inversion_mz(t1_ms, tr_ms, ti_ms, b1)
    return np.asarray(pd * np.abs(mz) * np.exp(-te_ms / np.asarray(t2_ms)), np.float32)


def spin_echo(pd, t1_ms, t2_ms, tr_ms: float, te_ms: float) -> np.ndarray:
    """T1-weighted spin echo (TSE-like): PD (1 - exp(-TR/T1)) exp(-TE/T2)."""
    t1 = np.asarray(t1_ms, np.float32)
    return np.asarray(pd * (1 - np.exp(-tr_ms / t1)) * np.exp(-te_ms / np.asarray(t2_ms)),
                      np.float32)


def noise_sd(image: np.ndarray, mask: np.ndarray, snr: float) -> float:
    """Noise SD giving ``snr`` = mean of ``image`` inside ``mask`` / SD."""
    return float(np.mean(image[mask]) / snr)


def rician_noise(image: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise (SD ``sd`` per channel)."""
    real = image + rng.normal(0.0, sd, image.shape).astype(np.float32)
    imag = rng.normal(0.0, sd, image.shape).astype(np.float32)
    return np.hypot(real, imag).astype(np.float32)


def gaussian_noise(image: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Image plus real Gaussian noise of SD ``sd`` (quantitative maps)."""
    return (image + rng.normal(0.0, sd, image.shape).astype(np.float32)).astype(np.float32)


def draw_smooth_field(rng: np.random.Generator, control_shape=(4, 4, 4)) -> np.ndarray:
    """Random control values (standard normal) for :func:`smooth_field`."""
    return rng.standard_normal(control_shape)


def spline_weights(n_control: int, coords: np.ndarray, order: int = 3) -> np.ndarray:
    """Matrix (len(coords), n_control) of 1D spline interpolation at ``coords`` (index units).

    Spline interpolation is linear in the control values, so interpolating the unit
    vectors gives its matrix; a separable 3D interpolation is then three small products.
    """
    eye = np.eye(n_control, dtype=np.float64)
    c = np.asarray(coords, np.float64)[None]
    cols = [ndimage.map_coordinates(e, c, order=order, mode="nearest") for e in eye]
    return np.stack(cols, axis=1)


def separable_interpolate(control: np.ndarray, coords: list[np.ndarray], order: int = 3
                          ) -> np.ndarray:
    """Cubic-spline interpolation of a small control grid on a product grid of coordinates."""
    out = control.astype(np.float32)
    for axis, c in enumerate(coords):
        w = spline_weights(control.shape[axis], c, order).astype(np.float32)
        out = np.moveaxis(np.tensordot(w, out, axes=([1], [axis])), 0, axis)
    return np.ascontiguousarray(out, dtype=np.float32)


def smooth_field(control: np.ndarray, shape: tuple[int, int, int], low: float, high: float
                 ) -> np.ndarray:
    """Smooth field over the grid, cubic-interpolated from control values, in [low, high].

    The control grid spans the field of view, so the field does not depend on the voxel
    size. Values are scaled so that the largest |control| maps onto ``low`` or ``high``.
    """
    coords = [(np.arange(n) + 0.5) * c / n - 0.5 for n, c in zip(shape, control.shape,
                                                                   strict=True)]
    f = separable_interpolate(control, coords) / max(float(np.abs(control).max()), 1e-6)
    mid, half = (low + high) / 2, (high - low) / 2
    return np.clip(mid + half * f, low, high).astype(np.float32)


def blur(image: np.ndarray, spacing_mm, fwhm_mm: float) -> np.ndarray:
    """Gaussian blur with a point-spread FWHM in mm on a grid of ``spacing_mm``."""
    sigma = [fwhm_mm * FWHM_TO_SIGMA / s for s in np.broadcast_to(spacing_mm, (3,))]
    return ndimage.gaussian_filter(image.astype(np.float32), sigma).astype(np.float32)


def coarse_grid(shape, affine: np.ndarray, factor: float) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of a grid with voxels ``factor`` times larger over the same FOV."""
    coarse = tuple(max(1, int(np.floor(s / factor + 1e-6))) for s in shape)
    return coarse, resampled_affine(affine, factor)


def blur_decimate(image: np.ndarray, affine: np.ndarray, factor: float, blur_factor: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Acquire at a coarser grid: blur (FWHM = new voxel x blur_factor), then sample.

    Args:
        image: the fine-grid image.
        affine: its voxel-to-world matrix (mm).
        factor: new voxel size / old voxel size (>= 1).
        blur_factor: point-spread FWHM as a multiple of the new voxel size.

    Returns:
        (coarse image, coarse affine); voxel centres follow :func:`coarse_grid`.
    """
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    smooth = blur(image, spacing, float(spacing[0] * factor * blur_factor))
    if np.isclose(factor, 1.0):
        return smooth, affine.copy()
    shape, new_affine = coarse_grid(image.shape, affine, factor)
    coords = [np.arange(n, dtype=np.float32) * factor + (factor - 1) / 2 for n in shape]
    grid = np.meshgrid(*coords, indexing="ij")
    out = ndimage.map_coordinates(smooth, grid, order=1, mode="nearest")
    return out.astype(np.float32), new_affine


def _is_axis_aligned(affine: np.ndarray) -> bool:
    m = np.asarray(affine)[:3, :3]
    return bool(np.allclose(m, np.diag(np.diag(m))))


def reslice(image: np.ndarray, affine: np.ndarray, shape, target_affine: np.ndarray,
            order: int = 4) -> np.ndarray:
    """Reslice onto another grid with a B-spline of ``order`` (4 = the enhance-r1 choice).

    Same result as ``scipy.ndimage.affine_transform(..., order, mode="nearest")``; for
    axis-aligned grids it is computed separably (one small matrix per axis), which is
    exact for tensor-product B-splines and much faster.
    """
    target_affine = np.asarray(target_affine, np.float64)
    if _is_axis_aligned(affine) and _is_axis_aligned(target_affine):
        coords = [(target_affine[k, k] * np.arange(n) + target_affine[k, 3] - affine[k, 3])
                  / affine[k, k] for k, n in enumerate(shape)]
        out = image.astype(np.float64)
        for axis, c in enumerate(coords):
            w = spline_weights(image.shape[axis], c, order).astype(np.float64)
            out = np.moveaxis(np.tensordot(w, out, axes=([1], [axis])), 0, axis)
        return np.ascontiguousarray(out, dtype=np.float32)
    m = np.linalg.inv(affine) @ target_affine
    out = ndimage.affine_transform(image.astype(np.float32), m[:3, :3], offset=m[:3, 3],
                                   output_shape=tuple(shape), order=order, mode="nearest")
    return out.astype(np.float32)


def resampled_affine(affine: np.ndarray, factor: float) -> np.ndarray:
    """Affine of a grid with voxels ``factor`` times larger covering the same field of view."""
    out = affine.copy()
    out[:3, :3] = affine[:3, :3] * factor
    out[:3, 3] = affine[:3, :3] @ np.full(3, (factor - 1) / 2) + affine[:3, 3]
    return out
