"""Building the shipped models (``make models``): train a recipe, score its held-out
subjects, write the model folder and its ``provenance.json`` (:mod:`lesionkit.shipped`
finds and describes them)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lesionkit.shipped import _NOT_SHIPPED, PROVENANCE, SHIPPED_SEED


def _machine() -> dict[str, Any]:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    model = platform.processor()
    with contextlib.suppress(OSError):
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        model = found.group(1).strip() if found else model
    summary = f"{gpu}" if gpu else f"{cores}-core CPU ({model or 'model unknown'})"
    return {"summary": summary, "cores": cores, "gpu": gpu, "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__}


def held_out_split(subjects: Sequence[str], held_out: int) -> tuple[list[str], list[str]]:
    """(training candidates, held-out) of subject names in numeric order (``99`` before
    ``100``, the order a phantom cohort numbers them): the last ``held_out``."""
    names = sorted(subjects, key=lambda name: (int(name), name) if name.isdigit() else (-1, name))
    return names[:-held_out], names[-held_out:]


def scored_summary(task: Any, data: Path, subjects: Sequence[str], shown: Sequence[str],
                   predictions: Path | None = None) -> dict[str, dict[str, float | None]]:
    """Mean held-out metrics per method (only the ``shown`` columns when given).

    ``predictions``: the predictions folder (default ``DATA/derivatives/lesionkit``).
    """
    from lesionkit.evaluation import evaluate
    from lesionkit.metrics.classification import pr_auc
    from lesionkit.summaries import classification_summary

    _, metrics_json = evaluate(task, data, subjects=list(subjects), predictions=predictions)
    table = json.loads(Path(metrics_json).read_text())
    result = {method: {k: v["mean"] for k, v in values.items() if not shown or k in shown}
              for method, values in table["summary"].items()}
    labelled = [r for r in table["rows"]
                if r.get("label") is not None and r.get("probability") is not None]
    if labelled:  # classification rows: pooled accuracy, sensitivity, specificity, AUCs
        y = [int(r["label"]) for r in labelled]
        p = [float(r["probability"]) for r in labelled]
        pooled = {r["metric"]: (None if r["estimate"] != r["estimate"] else r["estimate"])
                  for r in classification_summary(y, p)}
        pooled["pr_auc"] = pr_auc(y, p) if 0 < sum(y) < len(y) else None
        pooled["positives"], pooled["cases"] = sum(y), len(y)
        result["pooled"] = pooled
        for values in result.values():  # identifiers and inputs of the pooled figures
            for column in ("label", "probability", "lesion"):
                values.pop(column, None)
    return {method: values for method, values in result.items() if values}  # no empty lines


#: Largest magnitude a float16 holds; tensors with larger values stay float32.
_FLOAT16_MAX = 65504.0


def store_half_precision(folder: str | os.PathLike[str]) -> int:
    """Rewrite the network weights under ``folder`` with float32 tensors as float16.

    Halves the package's weights; loading casts them back to the network's float32
    (``load_state_dict`` copies into the existing tensors), so prediction runs as before,
    on weights rounded to 11 significant bits (relative error <= 2^-11). Per-fold fitted
    state (``state.safetensors``), integer tensors and tensors a float16 cannot hold
    (non-finite or beyond +-65504) stay as they are.

    Returns:
        The number of tensors converted.
    """
    import torch

    from lesionkit.model_folder import load_tensors, save_tensors

    converted = 0
    for path in sorted(Path(folder).rglob("weights.safetensors")):
        tensors = load_tensors(path)
        for key, tensor in tensors.items():
            if tensor.dtype != torch.float32 or tensor.numel() == 0:
                continue
            if bool(torch.isfinite(tensor).all()) and float(tensor.abs().max()) <= _FLOAT16_MAX:
                tensors[key] = tensor.half()
                converted += 1
        save_tensors(tensors, path)
    return converted


def _cohort(recipe: Any, work: Path, seed: int,
            workers: int) -> tuple[Any, Path, str | None, list[str], list[str]]:
    """(task, data, prepare's line, training subjects, held-out subjects) of a recipe:
    its phantom cohort simulated under ``work`` (kept when it is there at its size) and
    its ``prepare`` step run."""
    from lesionkit.bids import BIDSDataset
    from lesionkit.data import training_subjects
    from lesionkit.simulate import simulate_cohort
    from lesionkit.tasks import get_task

    task = replace(get_task(recipe.task), **dict(recipe.overrides))
    data = work / "phantom" / recipe.cohort
    if len(list(data.glob("sub-*"))) != recipe.subjects:  # absent, or another size
        simulate_cohort(recipe.cohort, data, subjects=recipe.subjects, seed=seed,
                        resolution=recipe.resolution, workers=workers)
    prepared = recipe.prepare(data) if recipe.prepare is not None else None
    everyone = [p.name[4:] for p in data.glob("sub-*")]
    _, held_out = held_out_split(everyone, recipe.held_out)
    training = [s for s in training_subjects(BIDSDataset(data), task) if s not in held_out]
    return task, data, prepared, training, held_out


def _held_out_figures(folder: Path, task: Any, recipe: Any, data: Path,
                      held_out: list[str]) -> dict[str, Any]:
    """Store ``folder``'s weights at half precision, then predict and score the held-out
    subjects with it, as it ships."""
    from lesionkit.infer import predict

    store_half_precision(folder)
    predict(folder, data, tta=recipe.tta, subjects=held_out, progress=False)
    summary = scored_summary(task, data, held_out, recipe.shown)
    weights = sum(p.stat().st_size for p in folder.rglob("*.safetensors"))
    return {"held_out": {"subjects": held_out, "summary": summary},
            "weights_mb": round(weights / 2**20, 2), "weights_dtype": "float16"}


def _swap_in(source: Path, out_root: Path, name: str, finish: Any) -> Path:
    """Copy ``source`` (without resume state) beside ``out_root/name``, let
    ``finish(copy)`` complete it, then replace ``out_root/name`` with it whole: an
    interrupted build never leaves a shipped folder half-copied or without its
    provenance."""
    target = out_root / name
    staging = out_root / f".{name}.{os.getpid()}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns(*_NOT_SHIPPED))
        finish(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # nothing half-written stays behind
        raise
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


def build_model(recipe: Any, out_root: str | os.PathLike[str], work: str | os.PathLike[str],
                seed: int = SHIPPED_SEED, threads: int | None = None,
                command: str = "make models", workers: int = 0) -> Path:
    """Train one shipped model from its recipe and write it with its provenance.

    Simulates the recipe's phantom cohort (its resolution, ``seed``) under ``work``, runs its
    ``prepare`` step, trains on every subject but the last ``held_out`` (one seeded
    validation split among them, or the recipe's ``networks`` folds), copies the model
    folder without resume state and with its weights at half precision
    (:func:`store_half_precision`) to ``out_root/NAME`` (replacing an earlier one), and
    scores the held-out subjects with the copy, as it ships.

    Args:
        recipe: A :class:`~lesionkit.tasks.task.DemoStep` (subjects, held-out count,
            overrides, epochs, examples per epoch, networks).
        out_root: Folder receiving ``NAME/`` (the package's ``shipped_models``).
        work: Scratch folder for the cohort and the full model folder.
        seed: Seed of the phantom cohort and of training.
        threads: Torch threads recorded in the provenance (set by the caller).
        command: The command recorded as having produced the model.
        workers: Processes that simulate the cohort and load training data (0: none).

    Returns:
        The shipped model folder.
    """
    from lesionkit import __version__
    from lesionkit.training import train

    work = Path(work)
    task, data, prepared, training, held_out = _cohort(recipe, work, seed, workers)
    model_dir = work / "models" / task.name
    start = time.perf_counter()
    train(task, data, model_dir, folds=recipe.networks, epochs=recipe.epochs, seed=seed,
          patches_per_epoch=recipe.examples_per_epoch, subjects=training, device="auto",
          overwrite=True, progress=False, workers=workers)
    seconds = time.perf_counter() - start

    def finish(staging: Path) -> None:
        record = {
            "name": task.name, "description": task.description,
            "lesionkit_version": __version__, "command": command,
            "cohort": recipe.cohort, "seed": seed, "resolution_mm": recipe.resolution,
            "prepare": prepared,
            "recipe": {"subjects": recipe.subjects, "held_out": recipe.held_out,
                       "epochs": recipe.epochs, "examples_per_epoch": recipe.examples_per_epoch,
                       "tta": recipe.tta, "networks": recipe.networks,
                       "overrides": json.loads(json.dumps(dict(recipe.overrides), default=str))},
            "training": {"subjects": training, "epochs": recipe.epochs,
                         "seconds": round(seconds, 1), "threads": threads,
                         "workers": workers},
            **_held_out_figures(staging, task, recipe, data, held_out),
            "machine": _machine(),
            "python_command": " ".join(sys.argv),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        (staging / PROVENANCE).write_text(json.dumps(record, indent=2) + "\n")

    return _swap_in(model_dir, Path(out_root), task.name, finish)


def rescore_model(recipe: Any, out_root: str | os.PathLike[str], work: str | os.PathLike[str],
                  seed: int = SHIPPED_SEED, command: str = "make models",
                  workers: int = 0) -> Path:
    """Score an already built model folder ``out_root/NAME`` again on its held-out
    phantom subjects, with its weights stored at half precision, without training.

    The cohort is simulated again from the recipe and ``seed``; its held-out subjects
    must be those the provenance names. The provenance's figures are replaced and the
    former ones kept under ``rescored``, with the command, machine and time.

    Raises:
        ValueError: The folder has no provenance, or the cohort's held-out subjects are
            not the recorded ones.
    """
    work, out_root = Path(work), Path(out_root)
    source = out_root / recipe.task
    path = source / PROVENANCE
    if not path.is_file():  # before simulating anything
        raise ValueError(f"{source}: expected a shipped model folder with {PROVENANCE}, "
                         "found none")
    record = json.loads(path.read_text())
    task, data, _, _, held_out = _cohort(recipe, work, seed, workers)
    if record["held_out"]["subjects"] != held_out:
        raise ValueError(f"{source}: expected the held-out subjects "
                         f"{record['held_out']['subjects']}, found {held_out} in {data}")

    def finish(staging: Path) -> None:
        before = {k: record.get(k) for k in ("held_out", "weights_mb", "weights_dtype")}
        record.update(_held_out_figures(staging, task, recipe, data, held_out))
        record["rescored"] = {"command": command, "before": before,
                              "machine": _machine()["summary"],
                              "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        (staging / PROVENANCE).write_text(json.dumps(record, indent=2) + "\n")

    return _swap_in(source, out_root, task.name, finish)
