"""Every physical value of the phantom, with its source, and per-subject draws.

Sources: T1 (3T/7T), T2* (3T), chi and ADC ranges from the table "Physical values for
simulation" in the project's METHODS.md (literature ranges). Values it lacks:
- T2 at 3T: WM 70-80 ms, cortical GM 85-100 ms, deep GM 65-80 ms, CSF 1500-2000 ms
  (Wansapura et al. 1999, JMRI 9:531; Bojorquez et al. 2017, MRI 35:69).
- T2 and T2* at 7T: WM 45-55 / 25-30 ms, cortical GM 50-60 / 30-36 ms, deep GM 40-50 /
  15-25 ms, CSF 800-1200 / 300-600 ms (Peters et al. 2007, MRI 25:748; Cox & Gowland 2010).
- Proton density (water fraction): WM 0.68-0.72, GM 0.78-0.84, CSF 0.97-1.0
  (Tofts 2003, Quantitative MRI of the Brain, ch. 4).

Each subject draws one quantile per tissue and property; the same quantile maps onto
every field strength's range, so a subject with long T1 at 3T also has long T1 at 7T.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TISSUES = ("wm", "cortical_gm", "deep_gm", "csf")
PROPERTIES = ("t1_ms", "t2_ms", "t2s_ms", "pd", "chi_ppb", "adc")
FIELDS = ("3T", "7T")


@dataclass(frozen=True)
class TissueRange:
    """Literature range (low, high) of each property of one tissue at one field."""

    t1_ms: tuple[float, float]
    t2_ms: tuple[float, float]
    t2s_ms: tuple[float, float]
    pd: tuple[float, float]
    chi_ppb: tuple[float, float]
    adc: tuple[float, float]


_PD = {"wm": (0.68, 0.72), "cortical_gm": (0.78, 0.84), "deep_gm": (0.78, 0.84),
       "csf": (0.97, 1.0)}
_CHI = {"wm": (-30.0, -20.0), "cortical_gm": (10.0, 20.0), "deep_gm": (50.0, 150.0),
        "csf": (0.0, 0.0)}
_ADC = {"wm": (0.7, 0.8), "cortical_gm": (0.8, 0.9), "deep_gm": (0.75, 0.85),
        "csf": (2.9, 3.1)}

TISSUE_RANGES: dict[str, dict[str, TissueRange]] = {
    "3T": {
        "wm": TissueRange((800, 1100), (70, 80), (45, 55), _PD["wm"], _CHI["wm"], _ADC["wm"]),
        "cortical_gm": TissueRange((1300, 1600), (85, 100), (50, 65), _PD["cortical_gm"],
                                   _CHI["cortical_gm"], _ADC["cortical_gm"]),
        "deep_gm": TissueRange((1100, 1400), (65, 80), (30, 45), _PD["deep_gm"],
                               _CHI["deep_gm"], _ADC["deep_gm"]),
        "csf": TissueRange((3500, 4500), (1500, 2000), (500, 1500), _PD["csf"], _CHI["csf"],
                           _ADC["csf"]),
    },
    "7T": {
        "wm": TissueRange((1100, 1400), (45, 55), (25, 30), _PD["wm"], _CHI["wm"], _ADC["wm"]),
        "cortical_gm": TissueRange((1800, 2100), (50, 60), (30, 36), _PD["cortical_gm"],
                                   _CHI["cortical_gm"], _ADC["cortical_gm"]),
        "deep_gm": TissueRange((1500, 1800), (40, 50), (15, 25), _PD["deep_gm"],
                               _CHI["deep_gm"], _ADC["deep_gm"]),
        "csf": TissueRange((4000, 4500), (800, 1200), (300, 600), _PD["csf"], _CHI["csf"],
                           _ADC["csf"]),
    },
}

# Contrast agent (gadoterate): longitudinal relaxivity at 1.5-3T, mM^-1 s^-1 (METHODS.md).
R1_RELAXIVITY_PER_MM_S = 3.75


# Acquisitions. Times in ms, flip angles in degrees, SNR = mean brain signal / noise SD.
@dataclass(frozen=True)
class Acquisition:
    """Sequence parameters of one simulated image.

    Attributes:
        name: short label.
        sequence: signal equation: "spgr", "ir-gre" (MPRAGE-like), "ir-se" (FLAIR),
            "se" (spin echo) or "map" (a quantitative map, no signal equation).
        field: "3T" or "7T".
        tr_ms, te_ms, ti_ms: repetition, echo and inversion times (ms; ti 0 = none).
        flip_deg: excitation flip angle (degrees).
        snr: mean signal in the brain over the noise SD (magnitude images: SD of each
            complex channel; quantitative maps: Gaussian SD relative to the brain mean).
        blur_factor: Gaussian point-spread FWHM as a multiple of the voxel size.
        bias_amplitude: peak relative amplitude of the smooth receive bias (0 = none).
    """

    name: str
    sequence: str
    field: str
    tr_ms: float
    te_ms: float
    ti_ms: float
    flip_deg: float
    snr: float
    blur_factor: float = 1.0
    bias_amplitude: float = 0.1


# MPRAGE-like T1w (inversion-recovery gradient echo): CSF near null, WM > GM.
T1W_MPRAGE = Acquisition("T1w-MPRAGE", "ir-gre", "3T", tr_ms=2300, te_ms=2.5, ti_ms=1000,
                         flip_deg=9, snr=30)
# FLAIR (inversion-recovery spin echo): CSF nulled, GM > WM, lesions bright.
FLAIR = Acquisition("FLAIR", "ir-se", "3T", tr_ms=9000, te_ms=90, ti_ms=2500, flip_deg=90,
                    snr=25)
# Pre-contrast T1 (3D spoiled gradient echo), also the post-contrast T1c.
T1_SPGR = Acquisition("T1-SPGR", "spgr", "3T", tr_ms=8.0, te_ms=3.0, ti_ms=0, flip_deg=12,
                      snr=30)
# Turbo-spin-echo-like T1w reference (stronger T1 contrast of lesions after gadolinium).
T1_TSE = Acquisition("T1-TSE", "se", "3T", tr_ms=500, te_ms=10, ti_ms=0, flip_deg=90, snr=30)
# Quantitative maps (Gaussian noise of the stated SNR; no receive bias).
R1_3T = Acquisition("R1-3T", "map", "3T", 0, 0, 0, 0, snr=12, blur_factor=1.2,
                    bias_amplitude=0.0)
R1_7T = Acquisition("R1-7T", "map", "7T", 0, 0, 0, 0, snr=20, blur_factor=1.0,
                    bias_amplitude=0.0)
ADC_MAP = Acquisition("ADC", "map", "3T", 0, 0, 0, 0, snr=15, blur_factor=1.2,
                      bias_amplitude=0.0)

# Residual transmit-field error left in R1 maps after B1 correction (relative, peak).
R1_RESIDUAL_B1 = 0.03
# Transmit field B1 (relative) range for flip-angle-dependent sequences (MRF, SPGR).
B1_RANGE = {"3T": (0.85, 1.15), "7T": (0.7, 1.3)}
# MRF-EPI: SNR of the complex Gaussian noise on each of the 35 frames, relative to the
# brain-mean magnitude of the frame average; T2* drawn at 3T.
MRF_SNR = 25.0
# QSM: SD of the local-field noise (ppb) = 1 / (SNR x gamma B0 TE) for a 3T gradient echo
# with magnitude SNR 40 at TE 20 ms (phase noise SD = 1 / magnitude SNR): about 1.6 ppb.
GAMMA_RAD_PER_S_T = 2 * np.pi * 42.577e6
QSM_MAGNITUDE_SNR = 40.0
QSM_TE_MS = 20.0
QSM_NOISE_PPB = 1e9 / (QSM_MAGNITUDE_SNR * GAMMA_RAD_PER_S_T * 3.0 * QSM_TE_MS / 1000.0)


def draw_tissue_quantiles(rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """Draw one 0..1 quantile per tissue and property (uniform)."""
    return {t: {p: float(rng.uniform()) for p in PROPERTIES} for t in TISSUES}


def tissue_values(quantiles: dict[str, dict[str, float]], field: str = "3T"
                  ) -> dict[str, dict[str, float]]:
    """Map quantiles onto the literature ranges of one field strength.

    Returns:
        ``{tissue: {property: value}}`` (T1/T2/T2* ms, pd 0-1, chi ppb, ADC 1e-3 mm^2/s).
    """
    if field not in TISSUE_RANGES:
        raise ValueError(f"unknown field {field!r}; known: {list(TISSUE_RANGES)}")
    out = {}
    for tissue, props in quantiles.items():
        rng_t = TISSUE_RANGES[field][tissue]
        out[tissue] = {p: float(np.interp(q, (0, 1), getattr(rng_t, p))) for p, q in props.items()}
    return out


def draw_tissue_values(rng: np.random.Generator, field: str = "3T"
                       ) -> dict[str, dict[str, float]]:
    """Per-subject tissue values, uniform within each literature range at ``field``."""
    return tissue_values(draw_tissue_quantiles(rng), field)
