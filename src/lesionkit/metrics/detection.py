"""An automatic lesion detector for bright blobs: candidates, a learned reader, thresholds.

The detector stands in for a human reader of post-contrast images. Candidates come from
a Laplacian-of-Gaussian blob detector (``skimage.feature.blob_log``) on the image
normalised inside the brain; each carries its blobness (:func:`blobness`: the
scale-normalised LoG response for a round blob, near zero for a tube such as a vessel),
so that one run at a low floor gives the detections at every higher threshold. Blobness
alone takes a vessel's bend or the choroid plexus for a lesion; a reader also looks at
where a blob lies and at the subject's other images. :func:`fit_reader` learns that
from training cases: a classifier of each candidate's features
(:func:`candidate_features`) and thresholds (:func:`choose_threshold`) on its out-of-fold
scores, then applied unchanged to every image kind.

Example::

    found = blob_candidates(t1c, brain, spacing)
    features = candidate_features(found, t1c, brain, spacing, [t1w, flair])
    reader = fit_reader([(found, features, affine, centres, long, short), ...],
                        {"f1": None})
    kept = reader.score(found, features).above(reader.thresholds["f1"])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lesionkit.metrics.contrast import match_detections

__all__ = ["BlobCandidates", "Reader", "blob_candidates", "blobness", "candidate_features",
           "choose_threshold", "fit_reader", "robust_zscore"]

#: Blob diameters (mm) the detector looks for: small metastases to large lesions.
DIAMETERS_MM = (2.0, 25.0)
#: Smallest scale (voxels): below it a Gaussian derivative is no longer sampled well.
MIN_SIGMA_VOXELS = 0.7
#: Scales searched between the smallest and the largest.
NUM_SIGMA = 8
#: Brain percentile taken as the brightest normal tissue: only what is brighter makes blobs.
BACKGROUND_PERCENTILE = 90.0
#: Lowest score kept (in brain-normalised units): far below any useful threshold.
FLOOR = 0.3


def robust_zscore(image: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """(image - median) / (interquartile range / 1.349) of the brain voxels; 0 outside.

    Dimensionless; does not change when the image is scaled or shifted.
    """
    image = np.asarray(image, np.float64)
    brain = np.asarray(brain, bool)
    inside = image[brain]
    q1, median, q3 = np.percentile(inside, [25, 50, 75])
    scale = (q3 - q1) / 1.349 or float(inside.std()) or 1.0
    return np.where(brain, (image - median) / scale, 0.0)


@dataclass(frozen=True)
class BlobCandidates:
    """Candidate blobs of one image.

    Attributes:
        centres: (n, 3) voxel indices of the blob centres.
        sigmas_mm: (n,) blob scale (mm); a blob's diameter is about 2 sqrt(3) sigma.
        scores: (n,) blobness (:func:`blobness`, brain-normalised units).
    """

    centres: np.ndarray
    sigmas_mm: np.ndarray
    scores: np.ndarray

    def centres_mm(self, affine: np.ndarray) -> np.ndarray:
        """(n, 3) blob centres in world mm."""
        return self.centres @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]

    def above(self, threshold: float) -> BlobCandidates:
        """The candidates scoring at least ``threshold``."""
        keep = self.scores >= threshold
        return BlobCandidates(self.centres[keep], self.sigmas_mm[keep], self.scores[keep])

    def rescored(self, scores: np.ndarray) -> BlobCandidates:
        """The same candidates with other scores (for example a reader's probabilities)."""
        return BlobCandidates(self.centres, self.sigmas_mm, np.asarray(scores, float))


def blob_candidates(image: np.ndarray, brain: np.ndarray, spacing_mm: Sequence[float],
                    diameters_mm: tuple[float, float] = DIAMETERS_MM,
                    floor: float = FLOOR) -> BlobCandidates:
    """Bright blobs of an image inside its brain mask, with their scores.

    The image is robustly z-scored inside the brain (:func:`robust_zscore`, zero outside),
    the brain's 90th percentile (about the brightest normal tissue, white matter on a
    T1-weighted image) subtracted and negative values set to zero, so that only what is
    brighter than normal tissue can make a blob, as a reader looks for it; then given
    to ``skimage.feature.blob_log`` with scales for blobs of ``diameters_mm`` (sigma =
    diameter / (2 sqrt 3), per axis in voxels, at least :data:`MIN_SIGMA_VOXELS`) and
    ``threshold=floor``; blobs centred
    outside the brain are dropped.

    Args:
        image: 3D image in any unit.
        brain: Brain mask of the same shape.
        spacing_mm: Voxel size (mm) per axis.
        diameters_mm: Smallest and largest blob diameter looked for (mm).
        floor: Lowest score returned.
    """
    from skimage.feature import blob_log

    brain = np.asarray(brain, bool)
    z = robust_zscore(image, brain)
    z = np.clip(z - np.percentile(z[brain], BACKGROUND_PERCENTILE), 0.0, None)
    spacing = np.asarray(spacing_mm, float)
    low, high = (d / (2.0 * np.sqrt(3.0)) / spacing for d in diameters_mm)
    low = np.maximum(low, MIN_SIGMA_VOXELS)
    blobs = blob_log(z, min_sigma=tuple(low), max_sigma=tuple(np.maximum(high, 2 * low)),
                     num_sigma=NUM_SIGMA, threshold=floor, exclude_border=False)
    if len(blobs) == 0:
        empty = np.zeros((0, 3))
        return BlobCandidates(empty, np.zeros(0), np.zeros(0))
    centres = blobs[:, :3].astype(int)
    sigmas = blobs[:, 3:6]
    inside = brain[tuple(centres.T)]
    centres, sigmas = centres[inside], sigmas[inside]
    scores = np.empty(len(centres))
    for unique in np.unique(sigmas, axis=0):
        rows = np.all(sigmas == unique, axis=1)
        scores[rows] = blobness(z, centres[rows], unique)
    return BlobCandidates(centres.astype(float), (sigmas * spacing).mean(axis=1), scores)


def blobness(image: np.ndarray, points: np.ndarray, sigma: Sequence[float]) -> np.ndarray:
    """Three times the scale-normalised Hessian eigenvalue nearest zero, sign reversed.

    For a bright sphere the three eigenvalues of the Hessian are about equal, so this
    equals the scale-normalised LoG response that ``blob_log`` thresholds; for a tube
    (a vessel) one eigenvalue is near zero and so is the score; a plate or an edge
    scores below zero. ``skimage.feature.hessian_matrix`` at scale ``sigma`` (voxels).

    Args:
        image: 3D image.
        points: (n, 3) voxel indices where the score is wanted.
        sigma: Scale per axis (voxels).
    """
    from skimage.feature import hessian_matrix

    elements = hessian_matrix(image, sigma=tuple(sigma), order="rc",
                              use_gaussian_derivatives=True)
    at = tuple(np.asarray(points, int).T)
    h = np.array([e[at] for e in elements])  # xx, xy, xz, yy, yz, zz
    matrices = np.stack([h[[0, 1, 2]], h[[1, 3, 4]], h[[2, 4, 5]]], axis=1).transpose(2, 0, 1)
    largest = np.linalg.eigvalsh(matrices)[:, -1]
    return -3.0 * largest * float(np.mean(sigma)) ** 2


def choose_threshold(cases: Sequence[tuple[BlobCandidates, np.ndarray, np.ndarray, np.ndarray,
                                           np.ndarray]],
                     max_false_per_case: float | None = None) -> float:
    """The score threshold with the best pooled F1 over (training) cases, or the lowest
    one whose false detections per case stay at or below ``max_false_per_case``.

    Every candidate score is tried (a candidate's match to a lesion does not depend on the
    threshold, so the counts at all thresholds come from one sort). The chosen score is
    the lowest that reaches the best F1 (or meets the budget); the threshold returned lies
    halfway between it and the next lower candidate score, a margin on both sides.

    Args:
        cases: Per case ``(candidates, affine, reference centres (n, 3) mm, long axes mm,
            short axes mm)``; cases without lesions count only for false detections.
        max_false_per_case: None: maximise F1; else the false-detection budget per case.

    Returns:
        The threshold; ``inf`` when no case has a candidate or none meets the budget.
    """
    scores, matched, best_per_lesion = [], [], []
    for found, affine, centres, long, short in cases:
        within = match_detections(found.centres_mm(affine), centres, long, short).within
        scores.append(found.scores)
        matched.append(within.any(axis=1))
        best_per_lesion.append(np.where(within, found.scores[:, None], -np.inf).max(
            axis=0, initial=-np.inf))
    if not cases or not np.concatenate(scores).size:
        return float("inf")
    scores, matched = np.concatenate(scores), np.concatenate(matched)
    lesions = np.sort(np.concatenate(best_per_lesion))
    thresholds = np.unique(scores)
    true_sorted, false_sorted = np.sort(scores[matched]), np.sort(scores[~matched])
    true = len(true_sorted) - np.searchsorted(true_sorted, thresholds, side="left")
    false = len(false_sorted) - np.searchsorted(false_sorted, thresholds, side="left")
    found_lesions = len(lesions) - np.searchsorted(lesions, thresholds, side="left")
    if max_false_per_case is not None:
        ok = np.flatnonzero(false / len(cases) <= max_false_per_case)
        if ok.size == 0:
            return float("inf")
        pick = int(ok[0])
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            sensitivity = found_lesions / max(len(lesions), 1)
            ppv = np.where(true + false > 0, true / np.maximum(true + false, 1), 0.0)
            f1 = np.where(sensitivity + ppv > 0, 2 * sensitivity * ppv / (sensitivity + ppv),
                          0.0)
        pick = int(np.flatnonzero(f1 == f1.max())[0])
    lower = thresholds[pick - 1] if pick > 0 else thresholds[pick]
    return float((thresholds[pick] + lower) / 2.0)


#: Gaussian scale (mm) of the surround features: the neighbourhood a reader takes in
#: around a candidate (oedema around a metastasis reaches 5-20 mm).
SURROUND_MM = 4.0
#: Names of the image's own feature columns (:func:`candidate_features`).
IMAGE_FEATURES = ("blobness", "scale_mm", "depth_mm", "centre_z", "surround_z")


def candidate_features(found: BlobCandidates, image: np.ndarray, brain: np.ndarray,
                       spacing_mm: Sequence[float],
                       context: Sequence[np.ndarray] = ()) -> np.ndarray:
    """What a reader sees of each candidate, on the image and on the subject's other images.

    Columns (:data:`IMAGE_FEATURES`, then two per context image): the blobness, the blob
    scale (mm), the depth below the brain surface (mm; sinuses and cortical vessels lie at
    the surface), the robust z-score (:func:`robust_zscore`) at the centre after a
    one-voxel Gaussian and in the surround (Gaussian of :data:`SURROUND_MM`); for each
    context image (pre-contrast T1w, FLAIR, ADC of the same subject, on the image's grid)
    its z-score at the centre and in the surround. Every z-score is of its own image, so
    the features do not depend on intensity units.

    Args:
        found: Candidates of ``image`` (:func:`blob_candidates`).
        image: The image read (3D).
        brain: Brain mask of the same shape.
        spacing_mm: Voxel size (mm) per axis.
        context: Other images of the subject on the same grid.

    Returns:
        (n, 5 + 2 * len(context)) float array.
    """
    from scipy import ndimage

    brain = np.asarray(brain, bool)
    spacing = np.asarray(spacing_mm, float)
    at = tuple(np.asarray(found.centres, int).T)
    depth = ndimage.distance_transform_edt(brain, sampling=spacing)[at]
    columns = [found.scores, found.sigmas_mm, depth]
    for volume in (image, *context):
        z = robust_zscore(volume, brain)
        columns.append(ndimage.gaussian_filter(z, 1.0)[at])
        columns.append(ndimage.gaussian_filter(z, SURROUND_MM / spacing)[at])
    return np.column_stack(columns) if len(found.scores) else np.zeros((0, len(columns)))


@dataclass(frozen=True)
class Reader:
    """A learned stand-in for a reader: blob candidates scored by a classifier of their
    features (:func:`candidate_features`), with thresholds per operating point.

    Attributes:
        model: Fitted scikit-learn classifier (``predict_proba``), or None when there
            were fewer than two training cases, or no lesion or no false candidate among
            them (scores stay blobness, thresholds chosen on it).
        thresholds: Operating point name -> threshold on the score.
    """

    model: Any
    thresholds: dict[str, float]

    @property
    def score_name(self) -> str:
        """What the scores and thresholds are: "lesion probability" (0-1) or, without a
        classifier, "blobness"."""
        return "blobness" if self.model is None else "lesion probability"

    def score(self, found: BlobCandidates, features: np.ndarray) -> BlobCandidates:
        """The candidates with their lesion probability as score (0-1)."""
        if self.model is None or not len(found.scores):
            return found
        return found.rescored(self.model.predict_proba(features)[:, 1])


def _classifier(seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                          min_samples_leaf=10, l2_regularization=1.0,
                                          random_state=seed)


def fit_reader(cases: Sequence[tuple[BlobCandidates, np.ndarray, np.ndarray, np.ndarray,
                                     np.ndarray, np.ndarray]],
               operating_points: dict[str, float | None], folds: int = 5,
               seed: int = 0) -> Reader:
    """Fit a :class:`Reader` on training cases only.

    Each candidate is labelled a lesion when it matches one (centre distance, as
    :func:`lesionkit.metrics.contrast.match_detections`). The classifier is scikit-learn's
    histogram gradient boosting. Thresholds come from out-of-fold probabilities
    (``GroupKFold`` by case, so a case's candidates are scored by a model that did not
    see that case) through :func:`choose_threshold`; the model returned is then fitted
    on every training candidate.

    Args:
        cases: Per case ``(candidates, features, affine, reference centres (n, 3) mm,
            long axes mm, short axes mm)``.
        operating_points: Name -> false-detection budget per case (None: best F1).
        folds: Folds by case for the out-of-fold probabilities.
        seed: Seed of the classifier.
    """
    from sklearn.model_selection import GroupKFold, cross_val_predict

    labels = [match_detections(found.centres_mm(affine), centres, long, short
                               ).within.any(axis=1)
              for found, _, affine, centres, long, short in cases]
    y = np.concatenate(labels) if labels else np.zeros(0, bool)
    blob_cases = [(found, affine, centres, long, short)
                  for found, _, affine, centres, long, short in cases]
    if y.all() or not y.any() or len(cases) < 2:
        return Reader(None, {name: choose_threshold(blob_cases, budget)
                             for name, budget in operating_points.items()})
    x = np.concatenate([features for _, features, *_ in cases])
    groups = np.concatenate([np.full(len(lab), i) for i, lab in enumerate(labels)])
    splits = GroupKFold(n_splits=min(folds, len(cases)))
    oof = cross_val_predict(_classifier(seed), x, y, groups=groups, cv=splits,
                            method="predict_proba")[:, 1]
    bounds = np.cumsum([0, *(len(lab) for lab in labels)])
    rescored = [(found.rescored(oof[a:b]), *rest)
                for (found, *rest), a, b in zip(blob_cases, bounds[:-1], bounds[1:],
                                                strict=True)]
    thresholds = {name: choose_threshold(rescored, budget)
                  for name, budget in operating_points.items()}
    return Reader(_classifier(seed).fit(x, y), thresholds)
