"""Real MS lesion shapes for the phantom: a library of binary lesion masks in MNI space.

A library is a folder of binary masks in MNI space (.nii/.nii.gz, any grid, affine in
the header); the shipped one (``lesionmasks/``) holds the consensus masks of 27 MS
patients (Lesjak et al., Neuroinformatics 2018; CC BY, see its README.md). A library
lesion is a 26-connected component of at least ``MIN_VOLUME_MM3``.

Per subject (:func:`draw_subject_ms_lesions`) each of the drawn lesions comes from the
library with probability ``LIBRARY_FRACTION``: components of one random patient mask,
drawn without replacement with probability proportional to volume (a patient's large
confluent lesions are usually among them, so the load follows that patient's), or all
of them (``whole_mask``). The other lesions are parametric (:mod:`.lesions_ms`), placed
clear of them. A component moves through the subject's own deformation: a subject voxel
takes the linearly interpolated mask at the template point it samples, averaged over
``k^3`` points per voxel (``k`` = voxel size / mask voxel size), i.e. partial-volume
edges about one voxel wide. As for parametric lesions the fraction is then limited to
the white-matter probability inside the brain; a component left with under
``MIN_VOLUME_MM3`` is dropped. Tissue values and rim status are drawn as for parametric
lesions; rim+ needs a 6 mm ball inside the lesion (``RIM_MIN_DIAMETER_MM``), a rim+ draw
on a smaller lesion moves to a random larger rim- lesion of the subject if there is one,
else (with ``keep_rim_fraction``, the rim-classify cohort) to a parametric one.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage

from lesionkit.simulate.anatomy import Anatomy, DeformationParams, source_coordinates
from lesionkit.simulate.lesionmasks import (
    MIN_VOLUME_MM3,
    SHIPPED_LIBRARY,
    LesionLibrary,
    LibraryComponent,
    LibraryLesion,
    LibraryMask,
    core_fraction,
    load_lesion_library,
    resolve_lesion_library,
)
from lesionkit.simulate.lesions import (
    FractionMaps,
    Lesion,
    label_map,
    lesion_table_rows,
    shape_crop,
    spacing_mm,
    voxel_to_world,
    world_to_voxel,
)
from lesionkit.simulate.lesions_ms import (
    RIM_FRACTION,
    RIM_MIN_DIAMETER_MM,
    UNIFORM_PARAMAGNETIC_FRACTION,
    draw_ms_lesion_params,
    draw_ms_lesions,
    draw_rim_properties,
    draw_rim_status,
)

#: Probability that a lesion of a subject comes from the library (else parametric).
LIBRARY_FRACTION = 0.5
__all__ = ["LIBRARY_FRACTION", "MIN_VOLUME_MM3", "SHIPPED_LIBRARY", "LesionLibrary",
           "LibraryComponent", "LibraryLesion", "LibraryMask", "core_fraction",
           "draw_library_lesions", "draw_subject_ms_lesions", "give_rims", "load_lesion_library",
           "ms_lesion_fractions", "ms_table_rows", "resolve_lesion_library",
           "source_coordinates"]


def _resample(comp: LibraryComponent, coords: np.ndarray, affine: np.ndarray, reach: float
              ) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Partial-volume fraction of a component on the subject grid, in its box."""
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    world = voxel_to_world(comp.affine, corners * (np.array(comp.mask.shape) - 1))
    ijk = world_to_voxel(affine, np.concatenate([world - reach, world + reach]))
    shape = np.array(coords.shape[1:])
    lo = np.clip(np.floor(ijk.min(0)).astype(int), 0, shape)
    hi = np.clip(np.ceil(ijk.max(0)).astype(int) + 1, 0, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    src = np.moveaxis(coords[(slice(None), *box)], 0, -1).astype(float)
    h = spacing_mm(affine)
    k = max(1, round(float(h.min() / spacing_mm(comp.affine).min())))
    steps = ((np.arange(k) + 0.5) / k - 0.5)
    mask = comp.mask.astype(np.float32)
    frac = np.zeros(src.shape[:3], np.float32)
    for o in np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3):
        vox = world_to_voxel(comp.affine, src + o * h)
        frac += ndimage.map_coordinates(mask, np.moveaxis(vox, -1, 0), order=1, cval=0.0)
    frac /= k**3
    nz = np.argwhere(frac > 1e-3)
    if not len(nz):
        return None
    lo2 = np.maximum(nz.min(0) - 1, 0)
    hi2 = np.minimum(nz.max(0) + 2, frac.shape)
    inner = tuple(slice(int(a), int(b)) for a, b in zip(lo2, hi2, strict=True))
    box = tuple(slice(b.start + i.start, b.start + i.stop) for b, i in zip(box, inner,
                                                                            strict=True))
    return box, np.ascontiguousarray(frac[inner])


def _moments(f: np.ndarray, box: tuple[slice, ...], affine: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre (mm), semi-axes (mm, long first) and their directions of a fraction."""
    idx = np.nonzero(f > 0)
    w = f[idx].astype(float)
    xyz = voxel_to_world(affine, np.stack(idx, -1) + np.array([b.start for b in box]))
    centre = (w[:, None] * xyz).sum(0) / w.sum()
    d = xyz - centre
    cov = (w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(0) / w.sum()
    vals, vecs = np.linalg.eigh(cov)
    h = float(np.prod(spacing_mm(affine)) ** (1 / 3))
    semi = np.maximum(np.sqrt(5.0 * np.clip(vals - h**2 / 12, 0, None)), h / 2)[::-1]
    rot = vecs[:, ::-1].copy()
    if np.linalg.det(rot) < 0:
        rot[:, 2] = -rot[:, 2]
    return centre, semi, rot


def _rim_status(rng: np.random.Generator, eligible: list[bool], rim_fraction: float,
                uniform_fraction: float) -> tuple[list[tuple[bool, bool]], int]:
    """Rim status drawn per lesion; rim+ draws on lesions too small for a shell move to a
    random eligible rim- lesion (which then is not uniformly paramagnetic). Returns the
    statuses and the number of rim+ draws that found no eligible lesion."""
    status = [draw_rim_status(rng, rim_fraction, uniform_fraction) for _ in eligible]
    free = [k for k, (rim, _) in enumerate(status) if eligible[k] and not rim]
    unplaced = 0
    for k, (rim, _) in enumerate(status):
        if rim and not eligible[k]:
            status[k] = (False, False)
            if free:
                status[free.pop(int(rng.integers(len(free))))] = (True, False)
            else:
                unplaced += 1
    return status, unplaced


def draw_library_lesions(
    rng: np.random.Generator, anatomy: Anatomy, library: LesionLibrary, coords: np.ndarray,
    n: int, rim_fraction: float = RIM_FRACTION,
    uniform_paramagnetic_fraction: float = UNIFORM_PARAMAGNETIC_FRACTION,
    first_label: int = 1, whole_mask: bool = False,
) -> list[LibraryLesion]:
    """Draw ``n`` library lesions (components of one random mask) on a subject grid.

    Args:
        rng: seeded generator (the draws do not depend on the grid).
        anatomy: the subject's anatomy; lesions are limited to its white matter.
        library: the lesion library.
        coords: :func:`source_coordinates` of the subject (same grid as ``anatomy``).
        n: number of components (all of a smaller mask), drawn with probability
            proportional to volume; ignored with ``whole_mask``.
        rim_fraction, uniform_paramagnetic_fraction: as in
            :func:`~.lesions_ms.draw_ms_lesions`.
        first_label: label of the first lesion; labels are consecutive.
        whole_mask: use every component of the drawn mask.

    Returns:
        Lesions of kind "ms" with ``properties["location"] == "library"`` and the mask
        name in ``properties["source"]``; components left with under ``MIN_VOLUME_MM3``
        in white matter are dropped.
    """
    return _draw_library(rng, anatomy, library, coords, n, rim_fraction,
                         uniform_paramagnetic_fraction, first_label, whole_mask)[0]


def _draw_library(
    rng: np.random.Generator, anatomy: Anatomy, library: LesionLibrary, coords: np.ndarray,
    n: int, rim_fraction: float, uniform_paramagnetic_fraction: float, first_label: int,
    whole_mask: bool,
) -> tuple[list[LibraryLesion], int]:
    """:func:`draw_library_lesions`, and the number of rim+ draws that no kept lesion
    holds (no lesion with room for a shell, or the lesion dropped outside white matter)."""
    if n <= 0 and not whole_mask:
        return [], 0
    mask = library.masks[int(rng.integers(len(library.masks)))]
    comps = mask.components
    volumes = np.array([c.volume_mm3 for c in comps])
    chosen = (range(len(comps)) if whole_mask else sorted(
        rng.choice(len(comps), min(n, len(comps)), replace=False, p=volumes / volumes.sum())))
    chosen = [comps[int(i)] for i in chosen]
    eligible = [c.depth_mm >= RIM_MIN_DIAMETER_MM / 2 for c in chosen]
    status, unplaced = _rim_status(rng, eligible, rim_fraction, uniform_paramagnetic_fraction)
    props = [draw_ms_lesion_params(rng, rim, uniform)[1] for rim, uniform in status]
    within = np.clip(anatomy.wm, 0.0, 1.0) * anatomy.mask
    shift = voxel_to_world(anatomy.affine, np.argwhere(anatomy.mask)) - coords[:, anatomy.mask].T
    reach = float(np.linalg.norm(shift, axis=1).max()) + 2 * float(max(anatomy.spacing))
    voxel_mm3 = float(abs(np.linalg.det(anatomy.affine[:3, :3])))
    lesions: list[LibraryLesion] = []
    for comp, (rim, uniform), p in zip(chosen, status, props, strict=True):
        crop = _resample(comp, coords, anatomy.affine, reach)
        clipped = None if crop is None else crop[1] * within[crop[0]]
        if clipped is None or float(clipped.sum()) * voxel_mm3 < MIN_VOLUME_MM3:
            unplaced += rim
            continue
        box, frac = crop
        centre, semi, rot = _moments(clipped, box, anatomy.affine)
        lesions.append(LibraryLesion(
            label=first_label + len(lesions), kind="ms",
            centre_mm=tuple(float(c) for c in centre), axes_mm=tuple(float(s) for s in semi),
            rotation=rot, rim=rim, uniform_paramagnetic=uniform,
            properties={**p, "location": "library", "source": mask.name}, box=box,
            fraction=frac))
    return lesions, unplaced


def draw_subject_ms_lesions(
    rng: np.random.Generator, anatomy: Anatomy, n_range: tuple[int, int],
    library: LesionLibrary | None, deformation: DeformationParams | None = None,
    library_fraction: float = LIBRARY_FRACTION, whole_mask: bool = False,
    rim_fraction: float = RIM_FRACTION, keep_rim_fraction: bool = False,
) -> list[Lesion]:
    """The MS lesions of one subject: library lesions first, then parametric ones.

    Without a library this is ``draw_ms_lesions(rng, anatomy, n_range=n_range)``. With
    one, the total number ``n`` is drawn from ``n_range``, ``Binomial(n,
    library_fraction)`` of them come from the library (see module doc) and the rest are
    parametric lesions placed clear of them. ``deformation`` is the subject's (that of
    ``anatomy``; needed with a library). Each lesion is drawn rim+ with probability
    ``rim_fraction``.

    Most library lesions are too small to hold a rim (a 6 mm ball inside), so a rim+ draw
    on one may find no larger rim- library lesion to move to and is lost: the subject
    ends with fewer rim+ lesions than drawn. With
    ``keep_rim_fraction`` each such draw moves on to a random parametric rim- lesion with
    room for a shell (:func:`give_rims`), so rim+ lesions make up about the drawn
    ``rim_fraction`` of all lesions; without it (the default, which other cohorts'
    figures were measured with) they are lost. Either way the same lesions are drawn, in
    the same places with the same values; the rim values drawn for the moved statuses
    come after them from ``rng``, so what the caller draws from it next differs.
    """
    if library is None:
        return draw_ms_lesions(rng, anatomy, n_range=n_range, rim_fraction=rim_fraction)
    if deformation is None:
        raise ValueError("library lesions need the subject's deformation")
    n = int(rng.integers(n_range[0], n_range[1] + 1))
    n_library = int(rng.binomial(n, library_fraction))
    coords = source_coordinates(deformation, float(anatomy.spacing[0]))
    lib, unplaced = _draw_library(rng, anatomy, library, coords, n_library, rim_fraction,
                                  UNIFORM_PARAMAGNETIC_FRACTION, 1, whole_mask)
    rest = n - n_library
    parametric = draw_ms_lesions(rng, anatomy, n_range=(rest, rest), rim_fraction=rim_fraction,
                                 first_label=len(lib) + 1, avoid=lib)
    if keep_rim_fraction and unplaced:
        parametric = give_rims(rng, parametric, unplaced)
    return [*lib, *parametric]


def give_rims(rng: np.random.Generator, lesions: list[Lesion], count: int) -> list[Lesion]:
    """``lesions`` with ``count`` random ones made rim+ (fewer if fewer qualify): those
    rim-, not uniformly paramagnetic and with room for a shell (every diameter at least
    ``RIM_MIN_DIAMETER_MM``); each draws its shell's values as a rim+ lesion does."""
    free = [k for k, les in enumerate(lesions) if not les.rim and not les.uniform_paramagnetic
            and 2 * min(les.axes_mm) >= RIM_MIN_DIAMETER_MM]
    out = list(lesions)
    for k in sorted(rng.choice(len(free), min(count, len(free)), replace=False)):
        les = out[free[int(k)]]
        out[free[int(k)]] = replace(les, rim=True,
                                    properties={**les.properties, **draw_rim_properties(rng)})
    return out


def ms_lesion_fractions(lesions: list[Lesion], anatomy: Anatomy,
                        within: np.ndarray | None = None) -> tuple[FractionMaps, np.ndarray]:
    """:func:`~.lesions.lesion_fractions` for parametric and library lesions alike."""
    if within is None:
        within = np.clip(anatomy.wm, 0.0, 1.0) * anatomy.mask
    within = np.asarray(within, np.float32)
    crops = {}
    for les in lesions:
        if isinstance(les, LibraryLesion):
            box, local = les.box, les.fraction
        else:
            box, local = shape_crop(les, anatomy.shape, anatomy.affine)
        crops[les.label] = (box, local * within[box])
    fractions = FractionMaps(anatomy.shape, crops, limit=within)
    return fractions, label_map(fractions)


def ms_table_rows(lesions: list[Lesion], fractions: FractionMaps, affine: np.ndarray
                  ) -> list[dict]:
    """Lesion table rows whose ``type`` is the location: "library" or the parametric
    "periventricular", "juxtacortical" or "deep"."""
    rows = lesion_table_rows(lesions, fractions, affine)
    for row, les in zip(rows, lesions, strict=True):
        row["type"] = str(les.properties.get("location", les.kind))
    return rows
