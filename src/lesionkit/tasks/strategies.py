"""Samplers and inference strategies: values a task holds, called through one protocol.

A sampler turns subjects into training examples::

    sampler.dataset(store, names, task, stats, transform) -> torch Dataset

where ``store`` (:class:`lesionkit.store.SubjectStore`) reads a subject's normalised
images lazily (``store.read``, ``store.subject``, ``store.mask``, ``store.labels``,
``store.lesions``, ``store.features``), so memory does not grow with the cohort. Every
example is a dict ``{"input": (C, X, Y, Z), "target": ...}``, plus ``"features"`` (F,)
for lesions of a task with per-lesion features. A dataset may choose its own training
batches: ``dataset.batches(batch_size, max_items, seed)`` (None: shuffled batches).

An inference strategy predicts one subject::

    inference.predict(network, x, lesions) -> tensor

with ``x`` the normalised (1, C, X, Y, Z) input and ``lesions`` the (X, Y, Z) lesion
label map for per-lesion tasks (else None). It returns (1, C, X, Y, Z) maps,
(1, C) subject scores or (N, C) lesion scores (lesions in increasing label order). The
engine applies mirror flips (``flips`` is the task's default count), fold ensembles,
activations and writing.

TorchIO, MONAI and torch are imported inside the methods so that the task registry
stays cheap to import (``lesionkit --help``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from lesionkit.lesions import centred_start, crop, lesion_centres

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset

Shape = tuple[int, int, int]


class Sampler(Protocol):
    """How training examples are drawn."""

    def dataset(self, store: Any, names: Sequence[str], task: Any, stats: dict,
                transform: Any = None) -> Dataset: ...


class Inference(Protocol):
    """How one subject is predicted; ``flips`` is the default number of mirror flips."""

    flips: int

    def predict(self, network: Any, x: torch.Tensor, lesions: torch.Tensor | None = None
                ) -> torch.Tensor: ...


#: Key of the extra input channel that marks the lesion a patch is centred on (1 in its
#: voxels, 0 elsewhere, other lesions included), for samplers and inference that ask for
#: it (``mask_channel``).
LESION_MASK = "lesion_mask"

#: Default margin (mm) around the brain mask beyond which a voxel map's probabilities are
#: set to 0 at prediction: lesions and tissues lie in the brain, and a juxtacortical
#: lesion that a computed mask cuts keeps the 3 mm next to it (docs/real-data.md, "Lesion
#: maps stop at the brain").
BRAIN_MARGIN_MM = 3.0


def network_inputs(batch: dict[str, Any]) -> tuple[Any, ...]:
    """What a network is called with for a batch: ``(input,)``, or ``(input, features)``
    for examples that carry per-lesion features."""
    return (batch["input"], batch["features"]) if "features" in batch else (batch["input"],)


def example(images: dict[str, Any], labels: dict[str, int], task: Any,
            features: np.ndarray | None = None) -> dict[str, Any]:
    """One training example: the task's inputs stacked as channels, and its target.

    Args:
        images: Key -> (C, X, Y, Z) tensor of one subject or patch, normalised; a
            :data:`LESION_MASK` entry is stacked after the inputs.
        labels: Key -> class index of subject or lesion labels.
        task: The task (its inputs and targets say what to stack).
        features: (F,) per-lesion features, carried as ``"features"`` when given.
    """
    import torch

    keys = [s.key for s in task.inputs] + ([LESION_MASK] if LESION_MASK in images else [])
    item = {"input": torch.cat([torch.as_tensor(images[k]) for k in keys]).float()}
    dense = task.dense_targets
    if dense:
        item["target"] = torch.cat([torch.as_tensor(images[s.key]) for s in dense]).float()
    else:
        values = [labels[t.key] for t in task.targets]
        item["target"] = torch.as_tensor(values[0] if len(values) == 1 else values)
    if features is not None:
        item["features"] = torch.from_numpy(np.array(features, np.float32))
    return item


def _augmented(images: dict[str, Any], transform: Any, task: Any, affine: np.ndarray
               ) -> dict[str, Any]:
    """Apply a TorchIO transform to one example's images (labels as label maps).

    ``affine`` is the subject's voxel-to-mm affine, so that transforms named in world
    terms (a left-right flip) act on the right axis.
    """
    if transform is None:
        return images
    import torch
    import torchio as tio

    labels = {s.key for s in task.image_specs if s.kind == "label"} | {"mask", LESION_MASK}
    subject = tio.Subject(**{
        k: (tio.LabelMap if k in labels else tio.ScalarImage)(tensor=torch.as_tensor(v),
                                                               affine=affine)
        for k, v in images.items()})
    return {k: image.data for k, image in transform(subject).get_images_dict(
        intensity_only=False).items()}


class _Indexed:
    """A map-style dataset over regions of subjects read from the store.

    ``entries`` is an (N, 5) integer array: subject number, first voxel of the region
    (3 values) and the lesion number (-1 for subject-level labels). ``mask_channel``:
    lesion examples carry their lesion's mask as :data:`LESION_MASK`.
    """

    def __init__(self, store: Any, names: Sequence[str], task: Any, stats: dict,
                 transform: Any, entries: list[tuple[int, ...]], size: Shape,
                 positives_per_batch: int = 0, mask_channel: bool = False) -> None:
        self.store, self.names, self.task, self.stats = store, list(names), task, stats
        self.transform, self.size = transform, size
        self.positives_per_batch, self.mask_channel = positives_per_batch, mask_channel
        self.entries = np.array(entries, dtype=np.int32).reshape(-1, 5)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        number, i0, j0, k0, lesion = (int(v) for v in self.entries[i])
        name = self.names[number]
        images = self.store.read(name, self.stats, (i0, j0, k0), self.size)
        labels = (self.store.labels(name) if lesion < 0
                  else self.store.lesions(name)[lesion]["labels"])
        if self.mask_channel and lesion >= 0:
            import torch

            value = self.store.lesions(name)[lesion]["label"]
            region = crop(self.store.lesion_map(name)[None], (i0, j0, k0), self.size)
            images[LESION_MASK] = torch.from_numpy((region == value).astype(np.float32))
        affine = self.store.affine(name) if self.transform is not None else None
        features = (self.store.features(name)[lesion]
                    if lesion >= 0 and self.task.lesion_features is not None else None)
        return example(_augmented(images, self.transform, self.task, affine), labels,
                       self.task, features)

    def lesion_features(self) -> np.ndarray:
        """(N, F) per-lesion features of every example, without reading images."""
        rows = [self.store.features(self.names[int(n)])[int(i)] for n, i in
                self.entries[:, [0, 4]]]
        return np.stack(rows) if rows else np.zeros((0, 0), np.float32)

    def classes(self) -> np.ndarray:
        """(N,) class index of every example under the task's first lesion target (-1:
        a subject-level example)."""
        tables = {int(n): self.store.lesions(self.names[int(n)])
                  for n in np.unique(self.entries[:, 0])}
        out = []
        for n, i in self.entries[:, [0, 4]]:
            labels = tables[int(n)][int(i)]["labels"] if i >= 0 else {}
            key = next((t.key for t in self.task.targets if t.key in labels), None)
            out.append(labels[key] if key is not None else -1)
        return np.array(out, dtype=np.int64)

    def batches(self, batch_size: int, max_items: int | None, seed: int) -> Any:
        """Training batches holding ``positives_per_batch`` positive lesions each (None:
        plain shuffled batches)."""
        if self.positives_per_batch <= 0:
            return None
        return ClassBalancedBatches(self.classes() > 0, batch_size, self.positives_per_batch,
                                    max_items or len(self), seed)


class ClassBalancedBatches:
    """Batches of indices with a fixed number of positive examples each (a torch batch
    sampler).

    Positives are taken in turn from a shuffled list of the positive examples (shuffled
    again when used up, so every positive recurs before any repeats twice), the rest of
    each batch from the shuffled negatives in the same way. An epoch holds
    ``ceil(items / batch_size)`` batches.

    Args:
        positive: (N,) bool, which examples are positive.
        batch_size: Examples per batch.
        positives: Positive examples per batch (fewer when there are fewer positives).
        items: Examples per epoch.
        seed: Seed of the shuffles; ``set_epoch(k)`` restarts them from (seed, k), so that
            a training resumed at epoch k draws the batches an uninterrupted one would.
    """

    def __init__(self, positive: np.ndarray, batch_size: int, positives: int, items: int,
                 seed: int) -> None:
        self.positive = np.flatnonzero(positive)
        self.negative = np.flatnonzero(~np.asarray(positive, bool))
        self.batch_size = batch_size
        self.positives = min(positives, len(self.positive), batch_size)
        if not len(self.negative):
            self.positives = min(batch_size, len(self.positive))
        self.count = max(-(-items // batch_size), 1)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's batches from (seed, epoch)."""
        self.rng = np.random.default_rng((self.seed, epoch))
        self._queues: dict[int, list[int]] = {0: [], 1: []}

    def _take(self, which: int, n: int) -> list[int]:
        """``n`` distinct examples of a class, continuing its shuffled queue."""
        pool, queue = (self.positive if which else self.negative), self._queues[which]
        out: list[int] = []
        deferred: list[int] = []  # drawn again before the queue ran out: next batch
        while len(out) < min(n, len(pool)):
            if not queue:
                queue.extend(i for i in self.rng.permutation(pool).tolist() if i not in out)
            index = queue.pop()
            (deferred if index in out else out).append(index)
        queue.extend(deferred)
        return out

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Any:
        for _ in range(self.count):
            batch = self._take(1, self.positives)
            batch += self._take(0, self.batch_size - len(batch))
            yield [int(i) for i in self.rng.permutation(batch)]


@dataclass(frozen=True)
class GridSampler:
    """Every patch of a sliding grid, minus those mostly outside the mask.

    Attributes:
        patch_size: Patch shape in voxels.
        step: Grid step in voxels; overlap = patch - step (TorchIO ``GridSampler``,
            zero padding of overlap // 2 at the borders).
        max_background: Patches with a larger fraction of voxels outside the mask are
            dropped.
    """

    patch_size: Shape = (32, 32, 32)
    step: Shape = (8, 8, 4)
    max_background: float = 0.8

    def dataset(self, store: Any, names: Sequence[str], task: Any, stats: dict,
                transform: Any = None) -> Dataset:
        """Index every kept grid patch; patches are read from the store when drawn."""
        import torch
        import torchio as tio

        overlap = tuple(p - s for p, s in zip(self.patch_size, self.step, strict=True))
        border = np.array(overlap) // 2
        entries = []
        for number, name in enumerate(names):
            mask = torch.from_numpy(store.mask(name)[None].astype(np.uint8))
            grid = tio.GridSampler(tio.Subject(mask=tio.LabelMap(tensor=mask)), self.patch_size,
                                   overlap, padding_mode=0)
            padded = grid.subject["mask"].data[0].numpy() > 0
            for i0, j0, k0, i1, j1, k1 in grid.locations:
                if 1.0 - padded[i0:i1, j0:j1, k0:k1].mean() <= self.max_background:
                    entries.append((number, *(np.array((i0, j0, k0)) - border), -1))
        return _Indexed(store, names, task, stats, transform, entries, self.patch_size)


@dataclass(frozen=True)
class LesionSampler:
    """One patch per lesion, centred on the lesion's centre of mass.

    Attributes:
        patch_size: Patch shape in voxels.
        positives_per_batch: Training batches hold this many lesions of a positive class
            (index > 0 of the first lesion target) each, drawn in turn from the shuffled
            positives (:class:`ClassBalancedBatches`), so that in-batch steps see several
            of a rare class; 0: plain shuffled batches.
        mask_channel: Append the centred lesion's mask as a last input channel (1 in its
            voxels, 0 elsewhere, other lesions included), so that the network knows
            which voxels are the lesion; :class:`PerLesion` must say the same.
    """

    patch_size: Shape = (32, 32, 32)
    positives_per_batch: int = 0
    mask_channel: bool = False

    def dataset(self, store: Any, names: Sequence[str], task: Any, stats: dict,
                transform: Any = None) -> Dataset:
        """Index every lesion of the subjects' lesion tables."""
        entries = []
        for number, name in enumerate(names):
            for i, lesion in enumerate(store.lesions(name)):
                entries.append((number, *centred_start(lesion["centre"], self.patch_size), i))
        return _Indexed(store, names, task, stats, transform, entries, self.patch_size,
                        self.positives_per_batch, self.mask_channel)


class _Subjects:
    """Whole normalised subjects read lazily (for TorchIO's queue or whole-volume examples)."""

    def __init__(self, store: Any, names: Sequence[str], stats: dict, transform: Any,
                 queue_sampler: QueueSampler | None = None) -> None:
        self.store, self.names, self.stats = store, list(names), stats
        self.transform, self.queue_sampler = transform, queue_sampler

    def __len__(self) -> int:
        return len(self.names)

    def dry_iter(self) -> list[str]:
        """The subjects without loading them (TorchIO's queue counts patches from it)."""
        return list(self.names)

    def __getitem__(self, i: int) -> Any:
        subject = self.store.subject(self.names[i], self.stats)
        if self.queue_sampler is not None:
            subject = _pad_to(subject, self.queue_sampler.patch_size)
            if self.queue_sampler.oversample is not None:
                subject = self.queue_sampler.with_sampling_map(subject)
        return subject if self.transform is None else self.transform(subject)


def _pad_to(subject: Any, size: Shape) -> Any:
    """Zero-pad a subject smaller than a patch (TorchIO ``Pad``) so that patches fit."""
    import torchio as tio

    missing = [max(n - s, 0) for n, s in zip(size, subject.spatial_shape, strict=True)]
    if not any(missing):
        return subject
    return tio.Pad(tuple(v for m in missing for v in (m // 2, m - m // 2)))(subject)


class _SubjectExamples:
    """Examples from TorchIO subjects: whole subjects, or the patches of a TorchIO queue.

    ``own_workers``: the source loads subjects in its own worker processes (a queue), so
    the data loader around it must not start more.
    """

    def __init__(self, source: Any, task: Any, own_workers: bool = False) -> None:
        self.source, self.task, self.own_workers = source, task, own_workers

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, Any]:
        subject = self.source[i]
        images = {k: v.data for k, v in subject.get_images_dict(intensity_only=False).items()}
        return example(images, {k: subject[k] for k in subject if k not in images}, self.task)

    def unaugmented(self) -> _SubjectExamples:
        """The same examples without the training augmentation (for ``Task.fit_state``).

        Raises:
            TypeError: the examples are patches of a queue, not whole subjects.
        """
        if not isinstance(self.source, _Subjects):
            raise TypeError("unaugmented examples are whole subjects; this dataset draws "
                            "patches")
        source = _Subjects(self.source.store, self.source.names, self.source.stats, None)
        return _SubjectExamples(source, self.task, self.own_workers)


@dataclass(frozen=True)
class WholeVolumeSampler:
    """One whole subject per example (subject classification)."""

    def dataset(self, store: Any, names: Sequence[str], task: Any, stats: dict,
                transform: Any = None) -> Dataset:
        """Whole subjects, loaded when drawn."""
        return _SubjectExamples(_Subjects(store, names, stats, transform), task)


@dataclass(frozen=True)
class QueueSampler:
    """Random patches through a TorchIO queue, with worker processes loading subjects.

    Attributes:
        patch_size: Patch shape in voxels.
        samples_per_volume: Patches per subject and pass.
        centre_on: Centre patches on voxels of this label image (``"mask"``: the brain;
            TorchIO ``LabelSampler``); None: anywhere (``UniformSampler``).
        label_probabilities: (label value, probability) pairs of ``centre_on``
            (e.g. ((0, 0.3), (1, 0.7)): 70 % of patches centred on a lesion voxel).
        oversample: Key of a dense target (e.g. a lesion mask); patches holding one of
            its voxels (> 0.5) are drawn ``oversample_factor`` times as often
            (``WeightedSampler``).
        oversample_factor: Relative probability of such patches.
    """

    patch_size: Shape = (32, 32, 32)
    samples_per_volume: int = 16
    centre_on: str | None = None
    label_probabilities: tuple[tuple[int, float], ...] | None = None
    oversample: str | None = None
    oversample_factor: float = 1.0

    def with_sampling_map(self, subject: Any) -> Any:
        """The subject plus a ``"sampling"`` probability map for ``tio.WeightedSampler``."""
        import torch
        import torchio as tio
        from scipy import ndimage

        hit = subject[self.oversample].data.numpy().max(axis=0) > 0.5
        near = ndimage.maximum_filter(hit, size=self.patch_size)
        weights = np.where(near, self.oversample_factor, 1.0).astype(np.float32)
        if self.centre_on is not None:
            weights *= subject[self.centre_on].data[0].numpy() > 0
        subject.add_image(tio.Image(tensor=torch.from_numpy(weights[None]),
                                    affine=subject["mask"].affine, type=tio.SAMPLING_MAP),
                          "sampling")
        return subject

    def dataset(self, store: Any, names: Sequence[str], task: Any, stats: dict,
                transform: Any = None) -> Dataset:
        """A TorchIO queue over lazily loaded subjects."""
        import torchio as tio

        if self.oversample is not None:
            sampler = tio.WeightedSampler(self.patch_size, probability_map="sampling")
        elif self.centre_on is not None:
            probabilities = dict(self.label_probabilities) if self.label_probabilities else None
            sampler = tio.LabelSampler(self.patch_size, label_name=self.centre_on,
                                       label_probabilities=probabilities)
        else:
            sampler = tio.UniformSampler(self.patch_size)
        subjects = _Subjects(store, names, stats, transform, self)
        per_volume = self.samples_per_volume
        queue = tio.Queue(subjects, max_length=4 * per_volume, samples_per_volume=per_volume,
                          sampler=sampler, num_workers=store.workers)
        return _SubjectExamples(queue, task, own_workers=True)


def _batches(network: Any, patches: torch.Tensor, size: int) -> torch.Tensor:
    import torch

    return torch.cat([network(patches[i:i + size]) for i in range(0, len(patches), size)])


def fitted_tiling(shape: Sequence[int], window: Sequence[int], overlap: float,
                  multiple: int = 8) -> tuple[Shape, tuple[float, ...]]:
    """Windows that tile a volume with the least redundant work.

    Along each axis: the fewest windows of at most ``window`` voxels that overlap their
    neighbours by at least ``overlap`` of that window, each as small as that allows
    (rounded up to a multiple of ``multiple``, the network's total down-sampling). The
    returned overlap fractions make MONAI's scan (interval ``int(w * (1 - o))``) place
    exactly that many windows, the last flush with the volume's end.

    Args:
        shape: Volume shape (voxels).
        window: Largest window (voxels).
        overlap: Smallest overlap of neighbouring windows, as a fraction of ``window``.
        multiple: Window edges are multiples of this.

    Returns:
        (window, overlaps) for :func:`monai.inferers.sliding_window_inference`.
    """
    import math

    windows, overlaps = [], []
    for length, largest in zip(shape, window, strict=True):
        least = math.ceil(overlap * largest)
        count = 1 if length <= largest else math.ceil((length - least) / (largest - least))
        edge = math.ceil((length + (count - 1) * least) / count)
        edge = min(largest, math.ceil(edge / multiple) * multiple)
        if count == 1 or edge >= length:
            windows.append(edge)
            overlaps.append(0.0)
            continue
        interval = math.ceil((length - edge) / (count - 1))
        windows.append(edge)
        overlaps.append(1.0 - (interval + 0.5) / edge)  # int(edge * (1 - o)) == interval
    return (windows[0], windows[1], windows[2]), tuple(overlaps)


@dataclass(frozen=True)
class SlidingWindow:
    """Gaussian-blended sliding windows fitted to the volume (MONAI ``sliding_window_inference``).

    The windows are fitted to each volume (:func:`fitted_tiling`): the fewest windows of
    at most ``window`` voxels that overlap by at least ``overlap``, each as small as that
    allows. On a 1 mm brain (160 x 192 x 160) fixed 96^3 windows at 25 % overlap cover
    the volume 2.2 times over, fitted ones with at least 12.5 % overlap 1.4 times;
    with two windows per pass on a 2-core CPU, sliding-window inference of enhance-r1's
    U-Net took 1.05 to 1.23 times as long as one whole-volume pass with transposed-
    convolution up-sampling and 0.93 to 1.11 times with interpolation (three runs of
    BENCHMARKS.md's "engine" suite).

    Attributes:
        window: Largest window in voxels; a fully convolutional network takes larger
            windows than its training patches, which cuts the work spent on overlaps.
        overlap: Smallest overlap of neighbouring windows, as a fraction of ``window``.
        flips: Default number of mirror flips averaged at prediction (1-8).
        batch_size: Windows per forward pass (None: about 2^20 voxels per pass).
        multiple: Window edges are multiples of this (the network's total down-sampling).
        crop_margin: Predict only the brain mask's bounding box grown by this many voxels
            (None: the whole volume); outside it the maps are 0, or their minimum for
            maps with negative values (see :func:`lesionkit.infer.brain_box`).
        brain_margin_mm: Probability maps are set to 0 farther than this from the brain
            mask (mm; None: kept whole; see :func:`lesionkit.infer.clear_outside_brain`).
    """

    window: Shape = (32, 32, 32)
    overlap: float = 0.5
    flips: int = 1
    batch_size: int | None = None
    multiple: int = 8
    crop_margin: int | None = 16
    brain_margin_mm: float | None = BRAIN_MARGIN_MM

    def tiling(self, shape: Sequence[int]) -> tuple[Shape, tuple[float, ...]]:
        """(window, overlap fractions) used for a volume of ``shape`` voxels."""
        return fitted_tiling(shape, self.window, self.overlap, self.multiple)

    def predict(self, network: Any, x: torch.Tensor, lesions: torch.Tensor | None = None
                ) -> torch.Tensor:
        """(1, C_out, X, Y, Z) maps."""
        from monai.inferers import sliding_window_inference

        window, overlap = self.tiling(x.shape[2:])
        shape = tuple(x.shape[2:])
        if all(w >= n for w, n in zip(window, shape, strict=True)):
            # One window holds the volume: nothing to blend, one pass zero-padded on both
            # sides as MONAI pads it.
            import torch.nn.functional as F  # noqa: N812

            before = [(w - n) // 2 for w, n in zip(window, shape, strict=True)]
            padded = F.pad(x, [p for w, n, b in zip(reversed(window), reversed(shape),
                                                    reversed(before), strict=True)
                               for p in (b, w - n - b)])
            return network(padded)[..., before[0]:before[0] + shape[0],
                                   before[1]:before[1] + shape[1], before[2]:before[2] + shape[2]]
        batch = self.batch_size or max(1, round(2**20 / float(np.prod(window))))
        return sliding_window_inference(x, window, sw_batch_size=batch, predictor=network,
                                        overlap=overlap, mode="gaussian")


@dataclass(frozen=True)
class WholeVolume:
    """One forward pass over the whole volume.

    Attributes:
        flips: Default number of mirror flips averaged at prediction (1-8).
        cam_layer: For subject classifiers: the network layer whose Grad-CAM of the
            last class is written beside the prediction (None: no Grad-CAM).
        crop_margin: For voxel maps: predict only the brain mask's bounding box grown by
            this many voxels (None: the whole volume, as a classifier needs it).
        brain_margin_mm: For voxel maps: probability maps are set to 0 farther than this
            from the brain mask (mm; None: kept whole; see
            :func:`lesionkit.infer.clear_outside_brain`).
    """

    flips: int = 1
    cam_layer: str | None = None
    crop_margin: int | None = None
    brain_margin_mm: float | None = BRAIN_MARGIN_MM

    def predict(self, network: Any, x: torch.Tensor, lesions: torch.Tensor | None = None
                ) -> torch.Tensor:
        """(1, C_out, X, Y, Z) maps or (1, C_out) subject scores."""
        return network(x)


@dataclass(frozen=True)
class PerLesion:
    """One lesion-centred patch per lesion of the label map, one prediction per lesion.

    Attributes:
        patch_size: Patch shape in voxels (as the training ``LesionSampler``).
        flips: Default number of mirror flips averaged at prediction (1-8).
        batch_size: Patches per forward pass.
        mask_channel: Append each lesion's mask as a last input channel (as the
            training ``LesionSampler``).
    """

    patch_size: Shape = (32, 32, 32)
    flips: int = 1
    batch_size: int = 16
    mask_channel: bool = False

    @property
    def extra_channels(self) -> int:
        """Input channels the inference adds to the images' (the lesion mask: 1)."""
        return int(self.mask_channel)

    def predict(self, network: Any, x: torch.Tensor, lesions: torch.Tensor | None = None,
                features: dict[int, np.ndarray] | None = None) -> torch.Tensor:
        """(N, C_out) scores, lesions in increasing label order.

        ``features``: label -> (F,) per-lesion features; the network is then called as
        ``network(patches, features)``.
        """
        import torch

        if lesions is None:
            raise ValueError("per-lesion inference needs the lesion label map")
        array, label_map = x[0].cpu().numpy(), lesions.cpu().numpy()
        centres = lesion_centres(label_map)
        if not centres:
            return torch.zeros((0, 0), device=x.device)
        patches = torch.from_numpy(np.stack([
            self._patch(array, label_map, label, centre)
            for label, centre in sorted(centres.items())])).to(x.device)
        if features is None:
            return _batches(network, patches, self.batch_size)
        missing = [label for label in sorted(centres) if label not in features]
        if missing:
            raise ValueError(f"no lesion features for lesion labels {missing[:5]}")
        vectors = torch.from_numpy(np.stack([np.asarray(features[label], np.float32)
                                             for label in sorted(centres)])).to(x.device)
        size = self.batch_size
        return torch.cat([network(patches[i:i + size], vectors[i:i + size])
                          for i in range(0, len(patches), size)])

    def _patch(self, array: np.ndarray, label_map: np.ndarray, label: int,
               centre: Sequence[int]) -> np.ndarray:
        """(C, *patch_size) patch of ``array`` centred on a lesion (+ its mask channel)."""
        start = centred_start(centre, self.patch_size)
        patch = crop(array, start, self.patch_size)
        if not self.mask_channel:
            return patch
        own = crop(label_map[None], start, self.patch_size) == label
        return np.concatenate([patch, own.astype(np.float32)])
