"""Training: one Lightning module for every task, and :func:`train`.

The module holds a task and delegates to it (network, loss, learning rate, the optional
training-step hook); it has no task-specific branch. :func:`train` splits subjects
(seeded, by subject; k folds on request), fits normalisation and per-fold state on each
fold's training subjects only, trains and writes the self-describing model folder.

Distributed training is Lightning's DDP (NCCL on CUDA, gloo on CPU) started by Lightning's
own launcher, SLURM or torchrun: every process runs all of :func:`train`, draws its own
share of every epoch (:func:`lesionkit.distributed.shard`) and only global rank 0
writes the model folder (the callbacks are :mod:`lesionkit.callbacks`).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
import signal
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L  # noqa: N812
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from lesionkit import __version__
from lesionkit.bids import BIDSDataset, active_filters
from lesionkit.calibration import class_counts
from lesionkit.callbacks import (
    EpochCheckpoint,
    EpochLog,
    EpochSeeds,
    Interrupted,
    RunTimer,
    SameOnEveryRank,
)
from lesionkit.data import (
    missing_images,
    session_examples,
    training_subjects,
    with_spacing,
)
from lesionkit.distributed import (
    EpochSampler,
    ShardedBatches,
    fold_fingerprint,
    process_rank,
    trainer_flags,
)
from lesionkit.io import InputError, remove_stale_temporaries, write_json
from lesionkit.losses import LOSSES
from lesionkit.model_folder import (
    fold_dir,
    load_weights,
    make_network,
    read_config,
    save_tensors,
    save_weights,
    task_to_plain,
    write_config,
)
from lesionkit.splits import kfold_subjects
from lesionkit.store import SubjectStore
from lesionkit.tasks.strategies import network_inputs
from lesionkit.tasks.task import LabelSpec, Task
from lesionkit.threads import worker_init
from lesionkit.units import unit_scope


class TaskModule(L.LightningModule):
    """Lightning module generic over tasks: network, loss and optimiser come from the task."""

    def __init__(self, task: Task, network: nn.Module, loaded: Sequence[str] = ()) -> None:
        """Args: task, network, and the names of the network tensors ``initialise``
        loaded (trained at ``task.pretrained_lr_factor`` times the learning rate)."""
        super().__init__()
        self.task, self.network = task, network
        self.loss = LOSSES[task.loss]()
        self.loaded = frozenset(loaded)
        #: Class counts of the targets the training loss saw (classification tasks).
        self.seen: np.ndarray | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def _log(self, name: str, loss: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        self.log(name, loss, prog_bar=True, on_epoch=True, on_step=False,
                 batch_size=len(batch["input"]), sync_dist=True)

    def training_step(self, batch: dict[str, torch.Tensor], _: int) -> torch.Tensor:
        if self.task.training_step is not None:
            loss = self.task.training_step(self.network, self._training_loss, batch)
        else:
            loss = self._training_loss(self.network(*network_inputs(batch)), batch["target"])
        self._log("train_loss", loss, batch)
        return loss

    def _training_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The task's loss, counting the classes of a classification task's targets (after
        whatever the training step added: the prior the network learns;
        :mod:`lesionkit.calibration`)."""
        if self.task.output_kind != "maps" and self.task.output_activation is not None:
            counts = class_counts(target, max(self.task.out_channels, 2))
            self.seen = counts if self.seen is None else self.seen + counts
        return self.loss(output, target)

    def validation_step(self, batch: dict[str, torch.Tensor], _: int) -> torch.Tensor:
        loss = self.loss(self.network(*network_inputs(batch)), batch["target"])
        self._log("val_loss", loss, batch)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        rate, factor = self.task.learning_rate, self.task.pretrained_lr_factor
        named = list(self.network.named_parameters())
        pretrained = [p for n, p in named if n in self.loaded]
        groups = [{"params": [p for n, p in named if n not in self.loaded], "lr": rate}]
        if pretrained:
            groups.append({"params": pretrained, "lr": rate * factor})
        optimiser = torch.optim.Adam(groups, lr=rate)
        if self.task.lr_halving_epochs is None:
            return {"optimizer": optimiser}
        halving = torch.optim.lr_scheduler.StepLR(optimiser, self.task.lr_halving_epochs, 0.5)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": halving,
                                                          "interval": "epoch"}}


def _loader(dataset: Any, batch_size: int, max_items: int | None, shuffle: bool, seed: int,
            workers: int, rank: int = 0, world: int = 1) -> DataLoader:
    """Batches of a sampler's dataset; a TorchIO queue loads in its own workers; a dataset
    with its own training batches (``dataset.batches``) gets them. Training batches are
    this process's share of each epoch (rank of world); validation batches are all."""
    workers = 0 if getattr(dataset, "own_workers", False) else workers
    options = {"num_workers": workers, "persistent_workers": workers > 0,
               "worker_init_fn": functools.partial(worker_init, rank=rank) if workers else None}
    chosen = dataset.batches(batch_size, max_items, seed) if (
        shuffle and hasattr(dataset, "batches")) else None
    if chosen is not None:
        return DataLoader(dataset, batch_sampler=ShardedBatches(chosen, rank, world), **options)
    if not shuffle and max_items is not None and len(dataset) > max_items:
        dataset = Subset(dataset, torch.linspace(0, len(dataset) - 1, max_items).long().tolist())
    sampler = None
    if shuffle:
        sampler = EpochSampler(dataset, min(max_items or len(dataset), len(dataset)), seed,
                               rank, world)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, **options)


def augmentation(task: Task) -> Any:
    """The task's training augmentation as one TorchIO transform (None: none).

    Its transforms change the images they are given instead of copying them first (TorchIO's
    ``copy=False``): every training example's images are read afresh from the store, and a
    deep copy of each at each transform cost more than some of the transforms.
    """
    if not task.augment:
        return None
    import torchio as tio

    return tio.Compose([t.build(copy=False) for t in task.augment], copy=False)


def train_fold(task: Task, store: SubjectStore, split: dict[str, list[str]], folder: Path,
               seed: int, epochs: int, examples_per_epoch: int | None, flags: dict[str, Any],
               resume: bool = False, max_steps: int = -1, progress: bool = True,
               source: Path | None = None,
               ready: Callable[[dict[str, Any], int], None] | None = None,
               compile_network: bool = False, init: Path | None = None) -> dict[str, Any]:
    """Train one fold on ``{"train": [...], "validation": [...]}`` subject names.

    With an empty validation list the fold trains a fixed number of epochs and keeps
    the last weights (cross-validation: no model selection on held-out subjects).
    ``ready(entry, in_channels)`` receives the fold's config entry (subject ids and
    normalisation statistics) before training starts. ``flags``: :func:`trainer_flags`
    (a fresh dict per fold); under DDP every process calls this and only global rank 0
    writes ``folder`` and calls ``ready``. ``compile_network``: train through
    ``torch.compile`` (the weights saved are those of the plain network). ``init``: a
    model folder whose first fold's weights the network starts from (fine-tuning; the
    normalisation and fitted state are fitted anew on this fold's subjects). Returns the
    fold's metrics.
    """
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    L.seed_everything(seed, workers=True, verbose=False)
    stats = store.fit_normalisation(split["train"], seed)
    train_set = task.sampler.dataset(store, split["train"], task, stats, augmentation(task))
    validation = list(split.get("validation", []))
    val_set = task.sampler.dataset(store, validation, task, stats) if validation else None
    if len(train_set) == 0 or (val_set is not None and len(val_set) == 0):
        raise InputError(f"{folder}: expected training and validation examples, found "
                         f"{len(train_set)} and {0 if val_set is None else len(val_set)} "
                         "(mask, lesions or patch size?)")
    in_channels = int(train_set[0]["input"].shape[0])
    state = task.fit_state(train_set) if task.fit_state is not None else None
    network = make_network(task, in_channels, state)
    if init is not None:
        load_weights(network, fold_dir(init, 0) / "weights.safetensors")
    initialised = task.initialise(network, source) if task.initialise and source else None
    module = TaskModule(task, network, loaded=getattr(initialised, "loaded", ()))
    if compile_network:
        network.compile()  # in place: the state dict keeps the plain network's names
    log, interrupted = EpochLog(folder, select_best=val_set is not None), Interrupted()
    callbacks: list[L.Callback] = [EpochSeeds(seed), log, EpochCheckpoint(folder), interrupted,
                                   SameOnEveryRank(fold_fingerprint(split, stats, in_channels))]
    if val_set is not None:
        callbacks.append(L.pytorch.callbacks.EarlyStopping(
            "val_loss", patience=task.patience, check_on_train_epoch_end=False))
    if "max_time" in flags:
        callbacks.append(RunTimer(duration=flags.pop("max_time")))
    trainer = L.Trainer(max_epochs=epochs, max_steps=max_steps, callbacks=callbacks, logger=False,
                        enable_progress_bar=progress, enable_model_summary=False,
                        enable_checkpointing=False,
                        num_sanity_val_steps=0, default_root_dir=folder, **flags)
    if trainer.is_global_zero:
        folder.mkdir(parents=True, exist_ok=True)
        if state is not None:
            save_tensors(state, folder / "state.safetensors")
        if ready is not None:
            ready({**split, "normalisation": stats}, in_channels)
    rank, world = trainer.global_rank, trainer.world_size
    workers = store.workers
    val_items = None if examples_per_epoch is None else max(examples_per_epoch // 4, 1)
    last = folder / "checkpoints" / "last.ckpt"
    if resume and last.is_file():
        done = int(torch.load(last, map_location="cpu", weights_only=True).get("epoch", -1)) + 1
        if done > epochs:
            raise InputError(f"{last}: expected a checkpoint within the {epochs} epochs asked "
                             f"for, found one after {done} epochs; resume with --epochs {done} "
                             "or more")
    start = time.time()
    with warnings.catch_warnings():
        # Without validation subjects (cross-validation folds) no validation loop runs.
        warnings.filterwarnings("ignore", ".*validation_step.*no `val_dataloader`")
        # Lightning's own use of a deprecated torch API (not ours to act on).
        warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated")
        try:
            trainer.fit(module, _loader(train_set, task.batch_size, examples_per_epoch, True,
                                        seed, workers, rank, world),
                        _loader(val_set, task.batch_size, val_items, False, seed, workers)
                        if val_set is not None else None,
                        ckpt_path=last if resume and last.is_file() else None,
                        weights_only=True)  # no unpickling, even of our own checkpoints
        except SystemExit as stop:
            if interrupted.seen:  # Lightning's answer to Ctrl-C: make it Ctrl-C again
                signal.signal(signal.SIGINT, signal.default_int_handler)
                raise KeyboardInterrupt from stop
            raise
    if trainer.is_global_zero and not (folder / "weights.safetensors").is_file():
        save_weights(module.network, folder / "weights.safetensors")  # no finite val loss
    training = training_class_counts(task, store, split["train"], train_set)
    counts = None if training is None or module.seen is None else {
        "training": training.tolist(), "loss": module.seen.round(3).tolist()}
    return {"best_val_loss": log.best, "epochs": trainer.current_epoch,
            "steps": trainer.global_step, "train_examples": len(train_set),
            "class_counts": counts,
            "seconds": round(time.time() - start, 1),
            "initialised": None if initialised is None else (
                initialised.summary() if hasattr(initialised, "summary") else str(initialised))}


def training_class_counts(task: Task, store: SubjectStore, names: Sequence[str],
                          dataset: Any) -> np.ndarray | None:
    """Class counts of a classification task's training examples: lesions of a lesion
    dataset, else subjects (None: a task of voxel maps or without a class label)."""
    if task.output_kind == "maps" or task.output_activation is None:
        return None
    classes = (dataset.classes() if hasattr(dataset, "classes")
               else subject_class_labels(store, names, task))
    if classes is None:
        return None
    known = np.asarray(classes, np.int64)
    return np.bincount(known[known >= 0], minlength=max(task.out_channels, 2)).astype(float)


def subject_class_labels(store: SubjectStore, names: Sequence[str], task: Task
                         ) -> list[int] | None:
    """Class index of each subject for stratified folds (None: the task has no subject label)."""
    keys = [t.key for t in task.targets if isinstance(t, LabelSpec)]
    return [int(store.labels(n)[keys[0]]) for n in names] if keys else None


def train(
    task: Task,
    data_dir: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    folds: int | None = None,
    epochs: int | None = None,
    seed: int = 0,
    device: str = "auto",
    devices: int = 1,
    nodes: int = 1,
    amp: bool = False,
    compile_network: bool = False,
    patches_per_epoch: int | None = None,
    subjects: Sequence[str] | None = None,
    resume: bool = False,
    max_steps: int = -1,
    progress: bool = True,
    workers: int = 0,
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    splits: Sequence[dict[str, list[str]]] | None = None,
    overwrite: bool = False,
    init: str | os.PathLike[str] | None = None,
    register: bool = False,
    session: str | None = None,
    all_sessions: bool = False,
    max_minutes: float | None = None,
) -> Path:
    """Train a task on a BIDS dataset and write the model folder.

    The model folder must be new or empty unless ``resume`` (continue its training from
    the checkpoint written at the end of every epoch) or ``overwrite`` (replace an earlier
    model folder) is given. Options, subjects and images are checked before anything is
    written; when training fails before a fold has finished, the folder it created is
    removed. Ctrl-C keeps the last completed epoch of the running fold for ``resume``.

    With more than one process (``devices`` x ``nodes``) every process runs this function
    (Lightning's launcher starts the others at the first fit; SLURM and torchrun start
    them all): only global rank 0 checks, writes and cleans the model folder; the others
    keep their subject cache in a temporary folder of their own. ``task.batch_size`` is
    per process and the learning rate is not rescaled.

    Args:
        task: The task (a registry entry or a ``dataclasses.replace`` variant).
        data_dir: BIDS dataset with inputs, targets and masks.
        model_dir: Output model folder.
        folds: 1 for one seeded train/validation split, K >= 2 for K folds (default:
            the task's ``folds``).
        epochs: Epoch cap (default: the task's ``max_epochs``).
        seed: Seed for splits, sampling and initialisation.
        device: "auto", "cpu" or "cuda".
        devices: Processes per machine: CUDA devices, or CPU processes on the CPU (DDP
            when devices x nodes > 1).
        nodes: Machines (e.g. SLURM nodes, one task per device on each).
        amp: Mixed precision: float16 on CUDA, bfloat16 on the CPU.
        compile_network: Train the network through ``torch.compile``.
        patches_per_epoch: Cap on training examples drawn per epoch (None: all).
        subjects: Subjects to use (default: all with every image the task needs and
            the participant values of ``task.train_on``).
        resume: Continue from ``fold-K/checkpoints/last.ckpt`` where present.
        max_steps: Optimiser step cap (-1: none), for smoke tests.
        progress: Show progress.
        workers: Worker processes loading subjects and patches.
        source: For a task with ``pretraining``: the dataset it pretrains on, or one
            dataset per pretraining stage (a list, in the stages' order); for a task with
            ``initialise`` alone: the weights file it starts from.
        splits: Explicit folds ``{"train", "validation"}``; an empty validation list
            trains fixed epochs and keeps the last weights (cross-validation).
        overwrite: Replace an existing model folder (one holding ``config.yaml``).
        init: Fine-tune: a model folder of the same network (or a shipped model's name)
            whose first fold's weights every fold starts from.
        register: Co-register each subject's images to its first input (dipy) instead of
            trusting their affines (recorded in the model folder's ``training``).
        session: Train on this session of each subject (label without ``ses-``; images
            without a session are read as well), for longitudinal data; recorded in the
            model folder's ``training``. Without it, a subject whose first input is in
            several sessions stops training with one line naming them.
        all_sessions: Longitudinal data: every session of a subject that holds every image
            is one training example ("p01_ses-2" in the model folder's lists); folds and
            the validation split are still drawn over subjects, so the sessions of one
            subject are never on both sides.
        max_minutes: Wall time (minutes) after which each fold (and each pretraining
            stage) stops training and keeps its best validation epoch, as when early
            stopping ends it (a cluster job's time limit); recorded in the model folder.

    Returns:
        The model folder.
    """
    model_dir = Path(model_dir)
    if init is not None:
        from lesionkit.shipped import resolve_model

        init = resolve_model(init)
        read_config(init)  # a model folder, before anything is written
    settings = {"device": device, "devices": devices, "nodes": nodes, "amp": amp,
                "max_minutes": max_minutes}
    rank, world = process_rank(trainer_flags(**settings))  # checks the options too
    if rank == 0:  # the others start once rank 0 has written files (or alongside it)
        remove_stale_temporaries(model_dir)
        check_model_dir(model_dir, resume, overwrite)
    dataset = BIDSDataset(data_dir)
    with unit_scope(session=session):
        names = list(subjects) if subjects else training_subjects(dataset, task)
        if subjects and task.train_on:
            allowed = set(training_subjects(dataset, task))
            refused = [name for name in names if name not in allowed]
            if refused:
                raise InputError(f"{dataset.root / 'participants.tsv'}: expected training "
                                 f"subjects of task {task.name} to have "
                                 f"{dict(task.train_on)} (and every image), found "
                                 f"sub-{', sub-'.join(refused)} without")
        if len(names) < 2:
            rule = f" and {dict(task.train_on)} in participants.tsv" if task.train_on else ""
            rule += f", at ses-{session}" if session else ""
            raise InputError(f"{dataset.root}: expected at least 2 training subjects for task "
                             f"{task.name} (every image{rule}), found {len(names)}: "
                             f"{missing_images(dataset, task)}")
        if all_sessions:
            if session is not None:
                raise InputError(f"{dataset.root}: expected --session or --all-sessions, "
                                 f"found both (--session {session})")
            names = session_examples(dataset, task, names)
        else:
            _check_one_session(dataset, task, names)
    stages = pretraining_stages(task)
    sources = list(source) if isinstance(source, (list, tuple)) else (
        [] if source is None else [source])
    if stages and len(sources) != len(stages):
        listed = ", ".join(f"{t.name} ({t.description})" for t in stages)
        raise InputError(f"task {task.name} pretrains {listed} first: expected "
                         f"{len(stages)} source dataset(s) (--source-dir, in that order), "
                         f"found {len(sources)}")
    if not stages and len(sources) > 1:
        raise InputError(f"task {task.name}: expected at most one --source-dir or --weights, "
                         f"found {len(sources)}")
    source = sources[0] if len(sources) == 1 and not stages else source
    folds = folds or task.folds
    if splits is None and folds > len(names):
        raise InputError(f"{dataset.root}: expected at least {folds} subjects for --folds "
                         f"{folds}, found {len(names)}")
    existed = model_dir.exists()
    fresh = not existed or not any(model_dir.iterdir())
    cache = model_dir / ".cache" if rank == 0 else Path(
        tempfile.mkdtemp(prefix=f"lesionkit-cache-rank{rank}-"))
    try:
        if rank == 0 and overwrite and not fresh:
            shutil.rmtree(model_dir)
            fresh = True
        previous = None  # stage k starts from the encoder of stage k - 1
        for k, stage in enumerate(stages):
            folder = model_dir / ("pretraining" if len(stages) == 1 else f"pretraining-{k + 1}")
            previous = train(stage, sources[k], folder, epochs=stage.max_epochs, seed=seed,
                             **settings, compile_network=compile_network, progress=progress,
                             workers=workers, max_steps=max_steps, resume=resume,
                             source=previous)
        source = previous if stages else source
        with unit_scope(session=session):
            _train_folds(task, dataset, names, model_dir, folds, splits, epochs, seed,
                         settings, dict(**settings, compile=compile_network, workers=workers,
                                        init=None if init is None else str(init),
                                        register=register, session=session,
                                        all_sessions=all_sessions,
                                        bids_filter=[str(f) for f in active_filters()]),
                         patches_per_epoch, resume, max_steps, progress, source,
                         cache=cache, rank=rank, compile_network=compile_network)
        if world > 1:
            _all_processes_here()  # rank 0 has written the folder the others may read next
        return model_dir
    except Exception:
        if rank == 0 and fresh and not any(model_dir.glob("fold-*/weights.safetensors")):
            # Nothing of use was written: leave the folder as it was (absent or empty).
            for path in model_dir.iterdir() if model_dir.is_dir() else ():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            if model_dir.is_dir() and not existed:
                model_dir.rmdir()
        raise
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _check_one_session(dataset: BIDSDataset, task: Task, names: Sequence[str]) -> None:
    """One line for the first subject whose first input is found in several sessions (of
    the enclosing :func:`lesionkit.units.unit_scope`): training takes one per subject."""
    spec = task.inputs[0]
    for name in names:
        sessions = sorted({f.entities.get("ses") or "" for f in
                           dataset.locate(name, spec.suffix, **spec.query())})
        if len(sessions) > 1:
            listed = ", ".join(f"ses-{s}" if s else "no session" for s in sessions)
            raise InputError(f"{dataset.root / f'sub-{name}'}: expected one session of "
                             f"'{spec.suffix}' per training subject, found {listed}; train "
                             "on one of them (--session LABEL)")


def _all_processes_here() -> None:
    """Wait until every process of the DDP process group gets here."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def pretraining_stages(task: Task) -> tuple[Task, ...]:
    """The tasks a task trains first, in order (``Task.pretraining``; none without
    ``initialise``). Each stage starts from the one before; the task from the last."""
    if task.pretraining is None or task.initialise is None:
        return ()
    stages = task.pretraining(task)
    return tuple(stages) if isinstance(stages, (list, tuple)) else (stages,)


def check_model_dir(model_dir: Path, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse a model folder that is a file, or an earlier one without resume or overwrite.

    Raises:
        InputError: The folder is a file, holds files without ``resume``/``overwrite``,
            or ``overwrite`` names a folder that is not a lesionkit model folder.
    """
    if model_dir.exists() and not model_dir.is_dir():
        raise InputError(f"{model_dir}: expected a model folder, found a file")
    content = [p.name for p in model_dir.iterdir()] if model_dir.is_dir() else []
    if not content or resume:
        return
    if not (model_dir / "config.yaml").is_file():
        raise InputError(f"{model_dir}: expected a new or empty model folder, found other "
                         f"files ({', '.join(sorted(content)[:3])}); choose another folder")
    if not overwrite:
        raise InputError(f"{model_dir}: expected a new or empty model folder, found a trained "
                         "model; pass --resume to continue its training or --overwrite to "
                         "replace it")


def _train_folds(task: Task, dataset: BIDSDataset, names: list[str], model_dir: Path,
                 folds: int, splits: Sequence[dict[str, list[str]]] | None,
                 epochs: int | None, seed: int, settings: dict[str, Any],
                 options: dict[str, Any], patches_per_epoch: int | None, resume: bool,
                 max_steps: int, progress: bool, source: str | os.PathLike[str] | None,
                 cache: Path, rank: int = 0, compile_network: bool = False) -> Path:
    """Prepare the subjects, train every fold and write the model folder (see :func:`train`).

    ``settings``: the arguments of :func:`trainer_flags`; ``cache``: this process's subject
    cache; ``rank``: this process's global rank (0 alone writes the model folder).
    """
    task = with_spacing(dataset, task, names)
    store = SubjectStore(dataset.root, task, cache, workers=options["workers"],
                         register=options.get("register", False))
    store.prepare(names)
    if splits is None:
        splits = kfold_subjects(names, folds, seed, subject_class_labels(store, names, task),
                                store.dataset.root / "participants.tsv")
    config = {"lesionkit_version": __version__, "task": task_to_plain(task), "in_channels": None,
              "seed": seed,
              "data": {"root": str(dataset.root), "subjects": names,
                       "description": _description(dataset.root)},
              "training": {"epochs": epochs or task.max_epochs, "folds": len(splits),
                           "patches_per_epoch": patches_per_epoch, **options,
                           "source": None if source is None else str(source),
                           "complete": False},
              "folds": []}
    summary = {}

    def ready(entry: dict[str, Any], in_channels: int) -> None:
        # Written before each fold trains, so an interrupted run leaves a usable folder.
        config["folds"].append(entry)
        config["in_channels"] = in_channels
        write_config(model_dir, config)

    for fold, split in enumerate(splits):
        summary[f"fold-{fold}"] = result = train_fold(
            task, store, split, fold_dir(model_dir, fold), seed + fold,
            epochs or task.max_epochs, patches_per_epoch, trainer_flags(**settings), resume,
            max_steps, progress, Path(source) if source else None,
            ready=lambda entry, channels, fold=fold: ready({"fold": fold, **entry}, channels),
            compile_network=compile_network,
            init=Path(options["init"]) if options.get("init") else None)
        if rank != 0:
            continue
        if result["class_counts"] is not None:  # read by lesionkit.calibration at prediction
            config["folds"][-1]["class_counts"] = result["class_counts"]
            write_config(model_dir, config)
        if progress:
            loss = result["best_val_loss"]
            kept = (f"best validation loss {loss:.4g}" if math.isfinite(loss)
                    else "last weights, no validation subjects")
            print(f"{task.name}: fold {fold + 1}/{len(splits)} trained in {result['seconds']} "
                  f"s (epochs: {result['epochs']}; {kept})")
    if rank == 0:
        config["training"]["complete"] = True
        write_config(model_dir, config)
        write_json(summary, model_dir / "metrics.json")
    return model_dir


def _description(root: Path) -> dict[str, Any]:
    """The dataset's dataset_description.json (its name and provenance), or {}."""
    path = root / "dataset_description.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def with_overrides(task: Task, **values: Any) -> Task:
    """A task variant with the given non-None fields replaced (CLI flags)."""
    return replace(task, **{k: v for k, v in values.items() if v is not None})
