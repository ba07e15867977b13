"""benchmarks/rim_phantom.py: lesion counts of a rim-classify phantom, and its bad inputs, on
hand-made tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

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
