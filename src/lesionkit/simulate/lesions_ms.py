"""Multiple sclerosis white-matter lesions, including rim+ (chronic active) lesions.

Order of use::

    lesions = draw_ms_lesions(rng, anatomy)                 # parameters only
    fractions, labels = lesion_fractions(lesions, anatomy)  # from .lesions
    maps = apply_ms_lesions(maps, lesions, fractions, anatomy.affine)
    rows = lesion_table_rows(lesions, fractions, anatomy.affine)

Real lesion shapes from a mask library mix in through :mod:`.lesion_library`
(``draw_subject_ms_lesions``, ``ms_lesion_fractions``, ``ms_table_rows``); the
functions here accept its lesions.

Values at 3 T (``MS_LESION_RANGES``; one value per lesion). Each lesion draws a severity
(its T1 quantile, uniform); T2, T2*, PD and ADC take the same quantile within +-0.2
(reflected into 0..1), so a lesion with long T1 also has long T2, more water and higher
ADC (dark on T1w and bright on FLAIR together); chi is drawn independently:

- T1 1200-1800 ms, T2* 60-90 ms, ADC 1.0-1.4e-3 mm^2/s, core chi about +10 ppb:
  METHODS.md table "Physical values for simulation".
- T2 110-180 ms (NAWM about 75 ms): long-T2 lesion values reported at 1.5-3 T by
  Whittall et al. 1997 (Magn Reson Med 37:34) and Laule et al. 2007 (J Neurol 254:1579);
  this is what makes lesions bright on FLAIR. The range gives FLAIR lesion/NAWM ratios of
  1.3-1.6 at the phantom's FLAIR (TR 9000, TI 2500, TE 110 ms), inside the 1.3-1.8 of
  clinical FLAIR and around the 1.33-1.37 measured on real 3 T MS scans.
- PD 0.74-0.82 (water content of WM about 0.69-0.72, lesions higher): Tofts (ed.),
  Quantitative MRI of the Brain, 2003, ch. 4; Laule et al. 2004 (Mult Scler 10:10).
- Rim+ lesions (chronic active): a paramagnetic shell 1-2 mm thick (1-2 voxels at 1 mm)
  of +30 to +60 ppb on the lesion edge around an iso to mildly positive core (0-15 ppb),
  about 4 % of lesions (177 / 4163 in the QSMRim-Net cohort). Hard negatives: 12 % of
  rim- lesions are paramagnetic throughout (+15 to +35 ppb), as seen for early
  demyelinating or iron-laden lesions without a rim.
- Sizes: long diameter log-uniform in 3-30 mm (median about 9.5 mm), the two other
  diameters 50-100 % of it and at least 3 mm; rim+ lesions at least 6 mm in every
  diameter so that the shell leaves a core. Locations: periventricular 40 %,
  juxtacortical 30 %, deep white matter 30 %; periventricular lesions have their long
  axis perpendicular to the ventricle wall (Dawson's fingers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lesionkit.simulate.lesions import (
    FractionMaps,
    Lesion,
    cortex,
    distance_mm,
    random_rotation,
    rotation_with_axis,
    shape_crop,
    spacing_mm,
    ventricles,
    voxel_to_world,
    weighted_values,
)
from lesionkit.simulate.parameters import reflect_unit
from lesionkit.simulate.tissue import RATE_PROPERTIES, TissueMaps, mix

if TYPE_CHECKING:
    from lesionkit.simulate.template import Anatomy

MS_LESION_RANGES: dict[str, tuple[float, float]] = {
    "t1_ms": (1200.0, 1800.0),
    "t2_ms": (110.0, 180.0),
    "t2s_ms": (60.0, 90.0),
    "pd": (0.74, 0.82),
    "adc": (1.0, 1.4),
    "chi_ppb": (0.0, 15.0),
}
RIM_CHI_PPB = (30.0, 60.0)
RIM_THICKNESS_MM = (1.0, 2.0)
UNIFORM_PARAMAGNETIC_CHI_PPB = (15.0, 35.0)
UNIFORM_PARAMAGNETIC_FRACTION = 0.12
#: Probability that an MS lesion is drawn rim+ (the paper: 177 of 4163 lesions, 4.3 %).
RIM_FRACTION = 0.04
DIAMETER_MM = (3.0, 30.0)
IRREGULARITY = (0.1, 0.2)
RIM_MIN_DIAMETER_MM = 6.0
LOCATIONS = {"periventricular": 0.4, "juxtacortical": 0.3, "deep": 0.3}
_TISSUE_KEYS = tuple(MS_LESION_RANGES)
#: Properties that follow a lesion's severity (its T1 quantile), with a +-jitter.
_SEVERITY_KEYS = ("t2_ms", "t2s_ms", "pd", "adc")
LESION_JITTER = 0.2


@dataclass(frozen=True)
class WhiteMatterSites:
    """Where lesions may centre: white-matter voxels and their distances (mm).

    Attributes:
        ijk: (n, 3) indices of the voxels with WM probability >= 0.5 inside the mask.
        to_ventricle, to_cortex: (n,) distances of those voxels to the ventricles and
            to the cortex (mm).
        ventricle_distance: full-grid distance to the ventricles (mm), for orientation.
        affine: voxel-to-world affine (mm).
    """

    ijk: np.ndarray
    to_ventricle: np.ndarray
    to_cortex: np.ndarray
    ventricle_distance: np.ndarray
    affine: np.ndarray

    @classmethod
    def from_anatomy(cls, anatomy: Anatomy) -> WhiteMatterSites:
        """Compute the sites once per anatomy (two Euclidean distance transforms)."""
        wm = (anatomy.wm >= 0.5) & anatomy.mask
        to_vent = distance_mm(ventricles(anatomy), anatomy.affine)
        to_ctx = distance_mm(cortex(anatomy), anatomy.affine)
        return cls(
            ijk=np.argwhere(wm),
            to_ventricle=to_vent[wm],
            to_cortex=to_ctx[wm],
            ventricle_distance=to_vent,
            affine=np.asarray(anatomy.affine, float),
        )


def _diameters(rng: np.random.Generator, minimum: float) -> np.ndarray:
    lo, hi = max(DIAMETER_MM[0], minimum), DIAMETER_MM[1]
    long = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    others = np.clip(long * rng.uniform(0.5, 1.0, 2), lo, long)
    return np.array([long, *others])


def _candidates(sites: WhiteMatterSites, location: str, semi: np.ndarray) -> np.ndarray:
    """Voxel indices (n, 3) where a lesion of semi-axes ``semi`` (long first) may centre.

    Periventricular: the ventricle lies 0.7 long semi-axes away (the lesion touches it);
    juxtacortical: the cortex lies 0.7 short semi-axes away; deep: both lie more than a
    long semi-axis + 3 mm away. Falls back to any WM voxel 3 mm from both, then any.
    """
    h = float(spacing_mm(sites.affine).max())
    vent, ctx = sites.to_ventricle, sites.to_cortex
    if location == "periventricular":
        ok = np.abs(vent - 0.7 * semi[0]) <= h
    elif location == "juxtacortical":
        ok = np.abs(ctx - 0.7 * semi.min()) <= h
    else:
        ok = (vent > semi[0] + 3.0) & (ctx > semi[0] + 3.0)
    if not ok.any():
        ok = (vent > 3.0) & (ctx > 3.0)
    if not ok.any():
        ok = np.ones(len(vent), bool)
    return sites.ijk[ok]


def _ventricle_direction(sites: WhiteMatterSites, ijk: np.ndarray) -> np.ndarray:
    """World direction (unnormalised) of increasing distance to the ventricles at a voxel."""
    d = sites.ventricle_distance
    g_vox = np.zeros(3)
    for axis in range(3):
        lo, hi = ijk.copy(), ijk.copy()
        lo[axis] = max(ijk[axis] - 1, 0)
        hi[axis] = min(ijk[axis] + 1, d.shape[axis] - 1)
        g_vox[axis] = (d[tuple(hi)] - d[tuple(lo)]) / max(hi[axis] - lo[axis], 1)
    if not np.any(g_vox):
        g_vox = np.array([1.0, 0.0, 0.0])
    # a gradient over voxel indices maps to world through the inverse-transposed affine
    return np.linalg.solve(sites.affine[:3, :3].T, g_vox)


def draw_rim_status(
    rng: np.random.Generator, rim_fraction: float, uniform_paramagnetic_fraction: float
) -> tuple[bool, bool]:
    """Whether a lesion is rim+ and, if rim-, whether it is paramagnetic throughout."""
    rim = bool(rng.random() < rim_fraction)
    uniform = (not rim) and bool(rng.random() < uniform_paramagnetic_fraction)
    return rim, uniform


def draw_ms_lesion_params(
    rng: np.random.Generator, rim: bool, uniform_paramagnetic: bool
) -> tuple[np.ndarray, dict[str, float]]:
    """Diameters (mm, long first) and tissue values of one MS lesion (see module doc)."""
    diam = _diameters(rng, RIM_MIN_DIAMETER_MM if rim else 0.0)
    u = {k: float(rng.uniform()) for k in _TISSUE_KEYS}
    severity = u["t1_ms"]
    q = {k: reflect_unit(severity + LESION_JITTER * (2 * u[k] - 1)) if k in _SEVERITY_KEYS
         else u[k] for k in _TISSUE_KEYS}
    props = {k: float(np.interp(q[k], (0, 1), MS_LESION_RANGES[k])) for k in _TISSUE_KEYS}
    if uniform_paramagnetic:
        props["chi_ppb"] = float(rng.uniform(*UNIFORM_PARAMAGNETIC_CHI_PPB))
    if rim:
        props.update(draw_rim_properties(rng))
    return diam, props


def draw_rim_properties(rng: np.random.Generator) -> dict[str, float]:
    """Susceptibility (ppb) and thickness (mm) of a rim+ lesion's paramagnetic shell."""
    chi = float(rng.uniform(*RIM_CHI_PPB))
    return {"rim_chi_ppb": chi, "rim_thickness_mm": float(rng.uniform(*RIM_THICKNESS_MM))}


def draw_ms_lesions(
    rng: np.random.Generator,
    anatomy: Anatomy,
    n_range: tuple[int, int] = (0, 30),
    rim_fraction: float = RIM_FRACTION,
    uniform_paramagnetic_fraction: float = UNIFORM_PARAMAGNETIC_FRACTION,
    irregular_fraction: float = 0.5,
    first_label: int = 1,
    sites: WhiteMatterSites | None = None,
    max_tries: int = 30,
    avoid: Sequence[Lesion] = (),
) -> list[Lesion]:
    """Draw the MS lesions of one subject (parameters only).

    Args:
        rng: seeded generator.
        anatomy: the subject's anatomy (white matter, ventricles and cortex place lesions).
        n_range: inclusive range of the number of lesions drawn.
        rim_fraction: probability that a lesion is rim+.
        uniform_paramagnetic_fraction: probability that a rim- lesion is paramagnetic
            throughout (hard negative for rim classification).
        irregular_fraction: probability that a lesion gets a noise-perturbed surface
            (SD 0.1-0.2 of the mean semi-axis) instead of a plain ellipsoid.
        first_label: label of the first lesion; labels are consecutive.
        sites: precomputed :class:`WhiteMatterSites` (to reuse across draws).
        max_tries: centre draws per lesion to avoid overlapping an earlier lesion; a
            lesion that finds no free place is left out, so a crowded small brain may
            hold fewer lesions than drawn.
        avoid: lesions already placed (e.g. library lesions) that new ones keep clear of.

    Returns:
        Lesions of kind "ms" with centres at voxel centres in white matter; each
        ``properties`` holds its tissue values, ``location`` and, for rim+ lesions,
        ``rim_chi_ppb`` and ``rim_thickness_mm``.
    """
    sites = sites or WhiteMatterSites.from_anatomy(anatomy)
    n = int(rng.integers(n_range[0], n_range[1] + 1))
    names, probs = list(LOCATIONS), np.array(list(LOCATIONS.values()))
    lesions: list[Lesion] = []
    for _ in range(n):
        rim, uniform = draw_rim_status(rng, rim_fraction, uniform_paramagnetic_fraction)
        diam, props = draw_ms_lesion_params(rng, rim, uniform)
        semi = diam / 2.0
        location = str(rng.choice(names, p=probs))
        cand = _candidates(sites, location, semi)
        for _try in range(max_tries):
            ijk = cand[rng.integers(len(cand))]
            centre = voxel_to_world(sites.affine, ijk)
            if all(
                np.linalg.norm(centre - np.asarray(o.centre_mm)) >= semi.mean() + np.mean(o.axes_mm)
                for o in (*avoid, *lesions)
            ):
                break
        else:
            continue
        if location == "periventricular":
            rotation = rotation_with_axis(_ventricle_direction(sites, ijk), rng)
        else:
            rotation = random_rotation(rng)
        irregular = bool(rng.random() < irregular_fraction)
        lesions.append(
            Lesion(
                label=first_label + len(lesions),
                kind="ms",
                centre_mm=tuple(float(c) for c in centre),
                axes_mm=tuple(float(a) for a in semi),
                rotation=rotation,
                irregularity=float(rng.uniform(*IRREGULARITY)) if irregular else 0.0,
                rim=rim,
                uniform_paramagnetic=uniform,
                properties={**props, "location": location},
                shape_seed=int(rng.integers(2**31)),
            )
        )
    return lesions


def rim_crops(
    lesions: list[Lesion], fractions: FractionMaps, affine: np.ndarray
) -> dict[int, tuple[tuple[slice, ...], np.ndarray]]:
    """Paramagnetic shells of the rim+ lesions: ``{label: (box, shell fraction)}``.

    The shell is the part of the lesion within ``rim_thickness_mm`` of its surface,
    limited to the lesion's own (tissue-confined) fraction; for library lesions the
    depth below the surface comes from a distance transform of the fraction.
    """
    from lesionkit.simulate.lesionmasks import LibraryLesion, core_fraction

    out = {}
    for les in lesions:
        if les.rim:
            box, f = fractions.crop(les.label)
            if isinstance(les, LibraryLesion):
                core = core_fraction(f, affine, les.properties["rim_thickness_mm"])
                out[les.label] = (box, np.clip(f - core, 0.0, None))
                continue
            inner_box, inner = shape_crop(
                les, fractions.shape, affine, grow_mm=-les.properties["rim_thickness_mm"]
            )
            assert inner_box == box  # same margin: shrinking never enlarges the box
            out[les.label] = (box, np.clip(f - inner, 0.0, None))
    return out


def apply_ms_lesions(
    maps: TissueMaps,
    lesions: list[Lesion],
    fractions: FractionMaps,
    affine: np.ndarray,
) -> TissueMaps:
    """Paint MS lesions into tissue property maps (pure).

    Each lesion replaces tissue in proportion to its fraction by its T1, T2, T2* (ms),
    PD, ADC (1e-3 mm^2/s) and core chi (ppb); overlapping lesions share a voxel by
    fraction. Rim+ lesions then get their shell set to ``rim_chi_ppb``.

    Args:
        maps: property maps of the subject without lesions.
        lesions: from :func:`draw_ms_lesions`.
        fractions: from :func:`~lesionkit.simulate.lesions.lesion_fractions`.
        affine: voxel-to-world affine of the grid (mm), for the rim shells.
    """
    if not lesions:
        return maps
    values = {}
    for key in _TISSUE_KEYS:
        crops = [(*fractions.crop(les.label), les.properties[key]) for les in lesions]
        _, values[key] = weighted_values(crops, key in RATE_PROPERTIES, maps.shape)
    maps = mix(maps, fractions.total(), values)
    rims = rim_crops(lesions, fractions, affine)
    if rims:
        crops = [(*rims[les.label], les.properties["rim_chi_ppb"]) for les in lesions if les.rim]
        rim_total, rim_chi = weighted_values(crops, False, maps.shape)
        maps = mix(maps, rim_total, {"chi_ppb": rim_chi})
    return maps


#: Veins beside lesions (rim-classify cohort only): deoxygenated venous blood is
#: paramagnetic, chi = Hct (1 - Y) dchi_do = 0.4 x 0.4 x 3.39 ppm (SI) ~ +540 ppb at
#: haematocrit 0.4 and oxygenation 0.6 (Spees et al. 2001, Magn Reson Med 45:533); QSM of
#: medullary and larger veins reads +300 to +500 ppb where the vessel fills the voxel. A
#: vein touching a rim- lesion is a paramagnetic crescent beside an iso lesion: the hard
#: negative that a rim must be told apart from.
VEIN_CHI_PPB = (300.0, 450.0)
VEIN_RADIUS_MM = (0.4, 0.8)
VEIN_LENGTH_MM = (10.0, 25.0)
VEIN_GAP_MM = (0.0, 1.0)
VEIN_FRACTION = 0.25


@dataclass(frozen=True)
class Vein:
    """A straight vein segment (a cylinder with flat ends).

    Attributes:
        start_mm, end_mm: World coordinates of the axis ends (mm).
        radius_mm: Vessel radius (mm).
        chi_ppb: Susceptibility of the blood (ppb).
        lesion: Label of the lesion it runs beside (0: none).
    """

    start_mm: tuple[float, float, float]
    end_mm: tuple[float, float, float]
    radius_mm: float
    chi_ppb: float
    lesion: int = 0


def draw_lesion_veins(rng: np.random.Generator, labels: np.ndarray, affine: np.ndarray,
                      fraction: float = VEIN_FRACTION) -> list[Vein]:
    """Veins running tangent to the surface of a random ``fraction`` of the lesions.

    For a chosen lesion a surface voxel is drawn; the vein axis passes outside it, along
    the outward direction (surface voxel minus lesion centre) at the vessel radius plus a
    gap of 0-1 mm, in a random direction perpendicular to it.

    Args:
        rng: seeded generator (the subject's lesion stream).
        labels: lesion label map (one integer per lesion).
        affine: voxel-to-world affine (mm).
        fraction: probability that a lesion gets a vein beside it.
    """
    from scipy import ndimage

    veins = []
    found = ndimage.find_objects(labels.astype(np.int64))
    for label, box in enumerate(found, start=1):
        if box is None or rng.random() >= fraction:
            continue
        inside = labels[box] == label
        surface = inside & ~ndimage.binary_erosion(inside)
        points = np.argwhere(surface) + np.array([s.start for s in box])
        centre = voxel_to_world(affine, np.argwhere(inside).mean(0)
                                + np.array([s.start for s in box]))
        edge = voxel_to_world(affine, points[rng.integers(len(points))])
        normal = edge - centre
        normal = normal / np.linalg.norm(normal) if np.linalg.norm(normal) > 0 else np.array(
            [1.0, 0.0, 0.0])
        radius = float(rng.uniform(*VEIN_RADIUS_MM))
        through = edge + normal * (radius + float(rng.uniform(*VEIN_GAP_MM)))
        direction = np.cross(normal, rng.standard_normal(3))
        direction /= np.linalg.norm(direction)
        half = 0.5 * float(rng.uniform(*VEIN_LENGTH_MM)) * direction
        veins.append(Vein(tuple(through - half), tuple(through + half), radius,
                          float(rng.uniform(*VEIN_CHI_PPB)), label))
    return veins


def vein_fraction(veins: Sequence[Vein], shape: Sequence[int], affine: np.ndarray,
                  supersample: int = 5) -> np.ndarray:
    """Partial-volume fraction (0-1) of the veins on a grid, from ``supersample``^3 points
    per voxel (a 0.5 mm radius vessel fills about 0.8 of a 1 mm voxel on its axis; with 5^3
    points the cross-section per mm is 0.36 instead of 0.50 mm^2 at 0.4 mm radius and
    within 7 % from 0.5 mm up)."""
    out = np.zeros(tuple(shape), np.float32)
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    sub = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), -1).reshape(-1, 3)
    inverse = np.linalg.inv(affine)
    for vein in veins:
        a, b = np.asarray(vein.start_mm), np.asarray(vein.end_mm)
        ends = np.stack([a, b]) @ inverse[:3, :3].T + inverse[:3, 3]
        margin = vein.radius_mm / spacing_mm(affine).min() + 1
        lo = np.maximum(np.floor(ends.min(0) - margin).astype(int), 0)
        hi = np.minimum(np.ceil(ends.max(0) + margin).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        ijk = np.stack(np.meshgrid(*[np.arange(a0, a1) for a0, a1 in zip(lo, hi, strict=True)],
                                   indexing="ij"), -1)
        points = voxel_to_world(affine, ijk[..., None, :] + sub)
        axis = b - a
        t = np.clip(((points - a) @ axis) / (axis @ axis), 0.0, 1.0)
        distance = np.linalg.norm(points - (a + t[..., None] * axis), axis=-1)
        inside = (distance <= vein.radius_mm).mean(-1).astype(np.float32)
        region = tuple(slice(a0, a1) for a0, a1 in zip(lo, hi, strict=True))
        out[region] = np.maximum(out[region], inside)
    return out


def apply_veins(maps: TissueMaps, veins: Sequence[Vein], affine: np.ndarray,
                mask: np.ndarray) -> TissueMaps:
    """Paint veins into the susceptibility map (inside ``mask``), in proportion to their
    partial-volume fraction; other properties are left unchanged (pure)."""
    if not veins:
        return maps
    fractions = [vein_fraction([v], maps.shape, affine) for v in veins]
    total = np.clip(np.sum(fractions, axis=0), 0.0, 1.0) * mask
    weighted = sum(f * v.chi_ppb for f, v in zip(fractions, veins, strict=True))
    chi = np.where(total > 0, weighted / np.maximum(np.sum(fractions, axis=0), 1e-6), 0.0)
    return mix(maps, total, {"chi_ppb": chi.astype(np.float32)})
