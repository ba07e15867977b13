"""Inference: flips, strategies, unit inversion, fold x flip uncertainty, evaluation summary."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lesionkit.infer import STRATEGIES, flips, predict_arrays, sliding_window, summarise
from lesionkit.model_folder import FoldModel, TrainedModel
from lesionkit.tasks import get_task

TASK = replace(get_task("enhance-r1"), inference="whole_volume")


class Scale(nn.Module):
    """y = factor * x + a ramp along the first axis (not mirror-symmetric)."""

    def __init__(self, factor: float, ramp: float = 0.0) -> None:
        super().__init__()
        self.factor, self.ramp = factor, ramp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(0, self.ramp, x.shape[2]).view(1, 1, -1, 1, 1)
        return self.factor * x + ramp


def _model(*networks: nn.Module, task=TASK) -> TrainedModel:
    stats = {"r1_3t": {"shift": 1.0, "scale": 0.5}, "r1_7t": {"shift": 0.6, "scale": 0.2}}
    folds = tuple(FoldModel(network, stats) for network in networks)
    return TrainedModel(Path("."), task, {}, folds)


def test_flips() -> None:
    assert flips(1) == [()]
    every = flips(8)
    assert len(set(every)) == 8 and (2, 3, 4) in every
    with pytest.raises(ValueError, match="1 to 8"):
        flips(9)


def test_output_is_inverted_to_target_units() -> None:
    x = np.random.default_rng(0).uniform(0.5, 1.5, (6, 6, 6)).astype(np.float32)
    mean, std = predict_arrays(_model(Scale(1.0)), {"r1_3t": x}, tta=8)
    np.testing.assert_allclose(mean[0], (x - 1.0) / 0.5 * 0.2 + 0.6, rtol=1e-5)
    np.testing.assert_allclose(std, 0.0, atol=1e-6)  # flip-equivariant network


def test_uncertainty_is_std_over_folds_and_flips() -> None:
    x = np.ones((6, 6, 6), np.float32) * 1.5  # normalised: 1
    mean, std = predict_arrays(_model(Scale(1.0), Scale(3.0)), {"r1_3t": x}, tta=1)
    np.testing.assert_allclose(mean, 0.6 + 0.2 * 2.0, rtol=1e-5)
    np.testing.assert_allclose(std, 0.2 * 1.0, rtol=1e-5)
    _, std_flipped = predict_arrays(_model(Scale(1.0, ramp=1.0)), {"r1_3t": x}, tta=2)
    assert std_flipped.max() > 0.05  # a flip-sensitive network disagrees with itself


def test_sliding_window_blends_back_to_the_volume() -> None:
    task = replace(TASK, sampler=replace(TASK.sampler, patch_size=(8, 8, 8)))
    x = torch.randn(1, 1, 13, 17, 11)
    np.testing.assert_allclose(sliding_window(Scale(2.0), x, task), 2 * x, atol=1e-5)


def test_per_lesion_is_admitted_but_not_yet_implemented() -> None:
    assert "per_lesion" in STRATEGIES
    with pytest.raises(NotImplementedError):
        STRATEGIES["per_lesion"](Scale(1.0), torch.zeros(1, 1, 4, 4, 4), TASK)


def test_summary_per_method() -> None:
    rows = [{"method": "a", "rmse": 1.0, "ssim": None}, {"method": "a", "rmse": 3.0,
            "ssim": 0.5}, {"method": "b", "rmse": 0.5, "ssim": 0.9}]
    summary = summarise(rows)
    assert summary["a"]["rmse"] == {"mean": 2.0, "std": 1.0, "n": 2}
    assert summary["b"]["rmse"]["n"] == 1
