"""Every physical value of the phantom, with its source, and per-subject draws.

Sources: T1 (3T/7T), T2* (3T), chi and ADC ranges from the table "Physical values for
simulation" in the project's METHODS.md (literature ranges). Values it lacks:
- T2 at 3T: WM 70-80 ms, cortical GM 85-100 ms, deep GM 65-80 ms, CSF 1500-2000 ms
  (Wansapura et al. 1999, JMRI 9:531; Bojorquez et al. 2017, MRI 35:69).
- T2 and T2* at 7T: WM 45-55 / 25-30 ms, cortical GM 50-60 / 30-36 ms, deep GM 40-50 /
  15-25 ms, CSF 800-1200 / 300-600 ms (Peters et al. 2007, MRI 25:748; Cox & Gowland 2010).
- Proton density (water fraction): WM 0.68-0.72, GM 0.78-0.84, CSF 0.97-1.0
  (Tofts 2003, Quantitative MRI of the Brain, ch. 4).
- CSF T1 at 3T 4000-4500 ms: CSF T1 is about 4.4 s and nearly field-independent
  (Rooney et al. 2007, Magn Reson Med 57:308); the 3T and 7T ranges are the same.
- The 3T WM/GM T1 and T2 ranges span the in vivo values of Wansapura et al. 1999
  (WM 832 / 80 ms, GM 1331 / 110 ms) and lie between them and Stanisz et al. 2005
  (Magn Reson Med 54:507; WM 1084 / 69 ms, GM 1820 / 99 ms).

Each subject draws one quantile per property shared by all tissues plus a small jitter
per tissue (``draw_tissue_quantiles``), so tissue contrasts vary little between subjects;
the same quantile maps onto every field strength's range, so a subject with long T1 at
3T also has long T1 at 7T. Sequence parameters are chosen so that the contrast ratios of
the weighted images fall inside the ranges of ``realism.PUBLISHED_RATIOS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TISSUES = ("wm", "cortical_gm", "deep_gm", "csf")
PROPERTIES = ("t1_ms", "t2_ms", "t2s_ms", "pd", "chi_ppb", "adc")
FIELDS = ("1.5T", "3T", "7T")


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
    # 1.5T (domain randomisation): T1/T2 of WM and GM span Stanisz et al. 2005 (1.5T: WM
    # 884 / 72 ms, GM 1124 / 95 ms) and the 3T ranges times their 1.5T/3T T1 ratio (0.82);
    # deep GM T1 scaled alike; T2 barely changes with field (Stanisz 2005); T2* from the
    # 3T values with R2* - R2 proportional to B0 (static dephasing, Yablonskiy & Haacke
    # 1994, MRM 32:749); CSF T1 field-independent (Rooney et al. 2007).
    "1.5T": {
        "wm": TissueRange((650, 900), (70, 82), (52, 65), _PD["wm"], _CHI["wm"], _ADC["wm"]),
        "cortical_gm": TissueRange((1000, 1250), (88, 105), (62, 80), _PD["cortical_gm"],
                                   _CHI["cortical_gm"], _ADC["cortical_gm"]),
        "deep_gm": TissueRange((900, 1150), (70, 85), (42, 58), _PD["deep_gm"],
                               _CHI["deep_gm"], _ADC["deep_gm"]),
        "csf": TissueRange((4000, 4500), (1500, 2000), (600, 1800), _PD["csf"], _CHI["csf"],
                           _ADC["csf"]),
    },
    "3T": {
        "wm": TissueRange((800, 1100), (70, 80), (45, 55), _PD["wm"], _CHI["wm"], _ADC["wm"]),
        "cortical_gm": TissueRange((1300, 1600), (85, 100), (50, 65), _PD["cortical_gm"],
                                   _CHI["cortical_gm"], _ADC["cortical_gm"]),
        "deep_gm": TissueRange((1100, 1400), (65, 80), (30, 45), _PD["deep_gm"],
                               _CHI["deep_gm"], _ADC["deep_gm"]),
        "csf": TissueRange((4000, 4500), (1500, 2000), (500, 1500), _PD["csf"], _CHI["csf"],
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
        echo_spacing_ms: time between the excitations of an MPRAGE readout train (ms).
        readouts: excitations per inversion of an MPRAGE ("ir-gre"); 0 = one readout
            right at TI with full saturation (the simple inversion-recovery model).
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
    echo_spacing_ms: float = 0.0
    readouts: int = 0


# 3D MPRAGE T1w (Siemens 3 T product protocol: TR 1900, TI 900, 9 deg, 176 readouts 7 ms
# apart): CSF dark, WM > GM. The readout train is modelled (signal.mprage).
T1W_MPRAGE = Acquisition("T1w-MPRAGE", "ir-gre", "3T", tr_ms=1900, te_ms=2.5, ti_ms=900,
                         flip_deg=9, snr=30, echo_spacing_ms=7.0, readouts=176)
# 2D turbo-spin-echo FLAIR: CSF nulled (TI 2500 ms nulls T1 about 4.35 s), GM > WM,
# lesions bright; TE 110 ms within the clinical 80-125 ms.
FLAIR = Acquisition("FLAIR", "ir-se", "3T", tr_ms=9000, te_ms=110, ti_ms=2500, flip_deg=90,
                    snr=25)
# 2D turbo-spin-echo T2w (clinical TR 4000-6000, TE 80-100 ms); not written by a cohort.
T2W_TSE = Acquisition("T2w-TSE", "se", "3T", tr_ms=5000, te_ms=90, ti_ms=0, flip_deg=90,
                      snr=30)
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
# 1.5T: about +-10 % over the head (Sled & Pike 1998, IEEE TMI 17:653).
B1_RANGE = {"1.5T": (0.9, 1.1), "3T": (0.85, 1.15), "7T": (0.7, 1.3)}
# MRF-EPI: SNR of the complex Gaussian noise on each of the 35 frames, relative to the
# brain-mean magnitude of the frame average; T2* drawn at 3T.
MRF_SNR = 25.0
# QSM: SD of the local-field noise (ppb) = 1 / (SNR x gamma B0 TE) for a 3T gradient echo
# with magnitude SNR 40 at TE 20 ms (phase noise SD = 1 / magnitude SNR): about 1.6 ppb.
GAMMA_RAD_PER_S_T = 2 * np.pi * 42.577e6
QSM_MAGNITUDE_SNR = 40.0
QSM_TE_MS = 20.0
QSM_NOISE_PPB = 1e9 / (QSM_MAGNITUDE_SNR * GAMMA_RAD_PER_S_T * 3.0 * QSM_TE_MS / 1000.0)


#: Half-width of the per-tissue jitter around a subject's shared quantile of a property.
TISSUE_JITTER = 0.1


def reflect_unit(x: float) -> float:
    """Fold ``x`` into 0..1 by reflection at the ends (keeps a uniform density uniform)."""
    x = abs(float(x)) % 2.0
    return 2.0 - x if x > 1.0 else x


def draw_tissue_quantiles(rng: np.random.Generator, jitter: float = TISSUE_JITTER
                          ) -> dict[str, dict[str, float]]:
    """Draw a 0..1 quantile per tissue and property, correlated across tissues.

    Each property gets one subject quantile shared by all tissues (uniform), and each
    tissue adds its own uniform jitter of +-``jitter``, reflected into 0..1; every
    quantile is still uniform on 0..1, but a subject with long WM T1 also has long GM
    and CSF T1, so contrasts between tissues stay within their usual spread.
    """
    shared = {p: float(rng.uniform()) for p in PROPERTIES}
    return {t: {p: reflect_unit(shared[p] + rng.uniform(-jitter, jitter)) for p in PROPERTIES}
            for t in TISSUES}


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
    """Per-subject tissue values at ``field``: uniform within each literature range,
    correlated across tissues (see :func:`draw_tissue_quantiles`)."""
    return tissue_values(draw_tissue_quantiles(rng), field)
