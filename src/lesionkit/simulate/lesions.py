"""Lesion parameters and geometry shared by the MS, FCD and tumour models of the phantom.

A lesion is a :class:`Lesion` (parameters only, drawn elsewhere with a seeded
``numpy.random.Generator``). Pure functions turn lesions into float32 partial-volume
fraction maps on an anatomy grid: a signed distance to an ellipsoid surface, optionally
perturbed by a smooth noise defined in lesion coordinates (so a lesion has the same
shape at any resolution), turned into a fraction with a linear ramp one voxel wide.
Maps are computed in a bounding box around each lesion.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from lesionkit.simulate.template import Anatomy

_N_WAVES = 8


@dataclass(frozen=True, eq=False)
class Lesion:
    """Parameters of one lesion.

    Attributes:
        label: integer written in the lesion label map (1, 2, ...).
        kind: "ms", "metastasis", "glioma" (FCD uses :class:`~.lesions_fcd.FCDParams`).
        centre_mm: centre in world coordinates (mm).
        axes_mm: the three semi-axes (mm), half the diameters, along the columns of
            ``rotation``.
        rotation: 3x3 rotation whose columns are the lesion axes in world coordinates.
        irregularity: SD of the smooth surface perturbation as a fraction of the mean
            semi-axis (0 = ellipsoid; the perturbation is clipped at 2 SD).
        rim: True for a rim+ (paramagnetic rim) MS lesion.
        uniform_paramagnetic: True for a rim- lesion that is paramagnetic throughout.
        properties: tissue values painted into the lesion (TissueMaps field names and
            units) plus model-specific entries (e.g. ``rim_chi_ppb``).
        shape_seed: seed of the smooth surface perturbation (part of the parameters, so
            the shape is fixed by them).

    Lesions compare by identity (``rotation`` is an array); compare fields to test draws.
    """

    label: int
    kind: str
    centre_mm: tuple[float, float, float]
    axes_mm: tuple[float, float, float]
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    irregularity: float = 0.0
    rim: bool = False
    uniform_paramagnetic: bool = False
    properties: dict[str, float | str] = field(default_factory=dict)
    shape_seed: int = 0

    @property
    def long_axis_mm(self) -> float:
        """Longest drawn diameter (mm)."""
        return 2.0 * max(self.axes_mm)

    @property
    def short_axis_mm(self) -> float:
        """Shortest drawn diameter (mm)."""
        return 2.0 * min(self.axes_mm)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed 3x3 rotation matrix (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def rotation_with_axis(direction: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotation whose first column is ``direction`` (normalised), the others random."""
    first = np.asarray(direction, float) / (np.linalg.norm(direction) + 1e-12)
    other = rng.normal(size=3)
    other -= other.dot(first) * first
    other /= np.linalg.norm(other) + 1e-12
    return np.stack([first, other, np.cross(first, other)], axis=1)


def voxel_to_world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """World coordinates (mm) of voxel indices ``(..., 3)``."""
    return np.asarray(ijk, float) @ affine[:3, :3].T + affine[:3, 3]


def world_to_voxel(affine: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Continuous voxel indices of world coordinates ``(..., 3)`` (mm)."""
    inv = np.linalg.inv(affine)
    return np.asarray(xyz, float) @ inv[:3, :3].T + inv[:3, 3]


def spacing_mm(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes (mm) along the three grid axes."""
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


def surface_noise(local_mm: np.ndarray, scale_mm: float, seed: int) -> np.ndarray:
    """Smooth noise of unit SD, clipped to [-2, 2], at lesion coordinates (mm).

    A sum of random plane waves with wavelengths between 0.7 and 2 times ``scale_mm``
    (the mean lesion diameter), so the surface gets a few lobes rather than speckle.
    """
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(_N_WAVES, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    wavelengths = scale_mm * rng.uniform(0.7, 2.0, _N_WAVES)
    phases = rng.uniform(0, 2 * np.pi, _N_WAVES)
    weights = rng.uniform(0.5, 1.0, _N_WAVES)
    arg = local_mm @ (directions / wavelengths[:, None]).T * (2 * np.pi) + phases
    noise = (np.cos(arg) @ weights) / np.sqrt((weights**2).sum() / 2)
    return np.clip(noise, -2.0, 2.0)


def signed_distance_mm(lesion: Lesion, world_mm: np.ndarray, grow_mm: float = 0.0) -> np.ndarray:
    """Approximate signed distance (mm, negative inside) to the lesion surface.

    Inside, the first-order distance to the ellipsoid ``(rho^2 - 1) / |grad rho^2|``
    (exact on the surface), bounded by the distance along the ray from the centre.
    Outside, the distance along that ray: exact for spheres and along the principal
    axes, never shorter than the true distance, so a surface grown by ``grow_mm`` stays
    within ``grow_mm`` of the ellipsoid (the first-order estimate falls short far away
    and would let a large margin spill out of the lesion's bounding box). Minus the
    smooth perturbation ``irregularity * mean semi-axis * noise``. ``grow_mm`` moves the
    surface outward (negative: inward).
    """
    axes = np.asarray(lesion.axes_mm, float)
    local = (world_mm - np.asarray(lesion.centre_mm)) @ np.asarray(lesion.rotation)
    q = local / axes
    rho2 = (q**2).sum(axis=-1)
    grad = 2.0 * np.sqrt(((local / axes**2) ** 2).sum(axis=-1)) + 1e-6
    dist = (rho2 - 1.0) / grad
    # the distance along the ray from the centre (exact for a sphere, never shorter
    # than the true one) bounds the first-order estimate inside and replaces it outside
    norm = np.linalg.norm(local, axis=-1)
    ray = np.where(norm > 1e-9, norm / np.sqrt(np.maximum(rho2, 1e-30)), axes.min())
    radial = norm - ray
    dist = np.where(rho2 < 1.0, np.maximum(dist, radial), radial)
    if lesion.irregularity > 0:
        noise = surface_noise(local, 2.0 * axes.mean(), lesion.shape_seed)
        dist = dist - lesion.irregularity * axes.mean() * noise
    return dist - grow_mm


def bounding_box(
    lesion: Lesion, affine: np.ndarray, shape: tuple, margin_mm: float
) -> tuple[slice, ...]:
    """Grid slices covering the lesion (with its irregularity) plus ``margin_mm``."""
    reach = max(lesion.axes_mm) + 2.0 * lesion.irregularity * np.mean(lesion.axes_mm)
    reach += margin_mm
    corners = np.array(
        [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float
    )
    ijk = world_to_voxel(affine, np.asarray(lesion.centre_mm) + reach * corners)
    lo = np.clip(np.floor(ijk.min(axis=0)).astype(int), 0, np.array(shape))
    hi = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 1, 0, np.array(shape))
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def shape_crop(
    lesion: Lesion, shape: tuple[int, int, int], affine: np.ndarray, grow_mm: float = 0.0
) -> tuple[tuple[slice, ...], np.ndarray]:
    """Partial-volume fraction of a lesion's shape in its bounding box.

    Returns ``(box, fraction)``: the box as a tuple of slices into the grid and the
    float32 fraction (0..1) inside it. The fraction ramps linearly from 1 to 0 over one
    voxel (geometric-mean voxel size) across the surface, the partial volume of a plane
    cutting a voxel.

    Args:
        lesion: the lesion parameters.
        shape: grid shape.
        affine: voxel-to-world affine (mm).
        grow_mm: move the surface outward by this distance (mm); negative shrinks.
    """
    h = float(np.prod(spacing_mm(affine)) ** (1 / 3))
    box = bounding_box(lesion, affine, shape, margin_mm=max(grow_mm, 0.0) + 2 * h)
    return box, fraction_in_box(lesion, box, affine, grow_mm)


def fraction_in_box(
    lesion: Lesion, box: tuple[slice, ...], affine: np.ndarray, grow_mm: float = 0.0
) -> np.ndarray:
    """Partial-volume fraction (float32) of a lesion's shape on the voxels of ``box``."""
    if any(s.stop <= s.start for s in box):
        return np.zeros([max(s.stop - s.start, 0) for s in box], np.float32)
    h = float(np.prod(spacing_mm(affine)) ** (1 / 3))
    ijk = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij"), -1)
    dist = signed_distance_mm(lesion, voxel_to_world(affine, ijk), grow_mm)
    return np.clip(0.5 - dist / h, 0.0, 1.0).astype(np.float32)


def shape_fraction(
    lesion: Lesion, shape: tuple[int, int, int], affine: np.ndarray, grow_mm: float = 0.0
) -> np.ndarray:
    """Partial-volume fraction (float32, 0..1) of one lesion's shape on the whole grid."""
    out = np.zeros(shape, np.float32)
    box, local = shape_crop(lesion, shape, affine, grow_mm)
    out[box] = local
    return out


class FractionMaps(Mapping):
    """Per-lesion partial-volume fractions stored in bounding boxes.

    Behaves as a read-only ``{label: float32 map}`` dict whose items are full-grid maps
    built on access; :meth:`crop` gives the box and its values without that copy.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        crops: dict[int, tuple[tuple, np.ndarray]],
        limit: np.ndarray | None = None,
    ):
        self.shape = tuple(shape)
        self._crops = dict(crops)
        self.limit = limit

    def __getitem__(self, label: int) -> np.ndarray:
        box, local = self._crops[label]
        out = np.zeros(self.shape, np.float32)
        out[box] = local
        return out

    def __iter__(self) -> Iterator[int]:
        return iter(self._crops)

    def __len__(self) -> int:
        return len(self._crops)

    def crop(self, label: int) -> tuple[tuple[slice, ...], np.ndarray]:
        """``(box, fraction inside the box)`` of one lesion."""
        return self._crops[label]

    def total(self) -> np.ndarray:
        """Total lesion fraction (float32): the sum over lesions, at most ``limit`` (the
        tissue lesions may occupy) and 1."""
        out = np.zeros(self.shape, np.float32)
        for box, local in self._crops.values():
            out[box] += local
        if self.limit is not None:
            out = np.minimum(out, self.limit)
        return np.clip(out, 0.0, 1.0)


def label_map(fractions: FractionMaps, threshold: float = 0.5) -> np.ndarray:
    """Integer lesion label map (int16) from per-lesion fractions.

    A voxel takes the label of the lesion with the largest fraction where that fraction
    is at least ``threshold``. A lesion that reaches the threshold nowhere (smaller than
    a voxel) keeps its voxel of largest fraction, so every lesion stays in the map.
    """
    best = np.zeros(fractions.shape, np.float32)
    out = np.zeros(fractions.shape, np.int16)
    for lab in sorted(fractions):
        box, f = fractions.crop(lab)
        take = (f >= threshold) & (f > best[box])
        out[box][take] = lab
        best[box][take] = f[take]
    for lab in sorted(fractions):
        box, f = fractions.crop(lab)
        if f.size and f.max() > 0 and not np.any(out[box] == lab):
            out[box][np.unravel_index(np.argmax(f), f.shape)] = lab
    return out


def fraction_axes_mm(
    fraction: np.ndarray, affine: np.ndarray, offset: tuple[int, int, int] = (0, 0, 0)
) -> tuple[float, float]:
    """Long and short full diameters (mm) of a fraction map from its second moments.

    A uniform solid ellipsoid of semi-axis ``a`` has variance ``a^2 / 5`` along that
    axis, so a diameter is ``2 * sqrt(5 * variance)``; the variance of the one-voxel
    partial-volume ramp (``h^2 / 12``) is removed first. ``offset`` is the voxel index of
    ``fraction[0, 0, 0]`` when it is a crop. Returns (0, 0) for an empty map.
    """
    idx = np.nonzero(fraction > 0)
    w = fraction[idx].astype(float)
    if w.sum() <= 0:
        return 0.0, 0.0
    xyz = voxel_to_world(affine, np.stack(idx, -1) + np.asarray(offset))
    mean = (w[:, None] * xyz).sum(0) / w.sum()
    d = xyz - mean
    cov = (w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(0) / w.sum()
    h2 = float(np.prod(spacing_mm(affine)) ** (2 / 3))
    var = np.clip(np.linalg.eigvalsh(cov) - h2 / 12.0, 0.0, None)
    diam = 2.0 * np.sqrt(5.0 * var)
    return float(diam.max()), float(diam.min())


def lesion_table_rows(
    lesions: list[Lesion], fractions: FractionMaps, affine: np.ndarray
) -> list[dict]:
    """Rows of the lesion table (``sub-XX_lesions.tsv``), one per lesion.

    Columns: label, type, centre_x/y/z (world mm, the drawn centre), long_axis_mm and
    short_axis_mm (full diameters measured from the painted fraction, see
    :func:`fraction_axes_mm`, so they include irregularity and clipping to the tissue a
    lesion may occupy), volume_mm3 (sum of fractions times voxel volume) and rim (0/1).
    """
    voxel_mm3 = float(abs(np.linalg.det(np.asarray(affine)[:3, :3])))
    rows = []
    for les in lesions:
        box, f = fractions.crop(les.label)
        long_mm, short_mm = fraction_axes_mm(f, affine, tuple(s.start for s in box))
        rows.append(
            {
                "label": les.label,
                "type": les.kind,
                "centre_x": round(float(les.centre_mm[0]), 2),
                "centre_y": round(float(les.centre_mm[1]), 2),
                "centre_z": round(float(les.centre_mm[2]), 2),
                "long_axis_mm": round(long_mm, 2),
                "short_axis_mm": round(short_mm, 2),
                "volume_mm3": round(float(f.sum()) * voxel_mm3, 2),
                "rim": int(les.rim),
            }
        )
    return rows


def weighted_values(
    crops: list[tuple[tuple, np.ndarray, float]], rate: bool, shape: tuple
) -> tuple[np.ndarray, np.ndarray]:
    """Combined fraction (clipped to 1) and fraction-weighted value map of one property.

    ``crops`` holds (box, fraction in the box, value); relaxation times (``rate``)
    average as rates.
    """
    total = np.zeros(shape, np.float32)
    acc = np.zeros(shape, np.float32)
    for box, f, v in crops:
        total[box] += f
        acc[box] += f * np.float32(1.0 / v if rate else v)
    value = acc / np.where(total > 0, total, 1.0)
    if rate:
        value = 1.0 / np.where(value > 0, value, 1.0)
    return np.clip(total, 0.0, 1.0), value.astype(np.float32)


def distance_mm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Euclidean distance (mm, float32) of every voxel to the nearest voxel of ``mask``."""
    if not mask.any():
        return np.full(mask.shape, np.inf, np.float32)
    return ndimage.distance_transform_edt(~mask, sampling=spacing_mm(affine)).astype(np.float32)


def ventricles(anatomy: Anatomy, depth_mm: float = 12.0, min_volume_mm3: float = 1000.0
               ) -> np.ndarray:
    """Lateral ventricles: deep CSF components bordered by white matter.

    CSF (p >= 0.5) deeper than ``depth_mm`` inside the brain mask splits into connected
    components: the lateral ventricles (about 40 % of their 3 mm border is white matter),
    the basal cisterns and deep sulci (under 15 %). Components of at least
    ``min_volume_mm3`` with a border over 25 % white matter are kept; without any, the
    one with the most white-matter border.
    """
    sp = spacing_mm(anatomy.affine)
    deep = (anatomy.csf >= 0.5) & (distance_mm(~anatomy.mask, anatomy.affine) > depth_mm)
    labels, n = ndimage.label(deep)
    if n == 0:
        return deep
    volumes = ndimage.sum(deep, labels, np.arange(1, n + 1)) * float(np.prod(sp))
    pad = max(1, round(3.0 / float(sp.min())))
    scores = {}
    for lab, box in enumerate(ndimage.find_objects(labels), start=1):
        if volumes[lab - 1] < min_volume_mm3:
            continue
        box = tuple(slice(max(b.start - pad, 0), b.stop + pad) for b in box)
        comp = labels[box] == lab
        border = ndimage.binary_dilation(comp, iterations=pad) & ~comp
        scores[lab] = float((anatomy.wm[box][border] >= 0.5).mean())
    keep = [lab for lab, score in scores.items() if score > 0.25]
    if not keep and scores:
        keep = [max(scores, key=scores.get)]
    return np.isin(labels, keep) if keep else deep


def cortex(anatomy: Anatomy) -> np.ndarray:
    """Cortical grey matter (cortical GM probability >= 0.5)."""
    return anatomy.gm * (1.0 - anatomy.deep_gm) >= 0.5


def lesion_fractions(
    lesions: list[Lesion], anatomy: Anatomy, within: np.ndarray | None = None
) -> tuple[FractionMaps, np.ndarray]:
    """Per-lesion partial-volume fractions and the lesion label map on the anatomy grid.

    Args:
        lesions: lesion parameters (distinct labels).
        anatomy: grid (shape of ``anatomy.mask``, ``anatomy.affine``) and tissues.
        within: 0..1 map a lesion may occupy; default the white-matter probability
            inside the brain mask (a lesion replaces the WM part of a voxel).

    Returns:
        ``(fractions, labels)``: a :class:`FractionMaps` (``fractions[label]`` is a
        float32 map) and the int16 label map (all zero when there are no lesions).
    """
    shape = anatomy.mask.shape
    if within is None:
        within = np.clip(anatomy.wm, 0.0, 1.0) * anatomy.mask
    within = np.asarray(within, np.float32)
    crops = {}
    for les in lesions:
        box, local = shape_crop(les, shape, anatomy.affine)
        crops[les.label] = (box, local * within[box])
    fractions = FractionMaps(shape, crops, limit=within)
    return fractions, label_map(fractions)
