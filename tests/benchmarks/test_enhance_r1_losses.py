"""benchmarks/enhance_r1_losses.py: which subjects a larger cohort trains on."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import load_script

BENCH = Path(__file__).parents[2] / "benchmarks" / "enhance_r1_losses.py"


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH, "lesionkit_benchmarks_er_losses")


def _participants(root: Path, groups: list[str]) -> Path:
    lines = ["participant_id\tgroup"] + [f"sub-{i + 1:02d}\t{g}" for i, g in enumerate(groups)]
    root.mkdir()
    (root / "participants.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_sixteen_subjects_train_on_the_documented_controls(bench, tmp_path):
    groups = ["fcd" if i % 3 == 1 else "control" for i in range(16)]  # the cohort's rule
    assert bench.training_subjects(_participants(tmp_path / "er16", groups)) == bench.TRAIN


def test_larger_cohort_adds_controls_and_never_the_held_out(bench, tmp_path):
    groups = ["fcd" if i % 3 == 1 else "control" for i in range(100)]
    names = bench.training_subjects(_participants(tmp_path / "er100", groups))
    assert names[: len(bench.TRAIN)] == bench.TRAIN
    assert not set(names) & set(bench.HELD_OUT)
    assert len(names) == 65  # 67 controls, two of them held out (15, 16)
    assert "17" not in names and "18" in names  # sub-17 is a patient
