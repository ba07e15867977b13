"""Load, validate and save NIfTI volumes; atomic writes of every output.

This is the only module that talks to nibabel. Every problem with a user's file is
raised as :class:`InputError` with one line that names the file, what was expected and
what was found. Outputs go to a temporary file in the target folder and are renamed
into place, so an interrupted run never leaves a half-written file; inside
:func:`all_or_nothing`, a set of outputs lands together or not at all.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import gzip
import json
import os
import sys
import tempfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.volume import Kind, Volume

#: Default tolerance (mm) when comparing the affines of one subject's images.
GRID_TOLERANCE_MM = 1e-3
#: Longest voxel edge (mm) of an MRI volume (thick 2D slices with a gap stay far below).
MAX_VOXEL_MM = 20.0
#: Longest field of view (mm) along any voxel axis of a head scan (a neck-to-vertex 3D
#: scan spans about 260 mm); a header whose voxel sizes are in cm gives metres.
MAX_FIELD_OF_VIEW_MM = 600.0


class InputError(ValueError):
    """A user's input is unusable; the message is one line for the user."""


def instead_of_folder(path: Path) -> str:
    """What lies at ``path`` where a folder was expected, for an error's "found ..."."""
    return "a file" if path.is_file() else "no folder"


def _nifti_suffix(path: Path) -> str:
    name = path.name
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success.

    On any exception the temporary file is removed and ``path`` is left untouched. Inside
    :func:`all_or_nothing` the rename waits for the end of that block.

    Example:
        >>> with atomic_path("out/report.html") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("<html></html>")
    """
    path = Path(path)
    group = _GROUP.get()
    if group is not None:
        missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
        group.folders.extend(m for m in missing if m not in group.folders)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = _nifti_suffix(path)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=f".tmp{suffix}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual permissions
    try:
        yield tmp
        if group is None:
            os.replace(tmp, path)
        else:
            group.files.append((tmp, path))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _Group:
    """Temporaries of an :func:`all_or_nothing` block and the folders it created."""

    def __init__(self) -> None:
        self.files: list[tuple[Path, Path]] = []
        self.folders: list[Path] = []


_GROUP: contextvars.ContextVar[_Group | None] = contextvars.ContextVar("group", default=None)


@contextlib.contextmanager
def all_or_nothing() -> Iterator[None]:
    """Files written with :func:`atomic_path` in this block are renamed into place at its
    end, together; on any exception none is, and the temporaries and the folders the
    block created are removed. One subject's set of outputs is whole or absent.

    A block inside another hands its files to the outer one.
    """
    outer = _GROUP.get()
    group = _Group()
    token = _GROUP.set(group)
    try:
        yield
    except BaseException:
        for tmp, _ in group.files:
            tmp.unlink(missing_ok=True)
        for folder in sorted(group.folders, key=lambda f: len(f.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty: something else wrote there
                folder.rmdir()
        raise
    finally:
        _GROUP.reset(token)
    if outer is not None:
        outer.files += group.files
        outer.folders += [f for f in group.folders if f not in outer.folders]
        return
    for tmp, path in group.files:
        os.replace(tmp, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str], recursive: bool = True
                             ) -> list[Path]:
    """Remove temporaries left by killed processes: files of :func:`atomic_path` and
    partial folders (``.NAME.PID.partial-XXXX``) built before being moved into place.

    A temporary's name holds the process id of its writer (``.NAME.PID.XXXXXXXX.tmpEXT``);
    those whose writer no longer runs are removed, those of running processes are left.

    Args:
        folder: Folder searched (a missing folder has none).
        recursive: Search sub-folders too.

    Returns:
        What was removed.
    """
    import shutil

    root = Path(folder)
    if not root.is_dir():
        return []
    removed = []
    for path in (root.rglob(".*") if recursive else root.glob(".*")):
        parts = path.name.split(".")
        pid = ""
        for i, part in enumerate(parts):
            if part.startswith("partial-") and i >= 2 and path.is_dir():
                pid = parts[i - 1]
            elif part.startswith("tmp") and i >= 3 and path.is_file():
                pid = parts[i - 2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as indented, strict JSON, atomically (NaN and Inf become null)."""
    path = Path(path)
    text = json.dumps(_finite(obj), indent=2, sort_keys=False, default=_json_default,
                      allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return path


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (also numpy scalars) replaced by None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_tsv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str],
              columns: Sequence[str] = ()) -> Path:
    """Write rows of dicts as a tab-separated table with a header, atomically.

    Columns are ``columns`` then the other keys of the rows in first-seen order (so an
    empty table still has its header); missing values and None are written as "n/a" as
    BIDS asks.
    """
    path = Path(path)
    columns = list(columns)
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, delimiter="\t", restval="n/a",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "n/a" if v is None else v for k, v in row.items()} for row in rows)
    return path


#: Plausible median of the non-zero voxels of a brain image, by unit: values outside
#: mean another unit (an R1 map in ms-like numbers, ADC in mm^2/s instead of 1e-3 mm^2/s).
PLAUSIBLE_MEDIAN: dict[str, tuple[float, float]] = {
    "s^-1": (0.05, 20.0),          # R1, R2, R2*: T1 50 ms to 20 s
    "ms": (5.0, 10000.0),          # T1, T2, T2*
    "s": (0.005, 10.0),
    "1e-3 mm^2/s": (0.05, 5.0),    # ADC
}


#: Spellings of a unit in JSON sidecars -> lesionkit's spelling (BIDS writes R1 in "1/s").
UNIT_ALIASES: dict[str, str] = {
    "1/s": "s^-1", "s-1": "s^-1", "hz": "s^-1", "1/sec": "s^-1", "1/ms": "ms^-1",
    "ms-1": "ms^-1", "msec": "ms", "sec": "s",
    "mm2/s": "mm^2/s", "um^2/ms": "1e-3 mm^2/s", "µm^2/ms": "1e-3 mm^2/s",
    "um2/ms": "1e-3 mm^2/s", "10^-3 mm^2/s": "1e-3 mm^2/s", "1e-3 mm2/s": "1e-3 mm^2/s",
    "um^2/s": "1e-6 mm^2/s", "µm^2/s": "1e-6 mm^2/s", "10^-6 mm^2/s": "1e-6 mm^2/s",
    "1e-6 mm2/s": "1e-6 mm^2/s",
}
#: (unit a sidecar states, unit a task reads) -> factor on the values. BIDS stores T1 and
#: T2* maps in seconds and susceptibility (Chimap) in ppm, scanners often ADC in
#: 1e-6 mm^2/s; lesionkit's tasks read ms, ppb and 1e-3 mm^2/s.
UNIT_FACTORS: dict[tuple[str, str], float] = {
    ("s", "ms"): 1000.0, ("ms", "s"): 0.001, ("ms^-1", "s^-1"): 1000.0,
    ("ppm", "ppb"): 1000.0, ("ppb", "ppm"): 0.001,
    ("mm^2/s", "1e-3 mm^2/s"): 1000.0, ("1e-6 mm^2/s", "1e-3 mm^2/s"): 0.001,
}


def read_sidecar(path: Path, unread: str) -> dict[str, Any]:
    """A JSON sidecar's fields: {} when there is none, and when it cannot be read (then
    with a warning naming the file and ``unread``, what follows from it).

    Args:
        path: The sidecar.
        unread: What the caller does without it, e.g. "its Units are not read".
    """
    if not path.is_file():
        return {}
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as error:  # UnicodeDecodeError is a ValueError
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"warning: {path}: expected a JSON sidecar, found an unreadable file "
              f"({reason}); {unread}", file=sys.stderr)
        return {}
    return found if isinstance(found, dict) else {}


def sidecar_unit_factor(image: Path, sidecar: Path, unit: str) -> tuple[float, str | None]:
    """The factor that brings ``image`` from the ``Units`` its JSON sidecar states to
    ``unit``, and the unit stated (None: no sidecar, no ``Units``, or ``unit`` is
    arbitrary). A sidecar that cannot be read states nothing (with a warning).

    Raises:
        InputError: the sidecar states a unit that cannot be converted to ``unit``.
    """
    if unit not in {*PLAUSIBLE_MEDIAN, "ppb", "ppm"}:
        return 1.0, None  # arbitrary units, probabilities and labels: nothing to convert
    stated = read_sidecar(sidecar, f"values read as {unit}").get("Units")
    if not isinstance(stated, str) or not stated.strip():
        return 1.0, None
    spelled = UNIT_ALIASES.get(stated.strip().lower(), stated.strip())
    if spelled.lower() == unit.lower():
        return 1.0, stated
    if (spelled, unit) in UNIT_FACTORS:
        return UNIT_FACTORS[spelled, unit], stated
    raise InputError(f"{image}: expected values in {unit}, found Units {stated!r} in "
                     f"{sidecar.name}; convert the image or correct its sidecar")


#: Plausible spread (1st to 99th percentile of the non-zero voxels) of maps centred near 0,
#: where a median says nothing: susceptibility in ppb spans about -200 to +400 in a brain
#: with veins, the same map in ppm a thousandth of that.
PLAUSIBLE_SPAN: dict[str, tuple[float, float]] = {"ppb": (1.0, 20000.0)}


def check_values(path: Path, data: np.ndarray, unit: str, kind: Kind = "intensity") -> None:
    """Refuse an input image that is all zero, constant, two-valued where grey values are
    expected (a mask stored under an image's name), or in another unit than stated
    (:data:`PLAUSIBLE_MEDIAN`, :data:`PLAUSIBLE_SPAN`).

    Raises:
        InputError: One line naming the file, what was expected and what was found.
    """
    finite = data[np.isfinite(data)]
    if finite.size == 0 or not finite.any():
        raise InputError(f"{path}: expected an image, found only zero or non-finite values")
    least, most = float(finite.min()), float(finite.max())
    if least == most:
        raise InputError(f"{path}: expected an image, found a constant image (every voxel "
                         f"{least:g})")
    if kind == "intensity" and not np.any((finite > least) & (finite < most)):
        raise InputError(f"{path}: expected an image of grey values, found only two values "
                         f"({least:g} and {most:g}); is it a mask?")
    if unit in PLAUSIBLE_SPAN:
        low, high = PLAUSIBLE_SPAN[unit]
        values = finite[finite != 0][::max(finite.size // 1_000_000, 1)]
        span = float(np.diff(np.percentile(values, [1, 99]))[0])
        if not low <= span <= high:
            raise InputError(f"{path}: expected values in {unit} (1st to 99th percentile "
                             f"{low:g} to {high:g} apart), found them {span:.4g} apart; is "
                             "the map in another unit (ppm)?")
    if unit in PLAUSIBLE_MEDIAN:
        low, high = PLAUSIBLE_MEDIAN[unit]
        median = float(np.median(finite[finite != 0][::max(finite.size // 1_000_000, 1)]))
        if not low <= median <= high:
            raise InputError(f"{path}: expected values in {unit} (brain median {low:g} to "
                             f"{high:g}), found a median of {median:.4g}; is the map in "
                             "another unit?")


def load_volume(
    path: str | os.PathLike[str],
    kind: Kind = "intensity",
    unit: str = "",
    ndim: int | None = 3,
) -> Volume:
    """Load and validate a NIfTI volume, keeping its affine, header and data type.

    Args:
        path: A .nii or .nii.gz file.
        kind: What the values are: "intensity", "label" or "probability".
        unit: Physical unit of the values (e.g. "s^-1" for R1 maps).
        ndim: Expected number of dimensions (3 or 4), or None to accept either.

    Returns:
        The volume; ``data`` has the stored data type (scaled data become float).

    Raises:
        InputError: missing or unreadable file, a header :func:`check_geometry`
            refuses, complex or RGB voxels, wrong
            dimensionality, a negative value in a label map, Inf, or NaN in
            a label or probability map or in every voxel. NaN in an intensity image
            marks voxels without data (SPM's and FSL's convention): they take
            :func:`background_value` and are listed in ``Volume.missing``.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: expected a NIfTI file, found no such file")
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError,
            nib.filebasedimages.ImageFileError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        misnamed = _misnamed_compression(path)
        reason = misnamed or reason
        raise InputError(
            f"{path}: expected a readable NIfTI image, found an unreadable file ({reason})"
        ) from error
    check_geometry(path, image)
    if data.dtype.fields is not None or data.dtype.kind not in "biuf":
        found, hint = (("RGB or other multi-component", "store one grey value per voxel")
                       if data.dtype.fields is not None else
                       ("complex", "store the magnitude image") if data.dtype.kind == "c" else
                       ("non-numeric", "store numbers"))
        raise InputError(f"{path}: expected one real number per voxel, found {found} data "
                         f"({data.dtype}); {hint}")
    while ndim is not None and data.ndim > ndim and data.shape[-1] == 1:
        data = data[..., 0]  # trailing axes of length 1 (a 3D image stored as 4D or 5D)
    if ndim is not None and data.ndim != ndim:
        raise InputError(
            f"{path}: expected a {ndim}D image, found {data.ndim}D with shape {data.shape}"
        )
    missing = None
    if np.issubdtype(data.dtype, np.floating):
        nan = np.isnan(data)
        n_nan, n_inf = int(nan.sum()), int(np.isinf(data).sum())
        if n_inf or n_nan == data.size or (n_nan and kind != "intensity"):
            allowed = " (NaN only where the image holds no data)" if kind == "intensity" else ""
            raise InputError(f"{path}: expected finite values{allowed}, found {n_nan} NaN and "
                             f"{n_inf} Inf voxels of {data.size}")
        if n_nan:  # SPM, FSL and QSM pipelines mark voxels without data with NaN
            missing = nan
            data = np.where(nan, background_value(data[~nan]), data).astype(data.dtype)
    if kind == "label" and data.size and data.min() < 0:
        raise InputError(f"{path}: expected a mask or label map of 0 (background) and "
                         f"positive labels, found values down to {float(data.min()):g}")
    return Volume(data=data, affine=image.affine, kind=kind, unit=unit, header=image.header,
                  missing=missing)


def check_geometry(path: Path, image: Any) -> None:
    """Refuse a header that does not place the image's voxels in space in mm.

    Every lesionkit command puts one subject's images on one grid by their affines and
    writes its outputs on the input's, so a header without an orientation, a singular or
    non-finite affine, or voxel sizes that cannot be millimetres of a head scan would give
    outputs in the wrong place (or a grid of metres, which fills the memory).

    Args:
        path: The file, for the message.
        image: Its nibabel image.

    Raises:
        InputError: both qform_code and sform_code 0 (nibabel then makes an affine from
            the voxel sizes alone: position and left-right unknown); an affine with NaN
            or Inf, or a singular one; a voxel edge above ``MAX_VOXEL_MM`` or a field of
            view above ``MAX_FIELD_OF_VIEW_MM`` along an axis of more than one voxel.
    """
    header = image.header
    if "qform_code" in header and "sform_code" in header and (
            int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0):
        raise InputError(
            f"{path}: expected a header that places the image in the scanner's space "
            "(qform_code or sform_code above 0), found both 0: its position and "
            "orientation are unknown (left and right may be swapped); convert the scan "
            "again (dcm2niix writes both) or copy the header of the image it was made from")
    affine = np.asarray(image.affine, float)
    if not np.isfinite(affine).all():
        raise InputError(f"{path}: expected a finite voxel-to-world affine, found NaN or "
                         "Inf in its header's qform or sform")
    matrix = affine[:3, :3]
    sizes = np.linalg.norm(matrix, axis=0)
    if (sizes == 0).any() or abs(np.linalg.det(matrix)) < 1e-6 * np.prod(sizes):
        raise InputError(f"{path}: expected an invertible voxel-to-world affine, found a "
                         "singular one (two voxel axes along one line, or an axis of "
                         f"length 0: voxel sizes {_mm(sizes)} mm)")
    shape = np.asarray((*image.shape[:3], 1, 1)[:3], float)  # a 2D image: one slice
    spanned = shape > 1
    field = sizes * shape
    if (sizes[spanned] > MAX_VOXEL_MM).any() or (field[spanned] > MAX_FIELD_OF_VIEW_MM).any():
        unit = header.get_xyzt_units()[0] if hasattr(header, "get_xyzt_units") else None
        stated = f"; its header gives the spatial unit as {unit}" if unit not in (
            None, "unknown", "mm") else ""
        raise InputError(
            f"{path}: expected voxel sizes in mm of a head scan (at most {MAX_VOXEL_MM:g} mm "
            f"and a field of view of at most {MAX_FIELD_OF_VIEW_MM:g} mm), found "
            f"{_mm(sizes)} mm voxels and a field of view of {_mm(field)} mm{stated}")


def _mm(values: np.ndarray) -> str:
    """'0.72 x 0.72 x 3' (three lengths, 3 significant digits)."""
    return " x ".join(f"{v:.3g}" for v in values)


#: How a DICOM export is turned into what lesionkit reads.
DICOM_ADVICE = ("convert to NIfTI first (dcm2niix -b y -z y -o OUT_DIR DICOM_DIR writes each "
                "series as .nii.gz with its JSON sidecar)")


#: Other image formats of the field, by file ending: what the file is and how to convert it.
OTHER_FORMATS = {
    (".mgz", ".mgh"): "a FreeSurfer MGH image (convert it: nib-convert FILE OUT.nii.gz, "
                      "nibabel's command, installed with lesionkit)",
    (".hdr", ".img"): "an Analyze or NIfTI-pair image (convert it: nib-convert FILE.hdr "
                      "OUT.nii.gz, nibabel's command, installed with lesionkit)",
    (".nrrd", ".nhdr", ".mha", ".mhd"): "an NRRD or MetaImage file (save it as .nii.gz from "
                                        "3D Slicer or ITK-SNAP)",
    (".par", ".rec"): "a Philips PAR/REC image (convert it with dcm2niix, which reads PAR/REC)",
}


def other_format(path: Path) -> str | None:
    """What a non-NIfTI image file is and how to convert it (None: not one of
    :data:`OTHER_FORMATS`)."""
    name = path.name.lower().removesuffix(".gz")
    return next((what for ends, what in OTHER_FORMATS.items() if name.endswith(ends)), None)


def is_dicom(path: Path) -> bool:
    """Whether a file is DICOM ("DICM" after the 128-byte preamble, or a name ending
    .dcm or .ima as scanners export them), or a folder holding such a file within two
    levels (a scanner's series or study folder)."""
    if path.is_dir():
        candidates = [p for pattern in ("*", "*/*") for p in sorted(path.glob(pattern))[:50]]
        return any(p.is_file() and is_dicom(p) for p in candidates)
    if path.suffix.lower() in (".dcm", ".ima"):
        return True
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _misnamed_compression(path: Path) -> str | None:
    """What is wrong when a readable NIfTI carries the other compression's name (a
    gzip-compressed file named .nii, or the reverse), else None."""
    try:
        with path.open("rb") as handle:
            head = handle.read(352)
        gzipped = head[:2] == b"\x1f\x8b"
        if gzipped:
            with gzip.open(path, "rb") as handle:
                head = handle.read(352)
    except (OSError, EOFError, zlib.error):
        return None
    if head[344:347] != b"n+1" and head[4:7] != b"n+2":  # NIfTI-1 or NIfTI-2 magic
        return None
    if gzipped and not path.name.endswith(".gz"):
        return "a gzip-compressed NIfTI named .nii: rename it .nii.gz"
    if not gzipped and path.name.endswith(".gz"):
        return "an uncompressed NIfTI named .nii.gz: rename it .nii"
    return None


def background_value(finite: np.ndarray) -> float:
    """The value a voxel without data (NaN in the file) takes: 0 where 0 lies in the
    image's range (magnitude images, maps such as QSM whose background is 0), else the
    nearest end of the range (an image stored with an offset)."""
    return float(np.clip(0.0, finite.min(), finite.max()))


def load_affine(path: str | os.PathLike[str]) -> np.ndarray:
    """The 4x4 voxel-to-mm affine of a NIfTI file, read from its header only.

    Raises:
        InputError: missing or unreadable file, or a header :func:`check_geometry` refuses.
    """
    import nibabel as nib

    path = Path(path)
    try:
        image = nib.load(str(path))
    except (OSError, EOFError, ValueError, nib.filebasedimages.ImageFileError) as error:
        raise InputError(f"{path}: expected a readable NIfTI image, found an unreadable file "
                         f"({error})") from error
    check_geometry(path, image)
    return np.asarray(image.affine, float)


def world_axes(affine: np.ndarray) -> np.ndarray:
    """The world axis (0 x, 1 y, 2 z) that each voxel axis runs closest to, every world
    axis taken once, also for an acquisition oblique by 45 degrees (nibabel's
    ``io_orientation``)."""
    import nibabel as nib

    return nib.orientations.io_orientation(np.asarray(affine, float))[:, 0].astype(int)


def nifti_image(data: np.ndarray, affine: np.ndarray) -> Any:
    """An in-memory nibabel NIfTI image (for libraries that take one)."""
    import nibabel as nib

    return nib.Nifti1Image(np.asarray(data), np.asarray(affine, float))


def save_volume(volume: Volume, path: str | os.PathLike[str], dtype: Any = None) -> Path:
    """Save a volume as NIfTI atomically, keeping affine, header fields and data type.

    Args:
        volume: The volume to write.
        path: Target .nii or .nii.gz path; parent folders are created.
        dtype: On-disk data type; by default the header's (when the volume came from a
            file) or the array's.

    Returns:
        The written path.
    """
    import nibabel as nib

    path = Path(path)
    header = volume.header.copy() if volume.header is not None else None
    data = np.asarray(volume.data)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    image = nib.Nifti1Image(data, volume.affine, header=header)
    image.set_data_dtype(_disk_dtype(data.dtype, header, dtype))
    image.set_sform(volume.affine, code=int(header["sform_code"]) if header is not None and
                    int(header["sform_code"]) > 0 else 2)
    image.set_qform(volume.affine, code=int(header["qform_code"]) if header is not None and
                    int(header["qform_code"]) > 0 else 2)
    image.header.set_xyzt_units(xyz="mm", t="sec")
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
    return path


def _disk_dtype(array_dtype: np.dtype, header: Any, dtype: Any) -> np.dtype:
    """On-disk type: the one asked for, else the header's when the array is of the same
    family (integer or float), else the array's (float64 stored as float32)."""
    if dtype is not None:
        return np.dtype(dtype)
    if header is not None:
        stored = np.dtype(header.get_data_dtype())
        if np.issubdtype(stored, np.floating) == np.issubdtype(array_dtype, np.floating):
            return stored
    return np.dtype(np.float32) if array_dtype == np.float64 else np.dtype(array_dtype)


def check_same_grid(
    volumes: Mapping[str | os.PathLike[str], Volume],
    atol_mm: float = GRID_TOLERANCE_MM,
) -> None:
    """Check that volumes share one grid: same spatial shape, affines within ``atol_mm``.

    Raises:
        InputError: naming the first file that differs from the first one given.
    """
    items = list(volumes.items())
    if len(items) < 2:
        return
    ref_path, ref = items[0]
    for path, volume in items[1:]:
        if volume.shape[:3] != ref.shape[:3]:
            raise InputError(
                f"{path}: expected the grid of {ref_path} (shape {ref.shape[:3]}), "
                f"found shape {volume.shape[:3]}"
            )
        deviation = float(np.abs(volume.affine - ref.affine).max())
        if deviation > atol_mm:
            raise InputError(
                f"{path}: expected the affine of {ref_path} within {atol_mm} mm, "
                f"found a difference of {deviation:.4g} mm"
            )
