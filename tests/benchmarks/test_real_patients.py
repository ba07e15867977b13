"""benchmarks/real_patients.py: scoring a lesion map against a change mask, by hand."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import load_script

BENCH = Path(__file__).parents[2] / "benchmarks" / "real_patients.py"


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH, "lesionkit_benchmarks_real_patients")


def test_components_changes_flagged_and_specks_are_counted(bench, tmp_path: Path) -> None:
    """2 mm voxels (0.008 mL): a 27-voxel lesion on one of two changed lesions, two
    one-voxel specks (one outside the brain mask), and nothing on the other change."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    probability = np.zeros((20, 20, 20), np.float32)
    probability[2:5, 2:5, 2:5] = 0.9       # 0.216 mL, on the first changed lesion
    probability[10, 10, 10] = 0.5          # a speck inside the brain
    probability[19, 19, 19] = 0.6          # a speck outside it
    probability[15, 2, 2] = 0.2            # below the threshold
    change = np.zeros((20, 20, 20), np.uint8)
    change[3, 3, 3] = change[15, 15, 15] = 1
    brain = np.ones((20, 20, 20), bool)
    brain[18:, 18:, 18:] = False
    path = tmp_path / "p.nii.gz"
    nib.save(nib.Nifti1Image(probability, affine), path)
    scores = bench.score(path, nib.Nifti1Image(change, affine), 0.33, brain_mask=brain)
    assert (scores["change_lesions"], scores["change_lesions_flagged"]) == (2, 1)
    assert (scores["predicted_components"], scores["components_touching_change"]) == (2, 1)
    assert scores["predicted_volume_ml"] == pytest.approx(28 * 0.008)
    assert scores["median_component_ml"] == pytest.approx((27 + 1) / 2 * 0.008)
    assert scores["components_over_speck"] == 1
    everywhere = bench.components(path, 0.33)
    assert everywhere["predicted_components"] == 3 and everywhere["components_over_speck"] == 1
    assert everywhere["median_component_ml"] == pytest.approx(0.008)
    # With predict's --min-lesion-ml 0.05: the specks are no lesions, the 27 voxels stay.
    large = bench.score(path, nib.Nifti1Image(change, affine), 0.33, brain_mask=brain,
                        min_ml=0.05)
    assert (large["predicted_components"], large["change_lesions_flagged"]) == (1, 1)
    assert large["predicted_volume_ml"] == pytest.approx(27 * 0.008)
    assert bench.components(path, 0.33, min_ml=0.05)["predicted_components"] == 1


def _calls(tmp_path: Path, labels: np.ndarray, kinds: dict[int, str]) -> Path:
    """A ``lesionkit changes`` label map and its table."""
    path = tmp_path / "x_desc-mchange_dseg.nii.gz"
    nib.save(nib.Nifti1Image(labels.astype(np.int32), np.eye(4)), path)
    rows = ["label\tchange\tvolume_mm3\tmean_z"] + [f"{k}\t{v}\t1\t2.5"
                                                    for k, v in kinds.items()]
    path.with_name("x_desc-mchange_dseg.tsv").write_text("\n".join(rows) + "\n")
    return path


def test_changes_are_scored_against_the_change_lesions_by_direction(bench, tmp_path) -> None:
    """Two changed lesions (one brighter at study2, one darker): a call on the first, one
    elsewhere."""
    truth = np.zeros((10, 10, 10), np.int32)
    truth[1:3, 1:3, 1:3], truth[6:8, 6:8, 6:8] = 1, 2
    labels = np.zeros((10, 10, 10))
    labels[2, 2, 2], labels[5, 0, 9] = 1, 2
    scores = bench.score_changes(_calls(tmp_path, labels, {1: "new", 2: "shrinking"}), truth,
                                 np.array([True, False]))
    assert scores["change_lesions"] == "2 (1 / 1)" and scores["changes_called"] == 2
    assert (scores["calls_touching_change"], scores["calls_elsewhere"]) == (1, 1)
    assert scores["flagged"] == "1 (1 / 0)"
    assert scores["called_by_kind"] == "1 new, 0 enlarging, 1 shrinking, 0 resolved"
    assert scores["calls_elsewhere_detail"] == "shrinking 1 mm^3 z 2.5"
    assert scores["median_change_lesion_ml"] == 0.008  # two lesions of 8 voxels of 1 mm^3
    assert scores["largest_change_lesions"] == "0.01 mL brighter, 0.01 mL darker"


def test_lesion_brightness_is_the_z_score_predict_reads(bench) -> None:
    """A bright and a dark lesion in a noisy brain: their median z-scores lie on either
    side of the brain's median, in the brain's robust SD."""
    rng = np.random.default_rng(0)
    flair = rng.normal(100.0, 10.0, (24, 24, 24)).astype(np.float32)
    brain = np.ones_like(flair, bool)
    lesions = np.zeros_like(brain)
    lesions[3:7, 3:7, 3:7] = True
    lesions[15:19, 15:19, 15:19] = True
    flair[3:7, 3:7, 3:7] += 40.0    # about 4 robust SD above the brain
    flair[15:19, 15:19, 15:19] -= 15.0
    rows = bench.lesion_brightness(flair, lesions, brain)
    assert [r["voxels"] for r in rows] == [64, 64]
    assert rows[0]["median_z"] == pytest.approx(4.0, abs=0.5)
    assert rows[1]["median_z"] == pytest.approx(-1.5, abs=0.5)
    assert rows[0]["largest_z"] > rows[0]["median_z"]
