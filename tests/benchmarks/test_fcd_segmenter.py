"""benchmarks/fcd_segmenter.py: subject scores of an FCD segmenter's map, on hand-made
volumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import load_script

BENCH = Path(__file__).parents[2] / "benchmarks" / "fcd_segmenter.py"


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH, "lesionkit_benchmarks_fcd_segmenter")


def _volumes() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    brain = np.zeros((20, 20, 20))
    brain[2:18, 2:18, 2:18] = 1
    grey = np.zeros(brain.shape)
    grey[2:18, 2:18, 2:5] = 1  # a cortex on one side
    lesion = np.zeros(brain.shape)
    lesion[8:10, 8:10, 8:10] = 1  # 8 voxels
    probability = np.zeros(brain.shape)
    probability[8:10, 8:10, 8:9] = 0.95  # half the lesion at 0.95
    probability[4:6, 4:6, 2:4] = 0.5  # 8 voxels on the cortex, outside the lesion
    probability[0, 0, 0] = 1.0  # outside the brain: never counted
    return probability, brain, grey, lesion


def test_a_patient_map_is_scored_inside_the_brain(bench) -> None:
    probability, brain, grey, lesion = _volumes()
    row = bench.score_subject(probability, brain, grey, lesion)
    assert row["volume_033"] == 12 and row["volume_09"] == 4
    assert row["outside_lesion"] == 8 and row["outside_grey"] == pytest.approx(1.0)
    assert row["dice"] == pytest.approx(2 * 4 / (12 + 8))
    assert row["lesion_peak"] == pytest.approx(0.95)
    assert row["top20"] == pytest.approx((4 * 0.95 + 8 * 0.5) / 20)


def test_a_control_has_no_lesion_figures_and_the_summary_ranks_subjects(bench) -> None:
    probability, brain, grey, lesion = _volumes()
    control = bench.score_subject(probability * (lesion == 0), brain, grey, None)
    assert control["dice"] is None and control["lesion_peak"] is None
    assert control["outside_lesion"] == 8
    patient = bench.score_subject(probability, brain, grey, lesion)
    rows = [{"patient": 1, **patient}, {"patient": 0, **control},
            {"patient": 1, **patient}, {"patient": 0, **control}]
    summary = bench.summary(rows)
    assert summary["auc_volume_033"] == 1.0 and summary["auc_top20"] == 1.0
    assert summary["lesion_peak_over_05"] == 2 and summary["dice_median"] == pytest.approx(0.4)
    assert summary["controls_marked_median_voxels"] == 8.0
    assert summary["outside_lesion_grey_probability_median"] == 1.0


def test_a_map_that_marks_nothing_has_no_grey_share(bench) -> None:
    probability, brain, grey, lesion = _volumes()
    rows = [{"patient": k % 2, **bench.score_subject(np.zeros_like(probability), brain, grey,
                                                     lesion if k % 2 else None)}
            for k in range(4)]
    summary = bench.summary(rows)
    assert summary["outside_lesion_grey_probability_median"] is None
    assert summary["auc_volume_033"] == 0.5 and summary["lesion_peak_over_05"] == 0


def test_held_out_subjects_need_the_phantoms_maps(bench, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"participants\.tsv.*no such file"):
        bench.phantom_files(tmp_path, ["01"])
    (tmp_path / "participants.tsv").write_text("participant_id\tgroup\nsub-01\tpatient\n"
                                               "sub-02\tcontrol\n")
    phantom = tmp_path / "derivatives" / "phantom"
    for label in ("01", "02"):
        anat = phantom / f"sub-{label}" / "anat"
        anat.mkdir(parents=True)
        for name in ("desc-brain_mask", "label-GM_probseg"):
            (anat / f"sub-{label}_{name}.nii.gz").touch()
    assert not bench.phantom_files(tmp_path, ["02"])["02"]["patient"]
    with pytest.raises(SystemExit, match=r"sub-01_label-lesion_mask\.nii\.gz: expected the "
                                         r"phantom's lesion map"):
        bench.phantom_files(tmp_path, ["01", "02"])
    with pytest.raises(SystemExit, match="group patient or control for sub-03, found None"):
        bench.phantom_files(tmp_path, ["03"])
