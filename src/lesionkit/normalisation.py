"""Normalisation of images for the network and back: the robust z-score of each image
inside its own brain mask, the statistics fitted on training subjects (z-score, log
z-score, percentiles) and their inverse, which brings outputs back to physical units."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Stats = dict[str, dict[str, float]]

#: Voxels per subject and image drawn (seeded) to fit normalisation statistics.
FIT_VOXELS = 200_000

#: Normalisations that start with a robust z-score of each image inside its own brain mask.
PER_IMAGE = ("image-zscore", "image-zscore-percentile")


def per_image_zscore(data: Any, mask: Any) -> Any:
    """(C, X, Y, Z) image robustly z-scored inside its brain mask and skull-stripped.

    Voxels inside the mask become (value - median) / (interquartile range / 1.349) (the
    standard deviation for normally distributed values; unit a.u. -> 1); voxels outside
    take the normalised 0.5th percentile of the inside, the darkest tissue. The result
    does not change when the image is multiplied by a positive constant or shifted.
    """
    import torch

    inside = data[:, mask]
    if inside.numel() == 0:
        return data
    darkest, low, median, high = quantiles(sample_values(inside.float()),
                                           [0.005, 0.25, 0.5, 0.75])
    scale = float(high - low) / 1.349 or float(inside.float().std()) or 1.0
    return torch.where(mask[None], (data - median) / scale, (darkest - median) / scale).float()


def sample_values(values: Any, limit: int = 1_000_000) -> Any:
    """At most ``limit`` evenly spaced values of a tensor (its quantiles, in a fixed time)."""
    flat = values.reshape(-1)
    step = max(1, flat.numel() // limit)
    return flat[::step]


def quantiles(values: Any, levels: Sequence[float]) -> list[float]:
    """Quantiles (linear interpolation between order statistics) of a float32 tensor's
    values, each rounded to float32 as ``torch.quantile`` gives it.

    numpy selects them (a partial sort, ``np.quantile``): a few times faster than
    ``torch.quantile``, which sorts every value, on the million values of a brain.
    """
    found = np.quantile(values.numpy(), np.asarray(levels, float))
    return [float(v) for v in found.astype(np.float32)]


def apply_normalisation(array: Any, entry: dict[str, float]) -> Any:
    """(value - shift) / scale, of the floored log for log-zscore entries (array or tensor);
    clipped to [clip_low, clip_high] for entries that carry them."""
    import torch

    if "log_floor" in entry:
        floor = entry["log_floor"]
        array = (np.log(np.maximum(array, floor)) if isinstance(array, np.ndarray)
                 else torch.log(torch.clamp(array, min=floor)))
    out = (array - entry["shift"]) / entry["scale"]
    if "clip_low" in entry:
        low, high = entry["clip_low"], entry["clip_high"]
        out = np.clip(out, low, high) if isinstance(out, np.ndarray) else out.clamp(low, high)
    return out


def invert(array: np.ndarray, stats: Stats, key: str | None) -> np.ndarray:
    """Map network output back to the target's unit (identity for key None).

    Clipping is not undone: an ``image-zscore-percentile`` output in [0, 1] comes back as
    the target's robust z-score, between its training 1st and 99th percentiles.
    """
    if key is None:
        return array
    entry = stats[key]
    values = array * entry["scale"] + entry["shift"]
    return np.exp(values) if "log_floor" in entry else values


def fit_statistics(values: np.ndarray, normalisation: str) -> dict[str, float]:
    """Shift and scale of one image's values (its unit; log-zscore: log of it).

    ``zscore``: mean and standard deviation; ``log-zscore``: the same of the natural log,
    values first floored at their 1st percentile (relaxation times, whose long tails,
    e.g. CSF T2*, would dominate a squared loss; the entry gains ``log_floor``);
    ``percentile``: 1st percentile and the 1st-99th percentile range;
    ``image-zscore-percentile`` (values already z-scored per image): the same, and the
    entry gains ``clip_low`` 0 and ``clip_high`` 1 so that normalised values stay in
    [0, 1]; ``none``: 0 and 1.
    """
    if normalisation == "none" or values.size == 0:
        return {"shift": 0.0, "scale": 1.0}
    entry: dict[str, float] = {}
    if normalisation == "log-zscore":
        entry["log_floor"] = max(float(np.percentile(values, 1)), 1e-6)
        values = np.log(np.maximum(values, entry["log_floor"]))
    if normalisation in ("percentile", "image-zscore-percentile"):
        low, high = np.percentile(values, [1, 99])
        shift, scale = float(low), float(high - low)
        if normalisation == "image-zscore-percentile":
            entry.update(clip_low=0.0, clip_high=1.0)
    else:
        shift, scale = float(values.mean()), float(values.std())
    return {"shift": shift, "scale": scale if scale > 0 else 1.0, **entry}
