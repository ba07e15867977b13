"""The task contract: what a task reads, which network it trains and how it predicts.

A task is data, not a subclass. The data layer, the trainer and the inference engine
read only the fields below; a variant is ``dataclasses.replace(task, ...)``. The sampler
and the inference strategy are values too (:mod:`lesionkit.tasks.strategies`). What one
task alone needs is an optional hook: a plain function referenced from the task object
(its evaluation, its report, a network factory, a training step, per-fold state, an
initialisation). Hooks are module-level functions so that ``config.yaml`` can name them.

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

from lesionkit.tasks.strategies import (
    GridSampler,
    Inference,
    Sampler,
    SlidingWindow,
)

Kind = Literal["intensity", "label", "probability"]
Normalisation = Literal["zscore", "log-zscore", "percentile", "image-zscore",
                        "image-zscore-percentile", "none"]
OutputKind = Literal["maps", "subjects", "lesions"]


@dataclass(frozen=True)
class ImageSpec:
    """One NIfTI image of a subject, found by its BIDS suffix and entities.

    Attributes:
        key: Name of the image inside the TorchIO subject (and in config.yaml).
        suffix: BIDS suffix, e.g. ``"R1map"``, ``"FLAIR"``, ``"mask"``.
        session: BIDS session label without ``ses-`` (None: any / no session).
        derivatives: None for raw data, else the derivatives pipeline (``"phantom"``).
        other_pipelines: When ``derivatives`` has no such file, take it from the one other
            pipeline that has it (truth and masks: ``derivatives/manual``, ...).
        entities: Further BIDS entities as (name, value) pairs, e.g. (("desc", "brain"),).
        exclude: Entity names that must be absent (e.g. ``("acq",)`` to skip acq-native).
        prefer_without: Entity names whose files are passed over when the subject also has
            the image without them: ``("ce",)`` reads the T1w acquired before contrast
            beside a ``ce-gadolinium`` one, and the ``ce`` file, with a warning, when it is
            the subject's only one.
        kind: ``"intensity"``, ``"label"`` or ``"probability"``.
        unit: Physical unit of the values, e.g. ``"s^-1"``.
        normalisation: How the network sees it. Fitted on the training subjects inside
            the brain mask and stored in the model folder (quantitative maps, whose units
            mean the same on every scanner): ``zscore``, ``log-zscore`` (z-score of the
            log, for long-tailed relaxation times) or ``percentile`` (1st/99th percentile
            to [0, 1]). Per image (arbitrary-unit images such as FLAIR or T1w, whose scale
            differs between scanners): ``image-zscore``, a robust z-score inside that
            image's own brain mask (median, and interquartile range / 1.349);
            ``image-zscore-percentile``, that z-score clipped to the 1st/99th percentiles
            of the training subjects' z-scored values and mapped to [0, 1] (an output
            inverted through it comes back as the target's robust z-score). ``none``:
            untouched.
        ndim: 3, or 4 for a series whose frames become input channels (MRF).
        made_by: The command that writes this image when a dataset lacks it (named in
            the error), e.g. ``"lesionkit mrf-match DATA"``.
    """

    key: str
    suffix: str
    session: str | None = None
    derivatives: str | None = None
    entities: tuple[tuple[str, str], ...] = ()
    exclude: tuple[str, ...] = ()
    prefer_without: tuple[str, ...] = ()
    other_pipelines: bool = False
    kind: Kind = "intensity"
    unit: str = "a.u."
    normalisation: Normalisation = "zscore"
    ndim: int = 3
    made_by: str | None = None

    def query(self, session: str | None = None) -> dict[str, Any]:
        """Keyword arguments of :meth:`lesionkit.bids.BIDSDataset.get` for this image.

        Args:
            session: The session to read when the spec names none (longitudinal data).
        """
        absent = dict.fromkeys(self.exclude)
        preferred = {"prefer_without": self.prefer_without} if self.prefer_without else {}
        return {"session": self.session or session, "derivatives": self.derivatives,
                "other_pipelines": self.other_pipelines, **dict(self.entities), **absent,
                **preferred}


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
class LesionLabelSpec:
    """A per-lesion target read from the lesion table beside the lesion label map.

    The table is a TSV with the label map's name (``..._dseg.tsv`` beside
    ``..._dseg.nii.gz``), one row per lesion, a ``label`` column holding the integer
    of the lesion in the map, and the target column.

    Attributes:
        key: Name of the value inside an example.
        column: Table column, e.g. ``"rim"``.
        classes: Column values in class-index order, e.g. ``("0", "1")``.
    """

    key: str
    column: str
    classes: tuple[str, ...] = ("0", "1")


@dataclass(frozen=True)
class LesionFeatures:
    """Per-lesion feature vectors (e.g. radiomics) that travel with each lesion example.

    The engine computes them once per lesion from the task's inputs in physical units on
    the dataset's own grid and caches them under the dataset's derivatives
    (``derivatives/lesionkit-features/sub-XX/anat/sub-XX_desc-<name>_features.tsv``, one
    row per lesion label, with a JSON sidecar holding the settings, the library version and
    the source files' sizes and times); a change of any of these recomputes them. Training
    examples carry them as ``"features"``; networks receive ``network(patch, features)``
    at training and at prediction.

    Attributes:
        name: Name of the feature set (the cache file's ``desc-``).
        function: ``function(images, mask, spacing, **settings) -> dict[str, float]``:
            the features of one lesion from ``images`` (input key -> (C, x, y, z) float
            crop around the lesion, physical units), ``mask`` (x, y, z) bool lesion crop
            and ``spacing`` (mm).
        settings: Keyword arguments of ``function``; part of the cache key.
        version: ``version() -> str``: the feature library's version; part of the cache key.
        inputs: Input keys passed to ``function`` (empty: every input).
        margin: Voxels of context around each lesion's bounding box in the crops.
        margin_mm: Context around the bounding box in mm (0: none asked): on each axis the
            crop takes whichever of ``margin`` voxels and ``margin_mm`` is wider, so that
            features reading tissue a set distance around a lesion find it on fine voxels.
    """

    name: str
    function: Callable[..., dict[str, float]]
    version: Callable[[], str]
    settings: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    margin: int = 2
    margin_mm: float = 0.0


@dataclass(frozen=True)
class OutputSpec:
    """One output channel written by ``predict`` as a BIDS derivative.

    Attributes:
        suffix: BIDS suffix of the written map (``"R1map"``, ``"probseg"``, ...).
        desc: BIDS ``desc-`` entity (``"enhanced"``); the uncertainty map uses
            ``desc-uncertainty`` with the same other entities. For subject and lesion
            tables, the column name.
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
class Transform:
    """A TorchIO transform by class name and keyword arguments (built lazily).

    Example:
        ``Transform("RandomFlip", {"axes": ("LR",), "flip_probability": 0.5})``

    Attributes:
        name: Class name in ``torchio`` (e.g. ``"RandomAffine"``, ``"CropOrPad"``), or of
            one of lesionkit's TorchIO transforms (:mod:`lesionkit.tasks.transforms`, e.g.
            ``"RandomRot90"``).
        kwargs: Its keyword arguments.
    """

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def build(self, **overrides: Any) -> Any:
        """The TorchIO transform object (``overrides``: keyword arguments over ``kwargs``)."""
        import torchio as tio

        from lesionkit.tasks import transforms

        cls = getattr(tio, self.name, None) or getattr(transforms, self.name, None)
        if not (isinstance(cls, type) and issubclass(cls, tio.Transform)):
            from lesionkit.io import InputError

            raise InputError(f"task transform: expected a TorchIO transform class name, found "
                             f"{self.name!r}")
        return cls(**{**dict(self.kwargs), **overrides})


@dataclass(frozen=True)
class Command:
    """An extra CLI command a task module declares (e.g. ``mrf-match``).

    Attributes:
        name: Command name typed by users.
        function: A function with Typer-style annotations; its docstring is the help.
    """

    name: str
    function: Callable[..., None]


@dataclass(frozen=True)
class DemoStep:
    """What ``lesionkit demo`` runs for one task, as values (the engine runs it).

    The same values are the recipe of a shipped model (a task module's
    ``SHIPPED_MODELS``, built by :func:`lesionkit.shipped.build_model`): a larger
    cohort, longer training, one validation split.

    Attributes:
        task: Registry name of the task.
        cohort: Phantom cohort to simulate and train on.
        subjects: Subjects of that cohort (2 mm).
        held_out: Subjects (the last ones) kept out of training and scored.
        overrides: Task fields replaced for demo-sized training (``dataclasses.replace``).
        epochs: Training epochs.
        examples_per_epoch: Cap on training examples per epoch (None: all).
        tta: Mirror flips at prediction (None: the task's default).
        prepare: ``prepare(data_dir) -> str`` run before training (e.g. the
            reference maps a task trains on); returns one summary line.
        crossval_arms: Instead of a held-out split, cross-validate these arms.
        folds: Folds of that cross-validation.
        source_cohorts: Cohorts whose data pretrain the arms that need pretraining,
            one per pretraining stage, in order.
        shown: Metric columns printed in the summary.
        resolution: Voxel size of the simulated cohort (mm; 1 or 2).
        fine_tune_epochs: With a shipped model of the task, the demo predicts with it and
            then fine-tunes it for this many epochs on the non-held-out subjects (0: no
            fine-tuning shown).
        networks: Networks a shipped recipe trains on its training subjects, each with
            its own validation split among them (``train --folds``); prediction averages
            them.
    """

    task: str
    cohort: str
    subjects: int = 6
    held_out: int = 2
    overrides: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = 3
    examples_per_epoch: int | None = None
    tta: int | None = None
    prepare: Callable[..., str] | None = None
    crossval_arms: tuple[str, ...] = ()
    folds: int = 2
    source_cohorts: tuple[str, ...] = ()
    shown: tuple[str, ...] = ()
    resolution: int = 2
    fine_tune_epochs: int = 0
    networks: int = 1


@dataclass(frozen=True)
class Task:
    """Everything the engine needs to train, predict and evaluate one method.

    Attributes:
        name: CLI name, e.g. ``"enhance-r1"``.
        description: One line for ``--help`` and reports.
        inputs: Input images, stacked as channels in this order.
        targets: Dense target images (stacked as channels), subject labels or lesion labels.
        outputs: One spec per output channel.
        network: Registry name in :data:`lesionkit.models.NETWORKS` (ignored when
            ``network_factory`` is given; then it names the architecture in reports).
        mask: Brain mask used to drop background patches and normalise: the dataset's
            mask where it has one, else computed from the first input
            (:func:`lesionkit.brainmask.brain_mask`). None: the non-zero voxels of the
            first input.
        lesions: Lesion label map (one integer per lesion) for per-lesion tasks.
        network_kwargs: Keyword arguments of the network factory.
        loss: Registry name in :data:`lesionkit.losses.LOSSES`.
        sampler: How training examples are drawn (a sampler value).
        inference: How a subject is predicted (an inference value, with its default
            number of test-time flips).
        output_kind: ``"maps"`` (NIfTI per output channel plus uncertainty),
            ``"subjects"`` (one table row per subject) or ``"lesions"`` (a lesion table
            per subject plus a map holding each lesion's probability).
        output_activation: None, ``"sigmoid"`` or ``"softmax"`` applied at prediction.
        folds: Folds a model is trained with by default (the fold ensemble at prediction).
        spacing: Voxel size (mm) the network works at; inputs are resampled to it and
            outputs back to the input grid. None: the median voxel size of the training
            subjects' first input, measured by ``train`` and stored with the model.
        learning_rate: Adam learning rate.
        lr_halving_epochs: Halve the learning rate every this many epochs (None: constant).
        batch_size: Examples per step.
        max_epochs: Default epoch cap.
        patience: Early-stopping patience in epochs (validation loss).
        train_on: participants.tsv column -> values a training subject must have
            (e.g. {"group": ("control",)}); empty: every subject with the images.
        metrics: Names of the metrics the task's evaluation reports.
        metric_units: Metric (column) name -> its unit, shown beside the name in the
            demo's printed figures and the run index (the task's report tables take the
            same units): ``{"rmse": "s^-1"}`` gives ``rmse (s^-1)``.
        evaluate: ``evaluate(task, data_root, predictions_root, subjects) -> list[dict]``:
            one metrics row per subject (and method) from the written predictions.
            Classification rows carry ``label`` and ``probability`` columns.
        report_sections: ``report_sections(task, data_root, predictions_root, subjects,
            rows) -> list[Section]``: the task's part of the HTML report.
        predict_inputs: Inputs read at prediction instead of ``inputs`` (same keys,
            other BIDS entities: train on low-dose, predict on standard-dose).
        preprocess: TorchIO transforms applied to every subject before normalisation,
            at training and prediction (outputs go back to the input grid).
        augment: TorchIO random transforms applied to training examples only.
        network_factory: ``factory(in_channels, out_channels, **network_kwargs)``
            building the network instead of the registry.
        training_step: ``step(network, loss, batch) -> loss tensor`` replacing the
            default ``loss(network(batch["input"]), batch["target"])`` in training
            (validation keeps the default).
        fit_state: ``fit_state(dataset) -> dict[str, numpy array]`` fitted on each
            fold's training examples only (a lesion dataset's ``lesion_features()`` gives
            the (N, F) feature vectors of its lesions without reading images); saved as
            ``fold-K/state.safetensors`` and passed to the network factory as ``state=``.
        initialise: ``initialise(network, source) -> report`` before training (transfer
            learning); ``source`` is the pretraining model folder or a weights file; the
            report's ``loaded`` names the tensors it set and its ``summary()`` is logged.
        pretrained_lr_factor: Learning-rate factor of the tensors ``initialise`` loaded;
            the others (a new head) train at ``learning_rate`` (MedicalNet's recipe
            trains the new layers 100 times faster than the pretrained encoder: 0.01).
        pretraining: ``pretraining(task) -> Task | tuple[Task, ...]``: the task(s)
            trained first, each on its own ``--source-dir`` dataset and each starting
            from the one before (through its own ``initialise``); the last one's model
            folder is the ``source`` of ``initialise`` (a function of the task, so that
            it follows the variant's network).
        arms: Arm name -> field overrides, compared by ``lesionkit crossval``; or a
            function of the task giving them (an arm that follows the task's network).
        lesion_features: Per-lesion feature vectors cached under the dataset's derivatives
            and passed to the network with each lesion (:class:`LesionFeatures`).
    """

    name: str
    description: str
    inputs: tuple[ImageSpec, ...]
    targets: tuple[ImageSpec | LabelSpec | LesionLabelSpec, ...]
    outputs: tuple[OutputSpec, ...]
    network: str
    mask: ImageSpec | None = None
    lesions: ImageSpec | None = None
    network_kwargs: Mapping[str, Any] = field(default_factory=dict)
    loss: str = "mse"
    sampler: Sampler = field(default_factory=GridSampler)
    inference: Inference = field(default_factory=SlidingWindow)
    output_kind: OutputKind = "maps"
    output_activation: Literal["sigmoid", "softmax"] | None = None
    folds: int = 1
    spacing: tuple[float, float, float] | None = None
    learning_rate: float = 1e-4
    lr_halving_epochs: int | None = None
    batch_size: int = 8
    max_epochs: int = 100
    patience: int = 10
    train_on: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()
    metric_units: Mapping[str, str] = field(default_factory=dict)
    evaluate: Callable[..., list[dict]] | None = None
    report_sections: Callable[..., list[Any]] | None = None
    predict_inputs: tuple[ImageSpec, ...] | None = None
    preprocess: tuple[Transform, ...] = ()
    augment: tuple[Transform, ...] = ()
    network_factory: Callable[..., Any] | None = None
    training_step: Callable[..., Any] | None = None
    fit_state: Callable[..., dict[str, Any]] | None = None
    initialise: Callable[..., Any] | None = None
    pretrained_lr_factor: float = 1.0
    pretraining: Callable[[Task], Task | tuple[Task, ...]] | None = None
    arms: Mapping[str, Mapping[str, Any] | Callable[[Task], Mapping[str, Any]]] = field(
        default_factory=dict)
    lesion_features: LesionFeatures | None = None

    @property
    def image_specs(self) -> tuple[ImageSpec, ...]:
        """Inputs, dense targets, mask and lesion map: every image a training subject needs."""
        extra = tuple(s for s in (self.mask, self.lesions) if s is not None)
        return self.inputs + self.dense_targets + extra

    @property
    def dense_targets(self) -> tuple[ImageSpec, ...]:
        """Targets that are images (as opposed to subject or lesion labels)."""
        return tuple(t for t in self.targets if isinstance(t, ImageSpec))

    @property
    def prediction_inputs(self) -> tuple[ImageSpec, ...]:
        """The inputs read at prediction time."""
        return self.predict_inputs or self.inputs

    @property
    def out_channels(self) -> int:
        """Number of network output channels."""
        return len(self.outputs)

    def arm(self, name: str) -> Task:
        """The variant of this task for a cross-validation arm.

        Raises:
            KeyError: unknown arm; the message lists the known ones.
        """
        if name not in self.arms:
            known = ", ".join(self.arms) or "none"
            raise KeyError(f"task {self.name} has no arm {name!r}; known arms: {known}")
        from dataclasses import replace

        overrides = self.arms[name]
        return replace(self, **dict(overrides(self) if callable(overrides) else overrides))


def dataset_is_phantom(root: Path) -> bool:
    """Whether a dataset's description names it a lesionkit phantom."""
    description = Path(root) / "dataset_description.json"
    return description.is_file() and "phantom" in description.read_text()
