"""Contrast-enhancement metrics and matching of lesion detections to reference lesions.

CNR, LBR and CEP follow the contrast-amplification study: signal intensities (SI) are
region means of the image, in its own (arbitrary) unit. The normal-brain region is
the brain mask without the lesion voxels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist

__all__ = [
    "DetectionMatch",
    "cep",
    "cnr",
    "detection_table",
    "lbr",
    "match_detections",
]

DEFAULT_STRATA_MM: tuple[float, ...] = (0.0, 5.0, 10.0)


def _regions(image: np.ndarray, lesion: np.ndarray, brain: np.ndarray) -> tuple[np.ndarray, ...]:
    image = np.asarray(image, dtype=np.float64)
    lesion = np.asarray(lesion).astype(bool)
    normal = np.asarray(brain).astype(bool) & ~lesion
    if lesion.shape != image.shape or normal.shape != image.shape:
        raise ValueError("image, lesion and brain masks must have the same shape")
    if not lesion.any() or not normal.any():
        raise ValueError("the lesion mask and the normal-brain region must not be empty")
    return image[lesion], image[normal]


def cnr(image: np.ndarray, lesion: np.ndarray, brain: np.ndarray) -> float:
    """Contrast-to-noise ratio (SI_lesion - SI_brain) / SD_brain (dimensionless).

    SI are means; SD_brain is the standard deviation (ddof=0) over the brain mask
    without the lesion.
    """
    in_lesion, in_brain = _regions(image, lesion, brain)
    return float((in_lesion.mean() - in_brain.mean()) / in_brain.std())


def lbr(image: np.ndarray, lesion: np.ndarray, brain: np.ndarray) -> float:
    """Lesion-to-brain ratio SI_lesion / SI_brain (dimensionless)."""
    in_lesion, in_brain = _regions(image, lesion, brain)
    return float(in_lesion.mean() / in_brain.mean())


def cep(post: np.ndarray, pre: np.ndarray, lesion: np.ndarray) -> float:
    """Contrast enhancement percentage 100 * (SI_post - SI_pre) / SI_pre in the lesion (%).

    ``post`` and ``pre`` must share one intensity scale (same sequence and scaling).
    """
    lesion = np.asarray(lesion).astype(bool)
    if not lesion.any():
        raise ValueError("the lesion mask is empty")
    post_si = float(np.asarray(post, dtype=np.float64)[lesion].mean())
    pre_si = float(np.asarray(pre, dtype=np.float64)[lesion].mean())
    return 100.0 * (post_si - pre_si) / pre_si


@dataclass(frozen=True, eq=False)
class DetectionMatch:
    """Detections of one case matched against its reference lesions.

    Attributes:
        within: boolean (n_detections, n_reference): detection i lies within the
            matching radius of reference lesion j.
        reference_long_mm: long axis of each reference lesion (mm).
    """

    within: np.ndarray
    reference_long_mm: np.ndarray

    @property
    def found(self) -> np.ndarray:
        """Per reference lesion: matched by at least one detection."""
        return self.within.any(axis=0)

    @property
    def false_detections(self) -> int:
        """Detections that match no reference lesion."""
        return int(np.count_nonzero(~self.within.any(axis=1)))

    def counts(self, min_long_mm: float = 0.0) -> dict[str, int]:
        """TP / FN over reference lesions with long axis >= ``min_long_mm``.

        ``tp`` counts found reference lesions; ``fp`` counts detections matching no
        reference lesion of any size; ``true_detections`` counts detections matching a
        lesion of the stratum (several detections of one lesion are one TP and are
        not false).
        """
        stratum = self.reference_long_mm >= min_long_mm
        found = self.found[stratum]
        return {
            "tp": int(np.count_nonzero(found)),
            "fn": int(np.count_nonzero(~found)),
            "fp": self.false_detections,
            "true_detections": int(np.count_nonzero(self.within[:, stratum].any(axis=1))),
        }


def match_detections(
    detected_centres_mm: np.ndarray,
    reference_centres_mm: np.ndarray,
    reference_long_mm: Sequence[float],
    reference_short_mm: Sequence[float],
) -> DetectionMatch:
    """Match detected lesion centres to reference lesions by distance (world mm).

    A detection matches a reference lesion when the distance between their centres
    is below half the mean of the lesion's long and short axes,
    ``|d - r| < (long + short) / 4``.

    Args:
        detected_centres_mm: (n_detections, 3) centres in mm (may be empty).
        reference_centres_mm: (n_reference, 3) centres in mm.
        reference_long_mm: long axis of each reference lesion (mm).
        reference_short_mm: short axis of each reference lesion (mm).
    """
    detected = np.asarray(detected_centres_mm, dtype=np.float64).reshape(-1, 3)
    reference = np.asarray(reference_centres_mm, dtype=np.float64).reshape(-1, 3)
    long_mm = np.asarray(reference_long_mm, dtype=np.float64).reshape(-1)
    short_mm = np.asarray(reference_short_mm, dtype=np.float64).reshape(-1)
    if not len(long_mm) == len(short_mm) == len(reference):
        raise ValueError("one long and one short axis per reference lesion are needed")
    radius = (long_mm + short_mm) / 4.0
    within = cdist(detected, reference) < radius[None, :]
    within = within.reshape(len(detected), len(reference))
    return DetectionMatch(within=within, reference_long_mm=long_mm)


def detection_table(
    matches: Sequence[DetectionMatch], strata_mm: Sequence[float] = DEFAULT_STRATA_MM
) -> pd.DataFrame:
    """Pool per-case matches into detection statistics per lesion-size stratum.

    Returns one row per stratum (``min_long_mm``; 0 means all lesions) with tp, fn,
    fp, sensitivity = tp / (tp + fn), false detections per case = fp / n_cases,
    PPV = true detections / (true detections + fp) and F1 = 2 PPV sens / (PPV + sens).
    Undefined ratios are NaN.
    """
    rows = []
    for min_long in strata_mm:
        total = {"tp": 0, "fn": 0, "fp": 0, "true_detections": 0}
        for match in matches:
            for key, value in match.counts(min_long).items():
                total[key] += value
        with np.errstate(invalid="ignore", divide="ignore"):
            sensitivity = np.float64(total["tp"]) / (total["tp"] + total["fn"])
            ppv = np.float64(total["true_detections"]) / (total["true_detections"] + total["fp"])
            f1 = 2 * ppv * sensitivity / (ppv + sensitivity) if ppv * sensitivity else 0.0
        rows.append(
            {
                "min_long_mm": float(min_long),
                "cases": len(matches),
                **total,
                "sensitivity": float(sensitivity),
                "false_detections_per_case": total["fp"] / len(matches) if matches else np.nan,
                "ppv": float(ppv),
                "f1": float(f1),
            }
        )
    return pd.DataFrame(rows)
