"""benchmarks/phantom_changes.py: scoring lesion changes against the phantom's truth."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import load_script

BENCH = Path(__file__).parents[2] / "benchmarks" / "phantom_changes.py"


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH, "lesionkit_benchmarks_phantom_changes")


def test_a_true_change_is_found_only_by_a_call_of_its_direction(bench, tmp_path) -> None:
    truth = np.zeros((12, 12, 12), np.int16)
    truth[1:3, 1:3, 1:3] = 1      # new: an increase touches it
    truth[5:7, 5:7, 5:7] = 4      # resolved: only an increase touches it (not found)
    truth[9:11, 1:3, 1:3] = 2     # enlarging: nothing there
    calls = np.zeros((12, 12, 12), np.int32)
    calls[2, 2, 2] = 1            # new, right
    calls[6, 6, 6] = 2            # enlarging on a resolved lesion: wrong direction
    calls[0, 11, 11] = 3          # shrinking, elsewhere
    truth_path = tmp_path / "t_label-change_dseg.nii.gz"
    nib.save(nib.Nifti1Image(truth, np.eye(4)), truth_path)
    calls_path = tmp_path / "c_desc-xchange_dseg.nii.gz"
    nib.save(nib.Nifti1Image(calls, np.eye(4)), calls_path)
    calls_path.with_name("c_desc-xchange_dseg.tsv").write_text(
        "label\tchange\tvolume_mm3\tmean_z\n1\tnew\t1\t4\n2\tenlarging\t1\t3\n"
        "3\tshrinking\t1\t-2.5\n")
    row = bench.score_subject(truth_path, calls_path)
    assert (row["new_true"], row["new_found"]) == (1, 1)
    assert (row["resolved_true"], row["resolved_found"]) == (1, 0)
    assert (row["enlarging_true"], row["enlarging_found"]) == (1, 0)
    assert (row["increase_calls"], row["increase_false"]) == (2, 1)
    assert (row["decrease_calls"], row["decrease_false"]) == (1, 1)
    assert [c["mean_z"] for c in row["false_calls"]] == [3.0, -2.5]


def test_registration_error_is_zero_for_the_true_motion(bench, tmp_path) -> None:
    motion = np.eye(4)
    motion[:3, 3] = [3.0, -2.0, 1.0]
    truth_path = tmp_path / "t_label-change_dseg.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.eye(4)), truth_path)
    truth_path.with_name("t_label-change_dseg.json").write_text(
        json.dumps({"HeadMotion": motion.tolist()}))
    calls_path = tmp_path / "c_desc-xchange_dseg.nii.gz"
    calls_path.with_name("c_desc-xchange_dseg.json").write_text(
        json.dumps({"BaselineToFollowUp": motion.tolist()}))
    assert bench.registration_error(truth_path, calls_path) == 0.0
    off = motion.copy()
    off[0, 3] += 1.0
    calls_path.with_name("c_desc-xchange_dseg.json").write_text(
        json.dumps({"BaselineToFollowUp": off.tolist()}))
    assert bench.registration_error(truth_path, calls_path) == pytest.approx(1.0)
