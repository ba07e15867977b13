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
