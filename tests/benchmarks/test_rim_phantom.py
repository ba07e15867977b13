"""benchmarks/rim_phantom.py: lesion counts of a rim-classify phantom, and its bad inputs, on
hand-made tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import load_script

BENCH = Path(__file__).parents[2] / "benchmarks" / "rim_phantom.py"


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH, "lesionkit_benchmarks_rim_phantom")


def _table(root: Path, subject: str, rows: list[dict]) -> None:
    folder = root / "derivatives/phantom" / f"sub-{subject}" / "anat"
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / f"sub-{subject}_lesions.tsv", sep="\t", index=False)


def _row(label: int, rim: int, vein: int = 0, kind: str = "deep") -> dict:
    return {"label": label, "rim": rim, "vein": vein, "type": kind, "volume_mm3": 100.0 * label}


def test_lesion_counts(bench, tmp_path: Path) -> None:
    _table(tmp_path, "01", [_row(1, 1, kind="library"), _row(2, 0, vein=1), _row(3, 1)])
    _table(tmp_path, "02", [_row(1, 0), _row(2, 0)])
    summary = bench.lesion_summary(tmp_path)
    assert (summary["subjects"], summary["lesions"], summary["rim_positive"]) == (2, 5, 2)
    assert summary["rim_positive_percent"] == 40.0 and summary["with_vein"] == 1
    assert summary["rim_positive_library"] == 1
    assert summary["subjects_by_rim_positive_count"] == {0: 1, 2: 1}
    assert summary["rim_positive_volume_mm3_median"] == 200.0
    assert bench.lesion_summary(tmp_path, ["02"])["rim_positive"] == 0


def test_bad_inputs_name_the_file(bench, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="expected lesion tables under derivatives/phantom"):
        bench.lesion_summary(tmp_path)
    _table(tmp_path, "01", [{"label": 1, "rim": 0}])
    with pytest.raises(SystemExit, match=r"sub-01_lesions.tsv: expected a rim-classify lesion "
                                         r"table .* found none named \['type', 'vein', "):
        bench.lesion_summary(tmp_path)
    _table(tmp_path, "01", [_row(1, 0)])
    with pytest.raises(SystemExit, match=r"sub-01_Chimap\.nii\.gz: expected an image of the "
                                         r"rim-classify phantom, found no such file"):
        bench.qsm_values(tmp_path, ["01"])


def _predicted(crossval: Path, arm: str, subject: str, probabilities: list[float]) -> None:
    folder = crossval / f"arm-{arm}" / "predictions" / f"sub-{subject}" / "anat"
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"label": range(1, len(probabilities) + 1), "probability": probabilities}
                 ).to_csv(folder / f"sub-{subject}_desc-rim_lesions.tsv", sep="\t", index=False)


def test_scores_by_rim_class_vein_and_type(bench, tmp_path: Path) -> None:
    data, crossval = tmp_path / "data", tmp_path / "cv"
    _table(data, "01", [_row(1, 1, vein=1), _row(2, 1), _row(3, 0, vein=1), _row(4, 0)])
    _table(data, "02", [_row(1, 1), _row(2, 0, kind="library")])
    _predicted(crossval, "fused", "01", [0.2, 0.9, 0.7, 0.1])
    _predicted(crossval, "fused", "02", [0.6, 0.3])
    strata = bench.score_strata(data, crossval)["fused"]
    assert strata["rim+, with a vein"] == {"lesions": 1, "lesions_at_least_0.5": 0,
                                           "at_least_0.5": 0.0, "median_probability": 0.2}
    assert strata["rim+, without a vein"] == {"lesions": 2, "lesions_at_least_0.5": 2,
                                              "at_least_0.5": 1.0, "median_probability": 0.75}
    assert strata["rim-, with a vein"]["at_least_0.5"] == 1.0
    assert strata["rim-, without a vein"]["lesions"] == 2
    assert strata["rim-, library"] == {"lesions": 1, "lesions_at_least_0.5": 0,
                                       "at_least_0.5": 0.0, "median_probability": 0.3}
    assert strata["rim+, library"] == {"lesions": 0, "lesions_at_least_0.5": 0,
                                       "at_least_0.5": None, "median_probability": None}


def test_scores_bad_inputs_name_the_folder(bench, tmp_path: Path) -> None:
    data, crossval = tmp_path / "data", tmp_path / "cv"
    _table(data, "01", [_row(1, 1)])
    with pytest.raises(SystemExit, match="cv: expected the arm-\\* folders of a crossval run"):
        bench.score_strata(data, crossval)
    (crossval / "arm-fused").mkdir(parents=True)
    with pytest.raises(SystemExit, match="arm-fused: expected lesion tables under predictions"):
        bench.score_strata(data, crossval)
    _predicted(crossval, "fused", "01", [0.9, 0.1])  # lesion 2 is not in the data's table
    with pytest.raises(SystemExit, match=r"arm-fused: expected the lesions of .*data's lesion "
                                         r"tables, found 1 of 2 predicted lesions without"):
        bench.score_strata(data, crossval)


def test_prior_comparison_takes_each_folds_shift_back_out(bench, tmp_path: Path) -> None:
    data, crossval = tmp_path / "data", tmp_path / "cv"
    truth = {"01": [1, 0], "02": [0, 0], "03": [1, 1], "04": [0, 1]}
    predicted = {"01": [0.8, 0.1], "02": [0.2, 0.3], "03": [0.7, 0.6], "04": [0.05, 0.9]}
    for subject, rims in truth.items():
        _table(data, subject, [_row(i + 1, r) for i, r in enumerate(rims)])
        _predicted(crossval, "fused", subject, predicted[subject])
    # fold 0 trained on 01, 02 (so held out 03, 04); fold 1 the other way round
    folds = [{"fold": 0, "train": ["01", "02"], "validation": [],
              "class_counts": {"training": [3.0, 1.0], "loss": [1.0, 1.0]}},
             {"fold": 1, "train": ["03", "04"], "validation": [],
              "class_counts": {"training": [1.0, 3.0], "loss": [1.0, 1.0]}}]
    (crossval / "arm-fused" / "model").mkdir(parents=True)
    (crossval / "arm-fused" / "model" / "config.yaml").write_text(yaml.safe_dump(
        {"folds": folds}))
    result = bench.prior_comparison(data, crossval, n_resamples=10)["fused"]
    assert result["shift_per_fold"] == [round(-np.log(3), 3), round(np.log(3), 3)]

    def unshift(p: float, shift: float) -> float:
        return 1 / (1 + np.exp(-(np.log(p / (1 - p)) - shift)))

    expected = sum(unshift(p, np.log(3)) for s in ("01", "02") for p in predicted[s]) + sum(
        unshift(p, -np.log(3)) for s in ("03", "04") for p in predicted[s])
    assert result["shift taken out"]["sum_of_probabilities"] == pytest.approx(expected, abs=0.01)
    assert result["as predicted"]["sum_of_probabilities"] == pytest.approx(3.65)
    assert result["as predicted"]["rim_positive"] == 4
    assert result["as predicted"]["roc_auc"] == 1.0  # every rim+ above every rim-
    folds[1]["class_counts"] = {}
    (crossval / "arm-fused" / "model" / "config.yaml").write_text(yaml.safe_dump(
        {"folds": folds}))
    with pytest.raises(SystemExit, match="expected class counts of data and loss in fold 1"):
        bench.prior_comparison(data, crossval, n_resamples=10)
