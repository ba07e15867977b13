"""Stratified folds, pooled classification metrics with CIs, paired arm comparison."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from conftest import write_fcd_dataset
from lesionkit.crossval import (
    classification_summary,
    compare_arms,
    paired_comparison,
    stratified_folds,
)
from lesionkit.io import InputError
from lesionkit.stats import clopper_pearson, mcnemar_midp
from lesionkit.tasks import get_task

SUBJECTS = [f"{i:02d}" for i in range(1, 13)]
LABELS = [i % 2 for i in range(1, 13)]


def test_folds_partition_subjects_and_keep_the_class_ratio() -> None:
    folds = stratified_folds(SUBJECTS, LABELS, folds=3, seed=4)
    tested = [s for fold in folds for s in fold["test"]]
    assert sorted(tested) == SUBJECTS
    label = dict(zip(SUBJECTS, LABELS, strict=True))
    for fold in folds:
        assert not set(fold["train"]) & set(fold["test"])
        assert sorted(fold["train"] + fold["test"]) == SUBJECTS
        assert sum(label[s] for s in fold["test"]) == 2  # 2 patients, 2 controls per fold
    assert folds == stratified_folds(list(reversed(SUBJECTS)), LABELS[::-1], folds=3, seed=4)
    assert folds != stratified_folds(SUBJECTS, LABELS, folds=3, seed=5)


def test_folds_refuse_too_few_subjects_of_a_class() -> None:
    with pytest.raises(InputError, match="each class"):
        stratified_folds(["01", "02", "03", "04"], [1, 0, 0, 0], folds=2, seed=0)
    with pytest.raises(InputError, match="one label per subject"):
        stratified_folds(["01", "02"], [1], folds=2, seed=0)


def test_summary_counts_and_exact_intervals() -> None:
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    score = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.2, 0.1, 0.4, 0.05, 0.45])
    rows = {r["metric"]: r for r in classification_summary(y, score, n_resamples=500)}
    assert (rows["accuracy"]["k"], rows["accuracy"]["n"]) == (8, 10)
    assert (rows["sensitivity"]["k"], rows["sensitivity"]["n"]) == (3, 4)
    assert (rows["specificity"]["k"], rows["specificity"]["n"]) == (5, 6)
    exact = clopper_pearson(8, 10)
    assert rows["accuracy"]["ci_low"] == pytest.approx(exact.ci_low)
    assert rows["accuracy"]["ci_high"] == pytest.approx(exact.ci_high)
    # AUC = Mann-Whitney U / (n_pos n_neg): 20 of 24 pairs ordered correctly
    assert rows["roc_auc"]["estimate"] == pytest.approx(20 / 24)
    assert rows["roc_auc"]["ci_low"] < 20 / 24 < rows["roc_auc"]["ci_high"] <= 1.0


def test_summary_auc_interval_covers_chance_for_random_scores() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    rows = {r["metric"]: r for r in classification_summary(y, rng.uniform(size=40))}
    assert rows["roc_auc"]["ci_low"] < 0.5 < rows["roc_auc"]["ci_high"]
    assert rows["roc_auc"]["p_vs_chance"] > 0.05
    separated = {r["metric"]: r for r in classification_summary(y, y * 0.6 + 0.2)}
    assert separated["roc_auc"]["estimate"] == 1.0
    assert separated["roc_auc"]["p_vs_chance"] < 0.05


def test_summary_with_one_class_has_no_auc() -> None:
    rows = {r["metric"]: r for r in classification_summary([1, 1, 1], [0.7, 0.2, 0.9])}
    assert np.isnan(rows["roc_auc"]["estimate"])
    assert np.isnan(rows["specificity"]["estimate"])
    assert rows["sensitivity"]["estimate"] == pytest.approx(2 / 3)


def test_paired_comparison_counts_discordant_subjects() -> None:
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    a = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.1, 0.2, 0.3, 0.1, 0.2])  # 9 of 10 right
    b = np.array([0.4, 0.3, 0.7, 0.6, 0.4, 0.6, 0.2, 0.3, 0.1, 0.7])  # 5 of 10 right
    result = paired_comparison(y, a, b, n_resamples=500)
    assert (result["b"], result["c"]) == (4, 0)
    assert result["accuracy_difference"] == pytest.approx(0.4)
    assert result["mcnemar_midp"] == pytest.approx(mcnemar_midp(4, 0).p)
    auc_a = stats.mannwhitneyu(a[y == 1], a[y == 0]).statistic / 25
    auc_b = stats.mannwhitneyu(b[y == 1], b[y == 0]).statistic / 25
    assert result["auc_difference"] == pytest.approx(auc_a - auc_b)
    same = paired_comparison(y, a, a, n_resamples=200)
    assert (same["b"], same["c"], same["mcnemar_midp"]) == (0, 0, 1.0)
    with pytest.raises(InputError, match="paired"):
        paired_comparison(y, a, b[:5])


def test_compare_arms_writes_folders_predictions_and_tests(tmp_path: Path) -> None:
    data = write_fcd_dataset(tmp_path / "bids")
    task = replace(get_task("fcd-classify"), network="resnet10",
                   network_kwargs={"widen_factor": 0.25}, learning_rate=1e-3)
    out = compare_arms(data, tmp_path / "cmp", arms=("scratch", "scratch"), folds=2,
                       epochs=1, task=task, progress=False)
    summary = json.loads(out.read_text())
    metrics = {r["metric"]: r for r in summary["arms"]["scratch"]["metrics"]}
    assert metrics["accuracy"]["n"] == 8
    arm = tmp_path / "cmp" / "arm-scratch"
    config = yaml.safe_load((arm / "config.yaml").read_text())
    assert [sorted(f["validation"]) for f in config["folds"]] == [
        sorted(f["test"]) for f in stratified_folds([f"{i:02d}" for i in range(1, 9)],
                                                    [1, 0] * 4, 2, 0)]
    predictions = (arm / "predictions.tsv").read_text().splitlines()
    assert len(predictions) == 9
    assert len(list((arm / "cams").glob("*_desc-gradcam_probseg.nii.gz"))) == 4
    assert summary["pairs"][0]["b"] == summary["pairs"][0]["c"] == 0

    from lesionkit.tasks.fcd_classify import comparison_report

    page = comparison_report(tmp_path / "cmp", data).read_text()
    assert "Heat-Score" in page and "does not publish" in page and "<img" in page


def test_engine_k_folds_are_stratified_when_labels_are_given() -> None:
    from lesionkit.data import kfold_subjects

    label = dict(zip(SUBJECTS, LABELS, strict=True))
    folds = kfold_subjects(SUBJECTS, 3, seed=1, labels=LABELS)
    assert sorted(s for fold in folds for s in fold["validation"]) == SUBJECTS
    assert all(sum(label[s] for s in fold["validation"]) == 2 for fold in folds)
    with pytest.raises(InputError, match="each class"):
        kfold_subjects(SUBJECTS[:4], 3, seed=1, labels=[1, 0, 0, 0])
