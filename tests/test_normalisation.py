"""Normalisation statistics and their inverse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lesionkit.normalisation import apply_normalisation, fit_statistics, invert, quantiles


def test_log_zscore_floors_fits_in_log_space_and_inverts() -> None:
    rng = np.random.default_rng(0)
    t2s = np.exp(rng.normal(np.log(60.0), 0.5, (10, 10, 10))).astype(np.float32)
    t2s[0, 0, :] = 2500.0  # CSF tail
    t2s[-1, -1, -1] = 0.0  # a voxel the matching left empty
    entry = fit_statistics(t2s.ravel(), "log-zscore")
    floor = np.percentile(t2s, 1)
    logs = np.log(np.maximum(t2s, floor))
    assert entry == pytest.approx({"shift": logs.mean(), "scale": logs.std(), "log_floor": floor},
                                  rel=1e-5)
    z = apply_normalisation(t2s, entry)
    assert np.abs(z).max() < 10  # linear z-scores reach about 25 here
    np.testing.assert_allclose(apply_normalisation(torch.from_numpy(t2s), entry).numpy(), z,
                               rtol=1e-5, atol=1e-5)
    back = invert(z, {"t2s": entry}, "t2s")
    np.testing.assert_allclose(back, np.maximum(t2s, floor), rtol=1e-4)


def test_quantiles_are_torch_quantiles_to_float32() -> None:
    values = torch.from_numpy(np.random.default_rng(3).gamma(2.0, 100.0, 100_001)
                              .astype(np.float32))
    levels = [0.0, 0.005, 0.25, 0.5, 0.75, 0.99, 1.0]
    expected = torch.quantile(values, torch.tensor(levels)).tolist()
    np.testing.assert_allclose(quantiles(values, levels), expected, rtol=1e-6)
    assert quantiles(values, [0.0, 1.0]) == [float(values.min()), float(values.max())]
