"""Brain mask of one 3D MRI volume (T1w or FLAIR), skull-stripped or raw.

A volume that is already skull-stripped is recognised and its non-zero voxels are the
mask. A raw (skull-on) volume is brain-extracted with ``brainextractor``, a Python port of
FSL BET (Smith, Hum Brain Mapp 2002): a tessellated surface grows from the head's centre
of gravity until it meets the brain's edge. It runs in voxel space, so the volume is first
resampled to an isotropic working grid; the result is mapped back to the input grid, its
holes are filled and only its largest connected component is kept. Nothing is downloaded.
See ``docs/brainmask.md`` for the comparison behind this choice and measured run times.
"""

from __future__ import annotations

import numpy as np

from lesionkit.io import InputError, nifti_image

#: Isotropic spacing (mm) of the grid on which the BET surface is fitted.
WORK_SPACING_MM = 1.5
#: BET fractional intensity threshold (``-f``); larger gives a tighter mask (FSL: 0.5).
FRACTIONAL_THRESHOLD = 0.6
#: Surface deformation steps (FSL BET uses 1000).
ITERATIONS = 1000

#: Skull-stripped rule: at least this share of the field of view is exactly zero ...
STRIPPED_MIN_ZERO_SHARE = 0.25
#: ... the largest 26-connected non-zero component holds at least this share of them ...
STRIPPED_MIN_COMPONENT_SHARE = 0.95
#: ... its volume (mL, holes filled) lies in this range ...
STRIPPED_VOLUME_ML = (800.0, 2500.0)
#: ... and under this share of non-zero voxels is darker than ``DARK_LEVEL`` x their median
#: (a raw scan whose background was zeroed keeps a rim of near-zero noise: 9-15 % measured).
STRIPPED_MAX_DARK_SHARE = 0.05
DARK_LEVEL = 0.05
#: Intensity percentile taken as the image's floor (0) for BET when it is negative.
FLOOR_PERCENTILE = 0.5

#: A brain mask outside this range (mL) is rejected as implausible.
PLAUSIBLE_VOLUME_ML = (200.0, 3000.0)
#: Masks BET computed in this process, by image content, voxel size and iterations: a scan
#: read again (another model, another pass over the same session) is not fitted twice.
_COMPUTED: dict[tuple, np.ndarray] = {}
_COMPUTED_KEPT = 4


def brain_mask(
    data: np.ndarray,
    affine: np.ndarray,
    *,
    source: str = "",
    iterations: int = ITERATIONS,
) -> tuple[np.ndarray, str]:
    """Boolean brain mask of one 3D image and a one-line note of how it was obtained.

    Input already skull-stripped (see :func:`looks_skull_stripped`) gives its non-zero
    voxels; anything else is brain-extracted with BET (``brainextractor``). Orientation and
    anisotropic voxels are handled through ``affine``. Deterministic; about 10 s for a
    clinical scan on 2 CPU cores (the first call in a new environment also compiles the
    library's numba kernels, about 10 s).

    Args:
        data: (X, Y, Z) intensities in any unit and offset (T1w or FLAIR); NaN counts
            as zero.
        affine: 4x4 voxel-to-world matrix, world in mm.
        source: File name put at the start of error messages.
        iterations: BET surface deformation steps.

    Returns:
        The (X, Y, Z) boolean mask and a description for a JSON sidecar, e.g.
        ``"skull-stripped input: non-zero voxels"`` or ``"computed: brainextractor ..."``.

    Raises:
        InputError: The image is not 3D, empty or constant, the affine is unusable, BET
            fails on it, or the mask volume is outside ``PLAUSIBLE_VOLUME_ML``.
    """
    prefix = f"{source}: " if source else ""
    data = np.nan_to_num(np.asarray(data, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    affine = np.asarray(affine, dtype=float)
    if data.ndim != 3:
        raise InputError(f"{prefix}expected a 3D image, found shape {data.shape}")
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise InputError(f"{prefix}expected a finite 4x4 affine, found shape {affine.shape}")
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    if voxel_ml <= 0:
        raise InputError(f"{prefix}expected an invertible affine, found a singular one")
    if not data.any():
        raise InputError(f"{prefix}expected a brain image, found only zeros")
    low, high = np.percentile(data, [2, 98])
    if high <= low:
        raise InputError(
            f"{prefix}expected a brain image with contrast, found 2nd and 98th intensity "
            f"percentiles both {low:g}"
        )

    if looks_skull_stripped(data, affine):
        mask, description = data != 0, "skull-stripped input: non-zero voxels"
    else:
        spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
        mask = _computed(data, spacing, iterations, source or "image")
        description = _description(iterations)

    volume_ml = float(mask.sum()) * voxel_ml
    lo, hi = PLAUSIBLE_VOLUME_ML
    if not lo <= volume_ml <= hi:
        raise InputError(
            f"{prefix}expected a brain mask of {lo:.0f}-{hi:.0f} mL, found {volume_ml:.0f} mL "
            f"({description})"
        )
    return mask, description


def looks_skull_stripped(data: np.ndarray, affine: np.ndarray) -> bool:
    """Whether ``data`` is already skull-stripped: a compact, brain-sized non-zero blob.

    All must hold: at least ``STRIPPED_MIN_ZERO_SHARE`` of the voxels are exactly zero; the
    largest 26-connected non-zero component holds ``STRIPPED_MIN_COMPONENT_SHARE`` of the
    non-zero voxels; its volume with holes filled is within ``STRIPPED_VOLUME_ML`` (mL); and
    fewer than ``STRIPPED_MAX_DARK_SHARE`` of the non-zero voxels are below ``DARK_LEVEL``
    times their median (raw scans with a zeroed background keep dark noise around the head).

    Args:
        data: (X, Y, Z) intensities in any unit.
        affine: 4x4 voxel-to-world matrix, world in mm.
    """
    from scipy import ndimage

    nonzero = np.asarray(data) != 0
    n_nonzero = int(nonzero.sum())
    if n_nonzero == 0 or 1.0 - n_nonzero / nonzero.size < STRIPPED_MIN_ZERO_SHARE:
        return False
    labels, _ = ndimage.label(nonzero, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel())[1:]
    if sizes.max() < STRIPPED_MIN_COMPONENT_SHARE * n_nonzero:
        return False
    blob = ndimage.binary_fill_holes(labels == int(np.argmax(sizes)) + 1)
    volume_ml = float(blob.sum()) * abs(float(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1e3
    if not STRIPPED_VOLUME_ML[0] <= volume_ml <= STRIPPED_VOLUME_ML[1]:
        return False
    values = np.abs(np.asarray(data)[nonzero])
    dark_share = float((values < DARK_LEVEL * np.median(values)).mean())
    return dark_share < STRIPPED_MAX_DARK_SHARE


def _computed(data: np.ndarray, spacing: np.ndarray, iterations: int, source: str
              ) -> np.ndarray:
    """BET's mask of ``data`` (largest component, holes filled), fitted once per process
    for each image content, voxel size (mm) and iteration count."""
    import hashlib

    key = (hashlib.blake2b(np.ascontiguousarray(data).tobytes(), digest_size=16).digest(),
           data.shape, tuple(np.round(spacing, 6)), iterations)
    if key not in _COMPUTED:
        while len(_COMPUTED) >= _COMPUTED_KEPT:
            del _COMPUTED[next(iter(_COMPUTED))]
        _COMPUTED[key] = _largest_filled(_extract(data, spacing, iterations, source))
    return _COMPUTED[key].copy()


def _extract(data: np.ndarray, spacing: np.ndarray, iterations: int, source: str = "image"
             ) -> np.ndarray:
    """BET mask of ``data`` (voxel sizes ``spacing`` in mm) on the input grid.

    Raises:
        InputError: BET failed on the image (named ``source``).
    """
    import contextlib
    import io

    from brainextractor import BrainExtractor
    from scipy import ndimage

    # BET's thresholds and centre of gravity assume a background near 0: an image stored
    # with an offset (negative values) is read from its floor (0.5th percentile) up.
    floor = min(float(np.percentile(data, FLOOR_PERCENTILE)), 0.0)
    work = ndimage.zoom(np.clip(data - floor, 0.0, None), spacing / WORK_SPACING_MM, order=1)
    image = nifti_image(work, np.diag([WORK_SPACING_MM] * 3 + [1.0]))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the library prints its progress
            extractor = BrainExtractor(image, bt=FRACTIONAL_THRESHOLD)
            extractor.run(iterations=iterations)
            work_mask = np.asarray(extractor.compute_mask(), dtype=np.float32)
    except (ArithmeticError, ValueError, IndexError) as error:
        raise InputError(f"{source}: expected brain extraction (BET) to find the brain, found "
                         f"it failing ({type(error).__name__}: {error}); give the dataset a "
                         "brain mask (*_desc-brain_mask.nii.gz in derivatives)") from error
    factors = np.array(data.shape) / np.array(work_mask.shape)
    mask = ndimage.zoom(work_mask, factors, order=1, output=np.float32) > 0.5
    if mask.shape != data.shape:  # zoom rounds the output shape; never off by more than 1
        pad = [(0, max(0, d - m)) for d, m in zip(data.shape, mask.shape, strict=True)]
        mask = np.pad(mask, pad)[: data.shape[0], : data.shape[1], : data.shape[2]]
    return mask


def _largest_filled(mask: np.ndarray) -> np.ndarray:
    """Largest 26-connected component of ``mask`` with its holes filled (empty stays empty)."""
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return mask.astype(bool)
    largest = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    return ndimage.binary_fill_holes(labels == largest)


def _description(iterations: int) -> str:
    """One line naming the library, its version and the parameters used."""
    from importlib.metadata import version

    return (
        f"computed: brainextractor {version('brainextractor')} BET surface model "
        f"(Smith 2002), bt={FRACTIONAL_THRESHOLD}, {iterations} iterations, "
        f"{WORK_SPACING_MM} mm isotropic working grid; holes filled, largest component kept"
    )
