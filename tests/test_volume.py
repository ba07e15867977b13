"""Volumes: the bounding box of a mask."""

from __future__ import annotations

import numpy as np

from lesionkit.volume import mask_box


def test_mask_box_grows_within_the_grid_per_axis_and_is_none_when_empty() -> None:
    mask = np.zeros((10, 12, 8), bool)
    mask[2:4, 5, 6] = True
    assert mask_box(mask) == (slice(2, 4), slice(5, 6), slice(6, 7))
    assert mask_box(mask, 3) == (slice(0, 7), slice(2, 9), slice(3, 8))
    assert mask_box(mask, [1, 0, 2]) == (slice(1, 5), slice(5, 6), slice(4, 8))
    assert mask_box(mask.astype(np.float32) * 0.4) == mask_box(mask)  # any non-zero value
    assert mask_box(np.zeros((3, 3, 3))) is None
