"""Preview montages: focus on the largest lesion, PNG written atomically."""

from __future__ import annotations

import numpy as np

from lesionkit.simulate.preview import focus_point, montage


def test_focus_point_is_the_largest_lesion_or_the_centre():
    labels = np.zeros((20, 20, 20), np.int16)
    labels[2:4, 2:4, 2:4] = 1
    labels[10:16, 12:18, 4:10] = 2
    assert focus_point(labels, labels.shape) == (12, 14, 6)
    assert focus_point(None, (20, 30, 40)) == (10, 15, 20)
    assert focus_point(np.zeros((4, 4, 4)), (4, 4, 4)) == (2, 2, 2)


def test_montage_writes_a_png_with_lesion_outline(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.normal(100, 5, (24, 24, 24)).astype(np.float32)
    lesion = np.zeros(img.shape, np.int16)
    lesion[8:14, 8:14, 8:14] = 1
    img[lesion > 0] += 50
    mrf = np.repeat(img[..., None], 3, axis=-1)
    out = montage({"T1w": img, "MRF": mrf}, lesion, tmp_path / "p" / "sub-01.png", "sub-01")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert [p.name for p in out.parent.iterdir()] == ["sub-01.png"]  # no temp file left
