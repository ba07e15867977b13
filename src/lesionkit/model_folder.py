"""The self-describing model folder: everything ``predict`` needs, nothing else.

Layout::

    MODEL_DIR/config.yaml             the complete task (every field), seed, version, data,
                                      folds (subjects of each split, normalisation statistics,
                                      a classifier's class counts of data and loss)
    MODEL_DIR/metrics.json            best validation loss and epochs per fold
    MODEL_DIR/fold-K/weights.safetensors
    MODEL_DIR/fold-K/state.safetensors   per-fold fitted state (tasks with ``fit_state``)
    MODEL_DIR/fold-K/metrics.csv      one row per epoch
    MODEL_DIR/fold-K/checkpoints/     Lightning checkpoints (resume only)

The task is stored by value (:func:`task_to_plain`), so a variant that was never
registered (``dataclasses.replace(task, ...)``) is rebuilt exactly from its folder.
Hooks are stored as ``module:name`` references. Loading resolves references inside
``lesionkit`` only, unless the caller names further modules it trusts (``trusted``: a
user's own hook functions); nothing is unpickled.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lesionkit.calibration import prior_shift
from lesionkit.io import InputError, atomic_path
from lesionkit.tasks.task import Task

CLASS_KEY, FUNCTION_KEY = "class", "function"


def fold_dir(model_dir: str | os.PathLike[str], fold: int) -> Path:
    """``MODEL_DIR/fold-K``."""
    return Path(model_dir) / f"fold-{fold}"


def _reference(obj: Any) -> str:
    name = f"{obj.__module__}:{obj.__qualname__}"
    if "<" in obj.__qualname__ or obj.__module__ == "__main__":
        raise ValueError(f"task hooks must be module-level functions of an importable module "
                         f"to be stored in config.yaml, found {name}")
    return name


def _allowed(module: str, trusted: tuple[str, ...]) -> bool:
    return any(module == m or module.startswith(f"{m}.") for m in ("lesionkit", *trusted))


def task_to_plain(value: Any) -> Any:
    """A task (or any field value) as YAML-ready data: dataclasses tagged with their class,
    functions as ``module:name`` references, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: task_to_plain(getattr(value, f.name))
                  for f in dataclasses.fields(value)}
        return {CLASS_KEY: _reference(type(value)), **fields}
    if isinstance(value, Mapping):
        return {str(k): task_to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [task_to_plain(v) for v in value]
    if callable(value):
        return {FUNCTION_KEY: _reference(value)}
    return value


def _resolve(reference: str, where: Path, trusted: tuple[str, ...] = ()) -> Any:
    module, _, name = reference.partition(":")
    if not _allowed(module, trusted) or not name:
        raise InputError(f"{where}: expected a lesionkit class or function (or one of a module "
                         f"passed as trusted), found {reference!r}")
    try:
        obj = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as error:
        raise InputError(f"{where}: expected an existing lesionkit class or function, found "
                         f"{reference!r} ({error})") from error
    return obj


def task_from_plain(data: Any, where: Path, trusted: tuple[str, ...] = ()) -> Any:
    """Inverse of :func:`task_to_plain` (lists come back as tuples).

    Args:
        data: What :func:`task_to_plain` gave (read back from YAML).
        where: The file it came from (named in errors).
        trusted: Modules outside lesionkit whose functions and classes may be resolved.

    Raises:
        InputError: unknown or missing fields, or a reference outside lesionkit and the
            trusted modules; the message names ``where``.
    """
    if isinstance(data, list):
        return tuple(task_from_plain(v, where, trusted) for v in data)
    if not isinstance(data, dict):
        return data
    if set(data) == {FUNCTION_KEY}:
        return _resolve(data[FUNCTION_KEY], where, trusted)
    values = {k: task_from_plain(v, where, trusted) for k, v in data.items() if k != CLASS_KEY}
    if CLASS_KEY not in data:
        return values
    cls = _resolve(data[CLASS_KEY], where, trusted)
    if not dataclasses.is_dataclass(cls):
        raise InputError(f"{where}: expected a lesionkit dataclass, found {data[CLASS_KEY]!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING}
    unknown, missing = sorted(set(values) - known), sorted(required - set(values))
    if unknown or missing:
        raise InputError(f"{where}: expected the fields of {cls.__name__}, found unknown keys "
                         f"{unknown} and missing keys {missing}")
    return cls(**values)


def task_from_config(config: dict[str, Any], where: Path, trusted: tuple[str, ...] = ()
                     ) -> Task:
    """Rebuild the exact task a model was trained with from its config."""
    task = task_from_plain(config.get("task"), where, trusted)
    if not isinstance(task, Task):
        raise InputError(f"{where}: expected the complete task under 'task' (written by this "
                         "lesionkit version; retrain older model folders), found none")
    return task


def write_config(model_dir: str | os.PathLike[str], config: dict[str, Any]) -> Path:
    """Write ``config.yaml`` atomically."""
    path = Path(model_dir) / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


CONFIG_KEYS = ("lesionkit_version", "task", "in_channels", "seed", "data", "training", "folds")


def read_config(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``config.yaml``.

    Raises:
        InputError: no config.yaml, unreadable YAML, or unknown or missing keys.
    """
    path = Path(model_dir) / "config.yaml"
    if not path.is_file():
        raise InputError(f"{path}: expected a lesionkit model folder, found no config.yaml")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise InputError(f"{path}: expected YAML, found unreadable text ({error})") from error
    if not isinstance(config, dict):
        raise InputError(f"{path}: expected a mapping of {CONFIG_KEYS}, found {type(config)}")
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    missing = sorted(set(CONFIG_KEYS) - set(config))
    if unknown or missing:
        raise InputError(f"{path}: expected the keys {list(CONFIG_KEYS)}, found unknown keys "
                         f"{unknown} and missing keys {missing}")
    return config


def save_tensors(tensors: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Save named arrays or tensors as safetensors (atomic)."""
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from safetensors import SafetensorError

    state = {k: torch.as_tensor(v).detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(state, str(tmp))
        except SafetensorError as error:  # a full disk or an unwritable folder
            raise OSError(f"{path}: could not write the weights "
                          f"({' '.join(str(error).split())})") from error
    return path


def load_tensors(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a safetensors file (no pickle)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: expected a safetensors file, found no such file")
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises its own error type for damaged files
        raise InputError(f"{path}: expected a safetensors file, found unreadable data "
                         f"({' '.join(str(error).split())[:120]})") from error


def save_weights(network: Any, path: str | os.PathLike[str]) -> Path:
    """Save a network's state dict as safetensors (atomic)."""
    return save_tensors(network.state_dict(), path)


def load_weights(network: Any, path: str | os.PathLike[str]) -> Any:
    """Load safetensors weights into a network (strict).

    Raises:
        InputError: The file is damaged or holds the weights of another network.
    """
    tensors = load_tensors(path)
    try:
        network.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        expected = network.state_dict()
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        shapes = [k for k in set(expected) & set(tensors)
                  if tuple(expected[k].shape) != tuple(tensors[k].shape)]
        raise InputError(f"{path}: expected the weights of the model folder's "
                         f"{type(network).__name__} ({len(expected)} tensors), found another "
                         f"network's ({len(missing)} missing, {len(unexpected)} extra, "
                         f"{len(shapes)} of another shape)") from error
    return network


def make_network(task: Task, in_channels: int, state: Mapping[str, Any] | None = None) -> Any:
    """The task's network: its factory hook, else the registry entry."""
    kwargs = dict(task.network_kwargs)
    if state is not None:
        kwargs["state"] = state
    if task.network_factory is not None:
        return task.network_factory(in_channels, task.out_channels, **kwargs)
    from lesionkit.models import build_network

    try:
        return build_network(task.network, in_channels, task.out_channels, **kwargs)
    except (KeyError, TypeError) as error:
        message = error.args[0] if error.args else str(error)
        raise InputError(f"task {task.name}: expected a known network and its options, "
                         f"found {message}") from error


@dataclass(frozen=True)
class FoldModel:
    """One trained fold: its network (eval mode), normalisation and training subjects.

    ``logit_offset``: added to a classifier's logits at prediction, so that its
    probabilities hold at the class frequencies of its training data rather than at
    those its loss saw (:func:`lesionkit.calibration.prior_shift`); None: none.
    """

    network: Any
    normalisation: dict[str, dict[str, float]]
    train: tuple[str, ...] = ()
    logit_offset: tuple[float, ...] | None = None


@dataclass(frozen=True)
class TrainedModel:
    """A loaded model folder."""

    path: Path
    task: Task
    config: dict[str, Any]
    folds: tuple[FoldModel, ...]


def load_model(model_dir: str | os.PathLike[str], device: str = "cpu",
               trusted: tuple[str, ...] = ()) -> TrainedModel:
    """Load every fold of a model folder onto a device.

    Args:
        model_dir: The model folder.
        device: Torch device.
        trusted: Modules outside lesionkit whose hook functions the task may name.
    """
    if Path(model_dir).exists() and not Path(model_dir).is_dir():
        raise InputError(f"{model_dir}: expected a model folder, found a file")
    config = read_config(model_dir)
    task = task_from_config(config, Path(model_dir) / "config.yaml", trusted)
    if not config["folds"]:
        raise InputError(f"{Path(model_dir) / 'config.yaml'}: expected at least one trained "
                         "fold, found none (training was interrupted before the first fold)")
    folds = []
    for entry in config["folds"]:
        folder = fold_dir(model_dir, entry["fold"])
        state = load_tensors(folder / "state.safetensors") if task.fit_state else None
        try:
            network = make_network(task, config["in_channels"], state)
        except InputError as error:
            raise InputError(f"{Path(model_dir) / 'config.yaml'}: {error}") from error
        load_weights(network, folder / "weights.safetensors")
        counts = entry.get("class_counts") or {}
        offset = prior_shift(counts.get("training"), counts.get("loss"), task.output_activation)
        folds.append(FoldModel(network.to(device).eval(), entry["normalisation"],
                               tuple(entry.get("train", ())),
                               None if offset is None else tuple(offset.tolist())))
    return TrainedModel(Path(model_dir).resolve(), task, config, tuple(folds))
