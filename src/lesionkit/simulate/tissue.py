"""Tissue property maps of the phantom and partial-volume mixing.

Relaxation rates (R1 = 1/T1, R2 = 1/T2, R2* = 1/T2*) mix linearly with tissue fraction
(fast-exchange approximation); proton density, susceptibility and ADC mix linearly.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lesionkit.simulate.template import Anatomy

RATE_PROPERTIES = ("t1_ms", "t2_ms", "t2s_ms")
LINEAR_PROPERTIES = ("pd", "chi_ppb", "adc")
PROPERTIES = RATE_PROPERTIES + LINEAR_PROPERTIES


@dataclass(frozen=True)
class TissueMaps:
    """Float32 tissue property maps on one voxel grid.

    Attributes:
        t1_ms: longitudinal relaxation time (ms).
        t2_ms: transverse relaxation time (ms).
        t2s_ms: effective transverse relaxation time T2* (ms).
        pd: proton density (0-1, fraction of pure water; 0 outside the head).
        chi_ppb: magnetic susceptibility relative to CSF (ppb).
        adc: apparent diffusion coefficient (1e-3 mm^2/s).
    """

    t1_ms: np.ndarray
    t2_ms: np.ndarray
    t2s_ms: np.ndarray
    pd: np.ndarray
    chi_ppb: np.ndarray
    adc: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        """Grid shape shared by all maps."""
        return self.t1_ms.shape

    def as_dict(self) -> dict[str, np.ndarray]:
        """Maps keyed by property name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def tissue_fractions(anatomy: Anatomy) -> dict[str, np.ndarray]:
    """Fractions of the four phantom tissues (wm, cortical_gm, deep_gm, csf), float32."""
    gm = anatomy.gm.astype(np.float32)
    deep = anatomy.deep_gm.astype(np.float32)
    return {
        "wm": anatomy.wm.astype(np.float32),
        "cortical_gm": gm * (1.0 - deep),
        "deep_gm": gm * deep,
        "csf": anatomy.csf.astype(np.float32),
    }


def tissue_maps(anatomy: Anatomy, values: dict[str, dict[str, float]]) -> TissueMaps:
    """Partial-volume property maps from tissue fractions and per-tissue values.

    Args:
        anatomy: tissue probability maps (wm, gm with its deep part, csf).
        values: ``{tissue: {property: value}}`` for tissues wm, cortical_gm, deep_gm, csf
            and the properties of :class:`TissueMaps` (T1/T2/T2* in ms, chi in ppb,
            ADC in 1e-3 mm^2/s, pd 0-1), as from ``parameters.draw_tissue_values``.

    Returns:
        Maps where relaxation rates, chi and ADC are mixed with the tissue fractions
        normalised to sum 1 (voxels with no tissue take CSF relaxation, chi 0), and pd
        with the raw fractions, so it fades to 0 outside the brain.
    """
    frac = tissue_fractions(anatomy)
    total = sum(frac.values())
    empty = total <= 1e-6
    norm = np.where(empty, 1.0, total).astype(np.float32)
    out: dict[str, np.ndarray] = {}
    for prop in PROPERTIES:
        acc = np.zeros(anatomy.gm.shape, np.float32)
        for tissue, f in frac.items():
            v = float(values[tissue][prop])
            acc += f * np.float32(1.0 / v if prop in RATE_PROPERTIES else v)
        if prop == "pd":
            out[prop] = acc
            continue
        acc = acc / norm
        if prop in RATE_PROPERTIES:
            csf_rate = np.float32(1.0 / float(values["csf"][prop]))
            acc = np.where(empty, csf_rate, acc)
            out[prop] = (1.0 / acc).astype(np.float32)
        else:
            background = float(values["csf"][prop]) if prop == "adc" else 0.0
            out[prop] = np.where(empty, np.float32(background), acc).astype(np.float32)
    return TissueMaps(**out)


def mix(
    maps: TissueMaps, fraction: np.ndarray, properties: dict[str, float | np.ndarray]
) -> TissueMaps:
    """Replace tissue properties by given values in proportion to a fraction map.

    Relaxation times are mixed as rates (1/T), the other properties linearly:
    ``new = (1 - f) * old + f * value``. Properties not named are left unchanged.

    Args:
        maps: the current property maps.
        fraction: 0..1 map on the same grid (e.g. a lesion's partial-volume fraction).
        properties: ``{property: value}`` with TissueMaps field names and units
            (t1_ms, t2_ms, t2s_ms in ms; pd 0-1; chi_ppb in ppb; adc in 1e-3 mm^2/s);
            a value is a number or a map on the same grid.

    Returns:
        A new :class:`TissueMaps`.

    Example:
        >>> lesion = mix(maps, frac, {"t1_ms": 1500.0, "adc": 1.2})  # doctest: +SKIP
    """
    unknown = set(properties) - set(PROPERTIES)
    if unknown:
        raise ValueError(f"unknown tissue properties {sorted(unknown)}; known: {PROPERTIES}")
    f = np.clip(np.asarray(fraction, np.float32), 0.0, 1.0)
    if f.shape != maps.shape:
        raise ValueError(f"fraction shape {f.shape} does not match maps shape {maps.shape}")
    changes = {}
    for prop, value in properties.items():
        old = getattr(maps, prop)
        new = np.asarray(value, np.float32)
        if prop in RATE_PROPERTIES:
            rate = (1.0 - f) / old + f / new
            changes[prop] = (1.0 / rate).astype(np.float32)
        else:
            changes[prop] = ((1.0 - f) * old + f * new).astype(np.float32)
    return replace(maps, **changes)
