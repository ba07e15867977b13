"""Enhancing brain tumours (metastases, gliomas), oedema and gadolinium uptake.

Order of use::

    lesions = draw_tumours(rng, anatomy)                 # parameters only
    tmaps = tumour_maps(lesions, anatomy)                # fractions, labels, compartments
    maps = apply_tumours(maps, lesions, tmaps)           # pre-contrast property maps
    conc = concentration_mM(tmaps.enhancing, 0.1, tmaps.uptake)
    r1_post = r1_with_contrast(1000.0 / maps.t1_ms, conc)  # s^-1
    rows = lesion_table_rows(lesions, tmaps.fractions, anatomy.affine)

A tumour is an ellipsoid (gliomas irregular) made of an enhancing part, in gliomas and
large metastases a non-enhancing necrotic core, and a surrounding vasogenic oedema
confined to white matter. Values (3 T, one draw per tumour, uniform):

- enhancing tissue: T1 1200-1600 ms and ADC 0.8-1.6e-3 mm^2/s (METHODS.md table);
  T2 90-130 ms, T2* 40-70 ms, PD 0.78-0.88 (cellular tumour, our choice).
- necrosis: T1 2000-3000 ms, T2 200-400 ms, T2* 100-200 ms, PD 0.88-0.95, ADC 2.0-2.8
  (near free fluid; our choice, in line with necrotic-core ADC reported by Lu et al.
  2004, Radiology 232:221); no enhancement.
- oedema: T1 1200-1500 ms, T2 110-160 ms, T2* 55-75 ms, PD 0.78-0.85, ADC 1.3-1.8
  (vasogenic peritumoural oedema, Lu et al. 2004); FLAIR bright, no enhancement.
- uptake: tissue gadolinium concentration of the enhancing part 0.6-1.8 mM per mmol/kg
  of dose, i.e. 0.06-0.18 mM at the standard 0.1 mmol/kg (extravascular extracellular
  volume 0.1-0.3 times a plasma concentration of about 0.5-0.7 mM a few minutes after
  injection), calibrated so that the standard-dose SPGR T1c gives a mean lesion-to-brain
  ratio near the 1.31 of the contrast-amplification study's gradient-echo T1c (seed 003;
  docs/phantom.md has the measured values). Earlier versions drew 1-6 mM per mmol/kg,
  which gave a lesion-to-brain ratio of about 1.9. R1 = R1_0 + r1 * C with r1 of gadoterate
  (``parameters.R1_RELAXIVITY_PER_MM_S``); the T2/T2* shortening is negligible for the
  short-TE T1-weighted images and is not modelled.
- metastases: long diameter 2-25 mm log-uniform, nearly round (other axes 80-100 %),
  at the grey-white junction; necrotic core in half of those >= 10 mm; oedema margin
  0.5-2 radii. Gliomas: long diameter 20-50 mm, other axes 60-100 %, irregular, in white
  matter, necrotic core (40-70 % of the size) in 70 %; oedema margin 5-20 mm.
- cases: metastases 55 %, glioma 15 %, no enhancing lesion 30 % (close to the case mix
  of the contrast-amplification study, seed 003); 1 + Poisson(2) metastases (at most 10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from lesionkit.simulate.lesions import (
    FractionMaps,
    Lesion,
    bounding_box,
    cortex,
    fraction_in_box,
    label_map,
    random_rotation,
    spacing_mm,
    voxel_to_world,
    weighted_values,
)
from lesionkit.simulate.parameters import R1_RELAXIVITY_PER_MM_S
from lesionkit.simulate.tissue import RATE_PROPERTIES, TissueMaps, mix

if TYPE_CHECKING:
    from lesionkit.simulate.template import Anatomy

COMPARTMENT_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "enhancing": {"t1_ms": (1200.0, 1600.0), "t2_ms": (90.0, 130.0), "t2s_ms": (40.0, 70.0),
                  "pd": (0.78, 0.88), "adc": (0.8, 1.6), "chi_ppb": (0.0, 20.0)},
    "necrosis": {"t1_ms": (2000.0, 3000.0), "t2_ms": (200.0, 400.0), "t2s_ms": (100.0, 200.0),
                 "pd": (0.88, 0.95), "adc": (2.0, 2.8), "chi_ppb": (-5.0, 5.0)},
    "oedema": {"t1_ms": (1200.0, 1500.0), "t2_ms": (110.0, 160.0), "t2s_ms": (55.0, 75.0),
               "pd": (0.78, 0.85), "adc": (1.3, 1.8), "chi_ppb": (-15.0, -5.0)},
}
UPTAKE_MM_PER_MMOL_KG = (0.6, 1.8)
STANDARD_DOSE_MMOL_KG = 0.1
CASE_PROBABILITIES = {"metastasis": 0.55, "glioma": 0.15, "none": 0.30}
METASTASIS_DIAMETER_MM = (2.0, 25.0)
GLIOMA_DIAMETER_MM = (20.0, 50.0)


@dataclass(frozen=True)
class TumourMaps:
    """Float32 compartment maps of the tumours of one subject on the anatomy grid.

    Attributes:
        fractions: per-tumour fractions (enhancing + necrotic parts).
        labels: int16 label map, one integer per tumour (oedema not included).
        enhancing: fraction of enhancing tumour tissue.
        necrosis: fraction of necrotic core.
        oedema: fraction of oedema (outside the tumours, within white matter).
        uptake: gadolinium uptake of the enhancing tissue (mM per mmol/kg of dose).
    """

    fractions: FractionMaps
    labels: np.ndarray
    enhancing: np.ndarray
    necrosis: np.ndarray
    oedema: np.ndarray
    uptake: np.ndarray


def _compartment_values(rng: np.random.Generator) -> dict[str, float]:
    return {f"{c}_{k}": float(rng.uniform(*r))
            for c, ranges in COMPARTMENT_RANGES.items() for k, r in ranges.items()}


def _log_uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(lo_hi[0]), np.log(lo_hi[1]))))


def tumour_sites(anatomy: Anatomy, kind: str, semi_mm: float = 0.0) -> np.ndarray:
    """Voxel indices (n, 3) where a tumour may centre.

    Metastases: white matter next to the cortex (grey-white junction); gliomas: white
    matter at least a third of their radius ``semi_mm`` from other tissue. Falls back to
    any white-matter voxel.
    """
    wm = (anatomy.wm >= 0.5) & anatomy.mask
    if kind == "metastasis":
        ok = wm & ndimage.binary_dilation(cortex(anatomy))
    else:
        depth = max(1, round(semi_mm / 3 / float(spacing_mm(anatomy.affine).max())))
        ok = ndimage.binary_erosion(wm, iterations=depth)
    return np.argwhere(ok if ok.any() else wm)


def draw_tumour(
    rng: np.random.Generator,
    anatomy: Anatomy,
    kind: str,
    label: int,
    sites: np.ndarray | None = None,
) -> Lesion:
    """Draw one metastasis or glioma (parameters only; see the module doc).

    ``sites`` (from :func:`tumour_sites`) saves recomputing the candidate centres.
    """
    if kind == "metastasis":
        long = _log_uniform(rng, METASTASIS_DIAMETER_MM)
        ratios = rng.uniform(0.8, 1.0, 2)
        irregularity = float(rng.uniform(0.0, 0.1))
        necrosis = float(rng.uniform(0.4, 0.7)) if long >= 10 and rng.random() < 0.5 else 0.0
        margin = float(rng.uniform(0.5, 2.0)) * long / 2
    elif kind == "glioma":
        long = float(rng.uniform(*GLIOMA_DIAMETER_MM))
        ratios = rng.uniform(0.6, 1.0, 2)
        irregularity = float(rng.uniform(0.1, 0.25))
        necrosis = float(rng.uniform(0.4, 0.7)) if rng.random() < 0.7 else 0.0
        margin = float(rng.uniform(5.0, 20.0))
    else:
        raise ValueError(f"unknown tumour kind {kind!r}; known: metastasis, glioma")
    semi = long / 2 * np.array([1.0, *ratios])
    props = {
        **_compartment_values(rng),
        "necrosis_ratio": necrosis,
        "oedema_margin_mm": margin,
        "uptake_mM_per_mmol_kg": float(rng.uniform(*UPTAKE_MM_PER_MMOL_KG)),
    }
    if sites is None:
        sites = tumour_sites(anatomy, kind, long / 2)
    centre = voxel_to_world(anatomy.affine, sites[rng.integers(len(sites))])
    return Lesion(label=label, kind=kind, centre_mm=tuple(float(c) for c in centre),
                  axes_mm=tuple(float(a) for a in semi), rotation=random_rotation(rng),
                  irregularity=irregularity, properties=props,
                  shape_seed=int(rng.integers(2**31)))


def draw_tumours(
    rng: np.random.Generator, anatomy: Anatomy, case: str | None = None, max_metastases: int = 10
) -> list[Lesion]:
    """Draw the tumours of one subject.

    Args:
        rng: seeded generator.
        anatomy: the subject's anatomy.
        case: "metastasis" (several), "glioma" (one) or "none"; None draws it from
            ``CASE_PROBABILITIES``.
        max_metastases: most metastases in one subject (1 + Poisson(2), capped).

    Returns:
        Lesions of kind "metastasis" or "glioma", labels 1, 2, ... (empty for "none").
    """
    if case is None:
        case = str(rng.choice(list(CASE_PROBABILITIES), p=list(CASE_PROBABILITIES.values())))
    if case == "none":
        return []
    if case == "glioma":
        return [draw_tumour(rng, anatomy, "glioma", 1)]
    n = min(1 + int(rng.poisson(2.0)), max_metastases)
    sites = tumour_sites(anatomy, "metastasis")
    out: list[Lesion] = []
    for i in range(n):
        for _try in range(20):  # keep metastases apart (at most 20 redraws)
            les = draw_tumour(rng, anatomy, "metastasis", i + 1, sites)
            if all(np.linalg.norm(np.subtract(les.centre_mm, o.centre_mm))
                   > max(les.axes_mm) + max(o.axes_mm) for o in out):
                break
        out.append(les)
    return out


def tumour_maps(lesions: list[Lesion], anatomy: Anatomy) -> TumourMaps:
    """Compartment fractions of the tumours on the anatomy grid (pure).

    Tumours occupy grey and white matter inside the brain mask (not CSF); the necrotic
    core is the tumour shape scaled by ``necrosis_ratio``; oedema is the shell out to
    ``oedema_margin_mm`` beyond the surface, limited to white matter.
    """
    shape, aff = anatomy.mask.shape, anatomy.affine
    tissue = np.clip(anatomy.gm + anatomy.wm, 0, 1) * anatomy.mask
    wm = np.clip(anatomy.wm, 0, 1) * anatomy.mask
    h = float(np.prod(spacing_mm(aff)) ** (1 / 3))
    enhancing, necrosis, oedema = (np.zeros(shape, np.float32) for _ in range(3))
    uptake_pairs, crops = [], {}
    for les in lesions:
        margin = les.properties["oedema_margin_mm"]
        box = bounding_box(les, aff, shape, margin + 2 * h)
        outer = fraction_in_box(les, box, aff) * tissue[box]
        ratio = les.properties["necrosis_ratio"]
        core = np.zeros_like(outer)
        if ratio > 0:
            small = Lesion(les.label, les.kind, les.centre_mm,
                           tuple(a * ratio for a in les.axes_mm), les.rotation,
                           les.irregularity, shape_seed=les.shape_seed)
            core = np.minimum(fraction_in_box(small, box, aff) * tissue[box], outer)
        halo = np.clip(fraction_in_box(les, box, aff, grow_mm=margin) * wm[box] - outer, 0, 1)
        crops[les.label] = (box, outer)
        enhancing[box] += outer - core
        necrosis[box] += core
        oedema[box] += halo
        uptake_pairs.append((box, outer - core, les.properties["uptake_mM_per_mmol_kg"]))
    fractions = FractionMaps(shape, crops, limit=tissue)
    total = fractions.total()
    enhancing, necrosis = np.clip(enhancing, 0, 1), np.clip(necrosis, 0, 1)
    oedema = np.clip(np.minimum(oedema, wm - total), 0, 1)
    _, uptake = weighted_values(uptake_pairs, False, shape)
    return TumourMaps(fractions, label_map(fractions) if lesions else np.zeros(shape, np.int16),
                      enhancing, necrosis, oedema.astype(np.float32), uptake)


def apply_tumours(maps: TissueMaps, lesions: list[Lesion], tmaps: TumourMaps) -> TissueMaps:
    """Paint oedema, enhancing tissue and necrosis into pre-contrast property maps (pure).

    The three compartments are mixed in turn with fractions rescaled so that each ends
    with its own share of the voxel (oedema f_o / (1 - f_e - f_n), enhancing
    f_e / (1 - f_n), necrosis f_n).
    """
    if not lesions:
        return maps
    f_o, f_e, f_n = tmaps.oedema, tmaps.enhancing, tmaps.necrosis

    def share(f: np.ndarray, rest: np.ndarray) -> np.ndarray:
        return np.where(rest > 1e-6, f / np.maximum(rest, 1e-6), 1.0).clip(0, 1)

    steps = (("oedema", f_o, share(f_o, 1 - f_e - f_n)), ("enhancing", f_e, share(f_e, 1 - f_n)),
             ("necrosis", f_n, f_n))
    boxes = {les.label: tmaps.fractions.crop(les.label)[0] for les in lesions}
    for compartment, fraction, effective in steps:
        values = {}
        for key in COMPARTMENT_RANGES[compartment]:
            pairs = [(box, fraction[box], les.properties[f"{compartment}_{key}"])
                     for les in lesions for box in (boxes[les.label],)]
            _, values[key] = weighted_values(pairs, key in RATE_PROPERTIES, maps.shape)
        maps = mix(maps, np.where(fraction > 0, effective, 0.0), values)
    return maps


def concentration_mM(  # noqa: N802 (mM: the unit, as in the field)
    enhancing_fraction: np.ndarray,
    dose_mmol_per_kg: float,
    uptake_mM_per_mmol_kg: np.ndarray | float,
) -> np.ndarray:
    """Tissue gadolinium concentration (mM), proportional to the injected dose.

    Args:
        enhancing_fraction: 0..1 fraction of enhancing tissue per voxel.
        dose_mmol_per_kg: injected dose (0.1 standard, 0.025 low dose).
        uptake_mM_per_mmol_kg: concentration per unit dose (map or number).
    """
    c = np.asarray(enhancing_fraction, np.float32) * np.float32(dose_mmol_per_kg)
    return (c * np.asarray(uptake_mM_per_mmol_kg, np.float32)).astype(np.float32)


def r1_with_contrast(
    r1_per_s: np.ndarray, concentration: np.ndarray, relaxivity: float = R1_RELAXIVITY_PER_MM_S
) -> np.ndarray:
    """Post-contrast R1 (s^-1): R1 = R1_0 + r1 * C, with r1 in mM^-1 s^-1 and C in mM."""
    return (np.asarray(r1_per_s, np.float32) + np.float32(relaxivity) * concentration).astype(
        np.float32)
