"""Seeded subject-level splits and folds."""

from __future__ import annotations

from pathlib import Path

import pytest

from lesionkit.io import InputError
from lesionkit.splits import kfold_subjects, split_subjects
from lesionkit.units import example_unit, subjects_of

SUBJECTS = [f"{i:02d}" for i in range(1, 11)]


def test_split_is_disjoint_complete_and_seeded() -> None:
    split = split_subjects(SUBJECTS, seed=3)
    assert not set(split["train"]) & set(split["validation"])
    assert sorted(split["train"] + split["validation"]) == SUBJECTS
    assert split == split_subjects(list(reversed(SUBJECTS)), seed=3)
    assert split != split_subjects(SUBJECTS, seed=4)


def test_a_classifier_split_validates_every_class() -> None:
    labels = [int(s in ("02", "09")) for s in SUBJECTS]  # 2 patients among 10 subjects
    for seed in range(20):
        split = kfold_subjects(SUBJECTS, 1, seed, labels)[0]
        assert {"02", "09"} & set(split["validation"]), seed  # a patient in validation
        assert {"02", "09"} & set(split["train"]), seed  # and one to learn from
    # one patient only: no stratifying possible, the split is drawn as without labels
    alone = [int(s == "02") for s in SUBJECTS]
    assert kfold_subjects(SUBJECTS, 1, 3, alone)[0] == split_subjects(SUBJECTS, seed=3)


def test_kfold_validates_every_subject_once() -> None:
    folds = kfold_subjects(SUBJECTS, folds=5, seed=0)
    validated = [s for fold in folds for s in fold["validation"]]
    assert sorted(validated) == SUBJECTS
    for fold in folds:
        assert not set(fold["train"]) & set(fold["validation"])
        assert len(fold["train"]) == 8


def test_sessions_of_one_subject_stay_on_one_side() -> None:
    examples = [f"{s}_ses-{k}" for s in SUBJECTS for k in (1, 2)] + ["11"]  # 11: no session
    assert example_unit("03_ses-2") == ("03", "2") and example_unit("11") == ("11", None)
    labels = [int(example_unit(n)[0] in ("02", "05", "07", "11")) for n in examples]
    folds = kfold_subjects(examples, 3, seed=0, labels=labels)
    assert sorted(n for fold in folds for n in fold["validation"]) == sorted(examples)
    for fold in [*folds, split_subjects(examples, seed=1)]:
        assert not set(subjects_of(fold["train"])) & set(subjects_of(fold["validation"]))
        assert sorted(fold["train"] + fold["validation"]) == sorted(examples)
    # the folds are drawn over subjects: one session each folds as the plain labels do
    plain = kfold_subjects(SUBJECTS, 5, seed=0)
    sessions = kfold_subjects([f"{s}_ses-1" for s in SUBJECTS], 5, seed=0)
    assert [subjects_of(f["validation"]) for f in sessions] == [f["validation"] for f in plain]


@pytest.mark.parametrize("folds", [1, 3])
def test_one_class_only_is_refused_for_a_classifier(folds: int) -> None:
    with pytest.raises(InputError, match=r"participants\.tsv: expected subjects of at least 2 "
                                         r"classes to train a classifier, found 10 subjects, "
                                         r"all of one class"):
        kfold_subjects(SUBJECTS, folds, seed=0, labels=[1] * len(SUBJECTS),
                       labels_from=Path("participants.tsv"))


def test_too_few_subjects_is_an_input_error() -> None:
    with pytest.raises(InputError, match="at least 2"):
        split_subjects(["01"], seed=0)
    with pytest.raises(InputError, match="3 folds"):
        kfold_subjects(["01", "02"], folds=3, seed=0)
