"""A second visit of an MS phantom subject: lesions that stay, grow, shrink, resolve or
appear, and a head that lies elsewhere in the scanner.

``lesionkit simulate mrf-lesion DIR --follow-up`` writes each subject's first visit as
``ses-1`` (the cohort's images and truth) and a second visit as ``ses-2`` (FLAIR, T1w and
truth) of the same anatomy and tissue, with the subject's lesions evolved:

- each lesion of the first visit stays (probability ``FATES["stable"]``), grows by 2-4
  mm at its edge (enlarging), loses 2-4 mm of its edge (shrinking; a lesion that would
  vanish is resolved instead) or resolves (gone at the second visit);
- 0-3 new parametric MS lesions appear, clear of the existing ones;
- the second visit is acquired with the head turned by up to 3 degrees about each axis
  and moved by up to 10 mm along each (the two real patients' heads lay about 10 mm
  apart between their visits; docs/real-data.md), its images stored on the same scanner
  grid, so the two visits line up only after co-registration, with the same protocol and
  scanner fields.

These rates are the phantom's choice for an active MS patient between two yearly scans,
not published frequencies. Truth of the second visit (under ``derivatives/phantom``):
the lesion mask and label map as for the first, ``label-change_dseg`` (1 new, 2
enlarging, 3 shrinking, 4 resolved: the voxels that changed, at the 0.5 fraction of
either visit) on the second visit's grid, its sidecar's ``HeadMotion`` (the 4x4 rigid
transform, world mm, that took a point of the head at the first visit to the second),
and ``sub-XX_ses-2_changes.tsv`` (one row per lesion of either visit: its fate and its
volume at both visits, mL).
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import numpy as np
from scipy import ndimage

from lesionkit.changes import CHANGE_CODES
from lesionkit.simulate.lesions import FractionMaps, Lesion
from lesionkit.simulate.signal import reslice
from lesionkit.simulate.template import Anatomy
from lesionkit.simulate.tissue import TissueMaps

#: Probability of each fate of a first-visit lesion.
FATES = {"stable": 0.7, "enlarging": 0.12, "shrinking": 0.1, "resolved": 0.08}
#: Width (mm) an enlarging lesion gains, or a shrinking one loses, at its edge.
EDGE_MM = (2.0, 4.0)
#: New lesions at the second visit (inclusive range).
NEW_LESIONS = (0, 3)
#: Largest head rotation (degrees, about each axis) and shift (mm, along each axis).
MAX_ROTATION_DEG = 3.0
MAX_SHIFT_MM = 10.0


def _edge_voxels(rng: np.random.Generator, spacing: float) -> int:
    return max(1, round(float(rng.uniform(*EDGE_MM)) / spacing))


def _grown(local: np.ndarray, voxels: int, limit: np.ndarray) -> np.ndarray:
    """A lesion's fractions grown by ``voxels`` at its edge (a dilated core, softened by
    one voxel), within the tissue it may occupy."""
    core = ndimage.binary_dilation(local >= 0.5, iterations=voxels)
    soft = ndimage.gaussian_filter(core.astype(np.float32), 0.6)
    return np.maximum(local, np.minimum(soft, limit)).astype(np.float32)


def _shrunk(local: np.ndarray, voxels: int) -> np.ndarray:
    """A lesion's fractions with ``voxels`` of its edge gone (an eroded core, softened)."""
    core = ndimage.binary_erosion(local >= 0.5, iterations=voxels)
    soft = ndimage.gaussian_filter(core.astype(np.float32), 0.6)
    return np.minimum(local, soft).astype(np.float32)


def _padded(box: tuple[slice, ...], pad: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n))
                 for s, n in zip(box, shape, strict=True))


def evolve(rng: np.random.Generator, lesions: list[Lesion], fractions: FractionMaps,
           anatomy: Anatomy) -> tuple[list[Lesion], FractionMaps, dict[int, str]]:
    """The lesions of the second visit.

    Args:
        rng: The subject's follow-up stream.
        lesions: First-visit lesions.
        fractions: Their partial-volume fractions.
        anatomy: The subject's anatomy (first-visit position).

    Returns:
        (lesions, fractions, fate by label): the second visit's lesions (resolved ones
        left out, new ones added with labels after the first visit's) and the fate of
        every lesion of either visit ("stable", "enlarging", "shrinking", "resolved" or
        "new").
    """
    from lesionkit.simulate.lesions_ms import draw_ms_lesions

    spacing = float(anatomy.spacing[0])
    limit = np.clip(anatomy.wm, 0.0, 1.0) * anatomy.mask
    names, chances = list(FATES), np.array(list(FATES.values()))
    crops: dict[int, tuple[tuple, np.ndarray]] = {}
    fates: dict[int, str] = {}
    kept: list[Lesion] = []
    for lesion in lesions:
        fate = str(rng.choice(names, p=chances / chances.sum()))
        box, local = fractions.crop(lesion.label)
        voxels = _edge_voxels(rng, spacing)
        if fate == "enlarging":
            box = _padded(box, voxels + 2, anatomy.shape)
            whole = np.zeros([s.stop - s.start for s in box], np.float32)
            inner = fractions.crop(lesion.label)[0]
            whole[tuple(slice(i.start - o.start, i.stop - o.start)
                        for i, o in zip(inner, box, strict=True))] = local
            local = _grown(whole, voxels, limit[box])
        elif fate == "shrinking":
            local = _shrunk(local, voxels)
            if not (local >= 0.5).any():
                fate = "resolved"
        fates[lesion.label] = fate
        if fate != "resolved":
            crops[lesion.label] = (box, local)
            kept.append(lesion)
    first = max((les.label for les in lesions), default=0) + 1
    count = int(rng.integers(NEW_LESIONS[0], NEW_LESIONS[1] + 1))
    new = draw_ms_lesions(rng, anatomy, n_range=(count, count), first_label=first,
                          avoid=lesions) if count else []
    if new:
        from lesionkit.simulate.lesion_library import ms_lesion_fractions

        added, _ = ms_lesion_fractions(new, anatomy)
        for lesion in new:
            crops[lesion.label] = added.crop(lesion.label)
            fates[lesion.label] = "new"
    return [*kept, *new], FractionMaps(anatomy.shape, crops, limit=fractions.limit), fates


def change_truth(before: FractionMaps, after: FractionMaps, fates: dict[int, str]
                 ) -> np.ndarray:
    """The change truth map (int16, :data:`CHANGE_CODES`) on the first visit's grid: new
    lesions where they are (fraction >= 0.5), an enlarging lesion's voxels at 0.5 or more
    now and not before, a shrinking lesion's the other way, a resolved lesion's voxels of
    the first visit."""
    out = np.zeros(before.shape, np.int16)
    for label, fate in fates.items():
        if fate == "stable":
            continue
        now = after[label] >= 0.5 if label in after else np.zeros(before.shape, bool)
        then = before[label] >= 0.5 if label in before else np.zeros(before.shape, bool)
        where = {"new": now, "enlarging": now & ~then, "shrinking": then & ~now,
                 "resolved": then}[fate]
        out[where & (out == 0)] = CHANGE_CODES[fate]
    return out


def change_rows(before: FractionMaps, after: FractionMaps, fates: dict[int, str],
                affine: np.ndarray) -> list[dict[str, Any]]:
    """One row per lesion of either visit: label, fate, volume at each visit (mL, the
    sum of its fractions)."""
    voxel_ml = float(abs(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0
    return [{"label": label, "change": fate,
             "volume_ml_ses-1": round(float(before.crop(label)[1].sum()) * voxel_ml, 4)
             if label in before else 0.0,
             "volume_ml_ses-2": round(float(after.crop(label)[1].sum()) * voxel_ml, 4)
             if label in after else 0.0}
            for label, fate in sorted(fates.items())]


def draw_head_motion(rng: np.random.Generator, centre_mm: np.ndarray) -> np.ndarray:
    """A rigid transform (4x4, world mm) of the head between visits: rotations of up to
    ``MAX_ROTATION_DEG`` about each axis through ``centre_mm``, then a shift of up to
    ``MAX_SHIFT_MM`` along each."""
    from scipy.spatial.transform import Rotation

    angles = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    centre = np.asarray(centre_mm, float)
    matrix[:3, 3] = centre - matrix[:3, :3] @ centre + rng.uniform(-MAX_SHIFT_MM,
                                                                   MAX_SHIFT_MM, 3)
    return matrix


def moved(data: np.ndarray, affine: np.ndarray, motion: np.ndarray, order: int) -> np.ndarray:
    """``data`` as the scanner's grid (``affine``) sees the head after ``motion``: the
    value at a voxel is that of the head's point the motion brought there."""
    return reslice(np.asarray(data, np.float32), affine, data.shape,
                   np.linalg.inv(motion) @ affine, order=order)


def moved_subject(anatomy: Anatomy, maps: TissueMaps, motion: np.ndarray
                  ) -> tuple[Anatomy, TissueMaps]:
    """Anatomy and tissue maps of the moved head on the same grid (linear; the mask
    nearest)."""
    a = anatomy.affine
    anatomy2 = replace(anatomy, **{
        f.name: (moved(getattr(anatomy, f.name), a, motion, 0) > 0.5 if f.name == "mask"
                 else moved(getattr(anatomy, f.name), a, motion, 1))
        for f in fields(anatomy) if f.name != "affine"})
    maps2 = replace(maps, **{f.name: moved(getattr(maps, f.name), a, motion, 1)
                             for f in fields(maps)})
    return anatomy2, maps2
