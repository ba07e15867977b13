"""Inference strategies: windows fitted to the volume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers.utils import _get_scan_interval

from lesionkit.tasks.strategies import SlidingWindow, fitted_tiling


def _windows(shape, window, overlap):
    padded = [max(s, w) for s, w in zip(shape, window, strict=True)]
    return dense_patch_slices(padded, window, _get_scan_interval(padded, window, 3, overlap))


@pytest.mark.parametrize(("shape", "largest", "least"), [
    ((160, 192, 160), (96, 96, 96), 0.125),
    ((82, 100, 82), (96, 96, 96), 0.125),
    ((256, 256, 30), (96, 96, 96), 0.25),
    ((160, 192, 160), (64, 64, 16), 0.5),
    ((13, 17, 11), (8, 8, 8), 0.5),
])
def test_fitted_windows_cover_the_volume_with_the_fewest_windows(shape, largest, least):
    window, overlap = fitted_tiling(shape, largest, least)
    assert all(w <= m and w % 8 == 0 for w, m in zip(window, largest, strict=True))
    slices = _windows(shape, window, overlap)
    covered = np.zeros([max(s, w) for s, w in zip(shape, window, strict=True)], bool)
    for box in slices:
        covered[box] = True
    assert covered.all()
    # Per axis: the fewest windows of the largest size that overlap by the least fraction.
    fewest = [1 if n <= m else math.ceil((n - math.ceil(least * m)) / (m - math.ceil(least * m)))
              for n, m in zip(shape, largest, strict=True)]
    assert len(slices) == math.prod(fewest)
    starts = [sorted({box[a].start for box in slices}) for a in range(3)]
    for a, positions in enumerate(starts):  # neighbours overlap by at least the least
        steps = np.diff(positions)
        assert (window[a] - steps >= math.ceil(least * largest[a])).all()


def test_fitted_windows_are_fewer_than_fixed_ones():
    shape = (160, 192, 160)
    window, overlap = fitted_tiling(shape, (96, 96, 96), 0.125)
    fitted = math.prod(window) * len(_windows(shape, window, overlap))
    fixed = 96**3 * len(_windows(shape, (96, 96, 96), (0.25,) * 3))
    assert fitted / math.prod(shape) < 1.4 < 2.0 < fixed / math.prod(shape)


def test_fitted_sliding_window_matches_a_pointwise_network():
    x = torch.randn(1, 2, 37, 29, 21)
    network = torch.nn.Conv3d(2, 3, 1)
    with torch.inference_mode():
        y = SlidingWindow(window=(16, 16, 16), overlap=0.125).predict(network, x)
        np.testing.assert_allclose(y, network(x), atol=1e-5)


def test_one_window_volume_is_one_padded_pass_as_monai_gives_it():
    from monai.inferers import sliding_window_inference

    torch.manual_seed(0)
    x = torch.randn(1, 1, 21, 30, 17)
    network = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.Conv3d(4, 2, 3, padding=1))
    strategy = SlidingWindow(window=(32, 32, 32), overlap=0.125)
    assert strategy.tiling(x.shape[2:])[0] == (24, 32, 24)
    with torch.inference_mode():
        ours = strategy.predict(network, x)
        monai = sliding_window_inference(x, (24, 32, 24), 1, network, mode="gaussian")
    assert ours.shape == (1, 2, 21, 30, 17)
    np.testing.assert_allclose(ours, monai, atol=1e-5)
