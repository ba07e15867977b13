"""Lesion changes between two sessions of a subject: new, enlarging, shrinking, resolved.

``lesionkit predict`` reads each session on its own. In MS the number of new and
enlarging lesions between two scans is what a follow-up is read for, and lesion maps of
two sessions, each with its own small errors, do not give it by subtraction: a speck
above the threshold at one visit and just below it at the other is no change. This
module follows the design of LST's longitudinal pipeline (Schmidt et al., NeuroImage:
Clinical 2019): the lesion maps of both sessions say *where* a change may be, the image
says *whether* it changed.

For each pair of sessions (each follow-up against the session before it):

1. the baseline's image (the first input the map was predicted from, the FLAIR of the
   flair-lesion models) is rigidly co-registered onto the follow-up's
   (:func:`lesionkit.geometry.rigid_matrix`, mutual information, inside the follow-up's
   brain mask) and moved with its lesion map onto the follow-up's grid (linear);
2. both images are scaled by their median and interquartile range over the normal-appearing
   brain (the brain mask less the lesions of both sessions and a voxel around them), and
   their difference is expressed in robust standard deviations of itself there (1.4826 x
   median absolute deviation): a z-score of change whose noise is the scans' own;
3. an *increase* is a voxel that is lesion at follow-up (probability at or above the
   threshold) and not at baseline, and at least ``Z_THRESHOLD`` brighter than at
   baseline; a *decrease* a voxel that is lesion at baseline and not at follow-up, and
   at least as much darker: a change of the maps that the images confirm. Each is taken
   in 26-connected components of at least ``MIN_CHANGE_ML``;
4. an increase is *new* when its follow-up lesion touches no baseline lesion voxel,
   else *enlarging*; a decrease is *resolved* when its baseline lesion touches no
   follow-up lesion voxel, else *shrinking*.

The outputs, beside the follow-up's map: ``desc-<model>change_dseg.nii.gz`` (changes
numbered by decreasing volume, on the follow-up's grid), its table
``desc-<model>change_dseg.tsv`` (kind, centre, changed volume, mean z; the volume of the
lesion the change lies in and of the other visit's lesions within a voxel of it) and a
row per pair in ``task-<name>_lesionchange.tsv``.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.io import InputError

#: Change, in robust standard deviations of the two scans' difference over the
#: normal-appearing brain, that a voxel inside a lesion needs to count (one-sided).
Z_THRESHOLD = 2.0
#: Smallest change counted (mL): a ball of 3 mm diameter, the smallest lesion the
#: MAGNIMS criteria count.
MIN_CHANGE_ML = float(np.pi / 6 * 3.0**3 / 1000.0)
#: Voxel edge (mm) of the grid on which the two sessions are co-registered when theirs is
#: finer, and the pyramid's downsampling factors there.
REGISTRATION_MM = 1.5
REGISTRATION_FACTORS = (4, 2, 1)
#: ``desc`` of the ensemble's standard deviation ``predict`` writes beside a map (not a map).
UNCERTAINTY_DESC = "uncertainty"
#: Kinds of change, in the order of the summary table.
KINDS = ("new", "enlarging", "shrinking", "resolved")
#: Codes of a change truth map (``label-change_dseg``; the phantom's ``--follow-up`` writes
#: them); the kinds of an increase, the others are decreases.
CHANGE_CODES = {kind: code for code, kind in enumerate(KINDS, start=1)}
INCREASES = ("new", "enlarging")
#: Columns of the scores against a change truth (``task-<model>_changescores.tsv``).
SCORE_COLUMNS = ("participant_id", "session_id", "baseline_session_id", "model", "truth",
                 "true_changes", "found", "sensitivity", "calls", "false_calls", "ppv", "f1",
                 "dice", *(f"{kind}_{what}" for kind in KINDS for what in ("true", "found")),
                 *(f"{d}_{what}" for d in ("increase", "decrease") for what in ("calls", "false")))
#: Columns of the table of changes.
CHANGE_COLUMNS = ("label", "change", "centre_i", "centre_j", "centre_k", "centre_x_mm",
                  "centre_y_mm", "centre_z_mm", "volume_mm3", "mean_z",
                  "lesion_volume_baseline_mm3", "lesion_volume_followup_mm3")
#: 26-connectivity.
_FULL = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class ChangeReading:
    """How two sessions' lesion maps and images are read as lesion changes.

    Attributes:
        threshold: Lesion probability at or above which a voxel is lesion.
        z_threshold: Change (robust SD of the difference) a voxel needs.
        min_ml: Smallest change counted (mL).
    """

    threshold: float = 0.33
    z_threshold: float = Z_THRESHOLD
    min_ml: float = MIN_CHANGE_ML


@dataclass
class Changes:
    """The lesion changes of one pair of sessions, on the follow-up's grid.

    Attributes:
        labels: (X, Y, Z) int32, 0 = no change, 1.. = changes by decreasing volume.
        rows: One dict per change (:data:`CHANGE_COLUMNS`).
        noise_sd: Robust SD of the scaled difference over the normal-appearing brain.
        counts: Number of changes of each kind in :data:`KINDS`.
        volumes_ml: Changed volume (mL) of each kind.
    """

    labels: np.ndarray
    rows: list[dict[str, Any]]
    noise_sd: float
    counts: dict[str, int] = field(default_factory=dict)
    volumes_ml: dict[str, float] = field(default_factory=dict)


def _scaled(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``image`` minus its median over ``reference``, divided by its interquartile range there."""
    values = image[reference]
    low, median, high = np.percentile(values, [25, 50, 75])
    spread = high - low
    if not np.isfinite(spread) or spread <= 0:
        raise ValueError("the image is constant over the normal-appearing brain")
    return (image - median) / spread


def change_z(followup: np.ndarray, baseline: np.ndarray, normal: np.ndarray
             ) -> tuple[np.ndarray, float]:
    """The z-score of change between two co-registered images of one grid.

    Args:
        followup, baseline: (X, Y, Z) intensities, any unit or scale each.
        normal: (X, Y, Z) boolean normal-appearing brain (no lesion of either session).

    Returns:
        (z, noise SD): z is the difference of the two images, each scaled by its median
        and interquartile range over ``normal``, less its median there, over its robust SD
        there (1.4826 x median absolute deviation); the SD is in interquartile ranges.
    """
    from scipy.stats import median_abs_deviation

    difference = _scaled(followup, normal) - _scaled(baseline, normal)
    centre = float(np.median(difference[normal]))
    sd = float(median_abs_deviation(difference[normal], scale="normal"))
    if not np.isfinite(sd) or sd <= 0:
        raise ValueError("the two images do not differ over the normal-appearing brain")
    return ((difference - centre) / sd).astype(np.float32), sd


def lesion_changes(followup_probability: np.ndarray, baseline_probability: np.ndarray,
                   followup_image: np.ndarray, baseline_image: np.ndarray, brain: np.ndarray,
                   affine: np.ndarray, reading: ChangeReading = ChangeReading()) -> Changes:
    """The lesion changes between two sessions already on one grid (the follow-up's).

    Args:
        followup_probability, baseline_probability: (X, Y, Z) lesion probability (0-1).
        followup_image, baseline_image: (X, Y, Z) the image each map was read from (FLAIR).
        brain: (X, Y, Z) boolean brain mask of the follow-up.
        affine: The grid's 4x4 voxel-to-world matrix (mm).
        reading: Thresholds.

    Returns:
        The changes (see :class:`Changes`).

    Raises:
        ValueError: the brain holds no normal-appearing voxel or the images are constant.
    """
    from scipy import ndimage

    from lesionkit.lesions import lesion_centres, lesion_components

    brain = np.asarray(brain, bool)
    follow = (np.asarray(followup_probability) >= reading.threshold) & brain
    base = (np.asarray(baseline_probability) >= reading.threshold) & brain
    normal = brain & ~ndimage.binary_dilation(follow | base, _FULL)
    if normal.sum() < 100:
        raise ValueError("the brain mask holds almost no voxel outside the lesions")
    z, sd = change_z(np.asarray(followup_image, np.float32),
                     np.asarray(baseline_image, np.float32), normal)
    voxel_mm3 = float(abs(np.linalg.det(np.asarray(affine, float)[:3, :3])))
    min_voxels = max(1, int(np.ceil(reading.min_ml * 1000.0 / voxel_mm3 - 1e-9)))
    follow_lesions, _ = ndimage.label(follow, _FULL)
    base_lesions, _ = ndimage.label(base, _FULL)
    found: list[tuple[str, np.ndarray, float, float]] = []
    for sign, own, own_labels, other_labels in ((1, follow, follow_lesions, base_lesions),
                                                (-1, base, base_lesions, follow_lesions)):
        other = other_labels > 0
        candidates = lesion_components(own & ~other & (sign * z >= reading.z_threshold),
                                       0.5, min_voxels)
        for index, box in enumerate(ndimage.find_objects(candidates), start=1):
            where = np.argwhere(candidates[box] == index) + [s.start for s in box]
            lesion = np.isin(own_labels, np.unique(own_labels[tuple(where.T)]))
            near = np.unique(other_labels[ndimage.binary_dilation(lesion, _FULL)])
            near = near[near > 0]
            other_mm3 = float(np.isin(other_labels, near).sum()) * voxel_mm3
            kind = (("enlarging" if len(near) else "new") if sign > 0
                    else ("shrinking" if len(near) else "resolved"))
            own_mm3 = float(lesion.sum()) * voxel_mm3
            found.append((kind, where, *((other_mm3, own_mm3) if sign > 0
                                         else (own_mm3, other_mm3))))
    found.sort(key=lambda item: -len(item[1]))
    labels = np.zeros(follow.shape, np.int32)
    for label, (_, where, _, _) in enumerate(found, start=1):
        labels[tuple(where.T)] = label
    centres = lesion_centres(labels)
    rows = []
    for label, (kind, where, base_mm3, follow_mm3) in enumerate(found, start=1):
        index = tuple(where.T)
        centre = centres[label]
        world = np.asarray(affine, float) @ np.array([*centre, 1.0])
        rows.append({"label": label, "change": kind, "centre_i": int(centre[0]),
                     "centre_j": int(centre[1]), "centre_k": int(centre[2]),
                     "centre_x_mm": round(float(world[0]), 2),
                     "centre_y_mm": round(float(world[1]), 2),
                     "centre_z_mm": round(float(world[2]), 2),
                     "volume_mm3": round(len(where) * voxel_mm3, 3),
                     "mean_z": round(float(z[index].mean()), 2),
                     "lesion_volume_baseline_mm3": round(base_mm3, 3),
                     "lesion_volume_followup_mm3": round(follow_mm3, 3)})
    counts = {kind: sum(row["change"] == kind for row in rows) for kind in KINDS}
    volumes = {kind: round(sum(row["volume_mm3"] for row in rows if row["change"] == kind)
                           / 1000.0, 4) for kind in KINDS}
    return Changes(labels=labels, rows=rows, noise_sd=sd, counts=counts, volumes_ml=volumes)


# ----------------------------------------------------------------------------- files


@dataclass(frozen=True)
class SessionMap:
    """A lesion probability map ``predict`` wrote for one session.

    Attributes:
        path: The map (``*_label-lesion_desc-<model>_probseg.nii.gz``).
        subject: Subject label.
        session: Session label.
        entities: The name's other entities (acq, run, desc, ...), ``ses`` left out.
    """

    path: Path
    subject: str
    session: str
    entities: tuple[tuple[str, str], ...]


def lesion_maps(predictions: Path, subjects: Sequence[str] | None = None
                ) -> dict[tuple[str, tuple[tuple[str, str], ...]], list[SessionMap]]:
    """The session maps of a predictions folder (``label-lesion`` probability maps of a
    session, not their uncertainty), grouped by subject and by every entity but the
    session (one group per subject, model and acquisition)."""
    from lesionkit.bids import parse_name

    groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[SessionMap]] = {}
    for path in sorted(Path(predictions).glob("sub-*/ses-*/*/*_probseg.nii*")):
        parsed = parse_name(path.name)
        if (parsed is None or parsed[0].get("label") != "lesion" or "ses" not in parsed[0]
                or parsed[0].get("desc") == UNCERTAINTY_DESC):
            continue
        entities = parsed[0]
        if subjects is not None and entities["sub"] not in subjects:
            continue
        rest = tuple((k, v) for k, v in entities.items() if k not in ("sub", "ses"))
        groups.setdefault((entities["sub"], rest), []).append(
            SessionMap(path, entities["sub"], entities["ses"], rest))
    return groups


def _with_earlier(groups: dict[Any, list[SessionMap]], earlier: Path | None,
                  subjects: Sequence[str] | None) -> dict[Any, list[SessionMap]]:
    """``groups`` with the maps of other sessions of the same subject and model found in
    ``earlier`` (a folder written before), where ``groups`` has none of that session."""
    if earlier is None or not Path(earlier).is_dir():
        return groups
    merged = {key: list(maps) for key, maps in groups.items()}
    for key, maps in lesion_maps(Path(earlier), subjects).items():
        if key in merged:
            have = {m.session for m in merged[key]}
            merged[key] += [m for m in maps if m.session not in have]
    return merged


def has_pairs(predictions: Path, subjects: Sequence[str] | None = None,
              earlier: Path | None = None) -> bool:
    """Whether a predictions folder holds lesion maps of two or more sessions of a subject
    (with ``earlier``: counting that folder's other sessions of the subjects it has)."""
    groups = _with_earlier(lesion_maps(predictions, subjects), earlier, subjects)
    return any(len({m.session for m in maps}) >= 2 for maps in groups.values())


def _natural(label: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", label)]


def session_order(maps: Sequence[SessionMap], sessions: Sequence[str] | None = None
                  ) -> list[SessionMap]:
    """The maps in time order: as ``sessions`` lists them (the others left out); else by
    ``acq_time`` of the raw dataset's ``sub-<label>_sessions.tsv`` where every session has
    one; else by label, numbers compared as numbers (``ses-2`` before ``ses-10``)."""
    by_session = {m.session: m for m in maps}
    if sessions:
        return [by_session[s] for s in sessions if s in by_session]
    times = _acquisition_times(maps)
    if times and all(m.session in times for m in maps):
        return sorted(maps, key=lambda m: (times[m.session], _natural(m.session)))
    return sorted(maps, key=lambda m: _natural(m.session))


def _acquisition_times(maps: Sequence[SessionMap]) -> dict[str, str]:
    """Session -> ``acq_time`` from the raw dataset's sessions table, found through the
    maps' ``Sources``; {} when there is none."""
    import csv

    for session_map in maps:
        for source in _sources(session_map.path):
            folder = next((p for p in Path(source).parents
                           if p.name == f"sub-{session_map.subject}"), None)
            table = folder / f"sub-{session_map.subject}_sessions.tsv" if folder else None
            if table is not None and table.is_file():
                with table.open(newline="") as handle:
                    rows = list(csv.DictReader(handle, delimiter="\t"))
                return {row["session_id"].removeprefix("ses-"): row["acq_time"]
                        for row in rows if row.get("session_id")
                        and row.get("acq_time") not in (None, "", "n/a")}
    return {}


def _sidecar(path: Path) -> dict[str, Any]:
    from lesionkit.bids import sidecar_path
    from lesionkit.io import read_sidecar

    return read_sidecar(sidecar_path(path), "its inputs are not known")


def _sources(path: Path) -> list[str]:
    sources = _sidecar(path).get("Sources")
    return [str(s) for s in sources] if isinstance(sources, list) else []


def _image_of(session_map: SessionMap, shape: tuple[int, ...]) -> Path:
    """The first input the map was predicted from, which lies on the map's grid."""
    sources = _sources(session_map.path)
    if not sources:
        raise InputError(f"{session_map.path}: expected a sidecar naming the images it was "
                         "predicted from (Sources), found none")
    image = Path(sources[0])
    if not image.is_file():
        raise InputError(f"{session_map.path}: expected its first input {image} (Sources), "
                         "found no such file")
    import nibabel as nib

    found = nib.load(str(image)).shape[:3]
    if tuple(found) != tuple(shape[:3]):
        raise InputError(f"{session_map.path}: expected its first input {image} on the map's "
                         f"grid {tuple(shape[:3])}, found {tuple(found)}")
    return image


def _brain(session_map: SessionMap, image: Any) -> tuple[np.ndarray, str]:
    """The follow-up's brain mask: the one ``predict`` wrote beside its map, else the
    dataset's mask it used (its sidecar's ``BrainMask``, put on the image's grid), else
    BET."""
    from lesionkit.bids import build_name, parse_name
    from lesionkit.io import load_volume

    entities, _, extension = parse_name(session_map.path.name)  # type: ignore[misc]
    written = session_map.path.with_name(
        build_name({**entities, "label": "brain"}, "mask", extension))
    used = str(_sidecar(session_map.path).get("BrainMask", ""))
    dataset = Path(used.removeprefix("dataset:").strip()) if used.startswith("dataset:") else None
    for path in (written, dataset):
        if path is not None and path.is_file():
            mask = load_volume(path, kind="label")
            if mask.shape[:3] != image.shape[:3] or not np.allclose(mask.affine, image.affine,
                                                                    atol=1e-3):
                from nibabel.processing import resample_from_to

                from lesionkit.io import nifti_image

                moved = resample_from_to(nifti_image(np.asarray(mask.data, np.float32),
                                                     mask.affine),
                                         (image.shape[:3], image.affine), order=0)
                return np.asarray(moved.dataobj) > 0.5, str(path)
            return np.asarray(mask.data) > 0, str(path)
    from lesionkit.brainmask import brain_mask

    return brain_mask(np.asarray(image.data, np.float32), image.affine,
                      source=str(session_map.path))


def _on_grid(matrix: np.ndarray, moving: Any, static: Any) -> Any:
    from dipy.align.imaffine import AffineMap

    return AffineMap(matrix, domain_grid_shape=static.shape[:3], domain_grid2world=static.affine,
                     codomain_grid_shape=moving.shape[:3],
                     codomain_grid2world=moving.affine)


def register_sessions(baseline: Any, followup: Any, brain: np.ndarray) -> np.ndarray:
    """The rigid transform from the follow-up's world to the baseline's (see
    :func:`lesionkit.geometry.rigid_matrix`), estimated on grids of at most
    ``REGISTRATION_MM`` voxels, inside the follow-up's brain mask."""
    from nibabel.processing import resample_to_output

    from lesionkit.geometry import rigid_matrix, voxel_size
    from lesionkit.io import nifti_image

    def coarse(data: np.ndarray, affine: np.ndarray, order: int) -> Any:
        image = nifti_image(np.asarray(data, np.float32), affine)
        if min(voxel_size(affine)) >= REGISTRATION_MM:
            return image
        return resample_to_output(image, voxel_sizes=REGISTRATION_MM, order=order)

    static = coarse(followup.data, followup.affine, 1)
    moving = coarse(baseline.data, baseline.affine, 1)
    mask = coarse(brain.astype(np.float32), followup.affine, 0)
    return rigid_matrix(np.asarray(moving.dataobj), moving.affine, np.asarray(static.dataobj),
                        static.affine, static_mask=np.asarray(mask.dataobj) > 0.5,
                        factors=REGISTRATION_FACTORS)


def _shift_mm(matrix: np.ndarray, brain: np.ndarray, affine: np.ndarray) -> float:
    """Mean displacement (mm) of the brain's voxels by the transform."""
    points = np.argwhere(brain)[::11]
    if not len(points):
        return 0.0
    world = points @ affine[:3, :3].T + affine[:3, 3]
    moved = world @ matrix[:3, :3].T + matrix[:3, 3]
    return float(np.linalg.norm(moved - world, axis=1).mean())


def _check_comparable(brain: np.ndarray, brain_source: str, follow_image: Any,
                      base_image: Any, followup: SessionMap, baseline: SessionMap) -> None:
    """Refuse, before registering them, a follow-up brain mask too small to be a brain
    (under ``PLAUSIBLE_VOLUME_ML[0]``, the bound of every computed mask) and an image with
    no contrast (inside that brain at follow-up; anywhere at baseline).

    Raises:
        InputError: naming the mask or the map whose image it is.
    """
    from lesionkit.brainmask import PLAUSIBLE_VOLUME_ML

    voxel_ml = abs(float(np.linalg.det(np.asarray(follow_image.affine)[:3, :3]))) / 1000.0
    volume_ml = float(brain.sum()) * voxel_ml
    if volume_ml < PLAUSIBLE_VOLUME_ML[0]:
        raise InputError(f"{brain_source}: expected the follow-up's brain mask "
                         f"({followup.path.name}) of at least {PLAUSIBLE_VOLUME_ML[0]:.0f} mL, "
                         f"found {volume_ml:.1f} mL")
    for session_map, values in ((followup, np.asarray(follow_image.data)[brain]),
                                (baseline, np.asarray(base_image.data))):
        low, high = np.percentile(values, [2, 98])
        if not high > low:
            where = " inside the brain" if session_map is followup else ""
            raise InputError(f"{session_map.path}: expected its image "
                             f"({_sources(session_map.path)[0]}) to have contrast{where}, "
                             f"found 2nd and 98th percentiles both {low:g}")


def compare_sessions(baseline: SessionMap, followup: SessionMap, out_dir: Path,
                     reading: ChangeReading = ChangeReading()) -> tuple[list[Path], dict]:
    """Read the lesion changes from ``baseline`` to ``followup``; write their label map,
    its sidecar and its table beside where the follow-up's map would lie under
    ``out_dir``.

    Returns:
        The files written and the pair's row of the summary table.

    Raises:
        InputError: a map or its first input is missing or unreadable, or the two do not
            share a grid.
    """
    from lesionkit.bids import build_name, parse_name
    from lesionkit.io import load_volume, save_volume, write_json, write_tsv

    follow_map = load_volume(followup.path, kind="probability")
    base_map = load_volume(baseline.path, kind="probability")
    follow_image = load_volume(_image_of(followup, follow_map.shape), ndim=None)
    base_image = load_volume(_image_of(baseline, base_map.shape), ndim=None)
    follow_image, base_image = (v.with_data(np.asarray(v.data, np.float32).mean(-1))
                                if np.ndim(v.data) == 4 else v
                                for v in (follow_image, base_image))
    brain, brain_source = _brain(followup, follow_image)
    _check_comparable(brain, brain_source, follow_image, base_image, followup, baseline)
    try:
        matrix = register_sessions(base_image, follow_image, brain)
    except (ValueError, np.linalg.LinAlgError) as error:
        raise InputError(f"{baseline.path}: expected its image to register onto the "
                         f"follow-up's ({followup.path}), found that the rigid registration "
                         f"failed ({error})") from error
    mapping = _on_grid(matrix, base_image, follow_image)
    moved_image = mapping.transform(np.asarray(base_image.data, np.float32))
    moved_map = np.clip(mapping.transform(np.asarray(base_map.data, np.float32)), 0, 1)
    try:
        changes = lesion_changes(np.asarray(follow_map.data, np.float32), moved_map,
                                 np.asarray(follow_image.data, np.float32), moved_image, brain,
                                 follow_map.affine, reading)
    except ValueError as error:
        raise InputError(f"{followup.path}: expected two sessions whose images can be "
                         f"compared, found that {error}") from error
    entities, _, extension = parse_name(followup.path.name)  # type: ignore[misc]
    relative = followup.path.parent.relative_to(followup.path.parents[2])
    desc = f"{entities.get('desc', '')}change"
    folder = Path(out_dir) / f"sub-{followup.subject}" / relative
    label_path = folder / build_name({**entities, "desc": desc}, "dseg", extension)
    table_path = label_path.with_name(label_path.name.removesuffix(extension) + ".tsv")
    shift = _shift_mm(matrix, brain, follow_map.affine)
    save_volume(follow_map.with_data(changes.labels, kind="label"), label_path,
                dtype=np.int32)
    sidecar = {
        "Description": (
            "lesion changes since the baseline session, numbered by decreasing volume (their "
            f"table: {table_path.name}): voxels that are lesion at follow-up and not at "
            f"baseline and at least {reading.z_threshold:g} robust SD brighter (new or "
            "enlarging), and voxels that are lesion at baseline and not at follow-up and at "
            "least as much darker (shrinking or resolved), in 26-connected components of at "
            f"least {reading.min_ml:g} mL; baseline rigidly co-registered (dipy, mutual "
            "information)"),
        "BaselineSession": baseline.session, "FollowUpSession": followup.session,
        "Sources": [str(baseline.path), str(followup.path)],
        "Images": [str(_image_of(baseline, base_map.shape)),
                   str(_image_of(followup, follow_map.shape))],
        "BrainMask": brain_source, "LesionThreshold": reading.threshold,
        "ChangeZThreshold": reading.z_threshold, "MinChangeVolumeMl": reading.min_ml,
        "DifferenceSD": round(changes.noise_sd, 4),
        "RegistrationShiftMm": round(shift, 2),
        "BaselineToFollowUp": np.round(np.linalg.inv(matrix), 5).tolist(),
        "Changes": {kind: changes.counts[kind] for kind in KINDS},
    }
    sidecar_path = write_json(sidecar, label_path.with_name(
        label_path.name.removesuffix(extension) + ".json"))
    write_tsv(changes.rows, table_path, columns=CHANGE_COLUMNS)
    row = {"participant_id": f"sub-{followup.subject}", "session_id": f"ses-{followup.session}",
           "baseline_session_id": f"ses-{baseline.session}",
           **{k: v for k, v in followup.entities if k not in ("label", "desc")},
           **{kind: changes.counts[kind] for kind in KINDS},
           **{f"{kind}_volume_ml": changes.volumes_ml[kind] for kind in KINDS},
           "registration_shift_mm": round(shift, 2), "difference_sd": round(changes.noise_sd, 4),
           "model": str(_sidecar(followup.path).get("Task") or entities.get("desc", "lesion")),
           "lesion_threshold": reading.threshold,
           "z_threshold": reading.z_threshold, "min_change_ml": round(reading.min_ml, 4)}
    return [label_path, sidecar_path, table_path], row


# ----------------------------------------------------------------------------- scores


def score_changes(labels: np.ndarray, kinds: dict[int, str], truth: np.ndarray,
                  coded: bool) -> dict[str, Any]:
    """Lesion-wise scores of a change label map against a change truth on its grid, with
    :func:`lesionkit.metrics.segmentation.lesion_wise` (the MS challenges' convention: a
    true change is found when a call overlaps it by a voxel; a call is false when it
    overlaps none) and :func:`~lesionkit.metrics.segmentation.dice`.

    Where the truth is coded, a call counts only against true changes of its direction
    (increase: new or enlarging; decrease: shrinking or resolved), and found/true per kind
    is given too; calls/false calls per direction always. Sensitivity, PPV and F1 are over
    all of a map's changes and calls (None where a denominator is 0, as ``lesion_wise``).

    Args:
        labels: (X, Y, Z) change labels as :func:`compare` writes them.
        kinds: Label -> its kind (the table beside the map).
        truth: (X, Y, Z) truth: :data:`CHANGE_CODES` where ``coded``, else any non-zero
            voxel is a change of either direction.
        coded: Whether ``truth`` holds the kinds.
    """
    from lesionkit.metrics.segmentation import dice, lesion_wise

    up_calls = np.isin(labels, [label for label, kind in kinds.items() if kind in INCREASES])
    calls = {"increase": up_calls, "decrease": (labels > 0) & ~up_calls}
    row: dict[str, Any] = {}
    if coded:
        for kind in KINDS:
            scores = lesion_wise(calls["increase" if kind in INCREASES else "decrease"],
                                 truth == CHANGE_CODES[kind])
            row[f"{kind}_true"] = scores["n_true_lesions"]
            row[f"{kind}_found"] = scores["true_positive_lesions"]
        true = sum(row[f"{kind}_true"] for kind in KINDS)
        found = sum(row[f"{kind}_found"] for kind in KINDS)
    else:
        scores = lesion_wise(labels > 0, truth > 0)
        true, found = scores["n_true_lesions"], scores["true_positive_lesions"]
    for direction, mine in calls.items():  # the components of one direction are its labels
        kinds_of = [k for k in KINDS if (k in INCREASES) == (direction == "increase")]
        against = np.isin(truth, [CHANGE_CODES[k] for k in kinds_of]) if coded else truth > 0
        scores = lesion_wise(mine, against)
        row[f"{direction}_calls"] = scores["n_predicted_lesions"]
        row[f"{direction}_false"] = scores["false_positive_components"]
    called = row["increase_calls"] + row["decrease_calls"]
    false_calls = row["increase_false"] + row["decrease_false"]
    sensitivity = round(found / true, 4) if true else None
    ppv = round((called - false_calls) / called, 4) if called else None
    f1 = (None if sensitivity is None or ppv is None else 0.0 if sensitivity + ppv == 0
          else round(2 * sensitivity * ppv / (sensitivity + ppv), 4))
    return {"true_changes": true, "found": found, "sensitivity": sensitivity,
            "calls": called, "false_calls": false_calls, "ppv": ppv, "f1": f1,
            "dice": round(float(dice(labels > 0, truth > 0)), 4), **row}


def _truth_of(dataset: Any, subject: str, session: str, pipeline: str | None) -> Any:
    """The subject's change truth of ``session`` (``label-change_dseg``, else
    ``label-change_mask``) in ``pipeline`` (default: the one derivatives pipeline holding
    it), or None."""
    for suffix in ("dseg", "mask"):
        found = dataset.locate(subject, suffix, derivatives=pipeline,
                               other_pipelines=pipeline is None, session=session,
                               label="change")
        if found:
            return found[0]
    return None


def score(label_paths: Sequence[Path], data_dir: str | os.PathLike[str],
          pipeline: str | None = None, model: str = "n/a") -> list[dict[str, Any]]:
    """Score change maps :func:`compare` wrote (of one ``model``) against the change truth
    of ``data_dir`` (:func:`score_changes`), put on each map's grid (nearest neighbour)
    where it lies on another.

    Returns:
        A row per change map with a truth (:data:`SCORE_COLUMNS`).

    Raises:
        InputError: no map has a truth, or a truth is unreadable.
    """
    import csv

    from nibabel.processing import resample_from_to

    from lesionkit.bids import BIDSDataset, parse_name
    from lesionkit.io import load_volume, nifti_image

    dataset = BIDSDataset(data_dir)
    rows = []
    for path in label_paths:
        entities = parse_name(path.name)[0]  # type: ignore[index]
        sidecar = _sidecar(path)
        truth_file = _truth_of(dataset, entities["sub"], entities["ses"], pipeline)
        if truth_file is None:
            continue
        calls = load_volume(path, kind="label")
        truth = load_volume(truth_file.path, kind="label")
        if truth.shape[:3] != calls.shape[:3] or not np.allclose(truth.affine, calls.affine,
                                                                   atol=1e-3):
            truth = truth.with_data(np.asarray(resample_from_to(
                nifti_image(np.asarray(truth.data, np.float32), truth.affine),
                (calls.shape[:3], calls.affine), order=0).dataobj), kind="label")
        with path.with_name(path.name.removesuffix(".nii.gz").removesuffix(".nii")
                            + ".tsv").open(newline="") as handle:
            kinds = {int(r["label"]): r["change"] for r in csv.DictReader(handle,
                                                                          delimiter="\t")}
        rows.append({
            "participant_id": f"sub-{entities['sub']}", "session_id": f"ses-{entities['ses']}",
            "baseline_session_id": f"ses-{sidecar.get('BaselineSession', 'n/a')}",
            "model": model, "truth": str(truth_file.path),
            **score_changes(np.asarray(calls.data).astype(np.int64), kinds,
                            np.rint(np.asarray(truth.data)).astype(np.int64),
                            coded=truth_file.path.name.split("_")[-1].startswith("dseg"))})
    if not rows:
        raise InputError(f"{dataset.root}: expected a change truth "
                         "(sub-<label>_ses-<label>_label-change_dseg or _mask) of a session "
                         f"whose changes were read, found none for {len(label_paths)} map(s)")
    return rows


def compare(predictions: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None,
            subjects: Sequence[str] | None = None, sessions: Sequence[str] | None = None,
            reading: ChangeReading = ChangeReading(),
            progress: Any = None, earlier: str | os.PathLike[str] | None = None,
            truth: str | os.PathLike[str] | None = None, truth_pipeline: str | None = None
            ) -> tuple[list[Path], Path]:
    """Read the lesion changes of every subject with lesion maps of two or more sessions
    in a predictions folder: each session against the one before it.

    Args:
        predictions: The folder ``lesionkit predict`` wrote, or the dataset whose
            ``derivatives/lesionkit`` it wrote (predict's default).
        out_dir: Where to write (default: the maps' folder), as BIDS derivatives.
        subjects: Subject labels (default: all).
        sessions: Sessions in time order (default: ``sessions.tsv`` ``acq_time``, else
            their labels' order).
        reading: Thresholds.
        progress: Called with each pair's description before it is read.
        earlier: A folder of maps written before (the BIDS app's OUTPUT_DIR, when each
            session is its own job): its other sessions of the same subjects and models
            are paired with those of ``predictions``; pairs of its own sessions alone are
            not read again. Outputs still go to ``out_dir``.
        truth: A dataset holding change truths (``label-change_dseg`` or ``_mask`` of the
            later session, :func:`score`): the changes read are scored against them in
            ``task-<model>_changescores.tsv``.
        truth_pipeline: Its derivatives pipeline (default: the one holding them).

    Returns:
        The files written and the summary table ``task-<model>_lesionchange.tsv``.

    Raises:
        InputError: no subject has lesion maps of two sessions, a pair cannot be read, or
            ``truth`` holds no change truth of the pairs read (their changes are written).
    """
    from lesionkit.io import all_or_nothing, write_tsv

    predictions = Path(predictions)
    if not predictions.is_dir():
        raise InputError(f"{predictions}: expected the predictions folder of lesionkit "
                         "predict, found no folder")
    groups = lesion_maps(predictions, subjects)
    beneath = predictions / "derivatives" / "lesionkit"  # predict's default beside the data
    if not groups and beneath.is_dir():
        predictions, groups = beneath, lesion_maps(beneath, subjects)
    out = Path(out_dir) if out_dir is not None else predictions
    mine = {m.path for maps in groups.values() for m in maps}
    groups = _with_earlier(groups, None if earlier is None else Path(earlier), subjects)
    pairs = []
    for maps in groups.values():
        ordered = session_order(maps, sessions)
        pairs += [pair for pair in itertools.pairwise(ordered)
                  if pair[0].path in mine or pair[1].path in mine]
    if not pairs:
        found = sorted({m.session for maps in groups.values() for m in maps})
        named = f" named by --sessions ({', '.join(sessions)})" if sessions else ""
        raise InputError(f"{predictions}: expected lesion probability maps "
                         f"(*_label-lesion_*_probseg.nii.gz) of two or more sessions{named} "
                         f"of a subject, found {len(groups)} subject map set(s) in session(s) "
                         f"{', '.join(found) or 'none'}")
    if truth is not None:
        from lesionkit.bids import BIDSDataset

        BIDSDataset(truth)  # a missing truth folder is said before any pair is read
    written: list[Path] = []
    rows: dict[str, list[dict]] = {}
    label_maps: dict[str, list[Path]] = {}
    for baseline, followup in pairs:
        if progress is not None:
            progress(f"sub-{followup.subject}: ses-{baseline.session} -> ses-{followup.session}")
        with all_or_nothing():
            paths, row = compare_sessions(baseline, followup, out, reading)
        written += paths
        rows.setdefault(row["model"], []).append(row)
        label_maps.setdefault(row["model"], []).append(paths[0])
    tables = [write_tsv(model_rows, out / f"task-{model}_lesionchange.tsv")
              for model, model_rows in rows.items()]
    if truth is not None:
        tables += [write_tsv(score(paths, truth, truth_pipeline, model),
                             out / f"task-{model}_changescores.tsv", columns=SCORE_COLUMNS)
                   for model, paths in label_maps.items()]
    if not (out / "dataset_description.json").is_file():  # another --out-dir: a derivative
        from lesionkit.bids import write_dataset_description

        tables.append(write_dataset_description(out, "lesionkit lesion changes", "derivative"))
    return written + tables, tables[0]
