"""Class priors of classifiers trained on resampled data.

A classifier whose loss saw the classes at other frequencies than the data hold (batches
with a fixed number of positive lesions, synthetic minority samples) learns posteriors at
the frequencies it saw: a rim+ lesion is 3 % of the lesions but a quarter of each batch,
so every probability comes out too high. Bayes' rule moves a posterior from one prior to
another by adding the log ratio of the priors to the logits (Saerens, Latinne and
Decaestecker 2002, Neural Comput 14:21; Dal Pozzolo et al. 2015, IEEE SSCI, for
undersampling): :func:`prior_shift` gives that offset from the class counts of the
training data and of the loss's targets, both recorded per fold at training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def class_counts(target: Any, classes: int) -> np.ndarray:
    """(classes,) counts of a batch of classification targets.

    Args:
        target: Class indices (B,), 0/1 labels (B,) or (B, 1) of a binary task, or class
            probabilities (B, classes); a numpy array or a torch tensor.
        classes: Number of classes (2 for a task with one sigmoid output).

    Example:
        >>> class_counts(np.array([0, 1, 1, 0, 0]), 2).tolist()
        [3.0, 2.0]
    """
    values = np.asarray(target.detach().cpu() if hasattr(target, "detach") else target,
                        dtype=np.float64)
    if values.ndim == 2 and values.shape[1] == classes and classes > 1:
        return values.sum(axis=0)
    values = values.reshape(-1)
    if classes == 2 and np.any((values > 0) & (values < 1)):
        return np.array([len(values) - values.sum(), values.sum()])
    return np.bincount(values.astype(np.int64), minlength=classes)[:classes].astype(np.float64)


def prior_shift(training: Sequence[float] | None, seen: Sequence[float] | None,
                activation: str | None) -> np.ndarray | None:
    """Logit offsets that move posteriors learned at the class frequencies ``seen`` to
    those of ``training``.

    Args:
        training: Class counts of the training examples (the data's prior).
        seen: Class counts of the targets the loss saw during training.
        activation: ``"sigmoid"`` (one logit, classes negative and positive) or
            ``"softmax"`` (one logit per class); otherwise no shift.

    Returns:
        Offsets to add to the logits, (1,) for a sigmoid and (classes,) for a softmax;
        None where the counts are missing, of different lengths, or hold an empty class.

    Example:
        >>> float(prior_shift([97, 3], [75, 25], "sigmoid")[0])  # doctest: +ELLIPSIS
        -2.37...
    """
    if training is None or seen is None or activation not in ("sigmoid", "softmax"):
        return None
    prior, used = np.asarray(training, np.float64), np.asarray(seen, np.float64)
    if prior.shape != used.shape or prior.ndim != 1 or len(prior) < 2 or (prior <= 0).any() \
            or (used <= 0).any():
        return None
    log_ratio = np.log(prior / prior.sum()) - np.log(used / used.sum())
    if activation == "sigmoid":
        if len(prior) != 2:
            return None
        return np.array([log_ratio[1] - log_ratio[0]])
    return log_ratio
