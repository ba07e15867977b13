"""Inference: strategies, mirror test-time augmentation, fold ensembles, uncertainty.

Every prediction is the mean over (folds x flips); the voxel-wise standard deviation
over the same set is written beside it as an uncertainty map, in the output's unit.
Inputs are normalised with each fold's training statistics and outputs inverted back
to physical units before averaging.
"""

from __future__ import annotations

import itertools
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lesionkit.bids import BIDSDataset, bids_path, derivatives_root, save_derivative
from lesionkit.data import apply_normalisation, available_subjects, invert
from lesionkit.io import InputError, load_volume, write_json, write_tsv
from lesionkit.model_folder import TrainedModel, load_model
from lesionkit.tasks.task import Task

SPATIAL_AXES = (2, 3, 4)


def flips(count: int) -> list[tuple[int, ...]]:
    """The first ``count`` (1-8) mirror flips of a (B, C, X, Y, Z) tensor; () is identity."""
    if not 1 <= count <= 8:
        raise ValueError(f"test-time augmentation takes 1 to 8 flips, found {count}")
    every = [axes for n in range(4) for axes in itertools.combinations(SPATIAL_AXES, n)]
    return every[:count]


def sliding_window(network: nn.Module, x: torch.Tensor, task: Task) -> torch.Tensor:
    """Sliding-window inference with Gaussian blending (MONAI) at the task's window size."""
    from monai.inferers import sliding_window_inference

    window = task.inference_window or task.sampler.patch_size
    return sliding_window_inference(x, window, sw_batch_size=32 if max(window) <= 64 else 2,
                                    predictor=network, overlap=task.inference_overlap,
                                    mode="gaussian")


def whole_volume(network: nn.Module, x: torch.Tensor, task: Task) -> torch.Tensor:
    """One forward pass over the whole volume."""
    return network(x)


def per_lesion(network: nn.Module, x: torch.Tensor, task: Task) -> torch.Tensor:
    """Lesion-centred patches, one prediction per lesion (arrives with rim-classify)."""
    raise NotImplementedError("per-lesion inference arrives with the rim-classify task")


STRATEGIES: dict[str, Callable[[nn.Module, torch.Tensor, Task], torch.Tensor]] = {
    "sliding_window": sliding_window,
    "whole_volume": whole_volume,
    "per_lesion": per_lesion,
}

ACTIVATIONS: dict[str | None, Callable[[torch.Tensor], torch.Tensor]] = {
    None: lambda y: y,
    "sigmoid": torch.sigmoid,
    "softmax": lambda y: torch.softmax(y, dim=1),
}


def resolve_device(device: str = "auto") -> str:
    """"auto" -> "cuda" when available, else "cpu"."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def predict_arrays(model: TrainedModel, inputs: dict[str, np.ndarray], tta: int = 1,
                   device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over folds x flips, in the outputs' units.

    Args:
        model: A loaded model folder.
        inputs: Input key -> array (X, Y, Z) or (C, X, Y, Z) in physical units.
        tta: Mirror flips (1-8).
        device: Torch device.

    Returns:
        (mean, std), each (C_out, X, Y, Z) for dense tasks or (C_out,) for subject tasks.
    """
    task = model.task
    strategy, activation = STRATEGIES[task.inference], ACTIVATIONS[task.output_activation]
    predictions = []
    for fold in model.folds:
        channels = []
        for spec in task.inputs:
            array = np.asarray(inputs[spec.key], dtype=np.float32)
            array = array[None] if array.ndim == 3 else array
            stats = fold.normalisation[spec.key]
            channels.append(apply_normalisation(array, stats))
        x = torch.from_numpy(np.concatenate(channels)[None]).to(device)
        for axes in flips(tta):
            with torch.inference_mode():
                y = strategy(fold.network, x.flip(axes) if axes else x, task)
                y = activation(y.flip(axes) if axes and y.ndim == 5 else y)
            y = y[0].float().cpu().numpy()
            predictions.append(np.stack([invert(y[c], fold.normalisation, spec.target)
                                         for c, spec in enumerate(task.outputs)]))
    stacked = np.stack(predictions)
    return stacked.mean(axis=0), stacked.std(axis=0)


def predict(
    model_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    tta: int = 1,
    device: str = "auto",
    subjects: Sequence[str] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Apply a model folder to a BIDS dataset; write ``derivatives/lesionkit``.

    Dense outputs become NIfTI maps on each input's exact grid and affine (plus a
    ``desc-uncertainty`` map); subject-level outputs become one TSV row per subject.

    Returns:
        Paths written.
    """
    from rich.progress import track

    device = resolve_device(device)
    model = load_model(model_dir, device)
    task = model.task
    dataset = BIDSDataset(data_dir)
    names = list(subjects) if subjects else available_subjects(dataset, task, with_targets=False)
    if not names:
        raise InputError(f"{dataset.root}: expected subjects with the inputs of task "
                         f"{task.name} ({', '.join(s.suffix for s in task.inputs)}), found none")
    out_root = derivatives_root(dataset.root)
    sidecar = {"ModelFolder": str(model.path), "Task": task.name, "TestTimeFlips": tta,
               "Folds": len(model.folds), "Command": shlex.join(sys.argv)}
    written, rows = [], []
    for subject in track(names, description="predict", disable=not progress):
        found = [dataset.get(subject, s.suffix, **s.query()) for s in task.inputs]
        volumes = [load_volume(f.path, kind=s.kind, unit=s.unit, ndim=s.ndim)
                   for f, s in zip(found, task.inputs, strict=True)]
        arrays = {s.key: v.data if v.data.ndim == 3 else np.moveaxis(v.data, -1, 0)
                  for s, v in zip(task.inputs, volumes, strict=True)}
        mean, std = predict_arrays(model, arrays, tta, device)
        if mean.ndim == 1:
            values = zip(task.outputs, mean, strict=True)
            rows.append({"participant_id": f"sub-{subject}",
                         **{spec.desc: float(m) for spec, m in values}})
            continue
        reference = volumes[0]
        sources = {**sidecar, "Sources": [str(f.path) for f in found]}
        session = found[0].entities.get("ses")
        for c, spec in enumerate(task.outputs):
            for desc, data in ((spec.desc, mean[c]), ("uncertainty", std[c])):
                path = bids_path(dataset.root, subject, spec.suffix, session=session,
                                 derivatives="lesionkit", desc=desc, **dict(spec.entities))
                volume = reference.with_data(data.astype(np.float32), kind=spec.kind,
                                             unit=spec.unit)
                written.append(save_derivative(volume, path, sources, dtype=np.float32))
    if rows:
        written.append(write_tsv(rows, out_root / f"task-{task.name}_predictions.tsv"))
    return written


def evaluate(task: Task, data_dir: str | os.PathLike[str], subjects: Sequence[str] | None = None,
             out_dir: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """Score written predictions with the task's evaluation; write TSV and JSON tables.

    Args:
        task: The task whose ``evaluate`` function scores the derivatives.
        data_dir: BIDS dataset holding ground truth and ``derivatives/lesionkit``.
        subjects: Subjects to score (default: every subject with predictions).
        out_dir: Where to write (default: ``derivatives/lesionkit``).

    Returns:
        (TSV path, JSON path).
    """
    if task.evaluate is None:
        raise NotImplementedError(f"task {task.name} has no evaluation")
    dataset = BIDSDataset(data_dir)
    names = list(subjects) if subjects else dataset.subjects(derivatives="lesionkit")
    if not names:
        raise InputError(f"{dataset.root / 'derivatives' / 'lesionkit'}: expected predictions "
                         "(run lesionkit predict first), found none")
    rows = task.evaluate(dataset.root, names)
    out = Path(out_dir) if out_dir else derivatives_root(dataset.root)
    tsv = write_tsv(rows, out / f"task-{task.name}_metrics.tsv")
    json_path = write_json({"task": task.name, "subjects": names, "rows": rows,
                            "summary": summarise(rows)}, out / f"task-{task.name}_metrics.json")
    return tsv, json_path


def summarise(rows: Sequence[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean, standard deviation and count of every numeric column, per ``method``."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    methods = sorted({str(r.get("method", "all")) for r in rows})
    for method in methods:
        chosen = [r for r in rows if str(r.get("method", "all")) == method]
        columns = list(dict.fromkeys(k for r in chosen for k, v in r.items()
                                     if isinstance(v, int | float) and not isinstance(v, bool)))
        summary[method] = {}
        for column in columns:
            values = np.array([r[column] for r in chosen if r.get(column) is not None], float)
            values = values[np.isfinite(values)]
            summary[method][column] = {"mean": float(values.mean()) if values.size else None,
                                       "std": float(values.std()) if values.size else None,
                                       "n": int(values.size)}
    return summary


def report(task: Task, data_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
           subjects: Sequence[str] | None = None) -> Path:
    """Write one HTML page: the task's metric tables and figures (evaluates if needed).

    Returns:
        The HTML file (default ``derivatives/lesionkit/task-<name>_report.html``).
    """
    import json

    from lesionkit.report import PHANTOM_NOTE, write_report

    if task.report_sections is None:
        raise NotImplementedError(f"task {task.name} has no report")
    dataset = BIDSDataset(data_dir)
    metrics = derivatives_root(dataset.root) / f"task-{task.name}_metrics.json"
    if subjects or not metrics.is_file():
        _, metrics = evaluate(task, dataset.root, subjects)
    table = json.loads(metrics.read_text())
    description = dataset.root / "dataset_description.json"
    phantom = description.is_file() and "phantom" in description.read_text()
    sections = task.report_sections(dataset.root, table["subjects"], table["rows"])
    path = Path(out) if out else derivatives_root(dataset.root) / f"task-{task.name}_report.html"
    return write_report(path, f"lesionkit {task.name}: {task.description}", sections,
                        data_note=PHANTOM_NOTE if phantom else None)
