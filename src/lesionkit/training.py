"""Training: one Lightning module for every task, and :func:`train`.

The module holds a task and delegates to it (network, loss, learning rate); it has no
task-specific branch. :func:`train` splits subjects (seeded, by subject; k folds on
request), fits normalisation on each fold's training subjects, trains with early
stopping and writes the self-describing model folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L  # noqa: N812
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, Subset

from lesionkit import __version__
from lesionkit.bids import BIDSDataset
from lesionkit.data import (
    fit_normalisation,
    kfold_subjects,
    load_subject,
    normalise,
    training_dataset,
    training_subjects,
)
from lesionkit.io import InputError, write_json
from lesionkit.model_folder import fold_dir, save_weights, task_fields, write_config
from lesionkit.models import build_network
from lesionkit.tasks.task import LabelSpec, Task


def _dice_loss() -> nn.Module:
    from monai.losses import DiceLoss

    return DiceLoss(sigmoid=True)


class LogCoshLoss(nn.Module):
    """Mean log(cosh(prediction - target)), computed stably as |x| + softplus(-2|x|) - log 2."""

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = (prediction - target).abs()
        return (x + nn.functional.softplus(-2.0 * x) - math.log(2.0)).mean()


#: Loss registry: names used by tasks -> factories.
LOSSES: dict[str, Callable[[], nn.Module]] = {
    "mse": nn.MSELoss,
    "l1": nn.L1Loss,
    "mae": nn.L1Loss,
    "log-cosh": LogCoshLoss,
    "bce": nn.BCEWithLogitsLoss,
    "cross-entropy": nn.CrossEntropyLoss,
    "dice": _dice_loss,
}


class TaskModule(L.LightningModule):
    """Lightning module generic over tasks: network, loss and optimiser come from the task."""

    def __init__(self, task: Task, in_channels: int) -> None:
        super().__init__()
        self.task = task
        self.network = build_network(task.network, in_channels, task.out_channels,
                                     **task.network_kwargs)
        self.loss = LOSSES[task.loss]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def _step(self, batch: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        loss = self.loss(self.network(batch["input"]), batch["target"])
        self.log(name, loss, prog_bar=True, on_epoch=True, on_step=False,
                 batch_size=len(batch["input"]), sync_dist=True)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], _: int) -> torch.Tensor:
        return self._step(batch, "train_loss")

    def validation_step(self, batch: dict[str, torch.Tensor], _: int) -> torch.Tensor:
        return self._step(batch, "val_loss")

    def configure_optimizers(self) -> dict[str, Any]:
        optimiser = torch.optim.Adam(self.parameters(), lr=self.task.learning_rate)
        if self.task.lr_halving_epochs is None:
            return {"optimizer": optimiser}
        halving = torch.optim.lr_scheduler.StepLR(optimiser, self.task.lr_halving_epochs, 0.5)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": halving,
                                                          "interval": "epoch"}}


class EpochLog(L.Callback):
    """Append one CSV row per epoch and keep the best weights as safetensors."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.best, self.start = folder, float("inf"), time.time()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step,
               "train_loss": metrics.get("train_loss", float("nan")),
               "val_loss": metrics.get("val_loss", float("nan")),
               "seconds": round(time.time() - self.start, 2)}
        path = self.folder / "metrics.csv"
        new = not path.is_file()
        with path.open("a") as handle:
            if new:
                handle.write(",".join(row) + "\n")
            handle.write(",".join(str(v) for v in row.values()) + "\n")
        if row["val_loss"] < self.best:
            self.best = row["val_loss"]
            save_weights(module.network, self.folder / "weights.safetensors")


def trainer_flags(device: str = "auto", gpus: int = 1, amp: bool = False) -> dict[str, Any]:
    """Lightning Trainer flags: accelerator, devices, DDP across GPUs, mixed precision.

    ``device``: "auto" (CUDA when available), "cpu" or "cuda". AMP and DDP stay off on CPU.
    """
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if not cuda:
        return {"accelerator": "cpu", "devices": 1, "strategy": "auto", "precision": "32-true"}
    return {"accelerator": "cuda", "devices": gpus, "precision": "16-mixed" if amp else "32-true",
            "strategy": "ddp" if gpus > 1 else "auto"}


def _loader(dataset: Any, batch_size: int, max_items: int | None, shuffle: bool, seed: int
            ) -> DataLoader:
    if not shuffle and max_items is not None and len(dataset) > max_items:
        dataset = Subset(dataset, torch.linspace(0, len(dataset) - 1, max_items).long().tolist())
    sampler = None
    if shuffle:
        generator = torch.Generator().manual_seed(seed)
        sampler = RandomSampler(dataset, num_samples=min(max_items or len(dataset), len(dataset)),
                                generator=generator)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0)


def train_fold(task: Task, subjects: dict[str, list], folder: Path, seed: int, epochs: int,
               patches_per_epoch: int | None, flags: dict[str, Any], resume: bool = False,
               max_steps: int = -1, progress: bool = True,
               ready: Callable[[dict[str, Any], int], None] | None = None) -> dict[str, Any]:
    """Train one fold on loaded subjects ``{"train": [...], "validation": [...]}``.

    ``ready(entry, in_channels)`` receives the fold's config entry (subject ids and
    normalisation statistics) before training starts. Returns the fold's metrics.
    """
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    L.seed_everything(seed, workers=True, verbose=False)
    stats = fit_normalisation(subjects["train"], task)
    train_set = training_dataset([normalise(s, stats) for s in subjects["train"]], task,
                                 augment=True)
    val_set = training_dataset([normalise(s, stats) for s in subjects["validation"]], task)
    if len(train_set) == 0 or len(val_set) == 0:
        raise InputError(f"{folder}: expected training and validation examples, found "
                         f"{len(train_set)} and {len(val_set)} (mask or patch size?)")
    folder.mkdir(parents=True, exist_ok=True)
    in_channels = int(train_set[0]["input"].shape[0])
    if ready is not None:
        ids = {k: [s["subject_id"] for s in v] for k, v in subjects.items()}
        ready({**ids, "normalisation": stats}, in_channels)
    module = TaskModule(task, in_channels=in_channels)
    log = EpochLog(folder)
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(dirpath=folder / "checkpoints",
                                                      save_last=True, save_top_k=0)
    stopping = L.pytorch.callbacks.EarlyStopping("val_loss", patience=task.patience,
                                                check_on_train_epoch_end=False)
    trainer = L.Trainer(max_epochs=epochs, max_steps=max_steps, callbacks=[log, checkpoints,
                        stopping], logger=False, enable_progress_bar=progress,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=folder, **flags)
    val_items = None if patches_per_epoch is None else max(patches_per_epoch // 4, 1)
    last = folder / "checkpoints" / "last.ckpt"
    trainer.fit(module, _loader(train_set, task.batch_size, patches_per_epoch, True, seed),
                _loader(val_set, task.batch_size, val_items, False, seed),
                ckpt_path=last if resume and last.is_file() else None)
    if not (folder / "weights.safetensors").is_file():  # no finite validation loss
        save_weights(module.network, folder / "weights.safetensors")
    return {"best_val_loss": log.best, "epochs": trainer.current_epoch,
            "steps": trainer.global_step, "train_examples": len(train_set)}


def train(
    task: Task,
    data_dir: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    folds: int = 1,
    epochs: int | None = None,
    seed: int = 0,
    device: str = "auto",
    gpus: int = 1,
    amp: bool = False,
    patches_per_epoch: int | None = None,
    subjects: Sequence[str] | None = None,
    resume: bool = False,
    max_steps: int = -1,
    progress: bool = True,
) -> Path:
    """Train a task on a BIDS dataset and write the model folder.

    Args:
        task: The task (a registry entry or a ``dataclasses.replace`` variant).
        data_dir: BIDS dataset with inputs, targets and masks.
        model_dir: Output model folder.
        folds: 1 for one seeded train/validation split, K >= 2 for K folds.
        epochs: Epoch cap (default: the task's ``max_epochs``).
        seed: Seed for splits, sampling and initialisation.
        device: "auto", "cpu" or "cuda".
        gpus: CUDA devices (DDP when > 1).
        amp: 16-bit mixed precision on CUDA.
        patches_per_epoch: Cap on training examples drawn per epoch (None: all).
        subjects: Subjects to use (default: all with every image the task needs and
            the participant values of ``task.train_on``).
        resume: Continue from ``fold-K/checkpoints/last.ckpt`` where present.
        max_steps: Optimiser step cap (-1: none), for smoke tests.
        progress: Show Lightning's progress bar.

    Returns:
        The model folder.
    """
    dataset = BIDSDataset(data_dir)
    names = list(subjects) if subjects else training_subjects(dataset, task)
    if len(names) < 2:
        raise InputError(f"{dataset.root}: expected at least 2 training subjects for task "
                         f"{task.name} (every image, {dict(task.train_on)}), found {len(names)}")
    loaded = {name: load_subject(dataset, name, task) for name in names}
    model_dir = Path(model_dir)
    flags = trainer_flags(device, gpus, amp)
    config = {"lesionkit_version": __version__, "task": task.name,
              "task_fields": task_fields(task), "in_channels": None, "seed": seed,
              "data": {"root": str(dataset.root), "subjects": names,
                       "description": _description(dataset.root)},
              "training": {"epochs": epochs or task.max_epochs, "folds": folds,
                           "patches_per_epoch": patches_per_epoch, "device": device,
                           "gpus": gpus, "amp": amp, "complete": False},
              "folds": []}
    summary = {}

    def ready(entry: dict[str, Any], in_channels: int) -> None:
        # Written before each fold trains, so an interrupted run leaves a usable folder.
        config["folds"].append(entry)
        config["in_channels"] = in_channels
        write_config(model_dir, config)

    label_keys = [t.key for t in task.targets if isinstance(t, LabelSpec)]
    labels = [int(loaded[n][label_keys[0]]) for n in names] if label_keys else None
    for fold, split in enumerate(kfold_subjects(names, folds, seed, labels)):
        fold_subjects = {k: [loaded[n] for n in v] for k, v in split.items()}
        summary[f"fold-{fold}"] = train_fold(
            task, fold_subjects, fold_dir(model_dir, fold), seed + fold,
            epochs or task.max_epochs, patches_per_epoch, flags, resume, max_steps, progress,
            ready=lambda entry, channels, fold=fold: ready({"fold": fold, **entry}, channels))
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
