"""Per-lesion feature vectors of a task, computed once per lesion and cached on disk.

A task with ``lesion_features`` (:class:`lesionkit.tasks.task.LesionFeatures`) names a
function of one lesion (its images cropped around it, in physical units, on the
dataset's own grid, and its mask). The features of every lesion of a subject are written
to ``derivatives/lesionkit-features/sub-XX/[ses-YY/]anat/sub-XX[_ses-YY]_desc-<name>_
features.tsv`` (one row per lesion label) with a JSON sidecar holding the cache key: the
feature set, its function, settings, the library version and the size and modification
time of each source file. A later call with the same key reads the table; any change
recomputes it. Training (:class:`lesionkit.store.SubjectStore`) and prediction
(:func:`lesionkit.infer.predict`) both read features through :func:`subject_features`,
so cross-validation arms and folds never recompute them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.bids import BIDSDataset, bids_path, sidecar_path
from lesionkit.io import InputError, atomic_path, load_volume, sidecar_unit_factor, write_tsv

#: Derivatives pipeline of the cached features.
PIPELINE = "lesionkit-features"


def _reference(function: Callable[..., Any]) -> str:
    return f"{function.__module__}:{function.__qualname__}"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _sources(dataset: BIDSDataset, subject: str, task: Any, inputs: Sequence[Any],
             session: str | None, run: str | None = None) -> tuple[dict[str, Path], Path]:
    """Input key -> file of the inputs the features read, and the lesion map."""
    spec = task.lesion_features
    wanted = [s for s in inputs if not spec.inputs or s.key in spec.inputs]
    files = {s.key: dataset.get_run(subject, s.suffix, run, **s.query(session)).path
             for s in wanted}
    lesions = task.lesions
    return files, dataset.get_run(subject, lesions.suffix, run, **lesions.query(session)).path


def unit_factors(task: Any, files: dict[str, Path]) -> dict[str, float]:
    """Input key -> factor that brings the file from the ``Units`` of its JSON sidecar to
    the unit the task reads (1 where they agree or nothing is stated), as
    :func:`lesionkit.data.load_subject` converts it: features are computed in the task's
    unit (bin widths such as 25 ppb assume it).

    Raises:
        InputError: a sidecar states a unit that does not convert.
    """
    units = {s.key: s.unit for s in (*task.inputs, *task.prediction_inputs)}
    return {key: sidecar_unit_factor(path, sidecar_path(path), units.get(key, ""))[0]
            for key, path in files.items()}


def crop_margin(spec: Any, spacing: Sequence[float]) -> tuple[int, ...]:
    """Voxels of context per axis around a lesion's bounding box: the wider of the feature
    set's ``margin`` (voxels) and ``margin_mm`` on voxels of ``spacing`` (mm)."""
    return tuple(max(int(spec.margin), int(np.ceil(spec.margin_mm / float(s) - 1e-9)))
                 for s in spacing)


def cache_key(task: Any, files: dict[str, Path], lesion_map: Path) -> dict[str, Any]:
    """What a cached table must match: feature set, function, settings, crop margins,
    version, sources and the unit conversion of each source."""
    spec = task.lesion_features
    stamp = {str(p): [p.stat().st_size, p.stat().st_mtime_ns]
             for p in (*files.values(), lesion_map)}
    return {"FeatureSet": spec.name, "Function": _reference(spec.function),
            "Settings": _plain(dict(spec.settings)), "Margin": spec.margin,
            "MarginMm": spec.margin_mm,
            "Version": str(spec.version()), "Sources": stamp,
            "UnitFactors": unit_factors(task, files)}


def cache_path(root: Path, subject: str, name: str, session: str | None = None) -> Path:
    """Where a subject's features are cached under the dataset ``root``."""
    return bids_path(root, subject, "features", session=session, derivatives=PIPELINE,
                     extension=".tsv", desc=name)


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def read_cached(path: Path, key: dict[str, Any]) -> dict[int, np.ndarray] | None:
    """The cached features (label -> (F,) float32) if the sidecar matches ``key``."""
    sidecar = _sidecar(path)
    if not (path.is_file() and sidecar.is_file()):
        return None
    try:
        if json.loads(sidecar.read_text()) != key:
            return None
    except ValueError:
        return None
    import pandas as pd

    table = pd.read_csv(path, sep="\t")
    values = table.drop(columns="label").to_numpy(np.float32)
    return {int(label): values[i] for i, label in enumerate(table["label"])}


def compute(task: Any, files: dict[str, Path], lesion_map: Path,
            advance: Callable[[int], Any] | None = None
            ) -> tuple[list[str], dict[int, np.ndarray]]:
    """Features of every lesion of one subject (lesions in increasing label order).

    Raises:
        InputError: an input is not on the lesion map's grid.
    """
    from scipy import ndimage

    spec = task.lesion_features
    label_volume = load_volume(lesion_map, kind="label")
    labels = np.rint(label_volume.data).astype(np.int64)
    images = {}
    factors = unit_factors(task, files)
    for key, path in files.items():
        volume = load_volume(path, ndim=None)
        data = np.asarray(volume.data, np.float32) * np.float32(factors[key])
        data = data[None] if data.ndim == 3 else np.moveaxis(data, -1, 0)
        if data.shape[1:] != labels.shape or not np.allclose(volume.affine,
                                                             label_volume.affine, atol=1e-3):
            raise InputError(f"{path}: expected the grid of the lesion map {lesion_map.name} "
                             f"{labels.shape} for per-lesion features, found {data.shape[1:]}")
        images[key] = data
    spacing = tuple(float(s) for s in label_volume.spacing)
    margin = crop_margin(spec, spacing)
    names: list[str] = []
    out: dict[int, np.ndarray] = {}
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        box = tuple(slice(max(s.start - m, 0), min(s.stop + m, n))
                    for s, m, n in zip(box, margin, labels.shape, strict=True))
        crops = {k: v[(slice(None), *box)] for k, v in images.items()}
        values = spec.function(crops, labels[box] == label, spacing, **dict(spec.settings))
        names = names or list(values)
        if list(values) != names:
            raise ValueError(f"feature set {spec.name}: lesion {label} gave other feature "
                             f"names than the first lesion")
        out[label] = np.array([values[n] for n in names], np.float32)
        if advance is not None:
            advance(1)
    return names, out


def subject_features(dataset: BIDSDataset, subject: str, task: Any,
                     inputs: Sequence[Any] | None = None, session: str | None = None,
                     advance: Callable[[int], Any] | None = None, run: str | None = None
                     ) -> dict[int, np.ndarray]:
    """Label -> (F,) features of a subject's lesions, from the cache or computed and cached.

    Args:
        dataset: The BIDS dataset (the cache lives under its derivatives; a read-only
            dataset gets its features computed and not cached).
        subject: Subject label.
        task: A task with ``lesion_features`` and ``lesions``.
        inputs: Input specs to read (default: the task's inputs).
        session: Session to read where the specs name none.
        advance: Called with 1 after each computed lesion (progress).
        run: Run to read where an image has several (:meth:`BIDSDataset.get_run`).
    """
    files, lesion_map = _sources(dataset, subject, task, inputs or task.inputs, session, run)
    key = cache_key(task, files, lesion_map)
    path = cache_path(dataset.root, subject, task.lesion_features.name, session)
    cached = read_cached(path, key)
    if cached is not None:
        return cached
    names, features = compute(task, files, lesion_map, advance)
    rows = [{"label": label, **dict(zip(names, vector.tolist(), strict=True))}
            for label, vector in sorted(features.items())]
    try:
        write_tsv(rows, path, columns=["label", *names])
        with atomic_path(_sidecar(path)) as tmp:
            tmp.write_text(json.dumps(key, indent=1))
    except OSError:
        pass  # read-only dataset: features are used without caching
    return features


def lesion_count(dataset: BIDSDataset, subject: str, task: Any,
                 session: str | None = None) -> int:
    """Number of lesions (distinct non-zero labels) in a subject's lesion map."""
    spec = task.lesions
    path = dataset.get(subject, spec.suffix, **spec.query(session)).path
    return int(np.count_nonzero(np.unique(np.rint(load_volume(path, kind="label").data)) > 0))


def ensure_features(dataset: BIDSDataset, subjects: Sequence[str], task: Any,
                    inputs: Sequence[Any] | None = None, progress: bool = True,
                    sessions: Sequence[str | None] | None = None) -> None:
    """Compute and cache the features of every subject missing them, with a progress bar
    over their lesions (``sessions``: the session of each subject, longitudinal data)."""
    from rich.progress import Progress

    missing = []
    for subject, session in zip(subjects, sessions or [None] * len(subjects), strict=True):
        files, lesion_map = _sources(dataset, subject, task, inputs or task.inputs, session)
        path = cache_path(dataset.root, subject, task.lesion_features.name, session)
        if read_cached(path, cache_key(task, files, lesion_map)) is None:
            missing.append((subject, session))
    if not missing:
        return
    total = sum(lesion_count(dataset, s, task, session) for s, session in missing)
    with Progress(disable=not progress) as bar:
        job = bar.add_task(f"lesion features ({task.lesion_features.name})", total=total)
        for subject, session in missing:
            subject_features(dataset, subject, task, inputs, session=session,
                             advance=lambda n: bar.advance(job, n))
