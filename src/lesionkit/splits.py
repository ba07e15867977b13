"""Seeded subject-level splits: a train/validation split and k folds, stratified by class
for classifiers; the sessions of one subject stay on one side (scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lesionkit.io import InputError
from lesionkit.units import example_unit


def split_subjects(subjects: Sequence[str], seed: int, validation_fraction: float = 0.2,
                   labels: dict[str, int] | None = None) -> dict[str, list[str]]:
    """Seeded subject-level train/validation split (at least one subject in each).

    ``subjects`` are example names (:func:`example_name`): the sessions of one subject
    stay on one side. With ``labels`` (subject -> class index) and at least 2 subjects of
    every class, each class is split on its own (the same fraction, at least one subject
    on each side), so a classifier's validation holds every class.
    """
    from sklearn.model_selection import train_test_split

    people = sorted({example_unit(n)[0] for n in subjects})
    if len(people) < 2:
        raise InputError(f"expected at least 2 subjects to split, found {len(people)}")
    groups = [people]
    if labels is not None:
        classes = sorted({labels[p] for p in people})
        by_class = [[p for p in people if labels[p] == c] for c in classes]
        groups = by_class if min(len(g) for g in by_class) >= 2 else [people]
    train, val = [], []
    for group in groups:
        n_val = min(max(1, round(validation_fraction * len(group))), len(group) - 1)
        part_train, part_val = train_test_split(group, test_size=n_val, random_state=seed)
        train, val = train + part_train, val + part_val
    return {"train": _examples_of(subjects, train), "validation": _examples_of(subjects, val)}


def _examples_of(examples: Sequence[str], subjects: Sequence[str]) -> list[str]:
    """The examples (sorted) of the given subjects."""
    chosen = set(subjects)
    return sorted(n for n in examples if example_unit(n)[0] in chosen)


def kfold_subjects(subjects: Sequence[str], folds: int, seed: int,
                   labels: Sequence[int] | None = None, labels_from: Path | None = None
                   ) -> list[dict[str, list[str]]]:
    """Seeded subject-level k folds; fold k validates on the k-th part.

    ``subjects`` are example names (:func:`example_name`): the folds are drawn over
    subjects, and the sessions of one subject stay in one part. With ``labels`` (one
    class index per name, same order) the folds are stratified (scikit-learn
    ``StratifiedKFold``): each keeps the class ratio of the whole set; subjects of one
    class only are refused (``labels_from``: the table they came from, for the message).
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    label = dict(zip([example_unit(n)[0] for n in subjects], labels, strict=True)
                 ) if labels is not None else None
    if label is not None and len(set(label.values())) < 2:
        where = f"{labels_from}: " if labels_from else ""
        raise InputError(f"{where}expected subjects of at least 2 classes to train a "
                         f"classifier, found {len(label)} subjects, all of one class")
    if folds < 2:
        return [split_subjects(subjects, seed, labels=label)]
    ordered = np.array(sorted({example_unit(n)[0] for n in subjects}))
    if folds > len(ordered):
        raise InputError(f"expected at least {folds} subjects for {folds} folds, "
                         f"found {len(ordered)}")
    if label is None:
        splits = KFold(n_splits=folds, shuffle=True, random_state=seed).split(ordered)
    else:
        y = np.array([label[s] for s in ordered])
        if len(np.unique(y)) < 2 or np.bincount(y).min() < folds:
            raise InputError(f"expected at least {folds} subjects of each class for {folds} "
                             f"stratified folds, found class counts {np.bincount(y).tolist()}")
        splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(ordered, y)
    return [{"train": _examples_of(subjects, ordered[tr].tolist()),
             "validation": _examples_of(subjects, ordered[va].tolist())} for tr, va in splits]
