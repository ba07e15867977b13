"""Geometry of a subject's images: canonical orientation, one grid, the model's voxel size.

Real scans arrive in any orientation, each modality on its own grid, often with slices of
several millimetres. Before a network sees them every image is reoriented to RAS+
(TorchIO ``ToCanonical``, an exact reordering of voxels), the first input is resampled
to the model's voxel size and every other image onto that grid (TorchIO ``Resample``:
linear for intensities, nearest neighbour for labels). Images are put on one grid by
their affines, which is right when the scanner stored them in one frame; this is
checked by their overlap in world space, and an affine co-registration (dipy) is
available on request. Predictions go back to each input's own grid in ``infer``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lesionkit.io import InputError, world_axes

if TYPE_CHECKING:
    import torch
    import torchio as tio

#: Minimum share of the smaller image's world bounding box that two images of one
#: subject must have in common to be put on one grid by their affines alone.
MIN_OVERLAP = 0.5
#: An input whose field of view holds less of the brain mask than this share is named in
#: a warning (outside it the network reads the input's background).
MIN_BRAIN_COVERAGE = 0.99
#: A voxel edge this many times the model's (and at least 1 mm longer) earns a warning.
THICK_FACTOR = 2.0
#: Mean displacement (mm) between two weighted images put on one grid by their affines,
#: as a rigid co-registration estimates it, that earns a warning / stops the subject.
SHIFT_WARNING_MM = 3.0
SHIFT_ERROR_MM = 10.0
#: Voxel size (mm) of the grid on which that co-registration runs when the images' is finer,
#: and its pyramid's downsampling factors.
CHECK_VOXEL_MM = 2.0
CHECK_FACTORS = (4, 2)


def voxel_size(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel edge lengths (mm) along the world axes x, y, z (RAS order), whatever the
    storage order of the voxel axes (a sagittal and an axial scan give the same answer)."""
    sizes = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
    out = np.empty(3)
    out[world_axes(affine)] = sizes  # a permutation: every entry is set
    return (float(out[0]), float(out[1]), float(out[2]))


def median_voxel_size(affines: Sequence[np.ndarray]) -> tuple[float, float, float]:
    """Median voxel size (mm, RAS order) of several images, rounded to 0.01 mm."""
    sizes = np.median([voxel_size(a) for a in affines], axis=0)
    return (round(float(sizes[0]), 2), round(float(sizes[1]), 2), round(float(sizes[2]), 2))


def world_box(shape: Sequence[int], affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest world coordinates (mm) of an image's voxel centres."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape[:3]], indexing="ij"))
    points = corners.reshape(3, -1)
    world = np.asarray(affine, float)[:3, :3] @ points + np.asarray(affine, float)[:3, 3:]
    return world.min(axis=1), world.max(axis=1)


def overlap(shape_a: Sequence[int], affine_a: np.ndarray, shape_b: Sequence[int],
            affine_b: np.ndarray) -> float:
    """Share (0-1) of the smaller world bounding box that lies inside the other one."""
    (lo_a, hi_a), (lo_b, hi_b) = world_box(shape_a, affine_a), world_box(shape_b, affine_b)
    common = np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0, None).prod()
    smaller = min(np.clip(hi_a - lo_a, 1e-3, None).prod(), np.clip(hi_b - lo_b, 1e-3, None).prod())
    return float(common / smaller)


def same_grid(image: tio.Image, shape: Sequence[int], affine: np.ndarray) -> bool:
    """Whether an image already lies on the grid (shape, affine), within 1e-3 mm."""
    return (tuple(image.spatial_shape) == tuple(shape[:3])
            and np.allclose(image.affine, affine, atol=1e-3))


def canonical(image: tio.Image) -> tio.Image:
    """The image reoriented to RAS+ (voxels reordered, values untouched)."""
    import torchio as tio

    return tio.ToCanonical()(image)


def at_voxel_size(image: tio.Image, spacing: Sequence[float] | None) -> tio.Image:
    """The image resampled to ``spacing`` (mm), or itself when it already has it."""
    if spacing is None or np.allclose(voxel_size(image.affine), spacing, atol=1e-3):
        return image
    import torchio as tio

    return tio.Resample(tuple(float(s) for s in spacing), antialias=True)(image)


def onto_grid(image: tio.Image, reference: tio.Image, where: str, reference_name: str,
              register: bool = False) -> tio.Image:
    """An image of the subject put on the reference image's grid.

    Args:
        image: The image (any grid).
        reference: The image whose grid is wanted.
        where: File of ``image`` (named in errors).
        reference_name: File of ``reference`` (named in errors).
        register: Co-register an intensity image to the reference first (dipy affine
            registration, mutual information); otherwise the affines are trusted.

    Raises:
        InputError: the two images share too little of world space to be the same head
            in one frame (and no registration was asked for).
    """
    import torchio as tio

    shape, affine = reference.spatial_shape, reference.affine
    if same_grid(image, shape, affine):
        return image
    if register and isinstance(image, tio.ScalarImage):
        try:
            return registered(image, reference)
        except (ValueError, np.linalg.LinAlgError) as error:
            raise InputError(f"{where}: expected an image that registers onto {reference_name}"
                             f", found that the affine registration failed ({error})") from error
    shared = overlap(image.spatial_shape, image.affine, shape, affine)
    if shared < MIN_OVERLAP:
        raise InputError(f"{where}: expected the same head as {reference_name} in world space "
                         f"(at least {MIN_OVERLAP:.0%} overlap), found {shared:.0%}; "
                         "co-register the images or pass --register")
    interpolation = "nearest" if isinstance(image, tio.LabelMap) else "linear"
    return tio.Resample((tuple(shape), affine), image_interpolation=interpolation,
                        label_interpolation="nearest", antialias=True)(image)


def mask_onto(mask: np.ndarray, image: tio.Image, reference: tio.Image) -> torch.Tensor:
    """A boolean (X, Y, Z) mask on ``image``'s grid moved onto ``reference``'s grid:
    linear interpolation of its 0/1 values, kept where at least 0.5 (a boundary that
    follows the mask's, not a nearest-neighbour staircase). Returns (1, X, Y, Z) bool."""
    import torch
    import torchio as tio

    values = tio.ScalarImage(tensor=torch.from_numpy(mask[None].astype(np.float32)),
                             affine=image.affine)
    moved = tio.Resample(reference, image_interpolation="linear")(values)
    return moved.data >= 0.5


def misalignment_mm(image: tio.ScalarImage, reference: tio.ScalarImage) -> float:
    """How far apart two images put on one grid by their affines lie, in mm: the mean
    displacement over the reference's head (its voxels above a tenth of its 99th
    percentile) of a rigid co-registration (``dipy.align.affine_registration``, mutual
    information, on a grid of voxels of at least 2 mm, at 4 and 2 times its voxel size, on
    a quarter of the voxels, seeded). About 0 for images of one scanner frame; a head
    that moved between two sequences, or images of two sessions, give millimetres to
    centimetres; NaN where the grid is too small for the coarsest level (fewer than twice
    its factor of voxels along an axis)."""
    import torchio as tio

    if min(voxel_size(reference.affine)) < CHECK_VOXEL_MM:  # fine grids: same answer, slower
        coarse = tio.Resample(CHECK_VOXEL_MM)
        image, reference = coarse(image), coarse(reference)
    static = reference.data.float().mean(0).numpy()
    moving = image.data.float().mean(0).numpy()
    if min(static.shape) < 2 * max(CHECK_FACTORS):  # the coarsest level would be empty
        return float("nan")
    affine = np.asarray(reference.affine, dtype=float)
    matrix = rigid_matrix(moving, affine, static, affine, factors=CHECK_FACTORS,
                          level_iters=(200, 50), sigmas=(3.0, 1.0), sampling_proportion=0.25,
                          pipeline=("translation", "rigid"))
    head = np.argwhere(static > 0.1 * np.percentile(static, 99))[::7]
    world = head @ affine[:3, :3].T + affine[:3, 3]
    moved = world @ matrix[:3, :3].T + matrix[:3, 3]
    return float(np.linalg.norm(moved - world, axis=1).mean()) if len(head) else 0.0


def rigid_matrix(moving: np.ndarray, moving_affine: np.ndarray, static: np.ndarray,
                 static_affine: np.ndarray, *, static_mask: np.ndarray | None = None,
                 factors: Sequence[int] = (4, 2, 1),
                 level_iters: Sequence[int] = (1000, 100, 10),
                 sigmas: Sequence[float] = (3.0, 1.0, 0.0),
                 sampling_proportion: float | None = None,
                 pipeline: Sequence[str] = ("center_of_mass", "translation", "rigid")
                 ) -> np.ndarray:
    """The rigid transform that lays ``moving`` onto ``static``
    (``dipy.align.affine_registration``, mutual information; seeded, quiet).

    Args:
        moving, static: (X, Y, Z) intensities of the same head, each on its own grid.
        moving_affine, static_affine: Their 4x4 voxel-to-world matrices (mm).
        static_mask: Optional (X, Y, Z) mask of ``static``'s voxels that count.
        factors, level_iters, sigmas: The pyramid (downsampling, iterations, smoothing in
            voxels), coarse to fine.
        sampling_proportion: Share of voxels sampled (None: all).
        pipeline: dipy's stages, in order.

    Returns:
        4x4 matrix mapping a world point (mm) of ``static`` to the world point of ``moving``
        that lands there (dipy's convention; ``AffineMap(matrix, ...)`` resamples
        ``moving`` onto ``static``'s grid).
    """
    from dipy.align import affine_registration

    log = logging.getLogger("dipy")  # its step-by-step INFO lines are noise here
    level, state = log.level, np.random.get_state()  # dipy samples with numpy's global RNG
    try:
        log.setLevel(logging.WARNING)
        np.random.seed(0)
        _, matrix = affine_registration(
            np.asarray(moving, np.float32), np.asarray(static, np.float32),
            moving_affine=np.asarray(moving_affine, float),
            static_affine=np.asarray(static_affine, float), pipeline=list(pipeline),
            level_iters=list(level_iters), sigmas=list(sigmas), factors=list(factors),
            sampling_proportion=sampling_proportion,
            static_mask=None if static_mask is None else np.asarray(static_mask, np.int32))
    finally:
        log.setLevel(level)
        np.random.set_state(state)
    return np.asarray(matrix, float)


def registered(image: tio.ScalarImage, reference: tio.Image) -> tio.ScalarImage:
    """An intensity image rigidly then affinely co-registered onto the reference's grid
    (``dipy.align.affine_registration``, mutual information, each channel moved alike)."""
    import torch
    import torchio as tio
    from dipy.align import affine_registration
    from dipy.align.imaffine import AffineMap

    static = reference.data.float().mean(0).numpy()
    moving = image.data.float().numpy()
    _, matrix = affine_registration(
        moving.mean(0), static, moving_affine=image.affine, static_affine=reference.affine,
        pipeline=["center_of_mass", "translation", "rigid", "affine"],
        level_iters=[1000, 100, 10], sigmas=[3.0, 1.0, 0.0], factors=[4, 2, 1])
    mapping = AffineMap(matrix, domain_grid_shape=static.shape,
                        domain_grid2world=reference.affine,
                        codomain_grid_shape=moving.shape[1:], codomain_grid2world=image.affine)
    moved = np.stack([mapping.transform(channel) for channel in moving]).astype(np.float32)
    return tio.ScalarImage(tensor=torch.from_numpy(moved), affine=reference.affine)


def brain_coverage(mask: np.ndarray, mask_affine: np.ndarray, shape: Sequence[int],
                   affine: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Share (0-1) of the mask's voxels whose centres lie inside the field of view of an
    image of ``shape`` and ``affine`` (compared in world coordinates, mm) and, given
    ``valid`` (a boolean array of that shape), on a valid voxel of it (nearest voxel)."""
    from nibabel.affines import apply_affine

    ijk = np.argwhere(np.asarray(mask, bool))
    if len(ijk) == 0:
        return 1.0
    to_image = np.linalg.inv(np.asarray(affine, float)) @ np.asarray(mask_affine, float)
    voxels = apply_affine(to_image, ijk)
    inside = np.all((voxels > -0.5) & (voxels < np.asarray(shape[:3]) - 0.5), axis=1)
    if valid is not None:
        nearest = np.rint(voxels[inside]).astype(int)
        inside[inside] = np.asarray(valid, bool)[tuple(nearest.T)]
    return float(inside.mean())


def coverage_warning(name: str, reference_name: str, share: float, missing: int = 0
                     ) -> str | None:
    """A warning when an input covers less than ``MIN_BRAIN_COVERAGE`` of the brain,
    through its field of view or, with ``missing`` voxels stored as NaN, through those."""
    if share >= MIN_BRAIN_COVERAGE:
        return None
    held = (f"its field of view less its {missing} NaN (no data) voxels holds"
            if missing else "its field of view holds")
    return (f"{name}: {held} {share:.0%} of the brain (the mask on {reference_name}'s "
            "grid); outside it the network reads its background")


def thickness_warning(name: str, spacing: Sequence[float], model: Sequence[float] | None
                      ) -> str | None:
    """A warning when an input's voxels are far coarser than the model's (slices of
    several mm against a 1 mm model): lesions thinner than a slice may be missed."""
    if model is None:
        return None
    coarse = [(s, m) for s, m in zip(spacing, model, strict=True)
              if s > THICK_FACTOR * m and s > m + 1.0]
    if not coarse:
        return None
    worst = max(coarse)
    return (f"{name}: voxels of {' x '.join(f'{s:.2f}' for s in spacing)} mm against the "
            f"model's {' x '.join(f'{m:.2f}' for m in model)} mm (a {worst[0]:.1f} mm edge); "
            "lesions thinner than the slices may be missed")


#: Fewest voxels along any axis of an input's own grid: fewer cannot be smoothed before
#: resampling (ITK's recursive Gaussian needs 4) ...
MIN_VOXELS_PER_AXIS = 4
#: ... and of the first input resampled to the model's voxel size (one voxel is a plane).
MIN_MODEL_VOXELS_PER_AXIS = 2


def check_extent(path: object, shape: Sequence[int], affine: np.ndarray,
                 spacing: Sequence[float] | None) -> None:
    """Refuse an input that is too thin to be a 3D volume on its own grid or on the
    model's (a single slice, a slab of two, or a field of view of a few mm: voxel sizes
    that are not mm).

    Args:
        path: The file, for the message.
        shape: Its (X, Y, Z) voxel counts.
        affine: Its voxel-to-mm affine.
        spacing: The model's voxel size (mm, RAS order), None where it keeps the input's.

    Raises:
        InputError: fewer than ``MIN_VOXELS_PER_AXIS`` voxels along an axis of its grid,
            or than ``MIN_MODEL_VOXELS_PER_AXIS`` of the model's.
    """
    matrix = np.asarray(affine, float)[:3, :3]
    extent = np.linalg.norm(matrix, axis=0) * np.asarray(shape[:3])  # mm along each voxel axis
    along = world_axes(affine)  # the world axis each voxel axis runs along
    on_model = (np.floor(extent / np.asarray(spacing, float)[along] + 1e-3).astype(int)
                if spacing is not None else None)  # as TorchIO's Resample counts them
    counts = [("its grid", tuple(int(n) for n in shape[:3]), MIN_VOXELS_PER_AXIS)]
    counts += ([("the model's grid", tuple(int(n) for n in on_model), MIN_MODEL_VOXELS_PER_AXIS)]
               if on_model is not None else [])
    thin = [(where, n, least) for where, n, least in counts if min(n) < least]
    if thin:
        where, n, least = thin[0]
        raise InputError(
            f"{path}: expected a 3D volume of at least {least} voxels along each axis on "
            f"{where}, found {' x '.join(str(v) for v in n)} (a field of view "
            f"of {' x '.join(f'{v:.3g}' for v in extent)} mm): a single slice or a thin "
            "slab, or voxel sizes in the header that are not mm")
