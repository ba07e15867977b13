"""The shipped lesion library (27 MS patients' consensus masks in MNI space, CC BY; see
README.md and LICENSE.txt here) and the loader of any folder of binary lesion masks.

A library lesion is a 26-connected component of a mask (voxels > 0, or >= 0.5 for float
data) of at least ``MIN_VOLUME_MM3``; :mod:`lesionkit.simulate.lesion_library` draws
them into phantom subjects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from lesionkit.simulate.lesions import Lesion, spacing_mm, voxel_to_world
from lesionkit.volume import mask_box

#: Folder of the shipped library (27 patients' consensus masks, FSL MNI152 1 mm grid).
SHIPPED_LIBRARY = Path(__file__).parent
#: Smallest library lesion (mm^3): a sphere 3 mm across, the smallest parametric lesion.
MIN_VOLUME_MM3 = 14.0
_EXPECTED = "a folder of binary lesion masks in MNI space (.nii or .nii.gz)"


@dataclass(frozen=True, eq=False)
class LibraryComponent:
    """One library lesion in MNI space.

    Attributes:
        mask: bool crop around the component with one empty voxel on every side.
        affine: voxel-to-world (MNI mm) affine of the crop.
        volume_mm3: lesion volume (mm^3).
    """

    mask: np.ndarray
    affine: np.ndarray
    volume_mm3: float

    @cached_property
    def depth_mm(self) -> float:
        """Radius of the largest ball inside the lesion (mm, voxel-centre estimate),
        computed when first asked for (a library holds some 1,700 lesions)."""
        sp = spacing_mm(self.affine)
        h = float(np.prod(sp) ** (1 / 3))
        return float(ndimage.distance_transform_edt(self.mask, sampling=sp).max()) - h / 2


@dataclass(frozen=True, eq=False)
class LibraryMask:
    """The components of one patient's mask (file name without extension as ``name``)."""

    name: str
    components: tuple[LibraryComponent, ...]


@dataclass(frozen=True, eq=False)
class LesionLibrary:
    """Lesion masks: ``source`` is "shipped" or the folder path."""

    source: str
    masks: tuple[LibraryMask, ...]


def _components(name: str, data: np.ndarray, affine: np.ndarray) -> LibraryMask:
    lesion = data >= 0.5 if np.issubdtype(data.dtype, np.floating) else data > 0
    around = mask_box(lesion)  # labelled in the lesions' bounding box only
    if around is None:
        return LibraryMask(name, ())
    labels, _ = ndimage.label(lesion[around], np.ones((3, 3, 3)))
    origin = np.array([b.start for b in around])
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    out = []
    for lab, box in enumerate(ndimage.find_objects(labels), start=1):
        crop = np.pad(labels[box] == lab, 1)
        volume = float(crop.sum()) * voxel_mm3
        if volume < MIN_VOLUME_MM3:
            continue
        crop_affine = np.array(affine, float)
        crop_affine[:3, 3] = voxel_to_world(affine, origin + [b.start - 1 for b in box])
        out.append(LibraryComponent(crop, crop_affine, volume))
    return LibraryMask(name, tuple(out))


@lru_cache(maxsize=4)
def _load(folder: str, source: str) -> LesionLibrary:
    from lesionkit.io import InputError, load_volume

    path = Path(folder)
    if not path.is_dir():
        found = "a file" if path.exists() else "no such folder"
        raise InputError(f"{path}: expected {_EXPECTED}, found {found}")
    files = sorted(p for p in path.iterdir()
                   if p.is_file() and p.name.endswith((".nii", ".nii.gz")))
    if not files:
        raise InputError(f"{path}: expected {_EXPECTED}, found no .nii or .nii.gz file")
    masks = []
    for file in files:
        vol = load_volume(file, kind="label", ndim=3)
        name = file.name.removesuffix(".gz").removesuffix(".nii")
        masks.append(_components(name, np.asarray(vol.data), np.asarray(vol.affine, float)))
    masks = [m for m in masks if m.components]
    if not masks:
        raise InputError(f"{path}: expected {_EXPECTED} with lesions of at least "
                         f"{MIN_VOLUME_MM3:g} mm^3, found {len(files)} mask(s) without any")
    return LesionLibrary(source, tuple(masks))


def load_lesion_library(folder: str | Path | None = None) -> LesionLibrary:
    """Load a lesion library once per process (cached by folder).

    Args:
        folder: folder of masks; None for the shipped library.

    Raises:
        lesionkit.io.InputError: not a folder, no mask in it, an unreadable or non-3D
            file, or no lesion of at least ``MIN_VOLUME_MM3``.
    """
    if folder is None:
        return _load(str(SHIPPED_LIBRARY), "shipped")
    resolved = str(Path(folder).expanduser().resolve())
    return _load(resolved, resolved)


def resolve_lesion_library(spec: str | Path | LesionLibrary | None) -> LesionLibrary | None:
    """A library from an option value: "shipped", None or "none" (parametric lesions only),
    a folder path or a loaded library."""
    if spec is None or isinstance(spec, LesionLibrary):
        return spec
    text = str(spec)
    if text.lower() == "none":
        return None
    return load_lesion_library(None if text.lower() == "shipped" else Path(spec))


@dataclass(frozen=True, eq=False)
class LibraryLesion(Lesion):
    """A library lesion on one subject grid: the :class:`Lesion` fields describe it
    (centre, second-moment semi-axes and their directions) and ``fraction`` (float32, in
    ``box`` of the subject grid) is its shape before limiting to white matter."""

    box: tuple[slice, ...] = ()
    fraction: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.float32))


def core_fraction(f: np.ndarray, affine: np.ndarray, thickness_mm: float) -> np.ndarray:
    """Fraction of a library lesion deeper than ``thickness_mm`` below its surface."""
    sp = spacing_mm(affine)
    h = float(np.prod(sp) ** (1 / 3))
    depth = ndimage.distance_transform_edt(np.pad(f >= 0.5, 1), sampling=sp)[1:-1, 1:-1, 1:-1]
    return np.minimum(np.clip((depth - thickness_mm) / h, 0.0, 1.0), f).astype(np.float32)
