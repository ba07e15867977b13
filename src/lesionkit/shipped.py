"""Phantom-trained models shipped inside the package, loaded by name.

Each shipped model is an ordinary model folder under ``lesionkit/shipped_models/NAME``
(``config.yaml``, ``fold-K/weights.safetensors``, ``metrics.json``) plus
``provenance.json``: the recipe it was trained from (a task module's
``SHIPPED_MODELS`` entry), the phantom seed, cohort and subjects, the machine, the wall
time and the figures on held-out phantom subjects. The name is the task's name.
``make models`` (``scripts/train_models.py``) rebuilds every one of them with
:func:`lesionkit.build_models.build_model`.

Every figure recorded here comes from the phantom: a shipped model is a starting point
for a user's scans (predict, or fine-tune with ``lesionkit train ... --init NAME``), not
a validated clinical tool.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lesionkit.io import InputError

#: Where the shipped model folders live inside the package.
SHIPPED_DIR = Path(__file__).parent / "shipped_models"
PROVENANCE = "provenance.json"
#: Phantom seed of the cohorts the shipped models train on; the demo simulates with
#: another seed, so its subjects are new to every shipped model.
SHIPPED_SEED = 1000
#: Files of a trained model folder that are not shipped (resume state, caches).
_NOT_SHIPPED = ("checkpoints", ".cache")


def shipped_names() -> list[str]:
    """Names of the shipped models (folders holding ``config.yaml``), sorted."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir()
                  if not p.name.startswith(".") and (p / "config.yaml").is_file())


def resolve_model(model: str | os.PathLike[str]) -> Path:
    """The model folder meant by ``model``: an existing path, else a shipped model's name.

    An existing path always wins, so a folder called like a task in the working
    directory is used as it is; anything with a folder in it is taken as a path.

    Raises:
        InputError: Neither a path nor a shipped model's name.
    """
    path = Path(model)
    if path.exists() or len(path.parts) > 1:  # a path: its own checks name what is wrong
        return path
    names = shipped_names()
    if str(model) in names:
        return SHIPPED_DIR / str(model)
    raise InputError(f"{model}: expected a model folder or the name of a shipped model "
                     f"({', '.join(names) if names else 'none shipped'}), found neither")


def provenance(name: str, root: Path | None = None) -> dict[str, Any]:
    """The ``provenance.json`` of a shipped model (empty when it has none); ``root``: the
    folder holding the model folders (default: the package's)."""
    path = (root or SHIPPED_DIR) / name / PROVENANCE
    return json.loads(path.read_text()) if path.is_file() else {}


def _image_keys(name: str, root: Path | None = None) -> str:
    """The keys of a shipped model's inputs, as ``predict --image`` takes them."""
    from lesionkit.files import image_keys
    from lesionkit.model_folder import read_config, task_from_config

    folder = (root or SHIPPED_DIR) / name
    return image_keys(task_from_config(read_config(folder), folder / "config.yaml"))


def alternatives(dataset: Any, task: Any, subjects: list[str] | None = None) -> list[str]:
    """Shipped models that write what ``task`` writes (an output of the same suffix and
    entities, a lesion map for a lesion map) from images the dataset holds, for at least
    one of ``subjects`` (all when None): what a user whose scans lack one of the task's
    inputs can run instead.

    Args:
        dataset: A :class:`lesionkit.bids.BIDSDataset`.
        task: The task whose inputs are missing.
        subjects: Subject labels to look at, None for all.
    """
    from lesionkit.data import prediction_units
    from lesionkit.model_folder import read_config, task_from_config

    def products(of: Any) -> set[tuple]:
        return {(o.suffix, o.entities) for o in of.outputs}

    found = []
    for name in shipped_names():
        folder = SHIPPED_DIR / name
        other = task_from_config(read_config(folder), folder / "config.yaml")
        if other.name == task.name or not products(other) & products(task):
            continue
        try:
            units = prediction_units(dataset, other)
        except InputError:
            continue
        if any(not subjects or subject in subjects for subject, _, _ in units):
            found.append(name)
    return found


def metric_label(task: Any, metric: str) -> str:
    """A metric's name with its unit (:func:`lesionkit.report.column_label`): the units of
    ``task`` (a Task, whose model folder may predate its units, or a task's name) and of
    the registered task of that name."""
    from lesionkit.report import column_label
    from lesionkit.tasks import TASKS

    name = task if isinstance(task, str) else task.name
    registered = TASKS.get(name)
    units = {**(registered.metric_units if registered is not None else {}),
             **({} if isinstance(task, str) else task.metric_units)}
    return column_label(metric, units)


def _weights(record: dict[str, Any]) -> str:
    """How the provenance ``record`` describes the weights: size, precision, networks."""
    networks = record.get("recipe", {}).get("networks", 1)
    text = f"weights {record['weights_mb']:.1f} MB ({record.get('weights_dtype', 'float32')}"
    return text + (f", {networks} networks averaged)" if networks > 1 else ")")


def describe(name: str, root: Path | None = None) -> list[str]:
    """Lines describing a shipped model: task, training and held-out phantom figures;
    ``root``: the folder holding the model folders (default: the package's)."""
    record = provenance(name, root)
    if not record:
        return [f"{name}: no provenance recorded"]
    training = record["training"]
    lines = [f"{name}: {record['description']}",
             f"  trained on {len(training['subjects'])} phantom subjects of cohort "
             f"{record['cohort']} (seed {record['seed']}, {record['resolution_mm']} mm), "
             f"{training['epochs']} epochs, {training['seconds']:.0f} s on "
             f"{record['machine']['summary']}, lesionkit {record['lesionkit_version']}",
             f"  {_weights(record)}; command: {record['command']}",
             f"  inputs (predict --image KEY=FILE): {_image_keys(name, root)}"]
    held_out = record.get("held_out", {})
    if held_out:
        rescored = record.get("rescored")
        again = f" (scored again {rescored['finished'][:10]})" if rescored else ""
        lines.append(f"  held-out phantom subjects {', '.join(held_out['subjects'])}{again}:")
        for method, values in held_out["summary"].items():
            text = ", ".join(f"{metric_label(name, k)} {v:.4g}" for k, v in values.items()
                             if v is not None)
            if text:
                lines.append(f"    {method}: {text}")
    return lines
