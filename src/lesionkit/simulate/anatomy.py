"""Phantom anatomy: the MNI152 template (:mod:`.template`) deformed per subject.

The per-subject variation (head size, smooth deformation, atrophy) is drawn in
:mod:`lesionkit.simulate.variety` and applied by :func:`subject_anatomy`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage

from lesionkit.simulate.template import Anatomy, load_template, template_at, to_spacing
from lesionkit.simulate.variety import (
    DeformationParams,
    axis_world,
    draw_deformation,
    source_points,
    thin_cortex,
)

__all__ = ["Anatomy", "DeformationParams", "deform", "draw_deformation", "load_template",
           "source_coordinates", "subject_anatomy", "template_at", "thin_cortex",
           "to_spacing"]


#: The last grid and draw :func:`deform` sampled, with its voxel sources (read-only): a
#: subject's anatomy and its source coordinates deform the same grid by the same draw.
_last_sources: tuple = ()
#: The last :func:`source_coordinates` call (draw, spacing) and its result (read-only).
_last_coordinates: tuple = ()


def deform(anatomy: Anatomy, params: DeformationParams) -> Anatomy:
    """Warp the anatomy by a deformation; the grid (shape, affine) is unchanged.

    The deformation lives in world coordinates over the template's field of view, so the
    same parameters give the same subject at any voxel size; each voxel takes the maps'
    values at its :func:`source_points` (linear interpolation). Geometry only: the
    cortical thinning of atrophy is :func:`thin_cortex`.
    """
    src = _voxel_sources(anatomy, params)

    def warp(v: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(v.astype(np.float32), src, order=1, mode="constant")

    gm, wm, csf, deep = (warp(v) for v in (anatomy.gm, anatomy.wm, anatomy.csf, anatomy.deep_gm))
    mask = warp(anatomy.mask) >= 0.5
    return replace(anatomy, gm=gm, wm=wm, csf=csf, deep_gm=np.clip(deep, 0, 1), mask=mask)


def _voxel_sources(anatomy: Anatomy, params: DeformationParams) -> np.ndarray:
    """The template voxel (fractional index, float32 (3, *shape)) that each voxel of
    ``anatomy``'s grid samples, kept for the next call with the same grid and draw."""
    global _last_sources
    key = (anatomy.shape, np.asarray(anatomy.affine).tobytes())
    last = _last_sources
    if last and last[0] is params and last[1] == key:
        return last[2]
    a = anatomy.affine
    src = source_points(anatomy, params)
    for i in range(3):
        src[i] = (src[i] - np.float32(a[i, 3])) / np.float32(a[i, i])
    src.setflags(write=False)
    _last_sources = (params, key, src)
    return src


def subject_anatomy(params: DeformationParams, spacing_mm: float) -> Anatomy:
    """The deformed, atrophied template at ``spacing_mm`` (deformed and thinned on the
    coarser of 1 mm and the target)."""
    thin = params.cortical_thinning_mm
    if spacing_mm >= 1.0:
        return thin_cortex(deform(template_at(spacing_mm), params), thin)
    return to_spacing(thin_cortex(deform(load_template(), params), thin), spacing_mm)


def source_coordinates(deformation: DeformationParams, spacing: float) -> np.ndarray:
    """Template-space (MNI) world coordinates (mm) sampled by each subject voxel.

    Samples maps of the world coordinates where :func:`deform` samples the template,
    linearly, which returns them exactly; the grid is that of
    ``subject_anatomy(deformation, spacing)``. Returns float32 of shape (3, *grid),
    read-only: a second call with the same draw and spacing returns the same array.
    """
    global _last_coordinates
    last = _last_coordinates
    if last and last[0] is deformation and last[1] == spacing:
        return last[2]
    base = template_at(max(spacing, 1.0))
    src = _voxel_sources(base, deformation)
    world = [ndimage.map_coordinates((w * np.ones(base.shape)).astype(np.float32), src,
                                     order=1, mode="constant")
             for w in axis_world(base.shape, base.affine, np.float32)]
    if spacing < 1.0:
        fine = to_spacing(replace(base, gm=world[0], wm=world[1], csf=world[2]), spacing)
        world = [fine.gm, fine.wm, fine.csf]
    out = np.stack(world)
    out.setflags(write=False)
    _last_coordinates = (deformation, spacing, out)
    return out
