"""The MNI152 2009a template of the phantom (tissue maps shipped inside nilearn) and its
resampling.

The template ships inside nilearn (no download). CSF is derived as the part of the brain
mask not explained by GM + WM; deep grey matter is approximated as the GM lying more than
about 20-30 mm from the brain surface (a distance-transform ramp), which captures the
basal ganglia and thalami but is an approximation, not a segmentation.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.measure import block_reduce

TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
BRAIN_THRESHOLD = 0.2  # on the 0..1 T1 template, as nilearn's load_mni152_brain_mask
MARGIN_MM = 10.0  # margin around the brain bounding box when cropping the template
DEEP_GM_RAMP_MM = (20.0, 30.0)  # distance from the brain surface where GM turns deep


@dataclass(frozen=True)
class Anatomy:
    """Tissue maps on one grid.

    Attributes:
        gm, wm, csf: float32 tissue probability maps (sum <= 1).
        deep_gm: float32 0..1, the part of ``gm`` that is deep grey matter.
        mask: bool brain mask.
        affine: 4x4 voxel-to-world (mm) matrix.
    """

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    deep_gm: np.ndarray
    mask: np.ndarray
    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape."""
        return self.gm.shape

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (mm)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))


def _derive_csf(gm: np.ndarray, wm: np.ndarray, mask: np.ndarray) -> np.ndarray:
    soft = ndimage.gaussian_filter(mask.astype(np.float32), 0.6)
    return np.clip(soft - gm - wm, 0.0, 1.0).astype(np.float32)


def _deep_fraction(mask: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Ramp 0..1 of depth below the brain surface (computed at 2x coarser voxels)."""
    coarse = mask[::2, ::2, ::2]
    depth = ndimage.distance_transform_edt(coarse, sampling=[2 * s for s in spacing])
    lo, hi = DEEP_GM_RAMP_MM
    ramp = np.clip((depth - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    zoom = [m / c for m, c in zip(mask.shape, coarse.shape, strict=True)]
    ramp = ndimage.zoom(ramp, zoom, order=1, grid_mode=True, mode="nearest")
    return ramp[: mask.shape[0], : mask.shape[1], : mask.shape[2]] * mask


def _nilearn_file(name: str) -> Path:
    """Path of a data file shipped inside the nilearn package (found without importing it)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("nilearn is required for the phantom anatomy (MNI152 2009a maps)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name


def _load_rescaled(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A template volume rescaled to a maximum of 1 (as nilearn's loaders do) and its affine."""
    from lesionkit.io import load_volume

    vol = load_volume(_nilearn_file(name))
    data = vol.data.astype(np.float32)
    return data / data.max(), vol.affine


@lru_cache(maxsize=1)
def _cached_template() -> Anatomy:
    gm, affine = _load_rescaled(TEMPLATE_FILES["gm"])
    wm, _ = _load_rescaled(TEMPLATE_FILES["wm"])
    t1, _ = _load_rescaled(TEMPLATE_FILES["t1"])
    mask = (t1 > BRAIN_THRESHOLD) | ((gm + wm) > 0.5)
    spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    idx = np.argwhere(mask)
    margin = round(MARGIN_MM / min(spacing))
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + margin + 1, mask.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    crop_affine = affine.copy()
    crop_affine[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]
    mask = ndimage.binary_fill_holes(mask[box])
    gm, wm = gm[box] * mask, wm[box] * mask
    csf = _derive_csf(gm, wm, mask)
    deep = _deep_fraction(mask, spacing) * (gm > 0)
    return Anatomy(gm, wm, csf, deep.astype(np.float32), mask, crop_affine)


def load_template() -> Anatomy:
    """MNI152 2009a GM/WM at 1 mm from nilearn, cropped to the brain with a 10 mm margin."""
    return _cached_template()


@lru_cache(maxsize=8)
def template_at(spacing_mm: float) -> Anatomy:
    """The template (:func:`load_template`) at isotropic voxels of ``spacing_mm``, resampled
    once per process: every subject starts from it. Its arrays are read-only (shared)."""
    anatomy = to_spacing(load_template(), spacing_mm)
    for array in (anatomy.gm, anatomy.wm, anatomy.csf, anatomy.deep_gm, anatomy.mask):
        array.setflags(write=False)
    return anatomy


def to_spacing(anatomy: Anatomy, spacing_mm: float) -> Anatomy:
    """Resample the anatomy to isotropic voxels of ``spacing_mm`` over the same field of view.

    Integer coarsening averages blocks (exact partial volume); other factors interpolate
    linearly. The mask is re-thresholded at 0.5.
    """
    from lesionkit.simulate.signal import resampled_affine

    factor = spacing_mm / anatomy.spacing[0]
    if np.isclose(factor, 1.0):
        return anatomy
    k = round(factor)
    if factor > 1 and np.isclose(factor, k):
        n = [s // k * k for s in anatomy.shape]
        def res(a: np.ndarray) -> np.ndarray:
            a = a[: n[0], : n[1], : n[2]].astype(np.float32)
            return block_reduce(a, (k, k, k), np.mean).astype(np.float32)
    else:
        shape = [round(s / factor) for s in anatomy.shape]
        def res(a: np.ndarray) -> np.ndarray:
            zoom = [t / s for t, s in zip(shape, a.shape, strict=True)]
            out = ndimage.zoom(a.astype(np.float32), zoom, order=1, grid_mode=True, mode="nearest")
            return out.astype(np.float32)
    affine = resampled_affine(anatomy.affine, factor)
    return Anatomy(
        gm=res(anatomy.gm), wm=res(anatomy.wm), csf=res(anatomy.csf),
        deep_gm=res(anatomy.deep_gm), mask=res(anatomy.mask) >= 0.5, affine=affine,
    )
