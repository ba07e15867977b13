"""Anatomical variety of the phantom: head size, smooth deformation and atrophy.

Order of use::

    params = draw_deformation(rng)                  # parameters only (subject's stream)
    anatomy = subject_anatomy(params, spacing_mm)   # lesionkit.simulate.anatomy

Per subject (ranges and sources in docs/phantom.md, "Anatomical variety"): a scale of
0.9-1.1 per axis about the template centre; a smooth random displacement (cubic spline
over a 5 x 6 x 5 control grid, components SD 3 mm, at most 7 mm long); an age-like
atrophy parameter 0-1 that enlarges the lateral ventricles (up to about 2.5 x the
template's, by a fold-free flow that pushes the surrounding tissue outward) and thins
the cortex (up to 0.3 mm, cortical GM turned into CSF at the pial surface).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from lesionkit.simulate.template import Anatomy

SCALE_RANGE = (0.9, 1.1)  # global scale per axis (head size)
DISPLACEMENT_SD_MM = 3.0  # SD of each control-point displacement component
MAX_DISPLACEMENT_MM = 7.0  # cap on the length of the smooth random displacement
MAX_CONTROL_MM = 6.0  # cap on a control displacement's length (the spline overshoots ~20 %)
ATROPHY_RANGE = (0.0, 1.0)  # age-like atrophy parameter, drawn uniformly
VENTRICLE_SMOOTH_MM = 8.0  # Gaussian SD of the ventricle potential of the expanding flow
VENTRICLE_FLOW_MM2 = 105.0  # flow at atrophy 1: lateral ventricles about 2.5 x the template's
CORTICAL_THINNING_MM = 0.3  # cortex turned into CSF at atrophy 1
FLOW_STEPS = 8  # Euler steps of the ventricle flow


@dataclass(frozen=True)
class DeformationParams:
    """One subject's anatomical variation (see :func:`draw_deformation` for the ranges).

    Attributes:
        control_mm: displacements (mm) at a coarse control grid, shape (3, a, b, c),
            spanning the template's field of view; interpolated cubically in between.
        scale: global scale about the template centre (1 = none), one number or one per
            axis (x, y, z).
        atrophy: age-like atrophy, 0 (the template) to 1 (lateral ventricles about 2.5 x
            the template's, cortex 0.3 mm thinner).
    """

    control_mm: np.ndarray
    scale: float | tuple[float, float, float]
    atrophy: float = 0.0

    @property
    def scales(self) -> np.ndarray:
        """Scale per axis (x, y, z)."""
        return np.broadcast_to(np.asarray(self.scale, np.float64), (3,)).copy()

    @property
    def ventricle_flow_mm2(self) -> float:
        """Duration of the ventricle-expanding flow (mm^2, see :func:`ventricle_displacement`)."""
        return self.atrophy * VENTRICLE_FLOW_MM2

    @property
    def cortical_thinning_mm(self) -> float:
        """Thickness of cortex (mm) turned into CSF at the pial surface."""
        return self.atrophy * CORTICAL_THINNING_MM


def draw_deformation(
    rng: np.random.Generator,
    control_shape: tuple[int, int, int] = (5, 6, 5),
    displacement_mm: float = DISPLACEMENT_SD_MM,
    scale_range: tuple[float, float] = SCALE_RANGE,
    max_control_mm: float = MAX_CONTROL_MM,
    atrophy_range: tuple[float, float] = ATROPHY_RANGE,
) -> DeformationParams:
    """Draw one subject's anatomical variation (parameters only; applied by
    :func:`lesionkit.simulate.anatomy.subject_anatomy`).

    Args:
        rng: the subject's anatomy stream.
        control_shape: control grid of the smooth displacement (over the template).
        displacement_mm: SD (mm) of each displacement component at a control point.
        scale_range: uniform range of the scale along each axis.
        max_control_mm: longer control displacements are shortened to this (mm); the
            interpolated field is capped at 7 mm (:func:`smooth_displacement`).
        atrophy_range: uniform range of the atrophy parameter.
    """
    control = rng.normal(0.0, displacement_mm, size=(3, *control_shape))
    length = np.linalg.norm(control, axis=0)
    control = control * np.minimum(1.0, max_control_mm / np.maximum(length, 1e-9))
    scale = tuple(float(v) for v in rng.uniform(*scale_range, size=3))
    return DeformationParams(control, scale, float(rng.uniform(*atrophy_range)))


def axis_world(shape: tuple[int, ...], affine: np.ndarray, dtype: type | None = None
               ) -> list[np.ndarray]:
    """World coordinate (mm) of the grid lines along each axis of an axis-aligned grid,
    each shaped to broadcast along its own axis (``n`` long on axis ``i``, 1 elsewhere).

    ``dtype``: of the voxel indices before scaling (None: NumPy's integer default)."""
    if not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3]))):
        raise ValueError("the phantom anatomy needs an axis-aligned (diagonal) affine")
    return [(affine[i, i] * np.arange(n, dtype=dtype) + affine[i, 3]).reshape(
        [-1 if k == i else 1 for k in range(len(shape))]) for i, n in enumerate(shape)]


def _axis_coords(anatomy: Anatomy) -> list[np.ndarray]:
    """World coordinate (mm) of the grid lines along each axis, 1-D (:func:`axis_world`)."""
    return [w.ravel() for w in axis_world(anatomy.shape, anatomy.affine)]


def smooth_displacement(anatomy: Anatomy, params: DeformationParams,
                        max_mm: float = MAX_DISPLACEMENT_MM) -> np.ndarray:
    """The smooth random displacement (mm, float32, shape (3, *anatomy.shape)).

    Cubic-spline interpolation of the control displacements over the template's field of
    view; where the spline overshoots, vectors longer than ``max_mm`` are shortened to it.
    """
    from lesionkit.simulate.signal import separable_interpolate
    from lesionkit.simulate.template import load_template

    template = load_template()
    t = template.affine
    ctrl = params.control_mm.shape[1:]
    ccoords = [(w - t[i, 3]) / t[i, i] / (template.shape[i] - 1) * (ctrl[i] - 1)
               for i, w in enumerate(_axis_coords(anatomy))]
    disp = np.stack([separable_interpolate(params.control_mm[i], ccoords) for i in range(3)])
    length = np.sqrt((disp**2).sum(0))
    return (disp * np.minimum(1.0, max_mm / np.maximum(length, 1e-9))).astype(np.float32)


@lru_cache(maxsize=1)
def _ventricle_gradient() -> tuple[np.ndarray, np.ndarray]:
    """Gradient (1/mm) of the template's smoothed lateral-ventricle mask (peak 1), on the
    2 mm template grid, and that grid's affine."""
    from lesionkit.simulate.lesions import ventricles
    from lesionkit.simulate.template import template_at

    coarse = template_at(2.0)
    phi = ndimage.gaussian_filter(ventricles(coarse).astype(np.float32),
                                  VENTRICLE_SMOOTH_MM / 2.0)
    phi /= max(float(phi.max()), 1e-6)
    return np.stack(np.gradient(phi, 2.0)).astype(np.float32), coarse.affine


def _sample(field: np.ndarray, affine: np.ndarray, world: np.ndarray) -> np.ndarray:
    """A (3, ...) field on an axis-aligned grid, sampled linearly at world points (3, ...)."""
    vox = [(world[i] - affine[i, 3]) / affine[i, i] for i in range(3)]
    return np.stack([ndimage.map_coordinates(f, vox, order=1, mode="nearest") for f in field])


def ventricle_displacement(flow_mm2: float) -> tuple[np.ndarray, np.ndarray]:
    """Template-space displacement (mm) that enlarges the lateral ventricles, on a 4 mm grid.

    A point moves for ``flow_mm2`` along the gradient of the template's ventricle mask
    smoothed with a Gaussian of 8 mm SD (Euler steps): sampling the template there pulls
    the ventricles outward, pushing the surrounding tissue away from them. A gradient
    flow is one-to-one (no folding) for any duration; the displacement fades within a few
    cm of the ventricles, so the brain outline stays.

    Returns:
        ``(displacement, affine)``: float32 (3, *grid) in mm and the 4 mm grid's affine.
    """
    from lesionkit.simulate.template import template_at

    grid = template_at(4.0)
    start = np.stack(np.meshgrid(*_axis_coords(grid), indexing="ij")).astype(np.float32)
    if flow_mm2 <= 0:
        return np.zeros_like(start), grid.affine
    grad, g_affine = _ventricle_gradient()
    point = start.copy()
    for _ in range(FLOW_STEPS):
        point += np.float32(flow_mm2 / FLOW_STEPS) * _sample(grad, g_affine, point)
    return point - start, grid.affine


def source_points(anatomy: Anatomy, params: DeformationParams) -> np.ndarray:
    """Template world point (mm) each voxel of ``anatomy``'s grid samples (3, *shape).

    ``y = c + (x + d(x) - c) / s`` with ``c`` the template centre, ``d`` the smooth
    displacement and ``s`` the scale per axis; then, with atrophy, ``y + v(y)`` with
    ``v`` the ventricle displacement.
    """
    from lesionkit.simulate.template import load_template

    template = load_template()
    t = template.affine
    centre = [t[i, i] * (template.shape[i] - 1) / 2 + t[i, 3] for i in range(3)]
    disp = smooth_displacement(anatomy, params)
    scales = params.scales
    for i, x in enumerate(_axis_coords(anatomy)):
        x = x.reshape([-1 if k == i else 1 for k in range(3)]).astype(np.float32)
        disp[i] = (x + disp[i] - centre[i]) / np.float32(scales[i]) + np.float32(centre[i])
    v, v_affine = ventricle_displacement(params.ventricle_flow_mm2)
    ijk = np.argwhere(np.abs(v).max(0) > 1e-4)  # sample only where it moves points
    if len(ijk):
        lo, hi = (np.diag(v_affine)[:3] * ijk.min(0) + v_affine[:3, 3],
                  np.diag(v_affine)[:3] * ijk.max(0) + v_affine[:3, 3])
        inside = np.all((disp >= lo[:, None, None, None]) & (disp <= hi[:, None, None, None]),
                        axis=0)
        disp[:, inside] += _sample(v, v_affine, disp[:, inside])
    return disp


def thin_cortex(anatomy: Anatomy, thinning_mm: float) -> Anatomy:
    """Move the tissue surface ``thinning_mm`` into the cortex, cortical GM becoming CSF.

    To first order a surface shift ``t`` lowers the tissue fraction ``T = gm + wm`` by
    ``t |grad T|`` (mm^-1); that amount, at most the voxel's cortical GM, turns into CSF,
    so GM + WM + CSF per voxel, the mask and the deep GM are kept.
    """
    if thinning_mm <= 0:
        return anatomy
    tissue = anatomy.gm + anatomy.wm
    slope = np.sqrt(sum(g**2 for g in np.gradient(tissue, *anatomy.spacing)))
    deep_amount = anatomy.gm * anatomy.deep_gm
    loss = np.minimum(np.float32(thinning_mm) * slope, anatomy.gm - deep_amount)
    gm = anatomy.gm - loss
    deep = np.where(gm > 1e-6, np.clip(deep_amount / np.maximum(gm, 1e-6), 0.0, 1.0), 0.0)
    return replace(anatomy, gm=gm.astype(np.float32), csf=(anatomy.csf + loss).astype(
        np.float32), deep_gm=deep.astype(np.float32))
