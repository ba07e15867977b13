"""Lesion label maps: centres, zero-padded patches, lesion tables and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import oblique_affine
from lesionkit.io import InputError, save_volume, write_tsv
from lesionkit.lesions import crop, lesion_centres, lesion_table, table_path
from lesionkit.tasks.task import LesionLabelSpec
from lesionkit.volume import Volume

SPEC = LesionLabelSpec("rim", "rim")


def _map(tmp_path: Path, rows: list[dict]) -> Path:
    labels = np.zeros((8, 8, 8), np.float32)
    labels[1:3, 1:3, 1:3], labels[5:7, 5:7, 5:7] = 1, 2
    path = tmp_path / "sub-01_desc-lesions_dseg.nii.gz"
    save_volume(Volume(labels, oblique_affine(), kind="label"), path)
    write_tsv(rows, table_path(path))
    return path


def test_centres_and_padded_crops() -> None:
    labels = np.zeros((6, 6, 6), int)
    labels[0:2, 0:2, 0:2] = 4
    assert lesion_centres(labels) == {4: (0, 0, 0)}  # 0.5 rounds to even
    patch = crop(np.ones((1, 6, 6, 6)), (-2, 0, 5), (4, 4, 4))
    assert patch.shape == (1, 4, 4, 4)
    assert patch[0, 2:, :, :1].all() and not patch[0, :2].any() and not patch[0, :, :, 1:].any()


def test_centres_are_the_whole_volume_centres_of_mass() -> None:
    from scipy import ndimage

    rng = np.random.default_rng(7)
    labels = np.zeros((30, 25, 20), np.int64)
    for label in (3, 9, 17, 40):  # overlapping boxes; label 40 partly overwritten
        start = rng.integers(0, 18, 3)
        labels[tuple(slice(a, a + b) for a, b in zip(start, rng.integers(1, 8, 3), strict=True))
               ] = label
    labels[0, 0, 0] = -1  # not a lesion
    present = [int(v) for v in np.unique(labels) if v > 0]
    whole = ndimage.center_of_mass(np.ones(labels.shape), labels, present)
    assert lesion_centres(labels) == {
        label: tuple(round(c) for c in centre) for label, centre in zip(present, whole,
                                                                        strict=True)}
    assert lesion_centres(np.zeros((3, 3, 3), np.int64)) == {}


def test_lesion_table_reads_targets_by_label(tmp_path: Path) -> None:
    path = _map(tmp_path, [{"label": 2, "rim": "1"}, {"label": 1, "rim": "0"}])
    rows = lesion_table(path, [SPEC])
    assert [(r["label"], r["labels"]["rim"]) for r in rows] == [(1, 0), (2, 1)]


@pytest.mark.parametrize(("rows", "message"), [
    ([{"label": "one", "rim": "0"}, {"label": 2, "rim": "1"}], "integer lesion labels.*'one'"),
    ([{"label": 1, "rim": "0"}], "a row for every lesion.*\\[2\\]"),
    ([{"label": 1, "rim": "yes"}, {"label": 2, "rim": "1"}], "rim in .* found 'yes'"),
])
def test_bad_lesion_tables_name_the_file(tmp_path: Path, rows: list[dict], message: str) -> None:
    path = _map(tmp_path, rows)
    with pytest.raises(InputError, match=f"{table_path(path).name}: expected {message}"):
        lesion_table(path, [SPEC])


def test_lesions_of_a_probability_map_are_its_26_connected_components_by_size() -> None:
    from lesionkit.lesions import lesion_components

    probability = np.zeros((12, 12, 12), np.float32)
    probability[1:3, 1:3, 1:3] = 0.5  # 8 voxels
    probability[3, 3, 3] = 0.9  # touches the first by a corner: the same lesion
    probability[8:11, 8:11, 8:11] = 0.4  # 27 voxels: the largest, numbered 1
    probability[6, 0, 0] = 0.33  # one voxel at the threshold
    probability[0, 8, 8] = 0.3  # below it
    labels = lesion_components(probability, 0.33)
    assert labels.dtype == np.int32 and labels.max() == 3
    assert (labels[8:11, 8:11, 8:11] == 1).all()
    assert (labels[1:3, 1:3, 1:3] == 2).all() and labels[3, 3, 3] == 2
    assert labels[6, 0, 0] == 3 and labels[0, 8, 8] == 0
    kept = lesion_components(probability, 0.33, min_voxels=9)
    assert sorted(np.unique(kept)) == [0, 1, 2]  # the one-voxel lesion dropped
    assert lesion_components(np.zeros((4, 4, 4)), 0.5).max() == 0


def test_depth_inside_the_brain_is_measured_in_mm_and_drops_lesions_at_its_edge() -> None:
    from lesionkit.lesions import component_depths, depth_inside, lesion_components

    brain = np.zeros((20, 20, 10), bool)
    brain[2:18, 2:18, 1:9] = True
    depth = depth_inside(brain, (1.0, 1.0, 2.0))  # 2 mm slices
    # From the voxel's centre to the mask's outline: half a voxel for the outermost ones,
    # along whichever axis the outline is nearest.
    assert depth[0, 0, 0] == 0 and depth[2, 10, 5] == 0.5 and depth[3, 10, 5] == 1.5
    assert depth[10, 10, 1] == 1.0  # the lowest slice inside: half a 2 mm slice
    assert depth[10, 10, 4] == 7.0  # 3.5 slices of 2 mm above the outline
    assert np.isinf(depth_inside(np.ones((3, 3, 3)), (1, 1, 1))).all()
    assert (depth_inside(np.zeros((3, 3, 3)), (1, 1, 1)) == 0).all()
    probability = np.zeros(brain.shape, np.float32)
    probability[2:4, 10:12, 4:6] = 0.9  # on the mask's edge: deepest voxel 1.5 mm inside
    probability[9:11, 9:11, 4:6] = 0.8  # in the middle: 7 mm deep at most (3.5 slices)
    probability[0, 0, 0] = 0.7  # outside the brain
    every = lesion_components(probability, 0.5)
    assert every.max() == 3
    np.testing.assert_allclose(sorted(component_depths(every, depth)), [0.0, 1.5, 7.0])
    deep = lesion_components(probability, 0.5, depth_mm=depth, min_depth_mm=3.0)
    assert deep.max() == 1 and (deep[9:11, 9:11, 4:6] == 1).all()
    assert (lesion_components(probability, 0.5, depth_mm=depth, min_depth_mm=1.5) > 0
            ).sum() == 16  # a lesion reaching exactly the depth is kept
    assert (lesion_components(probability, 0.5, depth_mm=None, min_depth_mm=3.0)
            == every).all()  # no brain mask: depth not read
    assert component_depths(np.zeros((3, 3, 3), int), depth[:3, :3, :3]).size == 0
    # Two slices inside, of 2 mm as an affine stores them (1.9999979 mm), are 3 mm inside.
    slightly = depth_inside(brain, (1.0, 1.0, 1.9999979))
    second = np.zeros(brain.shape, np.float32)
    second[9:11, 9:11, 2] = 0.9
    assert component_depths(lesion_components(second, 0.5), slightly)[0] < 3.0
    assert lesion_components(second, 0.5, depth_mm=slightly, min_depth_mm=3.0).max() == 1


def test_depth_on_thick_slices_agrees_with_depth_on_thin_ones() -> None:
    """The same brain at 1 mm and at 4 mm slices (every fourth thin slice): a voxel's depth
    on both grids agrees to the half millimetre by which their outlines differ."""
    from lesionkit.lesions import depth_inside

    thin = np.zeros((40, 40, 40), bool)
    thin[4:36, 4:36, 4:36] = True  # outline at z 3.5 and 35.5 mm
    thick = thin[:, :, 2::4]  # slice k centred at z 2 + 4k mm: outline at 4 and 36 mm
    deep_thin = depth_inside(thin, (1.0, 1.0, 1.0))
    deep_thick = depth_inside(thick, (1.0, 1.0, 4.0))
    assert deep_thick[20, 20, 1] == 2.0  # the outermost slice: its centre 2 mm inside
    inside = [k for k in range(thick.shape[2]) if thick[20, 20, k]]
    assert len(inside) == 8
    for k in inside:
        assert abs(deep_thick[20, 20, k] - deep_thin[20, 20, 2 + 4 * k]) <= 0.5
