"""Class priors: counting what a loss saw, and moving posteriors between priors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from lesionkit.calibration import class_counts, prior_shift


def test_class_counts_of_every_target_form() -> None:
    assert class_counts(torch.tensor([1.0, 0.0, 1.0, 1.0]), 2).tolist() == [1, 3]
    assert class_counts(torch.tensor([[1.0], [0.0]]), 2).tolist() == [1, 1]
    assert class_counts(torch.tensor([2, 0, 2]), 3).tolist() == [1, 0, 2]
    assert class_counts(np.array([[0.2, 0.8], [0.6, 0.4]]), 2).tolist() == pytest.approx(
        [0.8, 1.2])
    assert class_counts(np.array([0.25, 1.0]), 2).tolist() == [0.75, 1.25]  # soft labels


def test_prior_shift_is_the_log_ratio_of_the_priors() -> None:
    sigmoid = prior_shift([960, 40], [750, 250], "sigmoid")
    assert sigmoid.shape == (1,)
    assert sigmoid[0] == pytest.approx(np.log(40 / 960) - np.log(250 / 750))
    softmax = prior_shift([50, 30, 20], [1, 1, 1], "softmax")
    assert softmax == pytest.approx(np.log([0.5, 0.3, 0.2]) - np.log(1 / 3))
    assert prior_shift([10, 10], [10, 10], "sigmoid")[0] == pytest.approx(0.0)
    assert prior_shift(None, [1, 1], "sigmoid") is None
    assert prior_shift([1, 1], [1, 1], None) is None
    assert prior_shift([10, 0], [5, 5], "sigmoid") is None  # an empty class
    assert prior_shift([1, 2, 3], [1, 2], "softmax") is None
    assert prior_shift([1, 2, 3], [1, 2, 3], "sigmoid") is None  # a sigmoid has two classes


def test_balanced_training_shifted_back_matches_training_on_the_data() -> None:
    rng = np.random.default_rng(0)
    negatives, positives = rng.normal(0.0, 1.0, 40000), rng.normal(1.5, 1.0, 1000)
    x = np.r_[negatives, positives][:, None]
    y = np.r_[np.zeros(len(negatives)), np.ones(len(positives))]
    on_data = LogisticRegression(C=1e6).fit(x, y)
    drawn = rng.choice(len(negatives), len(positives), replace=False)  # balanced classes
    balanced = LogisticRegression(C=1e6).fit(
        np.r_[negatives[drawn], positives][:, None], np.r_[np.zeros(len(drawn)), np.ones(
            len(positives))])
    shift = prior_shift([len(negatives), len(positives)], [len(drawn), len(positives)],
                        "sigmoid")[0]
    grid = np.linspace(-2, 4, 13)[:, None]
    unshifted = balanced.decision_function(grid)
    assert np.abs(unshifted - on_data.decision_function(grid)).min() > 3.0  # far off
    np.testing.assert_allclose(unshifted + shift, on_data.decision_function(grid), atol=0.3)
