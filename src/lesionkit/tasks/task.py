"""The task contract: what a task reads, which network it trains and how it predicts.

A task is data, not a subclass. The data layer, the trainer and the inference engine
read only the fields below; a variant is ``dataclasses.replace(task, ...)``. Code that
belongs to one task alone (its evaluation against a baseline, its report figures) is a
plain function referenced from the task object.

Example::

    from dataclasses import replace
    from lesionkit.tasks import get_task

    small = replace(get_task("enhance-r1"), network_kwargs={"channels": (8, 16), "strides": (2,)})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["intensity", "label", "probability"]
SamplerKind = Literal["grid", "uniform", "label", "whole", "lesion"]
InferenceKind = Literal["sliding_window", "whole_volume", "per_lesion"]
Normalisation = Literal["zscore", "log-zscore", "percentile", "none"]


@dataclass(frozen=True)
class ImageSpec:
    """One NIfTI image of a subject, found by its BIDS suffix and entities.

    Attributes:
        key: Name of the image inside the TorchIO subject (and in config.yaml).
        suffix: BIDS suffix, e.g. ``"R1map"``, ``"FLAIR"``, ``"mask"``.
        session: BIDS session label without ``ses-`` (None: any / no session).
        derivatives: None for raw data, else the derivatives pipeline (``"phantom"``).
        entities: Further BIDS entities as (name, value) pairs, e.g. (("desc", "brain"),).
        exclude: Entity names that must be absent (e.g. ``("acq",)`` to skip acq-native).
        kind: ``"intensity"``, ``"label"`` or ``"probability"``.
        unit: Physical unit of the values, e.g. ``"s^-1"``.
        normalisation: How the network sees it: z-score, z-score of the log (for
            long-tailed relaxation times) or 1st/99th percentile to [0, 1] (statistics
            fitted on training subjects inside the mask), or untouched.
        ndim: 3, or 4 for a series whose frames become input channels (MRF).
    """

    key: str
    suffix: str
    session: str | None = None
    derivatives: str | None = None
    entities: tuple[tuple[str, str], ...] = ()
    exclude: tuple[str, ...] = ()
    kind: Kind = "intensity"
    unit: str = "a.u."
    normalisation: Normalisation = "zscore"
    ndim: int = 3

    def query(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`lesionkit.bids.BIDSDataset.get` for this image."""
        absent = dict.fromkeys(self.exclude)
        return {"session": self.session, "derivatives": self.derivatives,
                **dict(self.entities), **absent}


@dataclass(frozen=True)
class LabelSpec:
    """A subject-level target read from a participants.tsv column.

    Attributes:
        key: Name of the value inside the subject.
        column: participants.tsv column, e.g. ``"group"``.
        classes: Column values in class-index order, e.g. ``("control", "patient")``.
    """

    key: str
    column: str
    classes: tuple[str, ...]


@dataclass(frozen=True)
class OutputSpec:
    """One output channel written by ``predict`` as a BIDS derivative.

    Attributes:
        suffix: BIDS suffix of the written map (``"R1map"``, ``"probseg"``, ...).
        desc: BIDS ``desc-`` entity (``"enhanced"``); the uncertainty map uses
            ``desc-uncertainty`` with the same other entities.
        unit: Unit written into the JSON sidecar.
        kind: Volume kind of the written map.
        target: Key of the target image whose normalisation is inverted on the way
            out (None: the channel is written as the network gives it).
        entities: Further BIDS entities, e.g. (("label", "lesion"),).
    """

    suffix: str
    desc: str
    unit: str
    kind: Kind = "intensity"
    target: str | None = None
    entities: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SamplerSpec:
    """How training examples are drawn.

    Attributes:
        kind: ``"grid"`` (every patch of a sliding grid), ``"uniform"`` / ``"label"``
            (random patches through a TorchIO queue, ``label`` centred in the mask),
            ``"whole"`` (one whole volume per example), ``"lesion"`` (lesion-centred).
        patch_size: Patch shape in voxels.
        step: Grid step in voxels (``grid`` only); overlap = patch - step.
        max_background: Patches with a larger fraction of voxels outside the mask are
            dropped (``grid`` only).
        samples_per_volume: Patches per subject and pass (queue samplers).
        oversample: Key of a dense target (e.g. a lesion mask); queue samplers draw
            patches holding one of its voxels (> 0.5) ``oversample_factor`` times as
            often as the others (None: no oversampling).
        oversample_factor: Relative probability of such patches.
        augment: Names in :data:`lesionkit.augment.AUGMENTATIONS` (TorchIO random
            transforms) applied to training examples, never to validation ones.
    """

    kind: SamplerKind = "grid"
    patch_size: tuple[int, int, int] = (32, 32, 32)
    step: tuple[int, int, int] = (8, 8, 4)
    max_background: float = 0.8
    samples_per_volume: int = 16
    oversample: str | None = None
    oversample_factor: float = 1.0
    augment: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    """Everything the engine needs to train, predict and evaluate one method.

    Attributes:
        name: CLI name, e.g. ``"enhance-r1"``.
        description: One line for ``--help`` and reports.
        inputs: Input images, stacked as channels in this order.
        targets: Dense target images (stacked as channels) or subject labels.
        mask: Brain mask used to drop background patches and fit normalisation
            (None: non-zero voxels of the first input).
        network: Registry name in :data:`lesionkit.models.NETWORKS`.
        network_kwargs: Keyword arguments of the network factory.
        loss: Registry name in :data:`lesionkit.training.LOSSES`.
        sampler: How training examples are drawn.
        inference: ``"sliding_window"``, ``"whole_volume"`` or ``"per_lesion"``.
        inference_overlap: Sliding-window overlap fraction at prediction time.
        inference_window: Sliding-window size at prediction time (None: the training
            patch size). A fully convolutional network takes larger windows than it was
            trained on, which cuts the work spent on overlaps.
        output_activation: None, ``"sigmoid"`` or ``"softmax"`` applied at prediction.
        outputs: One spec per output channel.
        learning_rate: Adam learning rate.
        lr_halving_epochs: Halve the learning rate every this many epochs (None: constant).
        batch_size: Examples per step.
        max_epochs: Default epoch cap.
        patience: Early-stopping patience in epochs (validation loss).
        train_on: participants.tsv column -> values a training subject must have
            (e.g. {"group": ("control",)}); empty: every subject with the images.
        metrics: Names of the metrics the task's evaluation reports.
        evaluate: ``evaluate(dataset_root, subjects) -> list[dict]``: one metrics row
            per subject (and method), computed from the written derivatives.
        report_sections: ``report_sections(dataset_root, subjects, rows) -> list[Section]``:
            the task's part of the HTML report (tables and figures, see lesionkit.report).
    """

    name: str
    description: str
    inputs: tuple[ImageSpec, ...]
    targets: tuple[ImageSpec | LabelSpec, ...]
    outputs: tuple[OutputSpec, ...]
    network: str
    mask: ImageSpec | None = None
    network_kwargs: Mapping[str, Any] = field(default_factory=dict)
    loss: str = "mse"
    sampler: SamplerSpec = SamplerSpec()
    inference: InferenceKind = "sliding_window"
    inference_overlap: float = 0.5
    inference_window: tuple[int, int, int] | None = None
    output_activation: Literal["sigmoid", "softmax"] | None = None
    learning_rate: float = 1e-4
    lr_halving_epochs: int | None = None
    batch_size: int = 8
    max_epochs: int = 100
    patience: int = 10
    train_on: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()
    evaluate: Callable[[Path, list[str]], list[dict]] | None = None
    report_sections: Callable[[Path, list[str], list[dict]], list[Any]] | None = None

    @property
    def image_specs(self) -> tuple[ImageSpec, ...]:
        """Inputs, dense targets and mask: every image a training subject needs."""
        dense = tuple(t for t in self.targets if isinstance(t, ImageSpec))
        return self.inputs + dense + ((self.mask,) if self.mask else ())

    @property
    def dense_targets(self) -> tuple[ImageSpec, ...]:
        """Targets that are images (as opposed to subject labels)."""
        return tuple(t for t in self.targets if isinstance(t, ImageSpec))

    @property
    def out_channels(self) -> int:
        """Number of network output channels."""
        return len(self.outputs)
