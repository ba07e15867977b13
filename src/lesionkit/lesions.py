"""Lesions of a label map: centres, patches around them, their tables and their scores.

A lesion label map holds one integer per lesion (0 outside lesions). Per-lesion
targets live in a TSV beside it with the map's name (``..._dseg.tsv`` beside
``..._dseg.nii.gz``): a ``label`` column naming the lesion's integer and one column
per target (e.g. ``rim``). Predictions are ``_lesions.tsv`` tables written by
``lesionkit predict``: one row per lesion with label, centre, volume, probability and
uncertainty.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.io import InputError, load_volume


def crop(array: np.ndarray, start: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """A (C, *size) region of a (C, X, Y, Z) array from ``start``, zero outside the array.

    Args:
        array: Channels-first volume (a memory map works: only the region is read).
        start: First voxel of the region (may be negative).
        size: Region shape in voxels.
    """
    out = np.zeros((array.shape[0], *size), dtype=np.float32)
    src, dst = [], []
    for begin, n, length in zip(start, size, array.shape[1:], strict=True):
        lo, hi = max(begin, 0), min(begin + n, length)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - begin, hi - begin))
    out[(slice(None), *dst)] = array[(slice(None), *src)]
    return out


def centred_start(centre: Sequence[int], size: Sequence[int]) -> tuple[int, ...]:
    """First voxel of a ``size`` region centred on ``centre``."""
    return tuple(int(c) - n // 2 for c, n in zip(centre, size, strict=True))


def lesion_centres(label_map: np.ndarray) -> dict[int, tuple[int, int, int]]:
    """Label -> rounded centre of mass (voxel indices) of every lesion in a label map."""
    from scipy import ndimage

    labels = [int(v) for v in np.unique(label_map) if v > 0]
    centres = ndimage.center_of_mass(np.ones(label_map.shape), label_map, labels)
    return {label: tuple(round(c) for c in centre)
            for label, centre in zip(labels, centres, strict=True)}


def lesion_table(map_path: Path, specs: Sequence[Any]) -> list[dict[str, Any]]:
    """Lesions of a label map: label, centre (voxels) and the task's per-lesion targets.

    ``specs`` are the task's per-lesion targets (``LesionLabelSpec``: key, column,
    classes). The targets come from the TSV beside the map (same name, ``.tsv``), whose
    ``label`` column holds the lesion's integer in the map.
    """
    import pandas as pd

    label_map = np.rint(load_volume(map_path, kind="label").data).astype(np.int64)
    centres = lesion_centres(label_map)
    targets: dict[int, dict[str, int]] = {label: {} for label in centres}
    if specs:
        path = table_path(map_path)
        if not path.is_file():
            raise InputError(f"{path}: expected the lesion table of {map_path.name}, found no "
                             "such file")
        table = pd.read_csv(path, sep="\t", dtype=str)
        for spec in specs:
            if "label" not in table.columns or spec.column not in table.columns:
                raise InputError(f"{path}: expected 'label' and {spec.column!r} columns, found "
                                 f"{list(table.columns)}")
            labels = pd.to_numeric(table["label"], errors="coerce")
            if labels.isna().any() or (labels % 1 != 0).any():
                bad = table["label"][labels.isna() | (labels % 1 != 0)].iloc[0]
                raise InputError(f"{path}: expected integer lesion labels in the 'label' "
                                 f"column, found {bad!r}")
            for label, value in zip(labels.astype(int), table[spec.column], strict=True):
                if int(label) in targets:
                    if str(value) not in spec.classes:
                        raise InputError(f"{path}: expected {spec.column} in {spec.classes} "
                                         f"for lesion {label}, found {value!r}")
                    targets[int(label)][spec.key] = spec.classes.index(str(value))
        missing = [label for label, values in targets.items() if len(values) < len(specs)]
        if missing:
            raise InputError(f"{path}: expected a row for every lesion of {map_path.name}, "
                             f"found none for labels {missing[:5]}")
    return [{"label": label, "centre": list(centres[label]), "labels": targets[label]}
            for label in sorted(centres)]


def table_path(map_path: str | os.PathLike[str]) -> Path:
    """The lesion table beside a label map (same name, ``.tsv``)."""
    path = Path(map_path)
    return path.with_name(path.name.removesuffix(".gz").removesuffix(".nii") + ".tsv")


def evaluate_lesion_tables(task: Any, data_root: Path, predictions_root: Path,
                           subjects: Sequence[str]) -> list[dict[str, Any]]:
    """One row per lesion: its true class (``label``) and predicted ``probability``.

    Truth: the lesion table of the task's lesion map and its first per-lesion target;
    predictions: the ``_lesions.tsv`` tables under ``predictions_root``. A generic
    ``evaluate`` hook for binary per-lesion tasks.
    """
    import pandas as pd

    from lesionkit.bids import BIDSDataset

    spec, target = task.lesions, task.targets[0]
    dataset, predictions = BIDSDataset(data_root), BIDSDataset(predictions_root)
    rows = []
    for subject in subjects:
        found = predictions.find(subject=subject, suffix="lesions", extension=".tsv")
        if not found:
            continue
        truth = {t["label"]: t["labels"][target.key] for t in lesion_table(
            dataset.get(subject, spec.suffix, **spec.query()).path, [target])}
        table = pd.read_csv(found[0].path, sep="\t")
        for lesion in table.to_dict("records"):
            rows.append({"participant_id": f"sub-{subject}", "lesion": int(lesion["label"]),
                         "label": truth.get(int(lesion["label"])),
                         "probability": float(lesion["probability"]),
                         "uncertainty": float(lesion["uncertainty"]),
                         "volume_mm3": float(lesion["volume_mm3"])})
    return rows
