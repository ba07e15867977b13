"""Normal FLAIR hyperintensities of the healthy brain, added to the phantom's tissue.

A healthy brain is not uniformly dark on FLAIR outside the cortex. Axial fast FLAIR of
40 healthy volunteers (Neuroradiology 1997;39:243, doi:10.1007/s002340050402) showed
raised signal along the corticospinal tract at the internal capsule in every subject,
extending 0.5-5.5 cm (median 2.5 cm) towards the centrum semiovale and the pons; a thin
line of high signal outlining the third and fourth ventricles in every subject; and caps
at the frontal and occipital horns in 90 % and 77 % (asymmetric in 54 %). 2D FLAIR at 3T
of 22 healthy controls (Neema et al. 2009, AJNR 30:911) found the same capping and
corticospinal-tract hyperintensity, with more hyperintense foci at 3T than at 1.5T. A lesion model
that has never seen these structures marks them as lesions on a real scan.

The structures are defined once on the MNI152 template (:mod:`.template`) from its CSF
and white matter and a few MNI coordinates, and reach each subject through its own
deformation (:func:`.anatomy.source_coordinates`), so they follow its anatomy.
They lengthen T2 only (T1, T2*, PD, chi and ADC unchanged): visible on FLAIR and T2w,
invisible on T1w, R1 and the MRF frames. Per subject, each structure's T2 is the
tissue's times a factor drawn from :data:`T2_FACTOR` (chosen, the sources give no
relaxation values: at the phantom's FLAIR, TE 110 ms, it makes the structure 1.05-1.25
times as bright as the same tissue without it, below the published FLAIR MS lesion/WM
ratios of 1.25-1.9 (``realism.PUBLISHED_RATIOS``)); the corticospinal
hyperintensity's extent along the tract is drawn from 1-6 cm; each cap is present with
the frequency above, drawn per side.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from lesionkit.simulate.variety import axis_world
from lesionkit.volume import mask_box

if TYPE_CHECKING:
    from lesionkit.simulate.tissue import TissueMaps

#: T2 lengthening factor (low, high) of a normal hyperintensity, drawn per structure.
T2_FACTOR = (1.04, 1.15)
#: Frequency of frontal and occipital horn caps, per side (Neuroradiology 1997;39:243).
CAP_FREQUENCY = {"frontal": 0.90, "occipital": 0.77}
#: Extent (cm) along the corticospinal tract, centred on the internal capsule.
CST_EXTENT_CM = (1.0, 6.0)
#: Corticospinal tract (left side, MNI mm): centrum semiovale, corona radiata, posterior
#: limb of the internal capsule, cerebral peduncle, pons; the right is its mirror image.
CST_PATH_MM = ((-26.0, -24.0, 44.0), (-24.0, -20.0, 24.0), (-21.0, -15.0, 6.0),
               (-15.0, -18.0, -12.0), (-9.0, -24.0, -28.0))
#: Index of the internal-capsule point of :data:`CST_PATH_MM` (where extents are centred).
CST_CAPSULE = 2
CST_RADIUS_MM = 3.5
#: Thickness (mm) of the ventricle lining and of a horn cap.
LINING_MM = 2.0
CAP_MM = 4.0
#: Boxes (MNI mm, (low, high) per axis) holding the third and fourth ventricles; midline
#: CSF outside them is the interhemispheric fissure or a cistern.
MIDLINE_VENTRICLES_MM = (((-5, 5), (-20, 2), (-12, 14)), ((-5, 5), (-26, -20), (-8, 4)),
                         ((-10, 10), (-50, -34), (-42, -20)))
#: The cerebral aqueduct (MNI mm, from the posterior commissure to the fourth ventricle):
#: the tissue within :data:`LINING_MM` of its radius is lined too.
AQUEDUCT_MM = ((0.0, -28.0, -4.0), (0.0, -38.0, -20.0))
AQUEDUCT_RADIUS_MM = 1.5
#: Lateral ventricles: deep CSF (over ``LATERAL_DEPTH_MM`` from the brain surface) with
#: |x| in this range (mm) and z above ``LATERAL_MIN_Z_MM`` (the temporal horns left out).
LATERAL_X_MM = (3.0, 35.0)
LATERAL_DEPTH_MM = 20.0
LATERAL_MIN_Z_MM = -5.0
#: The horn tip is the last ``TIP_MM`` of each lateral ventricle along y.
TIP_MM = 6.0
CAPS = ("frontal_left", "frontal_right", "occipital_left", "occipital_right")

__all__ = ["CAPS", "CAP_FREQUENCY", "CST_EXTENT_CM", "T2_FACTOR", "VariantDraw",
           "add_normal_variants", "draw_variants", "template_variants", "variant_fractions"]


#: One subject's draw: ``{structure: T2 factor}`` for the structures present, and the
#: corticospinal extent ``cst_cm`` (cm).
VariantDraw = dict[str, float]


def _in_box(world: list[np.ndarray], box: tuple) -> np.ndarray:
    """Voxels inside a box of world coordinates (mm, (low, high) per axis)."""
    inside = np.ones((1, 1, 1), bool)
    for w, (lo, hi) in zip(world, box, strict=True):
        inside = inside & (w >= lo) & (w <= hi)
    return inside


def _near(target: np.ndarray, tissue: np.ndarray, mm: float) -> np.ndarray:
    """Tissue within ``mm`` of ``target`` (1 mm grid), as a 0..1 fraction (the distance is
    computed in the target's bounding box only)."""
    out = np.zeros(target.shape, np.float32)
    if not target.any():
        return out
    box = mask_box(target, int(np.ceil(mm)) + 2)
    dist = ndimage.distance_transform_edt(~target[box])
    out[box] = np.clip(mm + 0.5 - dist, 0.0, 1.0) * (dist > 0) * tissue[box]
    return out


def _path_distance(world: list[np.ndarray], path: np.ndarray, shape: tuple[int, ...],
                   reach: float, origin: int = CST_CAPSULE) -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm) of each voxel to a polyline and the arc length (mm, signed, 0 at
    its point ``origin``) of its nearest point, computed within ``reach`` mm of the
    path's bounding box (the distance is infinite beyond)."""
    best = np.full(shape, np.inf, np.float32)
    arc = np.zeros(shape, np.float32)
    axes = [w.ravel() for w in world]
    index = np.array([[np.searchsorted(w, path[:, i].min() - reach),
                       np.searchsorted(w, path[:, i].max() + reach, side="right") - 1]
                      for i, w in enumerate(axes)]).T
    lo, hi = np.maximum(index.min(0), 0), np.minimum(index.max(0) + 1, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    grid = [np.broadcast_to(w[b].reshape([-1 if k == i else 1 for k in range(3)]),
                            best[box].shape)
            for i, (w, b) in enumerate(zip(axes, box, strict=True))]
    near, along = best[box], arc[box]
    lengths = np.linalg.norm(np.diff(path, axis=0), axis=1)
    start = np.concatenate([[0.0], np.cumsum(lengths)]) - np.sum(lengths[:origin])
    for a, b, s0, n in zip(path[:-1], path[1:], start[:-1], lengths, strict=True):
        d = (b - a) / n
        t = np.clip(sum((g - p) * q for g, p, q in zip(grid, a, d, strict=True)), 0, n)
        dist = np.sqrt(sum((g - (p + t * q)) ** 2 for g, p, q in zip(grid, a, d, strict=True)))
        closer = dist < near
        near = np.where(closer, dist, near)
        along = np.where(closer, s0 + t, along)
    best[box], arc[box] = near, along
    return best, arc


@lru_cache(maxsize=1)
def template_variants() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The structures on the 1 mm template: 0..1 fractions of ``lining``, ``cst`` and
    each of :data:`CAPS`, plus ``cst_arc`` (mm along the tract from the capsule), and
    the template affine."""
    from lesionkit.simulate.template import load_template

    t = load_template()
    world = axis_world(t.shape, t.affine, np.float32)
    tissue = np.clip(t.gm + t.wm, 0.0, 1.0)
    csf = t.csf > 0.5
    midline = np.zeros(t.shape, bool)
    for box in MIDLINE_VENTRICLES_MM:
        midline |= _in_box(world, box)
    aqueduct, _ = _path_distance(world, np.array(AQUEDUCT_MM), t.shape,
                                 AQUEDUCT_RADIUS_MM + 2, origin=0)
    out = {"lining": _near((csf & midline) | (aqueduct <= AQUEDUCT_RADIUS_MM), tissue,
                           LINING_MM)}
    depth = ndimage.distance_transform_edt(t.mask)
    x, y = (np.broadcast_to(w, t.shape) for w in world[:2])
    lo, hi = LATERAL_X_MM
    deep = (csf & (depth > LATERAL_DEPTH_MM) & (np.abs(x) >= lo) & (np.abs(x) <= hi)
            & (world[2] >= LATERAL_MIN_Z_MM))
    for side, sign in (("left", -1), ("right", 1)):
        labels, n = ndimage.label(deep & (np.sign(x) == sign))
        sizes = ndimage.sum(np.ones(t.shape), labels, range(1, n + 1))
        half = labels == int(np.argmax(sizes)) + 1  # the largest: the lateral ventricle
        ys = y[half]
        tips = {"frontal": y >= ys.max() - TIP_MM, "occipital": y <= ys.min() + TIP_MM}
        for horn, tip in tips.items():
            out[f"{horn}_{side}"] = _near(half & tip, tissue, CAP_MM)
    wm = np.clip(t.wm, 0.0, 1.0)
    cst = np.zeros(t.shape, np.float32)
    arc = np.zeros(t.shape, np.float32)
    for sign in (1, -1):
        path = np.array(CST_PATH_MM) * np.array([sign, 1, 1])
        dist, along = _path_distance(world, path, t.shape, CST_RADIUS_MM + 2)
        frac = np.clip(CST_RADIUS_MM + 0.5 - dist, 0.0, 1.0)
        arc = np.where(frac > cst, along, arc)
        cst = np.maximum(cst, frac)
    out["cst"] = (cst * wm).astype(np.float32)
    out["cst_arc"] = arc
    return out, t.affine


def draw_variants(rng: np.random.Generator) -> VariantDraw:
    """One subject's normal hyperintensities: which are present and their T2 factors."""
    draw = {"lining": rng.uniform(*T2_FACTOR), "cst": rng.uniform(*T2_FACTOR),
            "cst_cm": rng.uniform(*CST_EXTENT_CM)}
    for cap in CAPS:
        present = rng.random() < CAP_FREQUENCY[cap.split("_")[0]]
        factor = rng.uniform(*T2_FACTOR)
        if present:
            draw[cap] = factor
    return draw


def variant_fractions(coords: np.ndarray, draw: VariantDraw) -> dict[str, np.ndarray]:
    """Fractions of the drawn structures on a subject grid.

    Args:
        coords: template (MNI) coordinates (mm) sampled by each subject voxel, shape
            (3, *grid), as from :func:`.anatomy.source_coordinates`.
        draw: the subject's :func:`draw_variants`.

    Returns:
        ``{structure: float32 0..1 map}`` for the structures present.
    """
    maps, affine = template_variants()
    ijk = np.stack([(coords[i] - np.float32(affine[i, 3])) / np.float32(affine[i, i])
                    for i in range(3)])

    def sample(name: str) -> np.ndarray:
        return ndimage.map_coordinates(maps[name], ijk, order=1, mode="constant")

    out = {}
    for name in draw:
        if name == "cst_cm":
            continue
        frac = sample(name)
        if name == "cst":
            half = 5.0 * draw["cst_cm"]  # half the extent, mm
            frac = frac * np.clip(half + 0.5 - np.abs(sample("cst_arc")), 0.0, 1.0)
        out[name] = frac.astype(np.float32)
    return out


def add_normal_variants(maps: TissueMaps, coords: np.ndarray, draw: VariantDraw
                        ) -> TissueMaps:
    """Lengthen T2 by each present structure's factor, in proportion to its fraction
    (rates mixed: ``1/T2 = (1 - f)/T2 + f/(k T2)``)."""
    rate = 1.0 / maps.t2_ms
    for name, frac in variant_fractions(coords, draw).items():
        rate = rate * (1.0 - frac + frac / np.float32(draw[name]))
    return replace(maps, t2_ms=(1.0 / rate).astype(np.float32))
