"""Focal cortical dysplasia type II: a subtle patch of the cortical ribbon.

Order of use::

    params = draw_fcd(rng, anatomy)                      # parameters only
    anatomy, maps, fraction = apply_fcd(anatomy, maps, params)

An FCD II follows the cortical ribbon and, more often than not, the bottom of a sulcus
(bottom-of-sulcus dysplasia; e.g. Harvey et al. 2015 Neurology 84:2021): its centre is a
white-matter voxel face-adjacent to the cerebral cortex, drawn among the deeper half of
such junction voxels (distance to the outside of the brain mask, which holds the
sulcal CSF). The lesion is the part of a 10-30 mm ball that lies in the cortex or in the
white matter within 2-5 mm of it (the subcortical band), plus, in some subjects, a
transmantle tail: a patch of the folded ribbon, not a ball. The changes are full
strength in the inner 70 % of the radius and in the band, and fade out with cosine
tapers (half strength at the drawn radius, none at 1.3 radii; over one voxel beyond the
band). Values drawn uniformly per subject:

- the cortex is thickened: white matter within 1.5-3 mm of the cortex turns grey;
- the grey-white junction is blurred: GM and WM fractions are smoothed with a Gaussian
  of 1-2 mm SD (their sum per voxel kept);
- T1 of the white matter rises by 10-30 % of the subject's cortical-GM minus WM T1 at
  the map's field strength (the lesion's WM turns partly grey-matter-like), and T2 of the
  lesion by 7-19 % (modest FLAIR hyperintensity; our choice, of the order of the
  subcortical FLAIR signal change reported for FCD II, e.g. Colombo et al. 2003 AJNR
  24:724, set so that about 70 % of patients' lesions reach a FLAIR contrast-to-noise
  ratio of 2.5, :func:`flair_cnr`, tested; radiologists see 60-70 % of FCD II on
  conventional MRI). At 3T (GM T1 about 1.5 x WM T1) the T1 rise is about 5-15 %, the
  range of METHODS.md; at 7T the GM-WM T1 gap is wider (700 against 500 ms in the middle
  of the ranges), so the same lesion lowers R1 = 1/T1 by a similar, slightly larger
  fraction there;
- transmantle sign (40 % of subjects; seen in roughly a third to two thirds of FCD IIb
  series, e.g. Wang et al. 2013 Epilepsia 54:898): a white-matter tail tapering from
  3-6 mm wide at the patch to 1.5 mm at the nearest lateral ventricle, with the same
  T1 and T2 changes.

Tissue changes act on the given property maps: the pure-tissue values in the patch are
recovered by least squares from the maps and the tissue fractions (exact for maps from
``tissue.tissue_maps``), and the maps change by the difference the new fractions make.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from lesionkit.simulate.lesions import (
    Lesion,
    bounding_box,
    cortex,
    distance_mm,
    fraction_in_box,
    spacing_mm,
    ventricles,
    voxel_to_world,
)
from lesionkit.simulate.tissue import (
    LINEAR_PROPERTIES,
    PROPERTIES,
    RATE_PROPERTIES,
    TissueMaps,
    tissue_fractions,
    tissue_maps,
)

if TYPE_CHECKING:
    from lesionkit.simulate.template import Anatomy

FCD_RANGES: dict[str, tuple[float, float]] = {
    "diameter_mm": (10.0, 30.0),
    "thickening_mm": (1.5, 3.0),
    "blur_sd_mm": (1.0, 2.0),
    "t1_shift": (0.10, 0.30),
    "t2_increase": (0.07, 0.19),
    "subcortical_mm": (2.0, 5.0),
    "transmantle_width_mm": (3.0, 6.0),
}
TRANSMANTLE_PROBABILITY = 0.4
TAPER = 0.3  # the changes fade over +-30 % of the radius around the drawn radius
TRANSMANTLE_END_WIDTH_MM = 1.5
#: Centres are drawn among junction voxels at least this deep (quantile of their distance
#: to the outside of the brain mask): the bottom of sulci rather than gyral crowns.
DEPTH_QUANTILE = 0.5
#: Cortical-GM over WM T1 assumed where the maps do not give it (3T and 7T: about 1.5).
DEFAULT_GM_WM_T1_RATIO = 1.5


@dataclass(frozen=True)
class FCDParams:
    """Parameters of one FCD type II lesion (see the module doc for the values).

    Attributes:
        centre_mm: centre on the grey-white junction (world mm).
        diameter_mm: diameter of the affected ball (mm).
        thickening_mm: how far the cortex grows into the white matter (mm).
        blur_sd_mm: SD of the Gaussian that blurs the junction (mm).
        t1_shift: T1 rise of the white matter in the lesion as a fraction of the
            cortical-GM minus WM T1 of the maps it is applied to (:func:`wm_t1_rise`).
        t2_increase: relative T2 rise of the lesion (FLAIR hyperintensity).
        subcortical_mm: how far below the cortex the lesion reaches into the white
            matter (mm; the subcortical band).
        transmantle_end_mm: nearest ventricle point (world mm), or None without a
            transmantle sign.
        transmantle_width_mm: tube width at the patch (mm).
    """

    centre_mm: tuple[float, float, float]
    diameter_mm: float
    thickening_mm: float
    blur_sd_mm: float
    t1_shift: float
    t2_increase: float
    subcortical_mm: float = 5.0
    transmantle_end_mm: tuple[float, float, float] | None = None
    transmantle_width_mm: float = 0.0

    def as_lesion(self, label: int = 1) -> Lesion:
        """The affected ball as a :class:`Lesion` (kind "fcd"), for geometry and tables."""
        r = self.diameter_mm / 2.0
        return Lesion(label, "fcd", self.centre_mm, (r, r, r))


def _cerebral(world: np.ndarray) -> np.ndarray:
    """Rough MNI-space exclusion of the cerebellum and brainstem (y < -40 and z < -5 mm,
    or |x| < 15 and z < -10 mm)."""
    x, y, z = world[..., 0], world[..., 1], world[..., 2]
    return ~(((y < -40) & (z < -5)) | ((np.abs(x) < 15) & (z < -10)))


def draw_fcd(
    rng: np.random.Generator,
    anatomy: Anatomy,
    transmantle_probability: float = TRANSMANTLE_PROBABILITY,
) -> FCDParams:
    """Draw one FCD: a white-matter voxel face-adjacent to the cerebral cortex in the
    deeper half of such voxels (:data:`DEPTH_QUANTILE`), the values, and, with a
    transmantle sign, the nearest lateral-ventricle voxel.

    Args:
        rng: seeded generator.
        anatomy: the subject's anatomy (MNI-like world coordinates).
        transmantle_probability: probability of a transmantle sign.
    """
    near_cortex = ndimage.binary_dilation(cortex(anatomy))
    ok = (anatomy.wm >= 0.5) & anatomy.mask & near_cortex & (anatomy.deep_gm < 0.1)
    ijk = np.argwhere(ok)
    ijk = ijk[_cerebral(voxel_to_world(anatomy.affine, ijk))]
    if len(ijk) == 0:
        raise ValueError("no cerebral cortex found in the anatomy to place an FCD")
    depth = distance_mm(~anatomy.mask, anatomy.affine)[tuple(ijk.T)]
    ijk = ijk[depth >= np.quantile(depth, DEPTH_QUANTILE)]
    centre = voxel_to_world(anatomy.affine, ijk[rng.integers(len(ijk))])
    values = {k: float(rng.uniform(*v)) for k, v in FCD_RANGES.items()}
    end = None
    if rng.random() < transmantle_probability:
        vent = ventricles(anatomy)
        if vent.any():
            points = voxel_to_world(anatomy.affine, np.argwhere(vent))
            nearest = points[np.argmin(np.linalg.norm(points - centre, axis=1))]
            end = tuple(float(v) for v in nearest)
    return FCDParams(
        centre_mm=tuple(float(c) for c in centre),
        diameter_mm=values["diameter_mm"],
        thickening_mm=values["thickening_mm"],
        blur_sd_mm=values["blur_sd_mm"],
        t1_shift=values["t1_shift"],
        t2_increase=values["t2_increase"],
        subcortical_mm=values["subcortical_mm"],
        transmantle_end_mm=end,
        transmantle_width_mm=values["transmantle_width_mm"] if end else 0.0,
    )


def _crop(anatomy: Anatomy, box: tuple[slice, ...]) -> Anatomy:
    return replace(anatomy, gm=anatomy.gm[box], wm=anatomy.wm[box], csf=anatomy.csf[box],
                   deep_gm=anatomy.deep_gm[box], mask=anatomy.mask[box])


def fcd_weight(params: FCDParams, box: tuple[slice, ...], affine: np.ndarray) -> np.ndarray:
    """Strength of the FCD changes (float32, 0..1) on the voxels of ``box``.

    1 up to 0.7 radii from the centre, then a cosine taper through 0.5 at the drawn
    radius to 0 at 1.3 radii, so the abnormality fades into normal tissue.
    """
    r = params.diameter_mm / 2
    ijk = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij"), -1)
    d = np.linalg.norm(voxel_to_world(affine, ijk) - np.asarray(params.centre_mm), axis=-1)
    t = np.clip((d - (1 - TAPER) * r) / (2 * TAPER * r), 0.0, 1.0)
    return (0.5 * (1 + np.cos(np.pi * t))).astype(np.float32)


def ribbon_band(params: FCDParams, cortex_distance_mm: np.ndarray, voxel_mm: float
                ) -> np.ndarray:
    """Share (float32, 0..1) of each voxel in the cortex and its subcortical band.

    1 up to ``subcortical_mm`` from the cortex (the cortex itself is at 0), falling
    linearly to 0 over one voxel beyond it (partial volume).
    """
    edge = params.subcortical_mm + voxel_mm / 2
    return np.clip((edge - cortex_distance_mm) / voxel_mm + 0.5, 0.0, 1.0).astype(np.float32)


def fcd_anatomy(anatomy: Anatomy, params: FCDParams
                ) -> tuple[Anatomy, tuple, np.ndarray, np.ndarray]:
    """Thicken the cortex and blur the grey-white junction around the FCD (pure).

    Returns:
        ``(new anatomy, box, weight, band)``: the box (grid slices) holding every
        change, the strength of the changes in it (:func:`fcd_weight` times the
        :func:`ribbon_band`) and the band itself.
    """
    sp = spacing_mm(anatomy.affine)
    h = float(np.prod(sp) ** (1 / 3))
    ball_lesion = params.as_lesion()
    margin = TAPER * params.diameter_mm / 2 + params.thickening_mm + 3 * params.blur_sd_mm
    box = bounding_box(ball_lesion, anatomy.affine, anatomy.mask.shape, margin + 2 * h)
    weight = fcd_weight(params, box, anatomy.affine)
    gm, wm = anatomy.gm[box].astype(np.float32), anatomy.wm[box].astype(np.float32)
    deep_amount = gm * anatomy.deep_gm[box]
    # thickening: WM within thickening_mm of the cortex turns grey
    ctx = gm - deep_amount >= 0.5
    dist = ndimage.distance_transform_edt(~ctx, sampling=sp) if ctx.any() else np.inf
    band = ribbon_band(params, np.broadcast_to(dist, ctx.shape), h)
    weight = weight * band
    grow = np.clip((params.thickening_mm + h / 2 - dist) / h, 0.0, 1.0)
    moved = weight * wm * grow
    gm, wm = gm + moved, wm - moved
    # blurred junction: smooth GM and WM, keep their sum per voxel
    sigma = params.blur_sd_mm / sp
    gb, wb = ndimage.gaussian_filter(gm, sigma), ndimage.gaussian_filter(wm, sigma)
    total = gm + wm
    share = np.where(gb + wb > 1e-6, gb / np.maximum(gb + wb, 1e-6), 0.0)
    gm = (1 - weight) * gm + weight * total * share
    wm = total - gm
    deep = np.where(gm > 1e-6, np.clip(deep_amount / np.maximum(gm, 1e-6), 0, 1), 0.0)
    new = {k: getattr(anatomy, k).copy() for k in ("gm", "wm", "deep_gm")}
    new["gm"][box], new["wm"][box], new["deep_gm"][box] = gm, wm, deep
    return replace(anatomy, **new), box, weight, band


def transmantle_crop(
    params: FCDParams, shape: tuple, affine: np.ndarray
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Transmantle tube as ``(box, partial-volume fraction in the box)``; None without one.

    The tube runs from the FCD centre to the nearest ventricle point and narrows
    linearly from ``transmantle_width_mm`` to 1.5 mm.
    """
    if params.transmantle_end_mm is None:
        return None
    a, b = np.asarray(params.centre_mm), np.asarray(params.transmantle_end_mm)
    reach = np.linalg.norm(b - a) / 2 + params.transmantle_width_mm
    box = bounding_box(Lesion(0, "tube", tuple((a + b) / 2), (reach,) * 3), affine, shape, 0.0)
    ijk = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij"), -1)
    x = voxel_to_world(affine, ijk)
    ab = b - a
    t = np.clip(((x - a) @ ab) / max(ab @ ab, 1e-9), 0.0, 1.0)
    dist = np.linalg.norm(x - (a + t[..., None] * ab), axis=-1)
    radius = ((1 - t) * params.transmantle_width_mm + t * TRANSMANTLE_END_WIDTH_MM) / 2
    h = float(np.prod(spacing_mm(affine)) ** (1 / 3))
    return box, np.clip(0.5 - (dist - radius) / h, 0.0, 1.0).astype(np.float32)


def _place(local: np.ndarray, box: tuple, region: tuple) -> np.ndarray:
    """A box's values inside a larger region (zeros elsewhere)."""
    out = np.zeros([r.stop - r.start for r in region], np.float32)
    out[tuple(slice(b.start - r.start, b.stop - r.start) for b, r in zip(box, region,
                                                                         strict=True))] = local
    return out


def wm_t1_rise(t1_shift: float, values: dict[str, dict[str, float]]) -> float:
    """Relative T1 rise of the lesion's white matter (0.1 = +10 %).

    Args:
        t1_shift: fraction of the cortical-GM minus WM T1 gap (``FCDParams.t1_shift``).
        values: per-tissue values ``{tissue: {"t1_ms": ms}}`` of the maps the lesion goes
            into (one field strength), e.g. from ``parameters.tissue_values``.

    Returns:
        ``t1_shift * (T1_gm - T1_wm) / T1_wm``; without a usable GM and WM T1, the gap of
        a GM/WM T1 ratio of 1.5.
    """
    wm = values.get("wm", {}).get("t1_ms", 0.0)
    gm = values.get("cortical_gm", {}).get("t1_ms", 0.0)
    ratio = gm / wm if wm > 0 and gm > wm else DEFAULT_GM_WM_T1_RATIO
    return float(t1_shift * (ratio - 1.0))


def _pure_values(maps: TissueMaps, anatomy: Anatomy, box: tuple) -> dict[str, dict[str, float]]:
    """Per-tissue values that best explain ``maps`` in ``box`` (least squares)."""
    frac = tissue_fractions(_crop(anatomy, box))
    names = list(frac)
    raw = np.stack([frac[t].ravel() for t in names], axis=1).astype(float)
    total = raw.sum(1)
    keep = total > 0.05
    values: dict[str, dict[str, float]] = {t: {} for t in names}
    for prop in PROPERTIES:
        y = getattr(maps, prop)[box].ravel().astype(float)[keep]
        x = raw[keep] if prop == "pd" else raw[keep] / total[keep, None]
        if prop in RATE_PROPERTIES:
            y = 1.0 / y
        coef = np.linalg.lstsq(x, y, rcond=None)[0]
        for t, c in zip(names, coef, strict=True):
            present = raw[keep, names.index(t)].max() > 1e-3
            fallback = 1.0 if prop in RATE_PROPERTIES else 0.0
            c = c if present and (prop not in RATE_PROPERTIES or c > 0) else fallback
            values[t][prop] = float(1.0 / c if prop in RATE_PROPERTIES else c)
    return values


def apply_fcd(
    anatomy: Anatomy, maps: TissueMaps | dict[str, dict[str, float]], params: FCDParams
) -> tuple[Anatomy, TissueMaps, np.ndarray]:
    """Apply an FCD to an anatomy and its property maps (pure).

    Args:
        anatomy: the subject's anatomy.
        maps: its property maps (e.g. from ``tissue.tissue_maps``), or the per-tissue
            values ``{tissue: {property: value}}`` to build them from.
        params: from :func:`draw_fcd`.

    Returns:
        ``(anatomy, maps, fraction)``: the anatomy with thickened cortex and blurred
        junction, the property maps with those changes and the T1/T2 rises, and the
        float32 lesion fraction (cortex and subcortical band inside the ball of the
        drawn diameter, plus the transmantle tube); the changes fade out across its
        edge.
    """
    if isinstance(maps, dict):
        maps = tissue_maps(anatomy, maps)
    new_anat, box, weight, band = fcd_anatomy(anatomy, params)
    ball = fraction_in_box(params.as_lesion(), box, anatomy.affine) * band
    values = _pure_values(maps, anatomy, box)
    old_box, new_box = tissue_maps(_crop(anatomy, box), values), tissue_maps(
        _crop(new_anat, box), values)
    changes = {}
    for prop in PROPERTIES:
        m = getattr(maps, prop).copy()
        o, n = getattr(old_box, prop), getattr(new_box, prop)
        if prop in LINEAR_PROPERTIES:
            m[box] = m[box] + (n - o)
        else:
            m[box] = 1.0 / np.maximum(1.0 / m[box] + (1.0 / n - 1.0 / o), 1e-6)
        changes[prop] = m.astype(np.float32)
    tube = transmantle_crop(params, anatomy.mask.shape, anatomy.affine)
    region = box if tube is None else tuple(
        slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(box, tube[0],
                                                                         strict=True))
    tissue = (new_anat.gm + new_anat.wm)[region] * new_anat.mask[region]
    wm = new_anat.wm[region] * new_anat.mask[region]
    weight, ball = _place(weight, box, region), _place(ball, box, region)
    tube_r = np.zeros_like(wm) if tube is None else _place(tube[1], tube[0], region) * wm
    fraction = np.zeros(anatomy.mask.shape, np.float32)
    fraction[region] = np.clip(np.maximum(ball * tissue, tube_r), 0, 1)
    rise = wm_t1_rise(params.t1_shift, values)
    changes["t1_ms"][region] *= 1 + rise * np.maximum(weight * wm, tube_r)
    changes["t2_ms"][region] *= 1 + params.t2_increase * np.maximum(weight * tissue, tube_r)
    out = replace(maps, **{k: v.astype(np.float32) for k, v in changes.items()})
    return new_anat, out, fraction
