"""Subject classification under stratified k-fold cross-validation, and paired arm tests.

Folds are by subject and stratified by the class label (scikit-learn's
``StratifiedKFold``), so each held-out fold keeps the patient:control ratio. Every
subject is predicted exactly once, by the fold that did not train on it; the pooled
out-of-fold predictions are scored once:

- accuracy, sensitivity and specificity with exact Clopper-Pearson 95 % intervals
  (``lesionkit.stats.clopper_pearson``);
- ROC AUC with a stratified bootstrap 95 % interval and a p-value against chance
  (``lesionkit.stats.paired_auc_bootstrap`` of the scores against a constant score,
  whose AUC is exactly 0.5 in every resample);
- arms compared on the same subjects: McNemar mid-p on per-subject correctness
  (``lesionkit.stats.mcnemar_midp``) and the paired bootstrap of the AUC difference.

Example:
    >>> folds = stratified_folds(["01", "02", "03", "04"], [1, 0, 1, 0], folds=2, seed=0)
    >>> sorted(len(f["test"]) for f in folds)
    [2, 2]
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.io import InputError
from lesionkit.metrics import roc_auc
from lesionkit.stats import (
    StatResult,
    clopper_pearson,
    discordant_pairs,
    mcnemar_midp,
    paired_auc_bootstrap,
)

__all__ = [
    "classification_summary",
    "compare_arms",
    "paired_comparison",
    "stratified_folds",
]


def stratified_folds(subjects: Sequence[str], labels: Sequence[int], folds: int, seed: int
                     ) -> list[dict[str, list[str]]]:
    """Seeded subject-level folds stratified by class label.

    Args:
        subjects: Subject labels (without ``sub-``), one per subject.
        labels: Class index of each subject (e.g. 0 control, 1 patient).
        folds: Number of folds K (>= 2); every class needs at least K subjects.
        seed: Shuffling seed.

    Returns:
        K dicts ``{"train": [...], "test": [...]}``; every subject is in exactly one test part.

    Raises:
        InputError: fewer subjects of a class than folds, or mismatched lengths.
    """
    from sklearn.model_selection import StratifiedKFold

    if len(subjects) != len(labels):
        raise InputError(f"expected one label per subject, found {len(labels)} labels for "
                         f"{len(subjects)} subjects")
    order = np.argsort(np.asarray(subjects))
    names, y = np.asarray(subjects)[order], np.asarray(labels, dtype=int)[order]
    smallest = int(np.bincount(y).min()) if len(np.unique(y)) > 1 else 0
    if folds < 2 or smallest < folds:
        raise InputError(f"expected at least {max(folds, 2)} subjects of each class for "
                         f"{folds} stratified folds, found class counts {np.bincount(y).tolist()}")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [{"train": sorted(names[tr].tolist()), "test": sorted(names[te].tolist())}
            for tr, te in splitter.split(names, y)]


def _row(name: str, result: StatResult, k: int | None = None, n: int | None = None
         ) -> dict[str, Any]:
    row: dict[str, Any] = {"metric": name, "estimate": result.estimate,
                           "ci_low": result.ci_low, "ci_high": result.ci_high,
                           "method": result.method}
    if k is not None:
        row.update(k=k, n=n)
    return row


def classification_summary(y_true: Sequence[int], score: Sequence[float],
                           threshold: float = 0.5, n_resamples: int = 2000, seed: int = 0
                           ) -> list[dict[str, Any]]:
    """Accuracy, sensitivity, specificity and ROC AUC of pooled predictions, with 95 % CIs.

    Args:
        y_true: True class per subject (1 = patient).
        score: Probability of the patient class (0-1) per subject.
        threshold: A subject is called a patient when ``score >= threshold``.
        n_resamples: Bootstrap resamples of the AUC interval.
        seed: Bootstrap seed.

    Returns:
        One row per metric: metric, estimate, ci_low, ci_high, method (and k, n for the
        proportions; p against chance for the AUC). The AUC row is NaN with one class only.
    """
    y = np.asarray(y_true, dtype=int)
    s = np.asarray(score, dtype=np.float64)
    predicted = (s >= threshold).astype(int)
    correct = int((predicted == y).sum())
    tp, positives = int(((predicted == 1) & (y == 1)).sum()), int((y == 1).sum())
    tn, negatives = int(((predicted == 0) & (y == 0)).sum()), int((y == 0).sum())
    rows = [_row("accuracy", clopper_pearson(correct, int(y.size)), correct, int(y.size)),
            _row("sensitivity", clopper_pearson(tp, positives), tp, positives),
            _row("specificity", clopper_pearson(tn, negatives), tn, negatives)]
    if positives and negatives:
        versus_chance = paired_auc_bootstrap(y, s, np.zeros_like(s), n_resamples, seed)
        auc = roc_auc(y, s)
        row = _row("roc_auc", StatResult(auc, versus_chance.ci_low + 0.5,
                                         versus_chance.ci_high + 0.5,
                                         method="stratified-bootstrap-percentile"))
        row["p_vs_chance"] = versus_chance.p
    else:
        row = _row("roc_auc", StatResult(float("nan"), method="undefined: one class only"))
    return [*rows, row]


def paired_comparison(y_true: Sequence[int], score_a: Sequence[float], score_b: Sequence[float],
                      threshold: float = 0.5, n_resamples: int = 2000, seed: int = 0
                      ) -> dict[str, Any]:
    """Compare two arms' predictions on the same subjects.

    McNemar mid-p on per-subject correctness: ``b`` subjects right under A and wrong
    under B, ``c`` the reverse. Paired stratified bootstrap of AUC_A - AUC_B.

    Args:
        y_true: True class per subject (1 = patient).
        score_a: Patient probability of arm A, same subject order.
        score_b: Patient probability of arm B.
        threshold: Decision threshold on the probabilities.
        n_resamples: Bootstrap resamples.
        seed: Bootstrap seed.

    Returns:
        ``{"accuracy_difference", "b", "c", "mcnemar_midp", "auc_difference",
        "auc_difference_ci_low", "auc_difference_ci_high", "auc_p"}`` (AUC entries NaN
        with one class only).
    """
    y = np.asarray(y_true, dtype=int)
    a, b = np.asarray(score_a, dtype=np.float64), np.asarray(score_b, dtype=np.float64)
    if not a.shape == b.shape == y.shape:
        raise InputError(f"expected paired predictions of {y.size} subjects, found "
                         f"{a.size} and {b.size}")
    correct_a, correct_b = (a >= threshold) == y, (b >= threshold) == y
    only_a, only_b = discordant_pairs(correct_a, correct_b)
    test = mcnemar_midp(only_a, only_b)
    result: dict[str, Any] = {"accuracy_difference": float(correct_a.mean() - correct_b.mean()),
                              "b": only_a, "c": only_b, "mcnemar_midp": test.p}
    nan = float("nan")
    auc = (paired_auc_bootstrap(y, a, b, n_resamples, seed) if 0 < y.sum() < y.size
           else StatResult(nan, nan, nan, p=nan))
    result.update(auc_difference=auc.estimate, auc_difference_ci_low=auc.ci_low,
                  auc_difference_ci_high=auc.ci_high, auc_p=auc.p)
    return result


def _held_out(task: Any, network: Any, subject: Any, stats: dict, lesion: np.ndarray | None,
              cam_file: Path) -> dict[str, Any]:
    """Patient probability of a held-out subject; for patients its CAM, Heat-Score, energy."""
    import torch

    from lesionkit.bids import save_derivative
    from lesionkit.data import example, normalise
    from lesionkit.explain import cam_volume, energy_fraction, grad_cam, heat_score
    from lesionkit.volume import Volume

    x = example(normalise(subject, stats), task)["input"][None]
    device = next(network.parameters()).device
    with torch.no_grad():
        p = float(torch.softmax(network(x.to(device)), dim=1)[0, 1])
    row: dict[str, Any] = {"p_patient": p, "heat_score": None, "energy_fraction": None}
    if lesion is not None and lesion.any():
        cam = grad_cam(network, x, class_index=1)
        brain = subject["mask"].data[0].numpy() > 0
        image = subject[task.inputs[0].key]
        like = Volume(image.data[0].numpy(), np.asarray(image.affine), kind="intensity")
        save_derivative(cam_volume(cam, like), cam_file, {"ClassExplained": "patient"})
        row.update(heat_score=heat_score(cam, lesion, brain),
                   energy_fraction=energy_fraction(cam, lesion, brain))
    return row


def _finished_arm(arm_dir: Path, names: list[str], epochs: int, splits: list[dict]
                  ) -> tuple[dict, list] | None:
    """Rows and timings of an arm finished earlier with the same subjects, folds and epochs."""
    import pandas as pd

    from lesionkit.model_folder import read_config

    if not (arm_dir / "predictions.tsv").is_file() or not (arm_dir / "config.yaml").is_file():
        return None
    config = read_config(arm_dir)
    same = (config["data"]["subjects"] == names and config["training"]["epochs"] == epochs
            and [e["validation"] for e in config["folds"]] == [s["test"] for s in splits])
    if not same:
        return None
    table = pd.read_csv(arm_dir / "predictions.tsv", sep="\t")
    table = table.astype(object).where(table.notna(), None)
    rows = {r["participant_id"][4:]: r for r in table.to_dict("records")}
    return rows, config["training"].get("timings", [])


def compare_arms(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    arms: Sequence[str] = ("scratch", "segmentation"),
    folds: int = 4,
    epochs: int = 3,
    task: Any = None,
    weights: Mapping[str, str | os.PathLike[str]] | None = None,
    source_dir: str | os.PathLike[str] | None = None,
    pretrain: Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> Path:
    """Cross-validate transfer arms on the same stratified folds and compare them.

    Every arm trains on the same folds with the same seeds and data order; only the
    initialisation differs. Each arm becomes a model folder ``OUT/arm-<name>`` (its
    folds' ``validation`` lists are the held-out subjects, so ``explain`` uses the fold
    that did not train on a subject) holding ``predictions.tsv`` (out-of-fold patient
    probabilities, Heat-Score and energy fraction of patients) and Grad-CAM maps under
    ``cams/``. ``OUT/comparison.json`` holds the metrics with CIs per arm, Heat-Score
    summaries and the paired tests of every pair of arms.

    Args:
        data_dir: BIDS dataset with the task's input, brain masks and participants groups.
        out_dir: Output folder.
        arms: Names from ``lesionkit.transfer.ARMS``.
        folds: K of the stratified K-fold cross-validation.
        epochs: Fixed epochs per fold (no early stopping on held-out subjects).
        task: The classification task (default: fcd-classify on FLAIR, ResNet-18).
        weights: Arm -> weights file (segmentation encoder or MedicalNet checkpoint).
        source_dir: Segmentation cohort (e.g. a ``mrf-lesion`` phantom) used to pretrain
            the encoder when ``weights`` has no ``"segmentation"`` entry.
        pretrain: Keyword arguments of ``lesionkit.transfer.pretrain_encoder``.
        seed: Seed of folds, initialisation and data order.
        device: "cpu" or "cuda".
        progress: Show progress bars.

    Returns:
        The path of ``comparison.json``.
    """
    from lesionkit import __version__
    from lesionkit.bids import BIDSDataset
    from lesionkit.data import available_subjects, load_subject
    from lesionkit.explain import summarise_heat_scores
    from lesionkit.io import load_volume, write_json, write_tsv
    from lesionkit.model_folder import task_fields, write_config
    from lesionkit.tasks import get_task
    from lesionkit.transfer import ARMS, fit_classifier, pretrain_encoder

    task = task or get_task("fcd-classify")
    out, weights = Path(out_dir), dict(weights or {})
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise InputError(f"expected transfer arms from {ARMS}, found {unknown}")
    if "segmentation" in arms and "segmentation" not in weights:
        if source_dir is None:
            raise InputError("the segmentation arm needs an encoder file or a source_dir "
                             "(a phantom cohort with lesion masks, e.g. mrf-lesion)")
        weights["segmentation"] = pretrain_encoder(
            source_dir, out / "encoder-segmentation.safetensors", task.network,
            task.network_kwargs, task.inputs[0].suffix, seed=seed, progress=progress,
            **dict(pretrain or {}))
    if "medicalnet" in arms and "medicalnet" not in weights:
        raise InputError("the medicalnet arm needs a MedicalNet checkpoint file (weights)")
    dataset = BIDSDataset(data_dir)
    names = available_subjects(dataset, task)
    subjects = {n: load_subject(dataset, n, task) for n in names}
    labels = [int(subjects[n][task.targets[0].key]) for n in names]
    lesions = {}
    for n in names:
        found = dataset.find(subject=n, suffix="mask", derivatives="phantom", label="lesion")
        lesions[n] = load_volume(found[0].path, kind="label").data > 0.5 if found else None
    splits = stratified_folds(names, labels, folds, seed)
    predictions: dict[str, dict[str, dict]] = {}
    summary: dict[str, Any] = {"arms": {}, "pairs": [], "subjects": len(names), "folds": folds,
                               "epochs": epochs, "task": task.name, "network": task.network,
                               "network_kwargs": dict(task.network_kwargs), "seed": seed,
                               "learning_rate": task.learning_rate,
                               "batch_size": task.batch_size,
                               "augment": list(task.sampler.augment),
                               "weights": {k: str(v) for k, v in weights.items()},
                               "command": shlex.join(sys.argv), "lesionkit_version": __version__}
    for arm in arms:
        arm_dir, entries, rows, timings = out / f"arm-{arm}", [], {}, []
        done = _finished_arm(arm_dir, names, epochs, splits)
        for k, split in enumerate([] if done else splits):
            network, stats, info = fit_classifier(
                task, [subjects[n] for n in split["train"]], arm_dir / f"fold-{k}", arm,
                weights.get(arm), seed + k, epochs, device, progress)
            timings.append(info)
            entries.append({"fold": k, "train": split["train"], "validation": split["test"],
                            "normalisation": stats})
            for n in split["test"]:
                rows[n] = {"participant_id": f"sub-{n}", "label": int(subjects[n][
                    task.targets[0].key]), "fold": k, **_held_out(
                    task, network, subjects[n], stats, lesions[n],
                    arm_dir / "cams" / f"sub-{n}_desc-gradcam_probseg.nii.gz")}
                rows[n]["correct"] = int((rows[n]["p_patient"] >= 0.5) == rows[n]["label"])
        if done:
            rows, timings = done
        else:
            write_config(arm_dir, {"lesionkit_version": __version__, "task": task.name,
                                   "task_fields": task_fields(task), "in_channels": 1,
                                   "seed": seed,
                                   "data": {"root": str(dataset.root), "subjects": names},
                                   "training": {"epochs": epochs, "folds": folds, "arm": arm,
                                                "weights": str(weights.get(arm)),
                                                "timings": timings},
                                   "folds": entries})
            write_tsv([rows[n] for n in names], arm_dir / "predictions.tsv")
        predictions[arm] = rows
        patients = [r for r in rows.values() if r["heat_score"] is not None]
        heat = summarise_heat_scores([r["heat_score"] for r in patients],
                                     [bool(r["correct"]) for r in patients],
                                     [r["energy_fraction"] for r in patients])
        summary["arms"][arm] = {
            "metrics": classification_summary([rows[n]["label"] for n in names],
                                              [rows[n]["p_patient"] for n in names], seed=seed),
            "heat_score": vars(heat), "folds": timings}
    for i, a in enumerate(arms):
        for b in arms[i + 1:]:
            summary["pairs"].append({"a": a, "b": b, **paired_comparison(
                labels, [predictions[a][n]["p_patient"] for n in names],
                [predictions[b][n]["p_patient"] for n in names], seed=seed)})
    return write_json(summary, out / "comparison.json")
