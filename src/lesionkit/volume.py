"""Volumes that know what they hold: intensities, labels or probabilities.

A :class:`Volume` carries its voxel array, its affine (voxel indices to world mm), its
kind and its unit. Resampling picks the interpolation from the kind, so a label map is
never blurred and a probability map never overshoots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

Kind = Literal["intensity", "label", "probability"]

#: Spline order used by :func:`resample_to` for each kind of volume.
DEFAULT_ORDER: dict[str, int] = {"intensity": 3, "probability": 1, "label": 0}


@dataclass(frozen=True)
class Volume:
    """A 3D or 4D image on a grid.

    Attributes:
        data: Voxel array, shape (X, Y, Z) or (X, Y, Z, T).
        affine: 4x4 voxel-to-world matrix in mm.
        kind: "intensity", "label" or "probability".
        unit: Physical unit of the values, e.g. "s^-1", "ms", "ppb", "a.u.".
        header: The NIfTI header the volume was read with, or None.
        missing: Voxels the file marked as holding no data (stored as NaN), now holding
            :func:`lesionkit.io.background_value`; None when there were none.
    """

    data: np.ndarray
    affine: np.ndarray
    kind: Kind = "intensity"
    unit: str = ""
    header: Any = field(default=None, repr=False, compare=False)
    missing: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, found shape {affine.shape}")
        object.__setattr__(self, "affine", affine)
        if self.kind not in DEFAULT_ORDER:
            raise ValueError(f"kind must be one of {sorted(DEFAULT_ORDER)}, found {self.kind!r}")

    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape in voxels."""
        return tuple(self.data.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the three array axes."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    def with_data(
        self, data: np.ndarray, kind: Kind | None = None, unit: str | None = None
    ) -> Volume:
        """Return a volume on the same grid holding ``data``."""
        return replace(
            self,
            data=data,
            kind=self.kind if kind is None else kind,
            unit=self.unit if unit is None else unit,
        )


def mask_box(mask: np.ndarray, margin: int | Sequence[int] = 0) -> tuple[slice, ...] | None:
    """Slices of the bounding box of a mask's non-zero voxels (``ndimage.find_objects``),
    grown by ``margin`` voxels (one number, or one per axis) within the grid; None when
    the mask is empty."""
    from scipy import ndimage

    found = ndimage.find_objects((np.asarray(mask) != 0).astype(np.uint8))
    if not found:
        return None
    margins = np.broadcast_to(np.asarray(margin, int), (np.ndim(mask),))
    return tuple(slice(max(s.start - int(m), 0), min(s.stop + int(m), n))
                 for s, m, n in zip(found[0], margins, np.shape(mask), strict=True))


def resample_to(
    volume: Volume,
    shape: tuple[int, int, int],
    affine: np.ndarray,
    order: int | None = None,
    cval: float = 0.0,
) -> Volume:
    """Resample a 3D volume onto another grid (world coordinates are kept).

    Args:
        volume: The volume to resample.
        shape: Target grid shape in voxels.
        affine: Target voxel-to-world matrix (mm).
        order: Spline order; by default 3 for intensities, 1 for probabilities,
            0 (nearest) for labels. Use 4 for the B-spline reslicing of enhance-r1.
        cval: Value outside the source grid.

    Returns:
        The resampled volume with the target affine; kind and unit unchanged.
    """
    from scipy import ndimage

    if volume.data.ndim != 3:
        raise ValueError(f"resample_to expects a 3D volume, found {volume.data.ndim}D")
    order = DEFAULT_ORDER[volume.kind] if order is None else order
    target_to_source = np.linalg.inv(volume.affine) @ np.asarray(affine, dtype=np.float64)
    data = ndimage.affine_transform(
        volume.data.astype(np.float32, copy=False),
        target_to_source[:3, :3],
        offset=target_to_source[:3, 3],
        output_shape=tuple(shape),
        order=order,
        mode="constant",
        cval=cval,
    )
    if volume.kind == "label":
        data = data.astype(volume.data.dtype)
    elif volume.kind == "probability":
        data = np.clip(data, 0.0, 1.0)
    return Volume(data=data, affine=np.asarray(affine), kind=volume.kind, unit=volume.unit)
