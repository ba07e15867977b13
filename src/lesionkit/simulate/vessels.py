"""Normally enhancing structures: dural sinuses, large and cortical vessels, choroid plexus.

On a post-contrast T1-weighted scan these enhance in every subject, tumour or not; they
are what a contrast amplifier brightens besides the lesions and what a reader (or a
detector) mistakes for small metastases. Order of use::

    params = draw_vessels(rng, anatomy)        # parameters only
    vmaps = vessel_maps(params, anatomy)       # blood and choroid plexus fractions
    maps = apply_vessels(maps, params, vmaps)  # pre-contrast property maps
    conc = vessel_concentration_mM(vmaps, params, 0.1)

Geometry (world mm of the MNI-like template grid, after the subject's deformation):

- superior sagittal sinus: a tube 5-8 mm across just inside the brain mask's outer edge
  in the midline sagittal plane, from the frontal pole over the vertex to the occipital
  pole (the torcula); transverse sinuses: from the torcula laterally along the posterior
  edge of the axial plane through it, 4-7 mm across.
- middle cerebral arteries: one 2.5-3.5 mm tube per side from the carotid terminus
  (+-12, 3, -14) along the Sylvian fissure to (+-42, 0, -6) and up to (+-50, -20, 10).
- cortical vessels: 6-14 tubes 1.2-3 mm across and 15-60 mm long, starting in
  sulcal CSF near the surface and running tangentially with a gentle curve.
- choroid plexus: the lateral ventricles' voxels within 6-10 mm of the atria
  (+-28, -42, 16), 60-90 % of each voxel (the glomus).

Values (3 T, one draw per subject, uniform; our choices where no source is named):

- blood: T1 1600-1700 ms (Lu et al. 2004, Magn Reson Med 52:679), T2 60-90 ms,
  T2* 25-45 ms (venous), PD 0.85-0.90, ADC 2.0-3.0 (flow adds pseudo-diffusion); no
  flow voids or inflow enhancement are modelled.
- choroid plexus: T1 1200-1400 ms, T2 90-120 ms, T2* 40-60 ms, PD 0.82-0.88, ADC
  1.0-1.5.
- gadolinium per mmol/kg of dose: blood 2.5-4.0 mM (whole blood, a plasma
  concentration of about 0.5-0.7 mM a few minutes after 0.1 mmol/kg times 1 - haematocrit);
  choroid plexus 1.5-3.0 mM (no blood-brain barrier, fenestrated capillaries).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from lesionkit.simulate.lesions import (
    distance_mm,
    spacing_mm,
    ventricles,
    voxel_to_world,
    world_to_voxel,
)
from lesionkit.simulate.tissue import TissueMaps, mix

if TYPE_CHECKING:
    from lesionkit.simulate.template import Anatomy

BLOOD_RANGES = {"t1_ms": (1600.0, 1700.0), "t2_ms": (60.0, 90.0), "t2s_ms": (25.0, 45.0),
                "pd": (0.85, 0.90), "adc": (2.0, 3.0)}
CHOROID_RANGES = {"t1_ms": (1200.0, 1400.0), "t2_ms": (90.0, 120.0), "t2s_ms": (40.0, 60.0),
                  "pd": (0.82, 0.88), "adc": (1.0, 1.5)}
BLOOD_UPTAKE_MM_PER_MMOL_KG = (2.5, 4.0)
CHOROID_UPTAKE_MM_PER_MMOL_KG = (1.5, 3.0)
SINUS_DIAMETER_MM = (5.0, 8.0)
TRANSVERSE_DIAMETER_MM = (4.0, 7.0)
MCA_DIAMETER_MM = (2.5, 3.5)
CORTICAL_DIAMETER_MM = (1.2, 3.0)
CORTICAL_LENGTH_MM = (15.0, 60.0)
CORTICAL_COUNT = (6, 14)
#: Middle cerebral artery path, right side (x mirrored for the left), world mm.
MCA_PATH_MM = ((12.0, 3.0, -14.0), (42.0, 0.0, -6.0), (50.0, -20.0, 10.0))
ATRIUM_MM = (28.0, -42.0, 16.0)


@dataclass(frozen=True)
class Tube:
    """A vessel: a polyline (world mm) and its diameter (mm)."""

    points_mm: tuple[tuple[float, float, float], ...]
    diameter_mm: float


@dataclass(frozen=True)
class VesselParams:
    """Drawn parameters of one subject's normally enhancing structures.

    Attributes:
        tubes: Sinuses, middle cerebral arteries and cortical vessels.
        choroid_radius_mm: Extent of the choroid plexus around each atrium.
        choroid_fraction: Share of a ventricle voxel the choroid plexus fills there.
        blood: Blood property values (``BLOOD_RANGES`` keys).
        choroid: Choroid plexus property values.
        blood_uptake: Whole-blood gadolinium per unit dose (mM per mmol/kg).
        choroid_uptake: Choroid plexus gadolinium per unit dose (mM per mmol/kg).
    """

    tubes: tuple[Tube, ...]
    choroid_radius_mm: float
    choroid_fraction: float
    blood: dict[str, float]
    choroid: dict[str, float]
    blood_uptake: float
    choroid_uptake: float


@dataclass(frozen=True)
class VesselMaps:
    """Float32 fractions (0-1) of blood and choroid plexus per voxel."""

    blood: np.ndarray
    choroid: np.ndarray


def _outer_edge(mask: np.ndarray, centre: np.ndarray, directions: np.ndarray, step: float
                ) -> np.ndarray:
    """The last in-mask point along each ray from ``centre`` (voxel units, (n, 3))."""
    reach = np.arange(0.0, float(max(mask.shape)), step)
    out = []
    for d in directions:
        ray = centre[None] + reach[:, None] * d[None]
        idx = np.rint(ray).astype(int)
        ok = np.all((idx >= 0) & (idx < np.array(mask.shape)), axis=1)
        inside = np.zeros(len(ray), bool)
        inside[ok] = mask[tuple(idx[ok].T)]
        hits = np.flatnonzero(inside)
        if hits.size:
            out.append(ray[hits[-1]])
    return np.array(out).reshape(-1, 3)


def _sinuses(anatomy: Anatomy, rng: np.random.Generator) -> list[Tube]:
    """Superior sagittal sinus over the midline edge; transverse sinuses from its end."""
    aff, mask = anatomy.affine, anatomy.mask
    sp = float(spacing_mm(aff).mean())
    sss_d = float(rng.uniform(*SINUS_DIAMETER_MM))
    tra_d = float(rng.uniform(*TRANSVERSE_DIAMETER_MM))
    mid = int(np.clip(np.rint(world_to_voxel(aff, np.zeros(3))[0]), 0, mask.shape[0] - 1))
    plane = np.argwhere(mask[mid])
    centre = np.array([mid, *plane.mean(axis=0)])
    # Angles in the sagittal plane from anterior-superior over the top to posterior-low.
    angles = np.deg2rad(np.linspace(35.0, 200.0, 60))
    directions = np.stack([np.zeros_like(angles), np.cos(angles), np.sin(angles)], axis=1)
    edge = _outer_edge(mask, centre, directions, 0.25)
    inward = (centre[None] - edge) / np.linalg.norm(centre[None] - edge, axis=1)[:, None]
    sss = edge + inward * (sss_d / 2 / sp)
    tubes = [Tube(tuple(map(tuple, voxel_to_world(aff, sss))), sss_d)]
    torcula = sss[-1]
    k = int(np.clip(round(float(torcula[2])), 0, mask.shape[2] - 1))
    axial = np.argwhere(mask[:, :, k])
    if axial.size:
        c2 = np.array([*axial.mean(axis=0), k])
        for side in (1.0, -1.0):
            angles = np.deg2rad(np.linspace(0.0, 80.0, 25))  # posterior midline -> lateral
            directions = np.stack([side * np.sin(angles), -np.cos(angles),
                                   np.zeros_like(angles)], axis=1)
            edge = _outer_edge(mask, c2, directions, 0.25)
            if len(edge):
                inward = (c2[None] - edge) / np.linalg.norm(c2[None] - edge, axis=1)[:, None]
                path = edge + inward * (tra_d / 2 / sp)
                tubes.append(Tube(tuple(map(tuple, voxel_to_world(aff, path))), tra_d))
    return tubes


def _cortical(anatomy: Anatomy, rng: np.random.Generator) -> list[Tube]:
    """Cortical vessels: curved tubes starting in sulcal CSF within 8 mm of the surface."""
    aff = anatomy.affine
    depth = distance_mm(~anatomy.mask, aff)
    sulcal = np.argwhere((anatomy.csf >= 0.4) & anatomy.mask & (depth < 8.0))
    if len(sulcal) == 0:
        return []
    tubes = []
    for _ in range(int(rng.integers(CORTICAL_COUNT[0], CORTICAL_COUNT[1] + 1))):
        start = voxel_to_world(aff, sulcal[rng.integers(len(sulcal))])
        length = float(np.exp(rng.uniform(*np.log(CORTICAL_LENGTH_MM))))
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        bend = rng.standard_normal(3) * 0.02  # per mm
        points, p, d = [start], start.copy(), direction
        for _step in range(int(length)):
            d = d + bend
            d /= np.linalg.norm(d)
            p = p + d
            points.append(p.copy())
        tubes.append(Tube(tuple(map(tuple, points)), float(rng.uniform(*CORTICAL_DIAMETER_MM))))
    return tubes


def draw_vessels(rng: np.random.Generator, anatomy: Anatomy) -> VesselParams:
    """Draw one subject's normally enhancing structures (see the module doc)."""
    tubes = _sinuses(anatomy, rng)
    for side in (1.0, -1.0):
        path = tuple((side * x, y, z) for x, y, z in MCA_PATH_MM)
        tubes.append(Tube(path, float(rng.uniform(*MCA_DIAMETER_MM))))
    tubes += _cortical(anatomy, rng)
    return VesselParams(
        tubes=tuple(tubes),
        choroid_radius_mm=float(rng.uniform(6.0, 10.0)),
        choroid_fraction=float(rng.uniform(0.6, 0.9)),
        blood={k: float(rng.uniform(*r)) for k, r in BLOOD_RANGES.items()},
        choroid={k: float(rng.uniform(*r)) for k, r in CHOROID_RANGES.items()},
        blood_uptake=float(rng.uniform(*BLOOD_UPTAKE_MM_PER_MMOL_KG)),
        choroid_uptake=float(rng.uniform(*CHOROID_UPTAKE_MM_PER_MMOL_KG)))


def tube_fraction(tube: Tube, shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """Partial-volume fraction (0-1, float32) of one tube on a grid (pure).

    The centreline is sampled every quarter voxel; a voxel's fraction falls linearly from
    1 to 0 over one voxel size across the tube's surface (distance to the centreline
    equal to its radius).
    """
    sp = spacing_mm(affine)
    points = np.array(tube.points_mm, float)
    dense = [points[:1]]
    for a, b in itertools.pairwise(points):
        n = max(2, int(np.ceil(np.linalg.norm(b - a) / (0.25 * float(sp.min())))))
        dense.append(a + (b - a) * np.linspace(0, 1, n)[1:, None])
    idx = np.rint(world_to_voxel(affine, np.concatenate(dense))).astype(int)
    idx = idx[np.all((idx >= 0) & (idx < np.array(shape)), axis=1)]
    line = np.zeros(shape, bool)
    if len(idx) == 0:
        return np.zeros(shape, np.float32)
    line[tuple(idx.T)] = True
    h = float(np.prod(sp) ** (1 / 3))
    dist = ndimage.distance_transform_edt(~line, sampling=sp)
    return np.clip((tube.diameter_mm / 2 - dist) / h + 0.5, 0.0, 1.0).astype(np.float32)


def vessel_maps(params: VesselParams, anatomy: Anatomy) -> VesselMaps:
    """Blood and choroid plexus fractions on the anatomy grid, inside the brain mask (pure)."""
    shape, aff = anatomy.shape, anatomy.affine
    blood = np.zeros(shape, np.float32)
    for tube in params.tubes:
        blood = np.maximum(blood, tube_fraction(tube, shape, aff))
    blood *= anatomy.mask
    vent = ventricles(anatomy)
    choroid = np.zeros(shape, np.float32)
    world = voxel_to_world(aff, np.argwhere(vent))
    for side in (1.0, -1.0):
        atrium = np.array([side * ATRIUM_MM[0], *ATRIUM_MM[1:]])
        if len(world) == 0:
            break
        d = np.linalg.norm(world - atrium, axis=1)
        near = d < params.choroid_radius_mm
        if not near.any():  # deformed ventricles: the ventricle voxels closest to the atrium
            near = d <= np.sort(d)[min(len(d) - 1, 20)]
        idx = np.argwhere(vent)[near]
        choroid[tuple(idx.T)] = params.choroid_fraction
    choroid = np.clip(choroid * anatomy.mask, 0.0, 1.0 - blood).astype(np.float32)
    return VesselMaps(blood.astype(np.float32), choroid)


def apply_vessels(maps: TissueMaps, params: VesselParams, vmaps: VesselMaps) -> TissueMaps:
    """Paint blood and choroid plexus values into pre-contrast property maps (pure)."""
    maps = mix(maps, vmaps.choroid, params.choroid)
    return mix(maps, vmaps.blood, params.blood)


def vessel_concentration_mM(  # noqa: N802 (mM: the unit, as in the field)
    vmaps: VesselMaps, params: VesselParams, dose_mmol_per_kg: float
) -> np.ndarray:
    """Gadolinium (mM) of the voxels' blood and choroid plexus shares at a dose (mmol/kg)."""
    per_dose = vmaps.blood * params.blood_uptake + vmaps.choroid * params.choroid_uptake
    return (per_dose * np.float32(dose_mmol_per_kg)).astype(np.float32)
