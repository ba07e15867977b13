"""Summaries: per-method means, classification metrics with intervals, paired tests."""

from __future__ import annotations

import numpy as np
import pytest

from lesionkit.io import InputError
from lesionkit.stats import clopper_pearson, mcnemar_midp
from lesionkit.summaries import (
    classification_summary,
    metric_summary,
    paired_comparison,
    paired_metrics,
    summarise,
)


def test_summary_per_method() -> None:
    rows = [{"method": "a", "rmse": 1.0, "ssim": None}, {"method": "a", "rmse": 3.0,
            "ssim": 0.5}, {"method": "b", "rmse": 0.5, "ssim": 0.9}]
    summary = summarise(rows)
    assert summary["a"]["rmse"] == {"mean": 2.0, "std": 1.0, "n": 2}
    assert summary["b"]["rmse"]["n"] == 1


def test_classification_counts_and_exact_intervals() -> None:
    rows = {r["metric"]: r for r in classification_summary([1, 1, 0, 0], [0.9, 0.2, 0.1, 0.6])}
    assert (rows["accuracy"]["k"], rows["accuracy"]["n"]) == (2, 4)
    exact = clopper_pearson(2, 4)
    assert rows["accuracy"]["ci_low"] == pytest.approx(exact.ci_low)
    assert rows["roc_auc"]["estimate"] == pytest.approx(0.75)
    one_class = {r["metric"]: r for r in classification_summary([1, 1], [0.9, 0.2])}
    assert np.isnan(one_class["roc_auc"]["estimate"])


def test_paired_comparison_counts_discordant_cases() -> None:
    y = [1, 1, 0, 0, 1]
    a = [0.9, 0.8, 0.1, 0.2, 0.7]  # all right
    b = [0.1, 0.8, 0.1, 0.9, 0.7]  # wrong on cases 0 and 3
    result = paired_comparison(y, a, b)
    assert (result["b"], result["c"]) == (2, 0)
    assert result["mcnemar_midp"] == pytest.approx(mcnemar_midp(2, 0).p)
    with pytest.raises(InputError, match="paired"):
        paired_comparison(y, a, b[:3])


def test_metric_summary_and_paired_metrics() -> None:
    a = [{"participant_id": f"sub-{i}", "rmse": float(i)} for i in range(6)]
    b = [{"participant_id": f"sub-{i}", "rmse": float(i) + 1.0} for i in range(6)]
    (row,) = metric_summary(a)
    assert row["metric"] == "rmse" and row["estimate"] == pytest.approx(2.5)
    assert row["ci_low"] < 2.5 < row["ci_high"]
    assert row["method"] == "all" and row["interval"] == "bootstrap-percentile"
    (test,) = paired_metrics(a, b)
    assert test["median_difference"] == pytest.approx(-1.0) and test["n"] == 6
    # A column both arms share unchanged describes the case (a lesion's volume): no test.
    with_volume = [[{**r, "volume_mm3": 10.0 * i} for i, r in enumerate(rows)]
                   for rows in (a, b)]
    assert [t["metric"] for t in paired_metrics(*with_volume)] == ["rmse"]


def test_metric_summary_keeps_each_group_apart() -> None:
    rows = [{"participant_id": f"sub-{i}", "method": m, "cnr": float(i) + (10 if m == "b" else 0)}
            for i in range(4) for m in ("a", "b")]
    by_group = {r["method"]: r for r in metric_summary(rows)}
    assert set(by_group) == {"a", "b"}
    assert by_group["a"]["estimate"] == pytest.approx(1.5)
    assert by_group["b"]["estimate"] == pytest.approx(11.5)
