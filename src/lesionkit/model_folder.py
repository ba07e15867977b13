"""The self-describing model folder: everything ``predict`` needs, nothing else.

Layout::

    MODEL_DIR/config.yaml             task, network, sampler, seed, version, folds
                                      (subjects of each split, normalisation statistics)
    MODEL_DIR/metrics.json            best validation loss and epochs per fold
    MODEL_DIR/fold-K/weights.safetensors
    MODEL_DIR/fold-K/metrics.csv      one row per epoch
    MODEL_DIR/fold-K/checkpoints/     Lightning checkpoints (resume only)
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from lesionkit.io import InputError, atomic_path
from lesionkit.tasks import get_task
from lesionkit.tasks.task import SamplerSpec, Task

#: Task fields stored in config.yaml and restored on load (variants by value).
TASK_FIELDS = ("network", "network_kwargs", "loss", "sampler", "inference", "inference_overlap",
               "inference_window", "output_activation", "learning_rate", "lr_halving_epochs",
               "batch_size", "max_epochs", "patience")


def fold_dir(model_dir: str | os.PathLike[str], fold: int) -> Path:
    """``MODEL_DIR/fold-K``."""
    return Path(model_dir) / f"fold-{fold}"


def task_fields(task: Task) -> dict[str, Any]:
    """The task's trainable settings as plain YAML-ready values."""
    fields = {name: getattr(task, name) for name in TASK_FIELDS}
    fields["sampler"] = {k: list(v) if isinstance(v, tuple) else v
                         for k, v in asdict(task.sampler).items()}
    if task.inference_window is not None:
        fields["inference_window"] = list(task.inference_window)
    fields["network_kwargs"] = {k: list(v) if isinstance(v, tuple) else v
                                for k, v in dict(task.network_kwargs).items()}
    return fields


def task_from_config(config: dict[str, Any]) -> Task:
    """Rebuild the task a model was trained with: registry entry + stored fields."""
    fields = dict(config.get("task_fields", {}))
    if "sampler" in fields:
        fields["sampler"] = SamplerSpec(**_tuples(fields["sampler"]))
    if fields.get("inference_window") is not None:
        fields["inference_window"] = tuple(fields["inference_window"])
    if "network_kwargs" in fields:
        fields["network_kwargs"] = _tuples(fields["network_kwargs"])
    return replace(get_task(config["task"]), **fields)


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def write_config(model_dir: str | os.PathLike[str], config: dict[str, Any]) -> Path:
    """Write ``config.yaml`` atomically."""
    path = Path(model_dir) / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def read_config(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``config.yaml``.

    Raises:
        InputError: when the folder holds no config.yaml.
    """
    path = Path(model_dir) / "config.yaml"
    if not path.is_file():
        raise InputError(f"{path}: expected a lesionkit model folder, found no config.yaml")
    return yaml.safe_load(path.read_text())


def save_weights(network: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Save a network's state dict as safetensors (atomic)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return path


def load_weights(network: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load safetensors weights into a network (strict)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: expected network weights, found no such file")
    network.load_state_dict(load_file(str(path)), strict=True)
    return network


@dataclass(frozen=True)
class FoldModel:
    """One trained fold: its network (eval mode) and its normalisation statistics."""

    network: nn.Module
    normalisation: dict[str, dict[str, float]]


@dataclass(frozen=True)
class TrainedModel:
    """A loaded model folder."""

    path: Path
    task: Task
    config: dict[str, Any]
    folds: tuple[FoldModel, ...]


def load_model(model_dir: str | os.PathLike[str], device: str = "cpu") -> TrainedModel:
    """Load every fold of a model folder onto a device."""
    from lesionkit.models import build_network

    config = read_config(model_dir)
    task = task_from_config(config)
    folds = []
    for entry in config["folds"]:
        network = build_network(task.network, config["in_channels"], task.out_channels,
                                **task.network_kwargs)
        load_weights(network, fold_dir(model_dir, entry["fold"]) / "weights.safetensors")
        folds.append(FoldModel(network.to(device).eval(), entry["normalisation"]))
    return TrainedModel(Path(model_dir).resolve(), task, config, tuple(folds))
