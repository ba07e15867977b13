"""Subjects, splits, normalisation and training samplers for any task.

Subjects are TorchIO ``Subject`` objects built from a BIDS dataset through the task's
image specs. Splits are by subject and seeded. Normalisation statistics are fitted on
training subjects only, inside the brain mask, and travel with the model folder so
that predictions come back in physical units.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torchio as tio
from torch.utils.data import Dataset

from lesionkit.augment import augmentation
from lesionkit.bids import BIDSDataset
from lesionkit.io import InputError, load_volume
from lesionkit.tasks.task import ImageSpec, LabelSpec, Task

if TYPE_CHECKING:
    from lesionkit.volume import Volume

Stats = dict[str, dict[str, float]]


def available_subjects(dataset: BIDSDataset, task: Task, with_targets: bool = True) -> list[str]:
    """Subjects holding every image the task needs (inputs, and targets when asked)."""
    specs = task.image_specs if with_targets else task.inputs
    names = set(dataset.subjects())
    for pipeline in {s.derivatives for s in specs if s.derivatives}:
        names |= set(dataset.subjects(derivatives=pipeline))
    return [
        subject for subject in sorted(names)
        if all(dataset.find(subject=subject, suffix=s.suffix, **s.query()) for s in specs)
    ]


def training_subjects(dataset: BIDSDataset, task: Task) -> list[str]:
    """Subjects with every image the task needs that also pass the task's ``train_on``."""
    names = available_subjects(dataset, task)
    if not task.train_on:
        return names
    table = dataset.participants()
    ids = table["participant_id"].str.removeprefix("sub-")
    keep = np.ones(len(table), bool)
    for column, values in task.train_on.items():
        if column not in table.columns:
            raise InputError(f"{dataset.root / 'participants.tsv'}: expected a {column!r} "
                             f"column, found {list(table.columns)}")
        keep &= table[column].isin(values).to_numpy()
    allowed = set(ids[keep])
    return [name for name in names if name in allowed]


def split_subjects(subjects: Sequence[str], seed: int, validation_fraction: float = 0.2
                   ) -> dict[str, list[str]]:
    """Seeded subject-level train/validation split (at least one subject in each)."""
    from sklearn.model_selection import train_test_split

    if len(subjects) < 2:
        raise InputError(f"expected at least 2 subjects to split, found {len(subjects)}")
    n_val = min(max(1, round(validation_fraction * len(subjects))), len(subjects) - 1)
    train, val = train_test_split(sorted(subjects), test_size=n_val, random_state=seed)
    return {"train": sorted(train), "validation": sorted(val)}


def kfold_subjects(subjects: Sequence[str], folds: int, seed: int,
                   labels: Sequence[int] | None = None) -> list[dict[str, list[str]]]:
    """Seeded subject-level k folds; fold k validates on the k-th part.

    With ``labels`` (one class index per subject, same order) the folds are stratified
    (scikit-learn ``StratifiedKFold``): each keeps the class ratio of the whole set.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    if folds < 2:
        return [split_subjects(subjects, seed)]
    if folds > len(subjects):
        raise InputError(f"expected at least {folds} subjects for {folds} folds, "
                         f"found {len(subjects)}")
    ordered = np.array(sorted(subjects))
    if labels is None:
        splits = KFold(n_splits=folds, shuffle=True, random_state=seed).split(ordered)
    else:
        label = dict(zip(subjects, labels, strict=True))
        y = np.array([label[s] for s in ordered])
        if np.bincount(y).min() < folds:
            raise InputError(f"expected at least {folds} subjects of each class for {folds} "
                             f"stratified folds, found class counts {np.bincount(y).tolist()}")
        splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(ordered, y)
    return [{"train": sorted(ordered[tr].tolist()), "validation": sorted(ordered[va].tolist())}
            for tr, va in splits]


def load_image(dataset: BIDSDataset, subject: str, spec: ImageSpec) -> Volume:
    """Load one image of a subject as a :class:`~lesionkit.volume.Volume`."""
    found = dataset.get(subject, spec.suffix, **spec.query())
    return load_volume(found.path, kind=spec.kind, unit=spec.unit, ndim=spec.ndim)


def to_image(volume: Volume) -> tio.Image:
    """A TorchIO image (label map for labels) holding a volume's data and affine."""
    data = np.asarray(volume.data, dtype=np.float32)
    data = data[None] if data.ndim == 3 else np.moveaxis(data, -1, 0)
    image_type = tio.LabelMap if volume.kind == "label" else tio.ScalarImage
    return image_type(tensor=torch.from_numpy(np.ascontiguousarray(data)), affine=volume.affine)


def load_subject(dataset: BIDSDataset, subject: str, task: Task, with_targets: bool = True
                 ) -> tio.Subject:
    """Build a TorchIO subject with the task's images (and labels), keyed by spec key.

    The brain mask is stored under ``"mask"``; without a mask spec it is the non-zero
    voxels of the first input.
    """
    specs = task.image_specs if with_targets else task.inputs
    images = {spec.key: to_image(load_image(dataset, subject, spec)) for spec in specs}
    if task.mask is not None and task.mask.key in images:
        images["mask"] = tio.LabelMap(tensor=(images.pop(task.mask.key).data > 0.5).to(
            torch.uint8), affine=images[task.inputs[0].key].affine)
    else:
        first = images[task.inputs[0].key]
        images["mask"] = tio.LabelMap(tensor=(first.data != 0).any(0, keepdim=True).to(
            torch.uint8), affine=first.affine)
    values: dict[str, Any] = {"subject_id": subject}
    if with_targets:
        table = None
        for spec in task.targets:
            if isinstance(spec, LabelSpec):
                table = dataset.participants() if table is None else table
                row = table[table["participant_id"].isin([f"sub-{subject}", subject])]
                value = str(row[spec.column].iloc[0]) if len(row) else "n/a"
                if value not in spec.classes:
                    raise InputError(f"{dataset.root / 'participants.tsv'}: expected "
                                     f"{spec.column} in {spec.classes} for sub-{subject}, "
                                     f"found {value!r}")
                values[spec.key] = spec.classes.index(value)
    return tio.Subject(**images, **values)


def fit_normalisation(subjects: Sequence[tio.Subject], task: Task) -> Stats:
    """Per-image shift and scale from the given (training) subjects, inside the mask.

    ``zscore``: mean and standard deviation; ``log-zscore``: the same of the natural log,
    values first floored at their 1st percentile (relaxation times, whose long tails,
    e.g. CSF T2*, would dominate a squared loss; the entry gains ``log_floor``);
    ``percentile``: 1st percentile and the 1st-99th percentile range; ``none``: 0 and 1.
    Values are in the image's unit (log-zscore: log of it).
    """
    stats: Stats = {}
    for spec in (*task.inputs, *task.dense_targets):
        if spec.normalisation == "none":
            stats[spec.key] = {"shift": 0.0, "scale": 1.0}
            continue
        values = np.concatenate([
            s[spec.key].data.numpy()[:, s["mask"].data.numpy()[0] > 0].ravel() for s in subjects
        ])
        entry: dict[str, float] = {}
        if spec.normalisation == "log-zscore":
            entry["log_floor"] = max(float(np.percentile(values, 1)), 1e-6)
            values = np.log(np.maximum(values, entry["log_floor"]))
        if spec.normalisation == "percentile":
            low, high = np.percentile(values, [1, 99])
            shift, scale = float(low), float(high - low)
        else:
            shift, scale = float(values.mean()), float(values.std())
        stats[spec.key] = {"shift": shift, "scale": scale if scale > 0 else 1.0, **entry}
    return stats


def apply_normalisation(array: Any, entry: dict[str, float]) -> Any:
    """(value - shift) / scale, of the floored log for log-zscore entries (array or tensor)."""
    if "log_floor" in entry:
        floor = entry["log_floor"]
        array = (np.log(np.maximum(array, floor)) if isinstance(array, np.ndarray)
                 else torch.log(torch.clamp(array, min=floor)))
    return (array - entry["shift"]) / entry["scale"]


def normalise(subject: tio.Subject, stats: Stats) -> tio.Subject:
    """A copy of the subject with each image normalised by its statistics."""
    images = {}
    for key, image in subject.get_images_dict(intensity_only=False).items():
        if key in stats:
            image = type(image)(tensor=apply_normalisation(image.data, stats[key]),
                                affine=image.affine)
        images[key] = image
    others = {k: v for k, v in subject.items() if k not in images}
    return tio.Subject(**images, **others)


def invert(array: np.ndarray, stats: Stats, key: str | None) -> np.ndarray:
    """Map network output back to the target's unit (identity for key None)."""
    if key is None:
        return array
    entry = stats[key]
    values = array * entry["scale"] + entry["shift"]
    return np.exp(values) if "log_floor" in entry else values


def example(subject: tio.Subject, task: Task) -> dict[str, torch.Tensor]:
    """One training example: inputs stacked as channels and the target."""
    item = {"input": torch.cat([subject[s.key].data for s in task.inputs]).float()}
    dense = task.dense_targets
    if dense:
        item["target"] = torch.cat([subject[s.key].data for s in dense]).float()
    else:
        labels = [subject[s.key] for s in task.targets]
        item["target"] = torch.as_tensor(labels[0] if len(labels) == 1 else labels)
    return item


class GridPatches(Dataset):
    """Every grid patch of the subjects, minus those mostly outside the mask.

    Args:
        subjects: Normalised subjects.
        task: Gives patch size, step and the background limit.
    """

    def __init__(self, subjects: Sequence[tio.Subject], task: Task,
                 transform: tio.Transform | None = None) -> None:
        if transform is not None:
            raise ValueError("training augmentation needs a random or whole-volume sampler, "
                             "found the grid sampler")
        spec = task.sampler
        overlap = tuple(p - s for p, s in zip(spec.patch_size, spec.step, strict=True))
        self.task = task
        self.subjects = list(subjects)
        self.index: list[tuple[int, np.ndarray]] = []
        for number, subject in enumerate(self.subjects):
            grid = tio.GridSampler(subject, spec.patch_size, overlap, padding_mode=0)
            self.subjects[number] = grid.subject  # padded where the volume is small
            mask = grid.subject["mask"].data[0].numpy() > 0
            for location in grid.locations:
                i0, j0, k0, i1, j1, k1 = location
                inside = mask[i0:i1, j0:j1, k0:k1].mean()
                if 1.0 - inside <= spec.max_background:
                    self.index.append((number, location))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        number, (i0, j0, k0, i1, j1, k1) = self.index[i]
        item = example(self.subjects[number], self.task)
        return {k: v[:, i0:i1, j0:j1, k0:k1] if v.ndim == 4 else v for k, v in item.items()}


def with_sampling_map(subject: tio.Subject, task: Task) -> tio.Subject:
    """The subject plus a ``"sampling"`` probability map for ``tio.WeightedSampler``.

    Centres inside the mask (``label`` sampler) or anywhere (``uniform``) have weight 1;
    those whose patch would hold a voxel of the ``oversample`` image get
    ``oversample_factor``.
    """
    from scipy import ndimage

    spec = task.sampler
    hit = subject[spec.oversample].data.numpy().max(axis=0) > 0.5
    near = ndimage.maximum_filter(hit, size=spec.patch_size)
    weights = np.where(near, spec.oversample_factor, 1.0).astype(np.float32)
    if spec.kind == "label":
        weights *= subject["mask"].data[0].numpy() > 0
    images = dict(subject.get_images_dict(intensity_only=False))
    images["sampling"] = tio.Image(tensor=torch.from_numpy(weights[None]),
                                   affine=subject["mask"].affine, type=tio.SAMPLING_MAP)
    others = {k: v for k, v in subject.items() if k not in images}
    return tio.Subject(**images, **others)


class QueuePatches(Dataset):
    """Random patches through a TorchIO queue (uniform or centred in the mask)."""

    def __init__(self, subjects: Sequence[tio.Subject], task: Task,
                 transform: tio.Transform | None = None) -> None:
        spec = task.sampler
        sampler = (tio.LabelSampler(spec.patch_size, label_name="mask")
                   if spec.kind == "label" else tio.UniformSampler(spec.patch_size))
        if spec.oversample is not None:
            subjects = [with_sampling_map(s, task) for s in subjects]
            sampler = tio.WeightedSampler(spec.patch_size, probability_map="sampling")
        self.task = task
        per_volume = spec.samples_per_volume
        self.queue = tio.Queue(tio.SubjectsDataset(list(subjects), transform=transform),
                               max_length=4 * per_volume,
                               samples_per_volume=per_volume, sampler=sampler, num_workers=0)

    def __len__(self) -> int:
        return len(self.queue)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return example(self.queue[i], self.task)


class WholeVolumes(Dataset):
    """One whole subject per example (subject classification)."""

    def __init__(self, subjects: Sequence[tio.Subject], task: Task,
                 transform: tio.Transform | None = None) -> None:
        self.subjects, self.task, self.transform = list(subjects), task, transform

    def __len__(self) -> int:
        return len(self.subjects)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        subject = self.subjects[i]
        return example(subject if self.transform is None else self.transform(subject), self.task)


def _lesion_patches(subjects: Sequence[tio.Subject], task: Task,
                    transform: tio.Transform | None = None) -> Dataset:
    raise NotImplementedError("lesion-centred sampling arrives with a per-lesion task")


SAMPLERS: dict[str, Callable[..., Dataset]] = {
    "grid": GridPatches,
    "uniform": QueuePatches,
    "label": QueuePatches,
    "whole": WholeVolumes,
    "lesion": _lesion_patches,
}


def training_dataset(subjects: Sequence[tio.Subject], task: Task, augment: bool = False
                     ) -> Dataset:
    """The task's sampler over normalised subjects (with its augmentation if ``augment``)."""
    transform = augmentation(task) if augment else None
    return SAMPLERS[task.sampler.kind](subjects, task, transform)


def load_subjects(root: str | os.PathLike[str], subjects: Sequence[str], task: Task,
                  with_targets: bool = True) -> list[tio.Subject]:
    """Load several subjects of a BIDS dataset."""
    dataset = BIDSDataset(root)
    return [load_subject(dataset, s, task, with_targets) for s in subjects]
