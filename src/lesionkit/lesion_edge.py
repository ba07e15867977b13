"""How far around a lesion's edge a bright band runs: rim coverage features per lesion.

Readers call an MS lesion rim+ when a paramagnetic band runs around most of its edge on
susceptibility images; a vein passing beside a lesion brightens one side of it only
(the NAIMS consensus statement: Bagnato et al. 2024, Brain, doi:10.1093/brain/awae013).
Texture features computed inside the lesion (PyRadiomics) see how bright the edge is,
not how far around it the brightness goes. :func:`edge_features` measures that: the
edge band of the lesion (its outer ``inside_mm`` and the first ``outside_mm`` around it)
is cut into sectors by the direction from the lesion's centre (``sectors`` directions
spread evenly over the sphere); each sector takes the larger of the image's medians in
its part inside and its part outside the lesion (a rim may lie either side of a drawn
outline); quantiles over the sectors are compared with the lesion's core and with the
tissue around it. A band around two thirds of the edge lifts the sectors' 33rd
percentile; a crescent on one side lifts only the upper quantiles.

Used as a ``LesionFeatures`` function (:func:`radiomics_and_edge`), so the features are
cached per lesion with the radiomics features they are appended to.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from lesionkit.lesions import radiomics_features

#: Names of the features of :func:`edge_features`, in order (values in the image's unit,
#: but ``edge_coverage``, a fraction of the sectors).
EDGE_FEATURES = ("edge_over_core_q33", "edge_over_core_q50", "edge_over_core_q67",
                 "edge_over_surround_q33", "edge_over_surround_q67", "edge_coverage")


@functools.cache
def sector_directions(count: int) -> np.ndarray:
    """(count, 3) unit vectors spread evenly over the sphere (a Fibonacci lattice)."""
    step = np.arange(count) + 0.5
    z = 1.0 - 2.0 * step / count
    radius = np.sqrt(1.0 - z * z)
    azimuth = np.pi * (1.0 + 5.0 ** 0.5) * step
    return np.stack([radius * np.cos(azimuth), radius * np.sin(azimuth), z], axis=1)


def edge_features(volume: np.ndarray, mask: np.ndarray, spacing: Sequence[float],
                  inside_mm: float = 2.0, outside_mm: float = 1.0,
                  surround_mm: tuple[float, float] = (2.0, 4.0), sectors: int = 26,
                  min_sectors: int = 8) -> dict[str, float]:
    """Rim coverage features of one lesion.

    Args:
        volume: (x, y, z) image crop around the lesion (e.g. QSM in ppb), with at least
            ``surround_mm[1]`` of context where the image has it.
        mask: (x, y, z) lesion mask of the crop.
        spacing: Voxel size (mm).
        inside_mm: Depth of the edge band inside the lesion (mm; a voxel's depth is the
            distance from its centre to the nearest centre outside the lesion, so 2 takes
            the two outer layers of 1 mm voxels).
        outside_mm: Width of the edge band outside the lesion (mm).
        surround_mm: Distances from the lesion (mm) of the tissue around it.
        sectors: Directions the edge band is cut into.
        min_sectors: Fewest sectors holding edge voxels; fewer give NaN features (a lesion
            too small to have an edge of several sides).

    Returns:
        ``edge_over_core_qNN``: the NN-th percentile over sectors of the sector values,
        minus the median of the lesion's core (the lesion deeper than ``inside_mm``, or
        the whole lesion where nothing is that deep), in the image's unit;
        ``edge_over_surround_qNN``: the same minus the median of the surrounding tissue;
        ``edge_coverage``: the fraction of sectors whose value is above both by more
        than the surrounding tissue's standard deviation (from its median absolute
        deviation: voxel noise and normal variation).
    """
    from scipy import ndimage, stats

    mask = np.asarray(mask, bool)
    volume = np.asarray(volume, np.float64)
    nan = dict.fromkeys(EDGE_FEATURES, float("nan"))
    if not mask.any() or mask.all():
        return nan
    depth = ndimage.distance_transform_edt(mask, sampling=spacing)
    distance = ndimage.distance_transform_edt(~mask, sampling=spacing)
    inner = mask & (depth <= inside_mm)
    band = inner | (~mask & (distance <= outside_mm))
    core = mask & (depth > inside_mm)
    core = core if core.any() else mask
    surround = ~mask & (distance > surround_mm[0]) & (distance <= surround_mm[1])
    scale = np.asarray(spacing, np.float64)
    centre = np.argwhere(mask).mean(axis=0) * scale
    offsets = np.argwhere(band) * scale - centre
    length = np.linalg.norm(offsets, axis=1)
    keep = length > 0
    sector = np.argmax((offsets[keep] / length[keep, None]) @ sector_directions(sectors).T,
                       axis=1)
    values = volume[band][keep]
    inside = inner[band][keep]
    medians = np.array([max(np.median(values[(sector == s) & side])
                            for side in (inside, ~inside) if np.any((sector == s) & side))
                        for s in np.unique(sector)])
    if len(medians) < min_sectors:
        return nan
    core_median = float(np.median(volume[core]))
    surround_median = float(np.median(volume[surround])) if surround.any() else float("nan")
    q33, q50, q67 = np.percentile(medians, (100 / 3, 50, 200 / 3))
    tissue = volume[surround] if surround.any() else volume[core]
    spread = float(stats.median_abs_deviation(tissue, scale="normal"))
    above = medians > np.nanmax([core_median, surround_median]) + spread
    return {"edge_over_core_q33": float(q33 - core_median),
            "edge_over_core_q50": float(q50 - core_median),
            "edge_over_core_q67": float(q67 - core_median),
            "edge_over_surround_q33": float(q33 - surround_median),
            "edge_over_surround_q67": float(q67 - surround_median),
            "edge_coverage": float(np.mean(above))}


def radiomics_and_edge(images: dict[str, np.ndarray], mask: np.ndarray,
                       spacing: Sequence[float], edge: dict | None = None,
                       radiomics_margin: int = 2, **radiomics: object) -> dict[str, float]:
    """PyRadiomics features of a lesion (:func:`lesionkit.lesions.radiomics_features`)
    followed by its rim coverage features (:func:`edge_features`); a ``LesionFeatures``
    function.

    The crop holds the wider context the edge features need; PyRadiomics reads the
    lesion's bounding box with ``radiomics_margin`` voxels around it (cut where the crop
    is cut), as it would alone, so its values do not depend on the wider crop (its
    wavelet filters see the whole crop they are given).

    Args:
        images: Input key -> (C, x, y, z) crop around the lesion in physical units.
        mask: (x, y, z) lesion mask of the crop.
        spacing: Voxel size (mm).
        edge: Keyword arguments of :func:`edge_features`, with ``image``, the key of the
            image they describe (default ``"qsm"``).
        radiomics_margin: Voxels around the lesion's bounding box in PyRadiomics' crop.
        **radiomics: Keyword arguments of :func:`lesionkit.lesions.radiomics_features`.
    """
    edge = dict(edge or {})
    image = str(edge.pop("image", "qsm"))
    mask = np.asarray(mask, bool)
    found = np.argwhere(mask)
    low = np.maximum(found.min(axis=0) - radiomics_margin, 0) if len(found) else (0, 0, 0)
    high = found.max(axis=0) + 1 + radiomics_margin if len(found) else mask.shape
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
    values = radiomics_features({k: v[(slice(None), *box)] for k, v in images.items()},
                                mask[box], spacing, **radiomics)
    return {**values, **edge_features(images[image][0], mask, spacing, **edge)}
