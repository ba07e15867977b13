"""The lesion maps ``predict`` wrote for the sessions of a subject, in time order, and
what each was read from (its first input image, its brain mask): what
:mod:`lesionkit.longitudinal` pairs and compares."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.io import InputError

#: ``desc`` of the ensemble's standard deviation ``predict`` writes beside a map (not a map).
UNCERTAINTY_DESC = "uncertainty"


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


def with_earlier(groups: dict[Any, list[SessionMap]], earlier: Path | None,
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
    groups = with_earlier(lesion_maps(predictions, subjects), earlier, subjects)
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
        for source in sources_of(session_map.path):
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


def sidecar_of(path: Path) -> dict[str, Any]:
    """The JSON sidecar of a map ``predict`` wrote ({} where there is none)."""
    from lesionkit.bids import sidecar_path
    from lesionkit.io import read_sidecar

    return read_sidecar(sidecar_path(path), "its inputs are not known")


def sources_of(path: Path) -> list[str]:
    """The files a map was predicted from (its sidecar's ``Sources``), first input first."""
    sources = sidecar_of(path).get("Sources")
    return [str(s) for s in sources] if isinstance(sources, list) else []


def image_of(session_map: SessionMap, shape: tuple[int, ...]) -> Path:
    """The first input the map was predicted from, which lies on the map's grid."""
    sources = sources_of(session_map.path)
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


def brain_of(session_map: SessionMap, image: Any) -> tuple[np.ndarray, str]:
    """The follow-up's brain mask: the one ``predict`` wrote beside its map, else the
    dataset's mask it used (its sidecar's ``BrainMask``, put on the image's grid), else
    BET."""
    from lesionkit.bids import build_name, parse_name
    from lesionkit.io import load_volume

    entities, _, extension = parse_name(session_map.path.name)  # type: ignore[misc]
    written = session_map.path.with_name(
        build_name({**entities, "label": "brain"}, "mask", extension))
    used = str(sidecar_of(session_map.path).get("BrainMask", ""))
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

