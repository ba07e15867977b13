import numpy as np
import pytest

from lesionkit.metrics import roc_auc
from lesionkit.stats import (
    StatResult,
    bootstrap_ci,
    clopper_pearson,
    discordant_pairs,
    mcnemar_midp,
    paired_auc_bootstrap,
    paired_t,
    pearson_ci,
    welch_t,
    wilcoxon_signed_rank,
    wilson,
)


def test_clopper_pearson_known_values():
    # Exact limits: 0/10 -> upper 1 - 0.025**(1/10); 5/10 -> (0.1871, 0.8129)
    zero = clopper_pearson(0, 10)
    assert zero.estimate == 0.0 and zero.ci_low == 0.0
    assert zero.ci_high == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-6)
    half = clopper_pearson(5, 10)
    assert half.ci_low == pytest.approx(0.1871, abs=1e-4)
    assert half.ci_high == pytest.approx(0.8129, abs=1e-4)
    assert np.isnan(clopper_pearson(0, 0).estimate)


def test_wilson_is_narrower_than_exact():
    exact, score = clopper_pearson(7, 20), wilson(7, 20)
    assert score.ci_high - score.ci_low < exact.ci_high - exact.ci_low
    # Wilson 7/20: (0.1812, 0.5671)
    assert score.ci_low == pytest.approx(0.1812, abs=1e-4)
    assert score.ci_high == pytest.approx(0.5671, abs=1e-4)


def test_mcnemar_midp_hand_computation():
    # b=5, c=1: n=6, P(X<=1)=7/64, P(X=1)=6/64 -> mid-p = 2*(7/64 - 3/64) = 0.125
    assert mcnemar_midp(5, 1).p == pytest.approx(0.125)
    assert mcnemar_midp(1, 5).p == pytest.approx(0.125)
    # b=10, c=2: 2*(79 - 33)/4096
    assert mcnemar_midp(10, 2).p == pytest.approx(92 / 4096)
    assert mcnemar_midp(4, 4).p == pytest.approx(1.0)
    assert mcnemar_midp(0, 0).p == 1.0


def test_discordant_pairs():
    a = np.array([1, 1, 0, 0, 1], bool)
    b = np.array([1, 0, 1, 0, 0], bool)
    assert discordant_pairs(a, b) == (2, 1)


def test_wilcoxon_exact_and_all_zero():
    result = wilcoxon_signed_rank(np.arange(1.0, 7.0), np.zeros(6))
    assert result.p == pytest.approx(2 / 64)
    assert result.estimate == pytest.approx(3.5)
    assert wilcoxon_signed_rank(np.ones(5), np.ones(5)).p == 1.0


def test_t_tests_and_pearson():
    x = np.array([1.0, 2.0, 3.5, 4.0])
    y = np.array([0.0, 0.5, 1.0, 2.5])
    paired = paired_t(x, y)
    assert paired.estimate == pytest.approx(1.625)
    assert paired.ci_low < 1.625 < paired.ci_high
    assert 0 < paired.p < 0.05
    welch = welch_t(x, y)
    assert welch.estimate == pytest.approx(1.625)
    assert welch.p > paired.p  # pairing removes the shared variation here
    r = pearson_ci([1, 2, 3, 4, 5], [1, 2.2, 2.9, 4, 5])
    assert r.estimate == pytest.approx(np.corrcoef([1, 2, 3, 4, 5], [1, 2.2, 2.9, 4, 5])[0, 1])
    assert -1 <= r.ci_low < r.estimate < r.ci_high <= 1


def test_bootstrap_ci_paired_and_seeded():
    rng = np.random.default_rng(0)
    a = rng.normal(1.0, 1.0, 60)
    b = a + rng.normal(0.5, 0.1, 60)

    def mean_difference(x, y):
        return float(np.mean(y - x))

    first = bootstrap_ci(mean_difference, a, b, n_resamples=500, seed=3)
    again = bootstrap_ci(mean_difference, a, b, n_resamples=500, seed=3)
    assert first == again
    assert isinstance(first, StatResult)
    assert first.ci_low < first.estimate < first.ci_high
    # pairing keeps the interval tight (per-pair SD 0.1, not 1.0)
    assert first.ci_high - first.ci_low < 0.1


def test_paired_auc_bootstrap():
    rng = np.random.default_rng(2)
    y = np.r_[np.zeros(40), np.ones(40)].astype(int)
    good = y + rng.normal(0, 0.5, 80)
    poor = y + rng.normal(0, 3.0, 80)
    result = paired_auc_bootstrap(y, good, poor, n_resamples=300, seed=0)
    assert result.estimate == pytest.approx(roc_auc(y, good) - roc_auc(y, poor))
    assert result.ci_low > 0 and result.p < 0.05
    same = paired_auc_bootstrap(y, good, good, n_resamples=50, seed=0)
    assert same.estimate == 0.0 and same.p == 1.0
    partial = paired_auc_bootstrap(y, good, poor, n_resamples=50, seed=0, max_fpr=0.1)
    assert partial.estimate > 0 and partial.ci_low <= partial.estimate <= partial.ci_high
