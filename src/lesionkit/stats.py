"""Statistical tests and confidence intervals for evaluation results.

Thin wrappers over scipy.stats returning one small result type, ``StatResult``
(estimate, confidence interval, p-value where relevant). Bootstrap functions take an
explicit seed; everything else is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score

__all__ = [
    "StatResult",
    "bootstrap_ci",
    "clopper_pearson",
    "discordant_pairs",
    "mcnemar_midp",
    "paired_auc_bootstrap",
    "paired_t",
    "pearson_ci",
    "welch_t",
    "wilcoxon_signed_rank",
    "wilson",
]

NAN = float("nan")


@dataclass(frozen=True)
class StatResult:
    """An estimate with its confidence interval and, for tests, the p-value.

    Attributes:
        estimate: point estimate (proportion, difference, correlation, ...).
        ci_low: lower confidence bound (NaN when not computed).
        ci_high: upper confidence bound (NaN when not computed).
        p: two-sided p-value (NaN for a plain interval).
        statistic: test statistic (NaN when not applicable).
        method: short name of the method.
    """

    estimate: float
    ci_low: float = NAN
    ci_high: float = NAN
    p: float = NAN
    statistic: float = NAN
    method: str = ""


def _proportion(k: int, n: int, alpha: float, method: str) -> StatResult:
    if n == 0:
        return StatResult(NAN, method=method)
    ci = stats.binomtest(int(k), int(n)).proportion_ci(1.0 - alpha, method=method)
    return StatResult(k / n, float(ci.low), float(ci.high), method=method)


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> StatResult:
    """Proportion k/n with its exact (Clopper-Pearson) 1 - alpha confidence interval."""
    return _proportion(k, n, alpha, "exact")


def wilson(k: int, n: int, alpha: float = 0.05) -> StatResult:
    """Proportion k/n with its Wilson score 1 - alpha confidence interval."""
    return _proportion(k, n, alpha, "wilson")


def discordant_pairs(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Discordant counts of paired binary outcomes: (a true & b false, a false & b true)."""
    a = np.asarray(a).astype(bool)
    b = np.asarray(b).astype(bool)
    return int(np.count_nonzero(a & ~b)), int(np.count_nonzero(~a & b))


def mcnemar_midp(b: int, c: int) -> StatResult:
    """McNemar mid-p test on the discordant pair counts ``b`` and ``c``.

    Mid-p = 2 * [P(X <= k) - P(X = k) / 2] with X ~ Binomial(b + c, 1/2) and
    k = min(b, c) (Fagerland, Lydersen and Laake 2013), capped at 1. The estimate is
    the difference in discordant proportions (b - c) / (b + c).
    """
    n = int(b) + int(c)
    if n == 0:
        return StatResult(0.0, p=1.0, method="mcnemar-midp")
    k = min(int(b), int(c))
    midp = 2.0 * stats.binom.cdf(k, n, 0.5) - stats.binom.pmf(k, n, 0.5)
    p = float(min(midp, 1.0))
    return StatResult((b - c) / n, p=p, statistic=float(k), method="mcnemar-midp")


def wilcoxon_signed_rank(x: np.ndarray, y: np.ndarray) -> StatResult:
    """Wilcoxon signed-rank test of paired samples; estimate = median of x - y.

    All-zero differences give p = 1.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    difference = x - y
    if not np.any(difference):
        return StatResult(0.0, p=1.0, method="wilcoxon")
    with np.errstate(invalid="ignore", divide="ignore"):
        result = stats.wilcoxon(x, y)
    return StatResult(
        float(np.median(difference)),
        p=float(result.pvalue),
        statistic=float(result.statistic),
        method="wilcoxon",
    )


def paired_t(x: np.ndarray, y: np.ndarray, confidence: float = 0.95) -> StatResult:
    """Two-sided paired t-test; estimate and CI are for the mean of x - y."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    result = stats.ttest_rel(x, y)
    ci = result.confidence_interval(confidence)
    return StatResult(
        float(np.mean(x - y)),
        float(ci.low),
        float(ci.high),
        p=float(result.pvalue),
        statistic=float(result.statistic),
        method="paired-t",
    )


def welch_t(x: np.ndarray, y: np.ndarray, confidence: float = 0.95) -> StatResult:
    """Two-sided Welch t-test of independent samples; estimate = mean(x) - mean(y)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    result = stats.ttest_ind(x, y, equal_var=False)
    ci = result.confidence_interval(confidence)
    return StatResult(
        float(x.mean() - y.mean()),
        float(ci.low),
        float(ci.high),
        p=float(result.pvalue),
        statistic=float(result.statistic),
        method="welch-t",
    )


def pearson_ci(x: np.ndarray, y: np.ndarray, confidence: float = 0.95) -> StatResult:
    """Pearson correlation r with its Fisher-z confidence interval and p-value."""
    result = stats.pearsonr(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    ci = result.confidence_interval(confidence)
    return StatResult(
        float(result.statistic),
        float(ci.low),
        float(ci.high),
        p=float(result.pvalue),
        statistic=float(result.statistic),
        method="pearson",
    )


def bootstrap_ci(
    metric_fn: Callable[..., float],
    *arrays: np.ndarray,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    method: str = "percentile",
) -> StatResult:
    """Paired bootstrap confidence interval of ``metric_fn(*arrays)``.

    The arrays are resampled together along their first axis (cases) with
    ``scipy.stats.bootstrap(paired=True)``. ``method`` is passed on ("percentile",
    "basic" or "BCa"); percentile is the default because metrics such as AUC can be
    degenerate on small resamples, where BCa fails.

    Example:
        >>> bootstrap_ci(np.mean, np.arange(10.0), seed=1).estimate
        4.5
    """
    data = tuple(np.asarray(a) for a in arrays)
    estimate = float(metric_fn(*data))
    result = stats.bootstrap(
        data,
        lambda *sample: metric_fn(*sample),
        n_resamples=n_resamples,
        paired=True,
        vectorized=False,
        confidence_level=confidence,
        method=method,
        rng=np.random.default_rng(seed),
    )
    ci = result.confidence_interval
    return StatResult(estimate, float(ci.low), float(ci.high), method=f"bootstrap-{method}")


def paired_auc_bootstrap(
    y_true: np.ndarray,
    score_a: np.ndarray,
    score_b: np.ndarray,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    max_fpr: float | None = None,
) -> StatResult:
    """Compare two ROC AUCs on the same cases by a stratified paired bootstrap.

    Cases are resampled within each class (so every resample keeps both classes) and
    both scores are evaluated on the same resample. The estimate is AUC_a - AUC_b;
    the CI is the percentile interval of the resampled differences; p is two-sided
    from z = difference / SD(resampled differences) (as pROC's bootstrap test).
    ``max_fpr`` compares McClish-standardised partial AUCs instead.
    """
    y_true = np.asarray(y_true).astype(int)
    scores = (np.asarray(score_a, dtype=np.float64), np.asarray(score_b, dtype=np.float64))
    negatives, positives = (np.flatnonzero(y_true == label) for label in (0, 1))
    estimate = float(
        roc_auc_score(y_true, scores[0], max_fpr=max_fpr)
        - roc_auc_score(y_true, scores[1], max_fpr=max_fpr)
    )
    rng = np.random.default_rng(seed)
    pos = rng.choice(positives, size=(n_resamples, positives.size), replace=True)
    neg = rng.choice(negatives, size=(n_resamples, negatives.size), replace=True)
    if max_fpr is None:
        # Full AUC of every resample at once: AUC = U / (n_pos * n_neg) (Mann-Whitney).
        aucs = [
            stats.mannwhitneyu(s[pos], s[neg], axis=1, method="asymptotic").statistic
            / (positives.size * negatives.size)
            for s in scores
        ]
        draws = aucs[0] - aucs[1]
    else:
        labels = np.r_[np.ones(positives.size, int), np.zeros(negatives.size, int)]
        draws = np.array(
            [
                roc_auc_score(labels, scores[0][np.r_[p, n]], max_fpr=max_fpr)
                - roc_auc_score(labels, scores[1][np.r_[p, n]], max_fpr=max_fpr)
                for p, n in zip(pos, neg, strict=True)
            ]
        )
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    spread = draws.std(ddof=1)
    z = estimate / spread if spread > 0 else (0.0 if estimate == 0 else np.inf)
    p = float(2.0 * stats.norm.sf(abs(z)))
    return StatResult(
        estimate, float(low), float(high), p=p, statistic=float(z), method="paired-bootstrap-auc"
    )
