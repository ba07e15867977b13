"""How predictions are written (lesionkit.writers): the lesions read from a lesion map."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lesionkit.io import load_volume
from lesionkit.tasks.task import OutputSpec
from lesionkit.volume import Volume
from lesionkit.writers import LesionReading, Written, _write_lesion_components

SPEC = OutputSpec("probseg", "model", "1", "probability", entities=(("label", "lesion"),))


def _written(tmp_path: Path, brain: np.ndarray | None) -> Written:
    affine = np.diag([1.0, 1.0, 2.0, 1.0])  # 2 mm slices
    reference = Volume(np.zeros((24, 24, 12), np.float32), affine)
    return Written(tmp_path, "01", None, None, {}, reference, affine, [], brain=brain)


@pytest.mark.parametrize("min_depth, kept", [(3.0, [9.0]), (0.0, [1.5, 9.0])])
def test_lesions_at_the_brain_masks_edge_are_dropped_and_every_depth_is_tabled(
        tmp_path: Path, min_depth: float, kept: list[float]) -> None:
    brain = np.zeros((24, 24, 12), np.uint8)
    brain[2:22, 2:22, 1:11] = 1
    probability = np.zeros(brain.shape, np.float32)
    probability[10:13, 10:13, 4:7] = 0.8  # deep: 9 mm from the mask's outline at most
    probability[2:4, 2:8, 5:7] = 0.9  # larger, on the mask's edge: 1.5 mm inside at most
    probability[2:8, 2:4, 5:7] = 0.9
    out = _written(tmp_path, brain)
    row = _write_lesion_components(out, SPEC, probability, LesionReading(0.33, 0.0, min_depth))
    table = pd.read_csv(next(tmp_path.rglob("*_lesions.tsv")), sep="\t")
    assert sorted(table["depth_mm"]) == kept and row["lesion_count"] == len(kept)
    assert row["min_lesion_depth_mm"] == min_depth
    labels = load_volume(next(tmp_path.rglob("*_dseg.nii.gz"))).data
    assert labels.max() == len(kept) and (labels[10:13, 10:13, 4:7] > 0).all()
    assert (labels[2:4, 2:8, 5:7] > 0).all() == (min_depth == 0)


def test_without_a_brain_mask_no_lesion_is_dropped_by_depth(tmp_path: Path) -> None:
    probability = np.zeros((24, 24, 12), np.float32)
    probability[0:2, 0:2, 0:2] = 0.9  # at the edge of the grid
    row = _write_lesion_components(_written(tmp_path, None), SPEC, probability,
                                   LesionReading())
    table = pd.read_csv(next(tmp_path.rglob("*_lesions.tsv")), sep="\t")
    assert row["lesion_count"] == 1 and row["min_lesion_depth_mm"] == 0.0
    assert table["depth_mm"].isna().all()
