"""The on-disk subject store that training and cross-validation read.

Each subject is loaded once (:func:`lesionkit.data.load_subject`: validated, reoriented,
resampled, preprocessed) and written as plain arrays under a cache folder; samplers then
read whole subjects or single regions from memory-mapped files, so training memory does
not grow with the number of subjects. Normalisation statistics are fitted here on the
subjects named (the training subjects) and applied on read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lesionkit.bids import BIDSDataset
from lesionkit.data import load_subject, subject_labels
from lesionkit.io import InputError
from lesionkit.lesions import crop, lesion_table
from lesionkit.normalisation import FIT_VOXELS, Stats, apply_normalisation, fit_statistics
from lesionkit.tasks.task import ImageSpec, LesionLabelSpec, Task
from lesionkit.units import example_unit, unit_scope

if TYPE_CHECKING:
    import torchio as tio


class SubjectStore:
    """A dataset's subjects as arrays on disk, read whole or by region, normalised on read.

    Args:
        root: The BIDS dataset.
        task: Says which images, labels and lesion tables a subject has.
        cache: Folder for the arrays (one sub-folder per subject).
        workers: Worker processes that load subjects for the samplers.
        register: Co-register each subject's images to its first input (dipy) instead of
            trusting their affines (:func:`load_subject`).
    """

    def __init__(self, root: str | os.PathLike[str], task: Task, cache: str | os.PathLike[str],
                 workers: int = 0, register: bool = False) -> None:
        self.dataset, self.task = BIDSDataset(root), task
        self.cache, self.workers, self.register = Path(cache), workers, register
        self.keys = [s.key for s in (*task.inputs, *task.dense_targets)]
        self._metas: dict[str, dict[str, Any]] = {}

    def prepare(self, names: Sequence[str], advance: Callable[[int], None] | None = None) -> None:
        """Load each subject once (validated, preprocessed) and write its arrays.

        A task with a lesion label map gets it on the model's grid (``lesions.npy``,
        resampled with the images, nearest neighbour) and its lesion table's centres in
        voxels of that grid, where inference will look for them.

        A task with ``lesion_features`` also gets each lesion's feature vector (cached
        under the dataset's derivatives, :mod:`lesionkit.lesion_features`) as
        ``features.npy``, one row per lesion of the lesion table.
        """
        specs = list(self.task.image_specs)
        if self.task.lesion_features is not None:
            from lesionkit.lesion_features import ensure_features

            units = [example_unit(name) for name in names]
            ensure_features(self.dataset, [u[0] for u in units], self.task,
                            sessions=[u[1] for u in units])
        for name in names:
            folder = self.cache / f"sub-{name}"
            if not (folder / "meta.json").is_file():
                meta = self._write(name, folder, specs)
                (folder / "meta.json").write_text(json.dumps(meta))
            if advance is not None:
                advance(1)

    def _write(self, name: str, folder: Path, specs: Sequence[ImageSpec]) -> dict[str, Any]:
        """Write one example's arrays (``name``: :func:`example_name`); return its meta."""
        subject_label, session = example_unit(name)
        with unit_scope(session=session):
            subject = load_subject(self.dataset, subject_label, self.task, specs,
                                   register=self.register)
            lesion_file = (self.dataset.get(subject_label, self.task.lesions.suffix,
                                            **self.task.lesions.query()).path
                           if self.task.lesions is not None else None)
        folder.mkdir(parents=True, exist_ok=True)
        for key in [*self.keys, "mask"]:
            np.save(folder / f"{key}.npy", subject[key].data.numpy())
        meta = {"affine": np.asarray(subject["mask"].affine).tolist(),
                "labels": subject_labels(self.dataset, subject_label, self.task), "lesions": []}
        if lesion_file is not None:
            targets = [t for t in self.task.targets if isinstance(t, LesionLabelSpec)]
            label_map = np.rint(subject[self.task.lesions.key].data[0].numpy()).astype(np.int32)
            np.save(folder / "lesions.npy", label_map)
            meta["lesions"] = lesion_table(lesion_file, targets, label_map)
        if self.task.lesion_features is not None:
            np.save(folder / "features.npy", self._lesion_features(name, meta))
        return meta

    def _lesion_features(self, name: str, meta: dict[str, Any]) -> np.ndarray:
        """(N, F) features of the lesions of the table, in its order."""
        from lesionkit.lesion_features import subject_features

        subject, session = example_unit(name)
        features = subject_features(self.dataset, subject, self.task, session=session)
        missing = [le["label"] for le in meta["lesions"] if le["label"] not in features]
        if missing:
            raise InputError(f"sub-{name}: expected lesion features of every lesion, found "
                             f"none for labels {missing[:5]}")
        width = len(next(iter(features.values()))) if features else 0
        rows = [features[le["label"]] for le in meta["lesions"]]
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, width), np.float32)

    def features(self, name: str) -> np.ndarray:
        """(N, F) per-lesion features of a subject, lesions in the order of :meth:`lesions`."""
        return np.asarray(self._array(name, "features"))

    def _meta(self, name: str) -> dict[str, Any]:
        """A subject's metadata (read once; callers do not change it)."""
        if name not in self._metas:
            self._metas[name] = json.loads((self.cache / f"sub-{name}" / "meta.json").read_text())
        return self._metas[name]

    def _array(self, name: str, key: str) -> np.ndarray:
        """A subject's array as a read-only memory map, opened anew at each call: a map
        kept open keeps the pages read through it in the process's memory."""
        return np.load(self.cache / f"sub-{name}" / f"{key}.npy", mmap_mode="r")

    def lesion_map(self, name: str) -> np.ndarray:
        """The (X, Y, Z) lesion label map on the model's grid (a memory map)."""
        return self._array(name, "lesions")

    def mask(self, name: str) -> np.ndarray:
        """The (X, Y, Z) brain mask."""
        return np.asarray(self._array(name, "mask")[0]) > 0

    def affine(self, name: str) -> np.ndarray:
        """Voxel-to-mm affine of the subject's (preprocessed) grid."""
        return np.array(self._meta(name)["affine"])

    def labels(self, name: str) -> dict[str, int]:
        """Subject-level class indices."""
        return self._meta(name)["labels"]

    def lesions(self, name: str) -> list[dict[str, Any]]:
        """Lesions: ``{"label", "centre", "labels"}`` each."""
        return self._meta(name)["lesions"]

    def read(self, name: str, stats: Stats, start: Sequence[int] | None = None,
             size: Sequence[int] | None = None) -> dict[str, Any]:
        """Normalised images (and the mask) of a subject, whole or a zero-padded region.

        Only the region is read from disk; the memory map closes on return.
        """
        import torch

        out = {}
        for key in [*self.keys, "mask"]:
            array = self._array(name, key)
            part = (np.array(array, dtype=np.float32) if start is None
                    else crop(array, start, size))
            if key in stats:
                part = apply_normalisation(part, stats[key]).astype(np.float32)
            out[key] = torch.from_numpy(part)
        return out

    def subject(self, name: str, stats: Stats) -> tio.Subject:
        """The whole normalised subject as a TorchIO subject with its labels."""
        import torch
        import torchio as tio

        affine, images = self.affine(name), {}
        labels = {s.key for s in self.task.image_specs if s.kind == "label"} | {"mask"}
        for key, tensor in self.read(name, stats).items():
            image_type = tio.LabelMap if key in labels else tio.ScalarImage
            images[key] = image_type(tensor=tensor.to(torch.uint8) if key == "mask" else tensor,
                                     affine=affine)
        return tio.Subject(**images, **self.labels(name), subject_id=name)

    def fit_normalisation(self, names: Sequence[str], seed: int = 0) -> Stats:
        """Per-image statistics from the given (training) subjects, inside the mask.

        At most :data:`FIT_VOXELS` voxels per subject (seeded draw) enter the fit, so it
        needs memory for a few subjects' values, not the cohort's.
        """
        rng = np.random.default_rng(seed)
        stats: Stats = {}
        for spec in (*self.task.inputs, *self.task.dense_targets):
            if spec.normalisation in ("none", "image-zscore"):  # none, or done per image
                stats[spec.key] = {"shift": 0.0, "scale": 1.0}
                continue
            values = []
            for name in names:
                inside = np.flatnonzero(self.mask(name))
                if inside.size > FIT_VOXELS:
                    inside = np.sort(rng.choice(inside, FIT_VOXELS, replace=False))
                array = self._array(name, spec.key)
                flat = np.asarray(array).reshape(array.shape[0], -1)
                values.append(flat[:, inside].ravel())
                del array, flat
            stats[spec.key] = fit_statistics(np.concatenate(values), spec.normalisation)
        return stats
