"""Cross-validation of a task's arms on the same seeded subject-level folds.

Every arm (a variant of the task: ``Task.arms``) trains through the one trainer on the
same folds, stratified by the subject label where the task has one, for a fixed number
of epochs with the last weights kept: no model selection on held-out subjects. Each
arm's model folder then predicts every subject with the folds that did not train on it
(out-of-fold predictions, subject or lesion rows), the task's evaluation scores them,
and the arms are compared on the same subjects:

- classification rows (``label`` and ``probability`` columns): accuracy, sensitivity,
  specificity with Clopper-Pearson intervals and ROC AUC with a bootstrap interval
  (:func:`lesionkit.summaries.classification_summary`); between arms McNemar mid-p and
  the paired bootstrap of the AUC difference;
- every numeric metric column: the mean with a bootstrap interval; between arms the
  Wilcoxon signed-rank test on paired rows.

Layout of ``OUT``: ``arm-<name>/model`` (model folder), ``arm-<name>/predictions``
(BIDS derivatives and the metric tables), ``comparison.json`` and ``report.html``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lesionkit import __version__
from lesionkit.bids import BIDSDataset, check_output_place
from lesionkit.data import session_examples, subject_labels, training_subjects
from lesionkit.distributed import process_rank, trainer_flags
from lesionkit.evaluation import evaluate, report_sections, scored_units, write_task_viewer
from lesionkit.infer import predict
from lesionkit.io import InputError, write_json
from lesionkit.model_folder import read_config
from lesionkit.splits import kfold_subjects
from lesionkit.summaries import (
    classification_summary,
    metric_summary,
    paired_comparison,
    paired_metrics,
)
from lesionkit.tasks.task import LabelSpec, Task, dataset_is_phantom
from lesionkit.training import train
from lesionkit.units import example_unit, unit_scope

#: Columns of classification rows that are not metrics.
CASE_COLUMNS = ("label", "probability", "fold", "lesion")


def _finished(model_dir: Path, splits: list[dict], epochs: int, register: bool = False,
              session: str | None = None) -> bool:
    """Whether an arm's model folder is complete with the same folds, epochs, registration
    and session."""
    if not (model_dir / "config.yaml").is_file():
        return False
    try:
        config = read_config(model_dir)
    except (OSError, InputError):  # replaced at this moment (another process of a DDP run)
        return False
    return (config["training"].get("complete", False)
            and config["training"]["epochs"] == epochs
            and config["training"].get("register", False) == register
            and config["training"].get("session") == session
            and [e["train"] for e in config["folds"]] == [s["train"] for s in splits])


def _case(row: dict) -> tuple:
    return (row.get("participant_id"), row.get("session_id"), row.get("run"), row.get("lesion"),
            str(row.get("method", "all")))


def _arm_summary(rows: list[dict], seed: int) -> dict[str, Any]:
    labelled = [r for r in rows if r.get("label") is not None and r.get("probability") is not None]
    metrics = [{k: v for k, v in r.items() if k not in CASE_COLUMNS} for r in rows]
    return {"classification": classification_summary([r["label"] for r in labelled],
                                                     [r["probability"] for r in labelled],
                                                     seed=seed) if labelled else [],
            "metrics": metric_summary(metrics, seed=seed), "cases": len(rows)}


def _pair(a: list[dict], b: list[dict], seed: int) -> dict[str, Any]:
    index_a = {_case(r): r for r in a if r.get("probability") is not None}
    index_b = {_case(r): r for r in b if r.get("probability") is not None}
    shared = [k for k in index_a if k in index_b and index_a[k].get("label") is not None]
    result: dict[str, Any] = {}
    if shared:
        result["classification"] = paired_comparison(
            [index_a[k]["label"] for k in shared], [index_a[k]["probability"] for k in shared],
            [index_b[k]["probability"] for k in shared], seed=seed)
    strip = [[{k: v for k, v in r.items() if k not in ("label", "probability", "fold")}
              for r in rows] for rows in (a, b)]
    result["metrics"] = paired_metrics(*strip)
    return result


def _paired_row(pair: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """A row of the report's paired tables: the two arms, then the test's figures, with
    McNemar's discordant counts (``b``, ``c``) named for the arm that alone was right."""
    names = {"b": "right only with a", "c": "right only with b"}
    return {"arm a": pair["a"], "arm b": pair["b"],
            **{names.get(k, k): v for k, v in result.items()}}


def crossval(
    task: Task,
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    folds: int = 4,
    arms: Sequence[str] | None = None,
    epochs: int | None = None,
    seed: int = 0,
    device: str = "auto",
    devices: int = 1,
    nodes: int = 1,
    amp: bool = False,
    compile_network: bool = False,
    patches_per_epoch: int | None = None,
    source_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    weights: str | os.PathLike[str] | None = None,
    tta: int | None = None,
    workers: int = 0,
    progress: bool = True,
    trusted: tuple[str, ...] = (),
    register: bool = False,
    session: str | None = None,
    all_sessions: bool = False,
    max_minutes: float | None = None,
) -> Path:
    """Cross-validate the task's arms on the same folds; write the comparison and report.

    Args:
        task: The task; its ``arms`` name the variants (default: the task alone).
        data_dir: BIDS dataset with the task's inputs and targets.
        out_dir: Output folder.
        folds: K of the K-fold cross-validation (stratified by the subject label).
        arms: Arms to run (default: every arm of the task, else the task itself).
        epochs: Fixed epochs per fold (default: the task's ``max_epochs``).
        seed: Seed of folds, initialisation and data order.
        device: "auto", "cpu" or "cuda".
        devices: Training processes per machine (CUDA devices or CPU processes).
        nodes: Training machines. With more than one process in all every process
            trains every arm; global rank 0 alone then predicts, scores and reports.
        amp: Mixed precision in training.
        compile_network: Train through ``torch.compile``.
        patches_per_epoch: Cap on training examples per epoch.
        source_dir: Dataset that arms with a ``pretraining`` task pretrain on (a list:
            one per pretraining stage, in order).
        weights: Weights file of arms that initialise from a file (e.g. MedicalNet).
        tta: Mirror flips at prediction (default: the task's).
        workers: Worker processes loading subjects.
        progress: Show progress.
        trusted: Modules outside lesionkit whose hook functions and strategy classes the
            arms name (an experiment's own training step, say); their model folders are
            read back with them trusted (:func:`lesionkit.infer.predict`).
        register: Co-register each subject's images to its first input (dipy) in
            training and prediction instead of trusting their affines.
        session: Longitudinal data: train, predict and score this session of each subject
            (:func:`lesionkit.training.train`).
        all_sessions: Longitudinal data: every session of a subject is a training example,
            the folds are drawn over subjects, and every session is predicted and scored
            by the fold that did not train on its subject.
        max_minutes: Wall time (minutes) after which each fold of each arm stops training
            and keeps its last epoch (folds have no validation subjects); ``metrics.json``
            of the arm's model folder records the epochs each fold reached.

    Returns:
        The path of ``comparison.json``.
    """
    from lesionkit.report import PHANTOM_NOTE, Section, caption, write_report

    chosen = list(arms) if arms else (list(task.arms) or ["default"])
    variants = {a: task if a == "default" and not task.arms else _arm(task, a) for a in chosen}
    dataset, out = BIDSDataset(data_dir), Path(out_dir)
    check_output_place(dataset.root, out, "a cross-validation folder")
    if session is not None and all_sessions:
        raise InputError(f"{dataset.root}: expected --session or --all-sessions, found both "
                         f"(--session {session})")
    with unit_scope(session=session):
        names = training_subjects(dataset, task)
    examples = session_examples(dataset, task, names) if all_sessions else names
    labels = None
    if any(isinstance(t, LabelSpec) for t in task.targets):
        labels = [next(iter(subject_labels(dataset, example_unit(n)[0], task).values()))
                  for n in examples]
    splits = [{"train": s["train"], "validation": [], "held_out": s["validation"]}
              for s in kfold_subjects(examples, max(folds, 2), seed, labels,
                                      dataset.root / "participants.tsv")]
    epochs = epochs or task.max_epochs
    summary: dict[str, Any] = {
        "task": task.name, "arms": {}, "pairs": [], "subjects": len(names), "folds": len(splits),
        "epochs": epochs, "seed": seed, "network": task.network,
        "network_kwargs": {k: str(v) for k, v in task.network_kwargs.items()},
        "learning_rate": task.learning_rate, "batch_size": task.batch_size,
        "command": shlex.join(sys.argv), "lesionkit_version": __version__}
    rows: dict[str, list[dict]] = {}
    sections = []
    for arm in chosen:
        variant = variants[arm]
        source = (source_dir or None) if variant.pretraining is not None else weights
        if variant.initialise is not None and source is None:
            raise InputError(f"arm {arm} of {task.name}: expected "
                             f"{'--source-dir' if variant.pretraining else '--weights'}, "
                             "found none")
    settings = {"device": device, "devices": devices, "nodes": nodes, "amp": amp}
    # Every arm trains first: under DDP all processes train, then rank 0 alone goes on.
    for arm in chosen:
        variant, model_dir = variants[arm], out / f"arm-{arm}" / "model"
        source = (source_dir or None) if variant.pretraining is not None else weights
        if not _finished(model_dir, splits, epochs, register, session):
            train(variant, dataset.root, model_dir, epochs=epochs, seed=seed, **settings,
                  compile_network=compile_network, patches_per_epoch=patches_per_epoch,
                  subjects=names, progress=progress, workers=workers, source=source,
                  splits=splits, overwrite=True, register=register, session=session,
                  all_sessions=all_sessions, max_minutes=max_minutes)
    if process_rank(trainer_flags(**settings))[0] != 0:
        return out / "comparison.json"
    note = PHANTOM_NOTE if dataset_is_phantom(dataset.root) else None
    viewers: dict[str, str] = {}  # URL relative to the report -> link text
    for number, arm in enumerate(chosen, start=1):
        variant, arm_dir = variants[arm], out / f"arm-{arm}"
        model_dir, predicted = arm_dir / "model", arm_dir / "predictions"
        predict(model_dir, dataset.root, tta=tta, device=device, subjects=names,
                progress=progress, out_dir=predicted, trusted=trusted, register=register,
                sessions=[session] if session else None)
        _, metrics_json = evaluate(variant, dataset.root, names, predictions=predicted)
        table = json.loads(metrics_json.read_text())
        rows[arm] = table["rows"]
        summary["arms"][arm] = _arm_summary(rows[arm], seed)
        summary["arms"][arm]["training"] = json.loads((model_dir / "metrics.json").read_text())
        if variant.report_sections is not None:
            for section in report_sections(variant, dataset.root, predicted, table):
                sections.append(replace(section, title=f"arm {arm}: {section.title}"))
        viewer = write_task_viewer(variant, predicted, scored_units(table),
                                   arm_dir / "viewer.html", note)
        if viewer is not None:
            viewers[f"arm-{arm}/viewer.html"] = f"arm {arm}"
        if progress:
            print(f"crossval {task.name}: arm {arm} ({number}/{len(chosen)}) done")
    curves = {caption("training loss per epoch, one curve per fold", "training subjects of "
                      "each fold", f"arm {arm} of {task.name}"): figure
              for arm in chosen if (figure := training_curves(out / f"arm-{arm}" / "model"))}
    for i, a in enumerate(chosen):
        for b in chosen[i + 1:]:
            summary["pairs"].append({"a": a, "b": b, **_pair(rows[a], rows[b], seed)})
    path = write_json(summary, out / "comparison.json")
    tables = {"classification (out of fold)": [
        {"arm": a, **r} for a, e in summary["arms"].items() for r in e["classification"]],
        "metrics (out of fold)": [{"arm": a, **r} for a, e in summary["arms"].items()
                                  for r in e["metrics"]],
        "paired tests": [_paired_row(p, p["classification"]) for p in summary["pairs"]
                         if "classification" in p],
        "paired metric tests": [_paired_row(p, r) for p in summary["pairs"]
                                for r in p["metrics"]]}
    text = (f"{len(names)} subjects, {len(splits)}-fold cross-validation (seed {seed}), "
            f"{epochs} epochs per fold with the last weights, arms {', '.join(chosen)}. "
            "Every subject is predicted by the fold that did not train on it. Proportions "
            "with Clopper-Pearson 95 % intervals, ROC AUC and metric means with bootstrap "
            "intervals; pairs: McNemar mid-p, paired AUC bootstrap, Wilcoxon signed-rank. "
            f"Command: {summary['command']}")
    write_report(out / "report.html", f"lesionkit crossval {task.name}",
                 [Section("Cross-validation", text, {k: v for k, v in tables.items() if v}),
                  Section("Training curves", "Mean training loss of each epoch, one curve "
                          "per fold (the loss of the task, on its training examples with "
                          "augmentation).", figures=curves),
                  *sections,
                  *([Section("Interactive viewers", "Every map each arm predicted for the "
                             "first subject, out of fold, over its input (NiiVue, embedded in "
                             "each page: it opens from disk with no network).",
                             links=viewers)] if viewers else [])],
                 data_note=note)
    return path


def training_curves(model_dir: Path) -> Any:
    """Training (and, where logged, validation) loss per epoch of every fold, one figure.

    Returns None when no fold has a ``metrics.csv`` row.
    """
    import numpy as np
    import pandas as pd

    from lesionkit.report import curve_figure

    frames = {path.parent.name: pd.read_csv(path)
              for path in sorted(Path(model_dir).glob("fold-*/metrics.csv"))}
    frames = {k: f for k, f in frames.items() if len(f)}
    if not frames:
        return None
    epochs = np.arange(max(int(f["epoch"].max()) for f in frames.values()) + 1)
    curves = {}
    for fold, frame in frames.items():
        for column, what in (("train_loss", "training"), ("val_loss", "validation")):
            values = frame.set_index("epoch")[column].reindex(epochs) if column in frame else None
            if values is not None and values.notna().any():
                curves[f"{fold} {what}"] = values.to_numpy(float)
    return curve_figure(epochs + 1, curves, "epoch", "loss") if curves else None


def _arm(task: Task, name: str) -> Task:
    try:
        return task.arm(name)
    except KeyError as error:
        raise InputError(str(error.args[0])) from error
