"""Quantitative susceptibility mapping (QSM) of the phantom: dipole forward model and inversion.

This is a documented approximation of a QSM acquisition and reconstruction. The local
field is the susceptibility distribution convolved with the unit dipole (computed in
k-space, B0 along the z axis of the voxel grid by default), Gaussian noise is added to
the field inside the brain mask, and the field is inverted with thresholded k-space
division (TKD, Shmueli et al. 2009), which leaves the streaking artefacts along the
magic-angle cone that real TKD reconstructions show. Not simulated: phase wrapping and
unwrapping, background fields and their removal, echo combination, or the erosion of
the mask edge that background-field removal causes.

Susceptibility and field shifts are both in ppb (1e-9, field relative to B0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft


def dipole_kernel(
    shape: Sequence[int],
    spacing_mm: Sequence[float],
    b0_dir: Sequence[float] = (0.0, 0.0, 1.0),
    half: bool = False,
) -> np.ndarray:
    """Unit dipole in k-space, D(k) = 1/3 - (k.b0)^2 / |k|^2, with D(0) = 0.

    Args:
        shape: grid shape (voxels).
        spacing_mm: voxel size (mm), so anisotropic grids give the right angles.
        b0_dir: B0 direction in voxel axes (normalised here).
        half: return the kernel on the ``rfftn`` grid (last axis halved) instead of ``fftn``.

    Returns:
        Real float64 array of shape ``shape`` (or its rfft shape).
    """
    b0 = np.asarray(b0_dir, dtype=np.float64)
    b0 = b0 / np.linalg.norm(b0)
    freqs = [np.fft.fftfreq(n, d=s) for n, s in zip(shape[:-1], spacing_mm[:-1], strict=True)]
    last = np.fft.rfftfreq if half else np.fft.fftfreq
    freqs.append(last(shape[-1], d=spacing_mm[-1]))
    k = np.meshgrid(*freqs, indexing="ij", sparse=True)
    k2 = k[0] ** 2 + k[1] ** 2 + k[2] ** 2
    kb = k[0] * b0[0] + k[1] * b0[1] + k[2] * b0[2]
    with np.errstate(invalid="ignore", divide="ignore"):
        kernel = 1.0 / 3.0 - kb**2 / k2
    kernel[0, 0, 0] = 0.0
    return kernel


def _padded_shape(shape: Sequence[int], pad_fraction: float) -> tuple[int, ...]:
    return tuple(scipy.fft.next_fast_len(int(np.ceil(n * (1 + pad_fraction)))) for n in shape)


def _apply_in_kspace(
    volume: np.ndarray,
    spacing_mm: Sequence[float],
    b0_dir: Sequence[float],
    pad_fraction: float,
    transform,
) -> np.ndarray:
    """Zero-pad, multiply the spectrum by transform(kernel), crop back."""
    shape = volume.shape
    padded = _padded_shape(shape, pad_fraction)
    spectrum = scipy.fft.rfftn(np.asarray(volume, dtype=np.float64), s=padded, workers=-1)
    spectrum *= transform(dipole_kernel(padded, spacing_mm, b0_dir, half=True))
    out = scipy.fft.irfftn(spectrum, s=padded, workers=-1)
    return out[tuple(slice(0, n) for n in shape)]


def dipole_forward(
    chi_ppb: np.ndarray,
    spacing_mm: Sequence[float],
    b0_dir: Sequence[float] = (0.0, 0.0, 1.0),
    pad_fraction: float = 0.5,
) -> np.ndarray:
    """Local field shift (ppb) produced by a susceptibility map (ppb).

    The volume is zero-padded by ``pad_fraction`` of its size on each axis before the
    FFT, so the field of one edge does not wrap onto the opposite edge (the dipole
    field falls off as r^-3).
    """
    return _apply_in_kspace(chi_ppb, spacing_mm, b0_dir, pad_fraction, lambda d: d)


def invert_tkd(
    field_ppb: np.ndarray,
    spacing_mm: Sequence[float],
    threshold: float = 0.2,
    b0_dir: Sequence[float] = (0.0, 0.0, 1.0),
    pad_fraction: float = 0.5,
) -> np.ndarray:
    """Thresholded k-space division: chi = IFFT(FFT(field) / D_t) (ppb).

    D_t = D where |D| >= threshold and sign(D) * threshold elsewhere (D(0) stays 0,
    so the mean is undetermined). No correction of the TKD underestimation is applied.
    """

    def inverse(d: np.ndarray) -> np.ndarray:
        d_t = np.where(np.abs(d) >= threshold, d, np.sign(d) * threshold)
        with np.errstate(divide="ignore"):
            return np.where(d_t == 0, 0.0, 1.0 / d_t)

    return _apply_in_kspace(field_ppb, spacing_mm, b0_dir, pad_fraction, inverse)


def simulate_qsm(
    chi_ppb: np.ndarray,
    mask: np.ndarray,
    spacing_mm: Sequence[float],
    noise_sd_ppb: float,
    rng: np.random.Generator,
    threshold: float = 0.2,
    reference_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Simulated QSM (ppb) of a susceptibility map: forward model, field noise, TKD.

    Steps: field = dipole_forward(chi); inside ``mask`` add Gaussian noise of SD
    ``noise_sd_ppb`` and set the field outside to zero (only the brain's local field is
    known); invert with :func:`invert_tkd`; mask. Referencing: QSM is relative, so the
    mean over ``reference_mask`` (default: the whole mask, as in common pipelines) is
    subtracted; the result is chi relative to that mean.

    Args:
        chi_ppb: true susceptibility (ppb), 3D.
        mask: boolean brain mask.
        spacing_mm: voxel size (mm).
        noise_sd_ppb: SD of the field noise (ppb).
        rng: random generator for the noise draw.
        threshold: TKD threshold.
        reference_mask: region whose mean becomes zero (e.g. CSF); default ``mask``.

    Returns:
        float32 QSM (ppb), zero outside the mask, same shape as ``chi_ppb``.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != np.shape(chi_ppb):
        raise ValueError(f"mask shape {mask.shape} differs from chi shape {np.shape(chi_ppb)}")
    field = dipole_forward(chi_ppb, spacing_mm)
    field += rng.normal(0.0, noise_sd_ppb, field.shape)
    field[~mask] = 0.0
    qsm = invert_tkd(field, spacing_mm, threshold)
    reference = mask if reference_mask is None else np.asarray(reference_mask, bool) & mask
    qsm -= qsm[reference].mean() if reference.any() else 0.0
    qsm[~mask] = 0.0
    return qsm.astype(np.float32)
