"""The on-disk subject store: regions read from disk, normalisation fitted on the
subjects named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lesionkit.normalisation import apply_normalisation, invert
from lesionkit.store import SubjectStore
from lesionkit.tasks import get_task
from lesionkit.tasks.task import ImageSpec, OutputSpec, Task


def test_store_reads_regions_and_fits_on_the_given_subjects(enhance_dataset: Path,
                                                            tmp_path: Path) -> None:
    task = get_task("enhance-r1")
    store = SubjectStore(enhance_dataset, task, tmp_path / "cache")
    store.prepare(["01", "02", "03"])
    whole = store.read("01", {})
    assert set(whole) == {"r1_3t", "r1_7t", "mask"}
    region = store.read("01", {}, start=(-2, 3, 4), size=(6, 6, 6))
    np.testing.assert_array_equal(region["r1_3t"][0, 2:], whole["r1_3t"][0, :4, 3:9, 4:10])
    assert (region["r1_3t"][0, :2] == 0).all()  # outside the volume: zeros
    stats = store.fit_normalisation(["01", "02"])
    values = np.concatenate([store.read(n, {})["r1_3t"][0][store.mask(n)] for n in ("01", "02")])
    assert stats["r1_3t"]["shift"] == pytest.approx(values.mean(), rel=1e-5)
    assert store.fit_normalisation(["01", "03"]) != stats
    normalised = store.read("01", stats)["r1_3t"]
    np.testing.assert_allclose(invert(normalised.numpy(), stats, "r1_3t"), whole["r1_3t"],
                               rtol=1e-5, atol=1e-5)


def test_image_zscore_percentile_fits_on_training_subjects_clips_and_inverts(
        tmp_path: Path) -> None:
    from conftest import write_task_dataset

    spec = ImageSpec("t1c", "T1w", normalisation="image-zscore-percentile")
    task = Task(name="toy-zscore-percentile", description="", inputs=(spec,), targets=(),
                outputs=(OutputSpec("T1w", "out", "1", target="t1c"),), network="unet")
    data = write_task_dataset(tmp_path / "bids", task, subjects=3)
    store = SubjectStore(data, task, tmp_path / "cache")
    store.prepare(["01", "02", "03"])
    raw = store.read("01", {})["t1c"][0].numpy()
    inside = raw[store.mask("01")]
    # Stored per image: the robust z-score (median 0, interquartile range 1.349).
    assert np.median(inside) == pytest.approx(0.0, abs=0.05)
    q1, q3 = np.percentile(inside, [25, 75])
    assert q3 - q1 == pytest.approx(1.349, rel=0.05)
    stats = store.fit_normalisation(["01", "02"])
    entry = stats["t1c"]
    values = np.concatenate([store.read(n, {})["t1c"][0][store.mask(n)] for n in ("01", "02")])
    low, high = np.percentile(values, [1, 99])
    assert entry == pytest.approx({"shift": low, "scale": high - low, "clip_low": 0.0,
                                   "clip_high": 1.0}, rel=1e-4)
    assert store.fit_normalisation(["02", "03"])["t1c"] != entry  # training subjects only
    normalised = store.read("01", stats)["t1c"][0].numpy()
    assert normalised.min() >= 0.0 and normalised.max() <= 1.0
    assert (normalised == 1.0).any() and (normalised == 0.0).any()  # clipped
    kept = (raw > low) & (raw < high)
    back = invert(normalised, stats, "t1c")
    np.testing.assert_allclose(back[kept], raw[kept], rtol=1e-4, atol=1e-4)
    assert back.max() == pytest.approx(high, rel=1e-4)  # clipping is not undone
    tensor = apply_normalisation(torch.from_numpy(raw), entry).numpy()
    np.testing.assert_allclose(tensor, apply_normalisation(raw, entry), atol=1e-6)


def test_metadata_is_read_once(enhance_dataset: Path, tmp_path: Path) -> None:
    store = SubjectStore(enhance_dataset, get_task("enhance-r1"), tmp_path / "cache")
    store.prepare(["01"])
    affine = store.affine("01")
    (tmp_path / "cache" / "sub-01" / "meta.json").unlink()  # read before: kept
    np.testing.assert_array_equal(store.affine("01"), affine)
    assert store.labels("01") == {}
