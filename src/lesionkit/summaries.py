"""Summaries of metric tables: per-method means, classification metrics with CIs, paired tests.

Pure functions on rows (dicts) and arrays, shared by evaluation, cross-validation and
the tasks' reports:

- :func:`summarise`: mean, standard deviation and count of every numeric column;
- :func:`classification_summary`: accuracy, sensitivity and specificity with exact
  Clopper-Pearson 95 % intervals; ROC AUC with a stratified bootstrap 95 % interval and a
  p-value against chance (``lesionkit.stats.paired_auc_bootstrap`` of the scores against a
  constant score, whose AUC is exactly 0.5 in every resample);
- :func:`paired_comparison`: two arms on the same cases: McNemar mid-p on per-case
  correctness and the paired bootstrap of the AUC difference;
- :func:`metric_summary` and :func:`paired_metrics`: bootstrap intervals of the mean of
  each numeric metric column, and Wilcoxon signed-rank tests between arms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lesionkit.io import InputError
from lesionkit.metrics import roc_auc
from lesionkit.stats import (
    StatResult,
    bootstrap_ci,
    clopper_pearson,
    discordant_pairs,
    mcnemar_midp,
    paired_auc_bootstrap,
    wilcoxon_signed_rank,
)


def summarise(rows: Sequence[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean, standard deviation and count of every numeric column, per ``method``."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    methods = sorted({str(r.get("method", "all")) for r in rows})
    for method in methods:
        chosen = [r for r in rows if str(r.get("method", "all")) == method]
        summary[method] = {}
        for column in numeric_columns(chosen):
            values = _values(chosen, column)
            summary[method][column] = {"mean": float(values.mean()) if values.size else None,
                                       "std": float(values.std()) if values.size else None,
                                       "n": int(values.size)}
    return summary


def numeric_columns(rows: Sequence[dict]) -> list[str]:
    """Columns holding a number (not a boolean) in at least one row, in first-seen order."""
    return list(dict.fromkeys(k for r in rows for k, v in r.items()
                              if isinstance(v, int | float) and not isinstance(v, bool)))


def _values(rows: Sequence[dict], column: str) -> np.ndarray:
    values = np.array([r[column] for r in rows if r.get(column) is not None], float)
    return values[np.isfinite(values)]


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


def metric_summary(rows: Sequence[dict], seed: int = 0, n_resamples: int = 2000
                   ) -> list[dict[str, Any]]:
    """Mean of every numeric column per ``method`` with a bootstrap 95 % interval.

    Each row names the case group (``method`` of the input rows, e.g. the image kind, or
    "all") and, under ``interval``, how its interval was obtained.
    """
    out = []
    for method in sorted({str(r.get("method", "all")) for r in rows}):
        chosen = [r for r in rows if str(r.get("method", "all")) == method]
        for column in numeric_columns(chosen):
            values = _values(chosen, column)
            if values.size == 0:
                continue
            result = (bootstrap_ci(np.mean, values, n_resamples=n_resamples, seed=seed)
                      if values.size > 1 and np.ptp(values) > 0
                      else StatResult(float(values.mean()), method="too few distinct values"))
            row = _row(column, result)
            row["interval"] = row.pop("method")
            out.append({"method": method, **row, "n": int(values.size)})
    return out


def paired_metrics(rows_a: Sequence[dict], rows_b: Sequence[dict],
                   keys: Sequence[str] = ("participant_id", "session_id", "run", "lesion")
                   ) -> list[dict[str, Any]]:
    """Wilcoxon signed-rank test of every numeric column shared by two arms' rows.

    Rows are paired by ``keys`` (a missing key counts as None) and ``method``; key
    columns are not tested, nor columns equal in every pair (a property of the case, such
    as a lesion's volume, that no arm predicts). The estimate is the median of a - b.
    """
    def index(rows: Sequence[dict]) -> dict[tuple, dict]:
        return {(*(r.get(k) for k in keys), str(r.get("method", "all"))): r for r in rows}

    a, b = index(rows_a), index(rows_b)
    shared = sorted(set(a) & set(b), key=str)
    out = []
    for method in sorted({k[-1] for k in shared}):
        pairs = [(a[k], b[k]) for k in shared if k[-1] == method]
        for column in numeric_columns([p[0] for p in pairs]):
            if column in keys:
                continue
            kept = [(x[column], y[column]) for x, y in pairs
                    if x.get(column) is not None and y.get(column) is not None]
            if len(kept) < 2:
                continue
            x, y = np.array(kept, float).T
            if np.array_equal(x, y):
                continue
            test = wilcoxon_signed_rank(x, y)
            out.append({"method": method, "metric": column, "median_difference": test.estimate,
                        "p": test.p, "test": test.method, "n": len(kept)})
    return out
