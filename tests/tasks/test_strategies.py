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


def _toy_store(tmp_path, spacing=None):
    from dataclasses import replace

    from conftest import TOY_LESION_TASK, write_task_dataset
    from lesionkit.store import SubjectStore

    task = replace(TOY_LESION_TASK, spacing=spacing)
    root = write_task_dataset(tmp_path / "data", task, subjects=1)
    store = SubjectStore(root, task, tmp_path / "cache")
    store.prepare(["01"])
    return task, store


@pytest.mark.parametrize("spacing", [None, (2.0, 2.0, 2.0)])
def test_lesion_centres_are_voxels_of_the_model_grid(tmp_path, spacing):
    # The fixture's images are 1 mm on an oblique grid: at 2 mm the model grid is another
    # one, and the lesion table must point into it (as inference does).
    _, store = _toy_store(tmp_path, spacing)
    label_map = np.asarray(store.lesion_map("01"))
    assert label_map.shape == store.mask("01").shape
    lesions = store.lesions("01")
    assert [le["label"] for le in lesions] == [1, 2, 3, 4]
    for lesion in lesions:
        assert label_map[tuple(lesion["centre"])] == lesion["label"]


def test_lesion_patches_carry_their_own_lesions_mask(tmp_path):
    from lesionkit.lesions import crop
    from lesionkit.tasks.strategies import LesionSampler

    task, store = _toy_store(tmp_path)
    plain = LesionSampler((8, 8, 8)).dataset(store, ["01"], task, {})
    marked = LesionSampler((8, 8, 8), mask_channel=True).dataset(store, ["01"], task, {})
    label_map = np.asarray(store.lesion_map("01"))
    for i, lesion in enumerate(store.lesions("01")):
        without, with_mask = plain[i]["input"], marked[i]["input"]
        assert without.shape[0] == 1 and with_mask.shape[0] == 2
        torch.testing.assert_close(with_mask[:1], without)
        start = tuple(int(v) for v in marked.entries[i, 1:4])
        region = crop(label_map[None], start, (8, 8, 8))[0]
        assert torch.equal(with_mask[1], torch.from_numpy((region == lesion["label"])
                                                          .astype(np.float32)))
        assert with_mask[1].sum() == (label_map == lesion["label"]).sum() > 0  # all of it
        assert not ((region > 0) & (region != lesion["label"]))[with_mask[1].numpy() > 0].any()


def test_per_lesion_inference_appends_each_lesions_mask():
    from lesionkit.tasks.strategies import PerLesion

    labels = np.zeros((20, 20, 20), np.int64)
    labels[2:4, 2:4, 2:4], labels[10:15, 10:13, 10:12] = 3, 7  # 8 and 30 voxels, touching none
    labels[16:18, 16:18, 16:18] = 9  # 8 voxels, inside lesion 7's patch but not its own mask
    x = torch.rand(1, 2, 20, 20, 20)

    def voxels_marked(patches):  # a "network" that counts the marked voxels
        assert patches.shape[1] == 3
        return patches[:, -1].sum(dim=(1, 2, 3))[:, None]

    scores = PerLesion((12, 12, 12), mask_channel=True).predict(voxels_marked, x,
                                                                torch.from_numpy(labels))
    assert scores[:, 0].tolist() == [8.0, 30.0, 8.0]
    assert PerLesion(mask_channel=True).extra_channels == 1 and PerLesion().extra_channels == 0
