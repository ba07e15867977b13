"""The LoG blob detector: spheres found, tubes scored low, threshold from training cases."""

import numpy as np
import pytest

from lesionkit.metrics.detection import blob_candidates, blobness, choose_threshold

SHAPE = (40, 40, 40)


def _volume(rng: np.random.Generator, tube_gain: float = 60.0) -> tuple[np.ndarray, ...]:
    """Brain of 100 (noise 2), a bright sphere (radius 3 voxels) and a bright tube along z
    from 9 to 31."""
    grid = np.indices(SHAPE)
    brain = ((grid - 19.5) ** 2).sum(0) < 18 ** 2
    image = np.where(brain, 100.0 + rng.normal(0, 2, SHAPE), 0.0)
    sphere = ((grid - np.array([12, 20, 20])[:, None, None, None]) ** 2).sum(0) <= 9
    tube = ((grid[0] - 28) ** 2 + (grid[1] - 20) ** 2 <= 2) & (grid[2] > 8) & (grid[2] < 32)
    image[sphere] += 60.0
    image[tube] += tube_gain
    return image, brain


def test_sphere_is_the_best_blob_and_a_tube_scores_low() -> None:
    image, brain = _volume(np.random.default_rng(0))
    found = blob_candidates(image, brain, (1.0, 1.0, 1.0), diameters_mm=(2.0, 12.0))
    best = found.centres[np.argmax(found.scores)]
    assert np.linalg.norm(best - [12, 20, 20]) <= 1.0
    sphere_score = found.scores.max()
    along = (np.abs(found.centres[:, 0] - 28) <= 1) & (np.abs(found.centres[:, 2] - 20) <= 6)
    assert found.scores[along].max(initial=0.0) < 0.2 * sphere_score  # its ends are blobs
    # The score does not depend on the intensity scale (the image is z-scored inside).
    again = blob_candidates(3.0 * image + 7.0, brain, (1.0, 1.0, 1.0), diameters_mm=(2.0, 12.0))
    np.testing.assert_allclose(np.sort(again.scores), np.sort(found.scores), rtol=1e-6)


def test_blobness_of_a_gaussian_blob_is_its_log_response() -> None:
    grid = np.indices((31, 31, 31)) - 15.0
    blob = np.exp(-(grid ** 2).sum(0) / (2 * 3.0 ** 2))
    from scipy import ndimage

    log = -ndimage.gaussian_laplace(blob, 3.0)[15, 15, 15] * 9.0
    assert blobness(blob, np.array([[15, 15, 15]]), (3.0, 3.0, 3.0))[0] == pytest.approx(log,
                                                                                         rel=0.02)


def test_threshold_is_chosen_on_the_training_cases() -> None:
    rng = np.random.default_rng(1)
    cases = []
    for _ in range(3):
        image, brain = _volume(rng, tube_gain=0.0)
        found = blob_candidates(image, brain, (1.0, 1.0, 1.0), diameters_mm=(2.0, 12.0))
        cases.append((found, np.eye(4), np.array([[12.0, 20.0, 20.0]]), np.array([6.0]),
                      np.array([6.0])))
    threshold = choose_threshold(cases)
    for found, *_ in cases:  # the sphere alone passes
        kept = found.above(threshold)
        assert len(kept.scores) == 1
        assert np.linalg.norm(kept.centres[0] - [12, 20, 20]) <= 1.0
    strict = choose_threshold(cases, max_false_per_case=0.0)
    assert strict <= threshold  # the lowest threshold without a false detection
    assert choose_threshold([], max_false_per_case=1.0) == float("inf")


def _case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A lesion and a look-alike (both bright spheres of radius 3 voxels) at random places;
    only the lesion has a bright surround (oedema) on the context image."""
    grid = np.indices(SHAPE)
    brain = ((grid - 19.5) ** 2).sum(0) < 18 ** 2
    image = np.where(brain, 100.0 + rng.normal(0, 2, SHAPE), 0.0)
    context = np.where(brain, 100.0 + rng.normal(0, 2, SHAPE), 0.0)
    while True:
        lesion, other = rng.uniform(10, 30, (2, 3))
        if np.linalg.norm(lesion - other) > 12:
            break
    for centre in (lesion, other):
        image[((grid - centre[:, None, None, None]) ** 2).sum(0) <= 9] += 60.0
    context[((grid - lesion[:, None, None, None]) ** 2).sum(0) <= 49] += 40.0
    return image, brain, context, lesion


def test_reader_learns_from_the_context_what_blobness_cannot_tell() -> None:
    from lesionkit.metrics.detection import candidate_features, fit_reader

    rng = np.random.default_rng(2)
    spacing, size = (1.0, 1.0, 1.0), np.array([6.0])

    def candidates(image, brain, context):
        found = blob_candidates(image, brain, spacing, diameters_mm=(2.0, 12.0))
        return found, candidate_features(found, image, brain, spacing, [context])

    training = []
    for _ in range(12):
        image, brain, context, lesion = _case(rng)
        training.append((*candidates(image, brain, context), np.eye(4), lesion[None], size,
                         size))
    points = {"f1": None, "fp1": 1.0}
    reader = fit_reader(training, points)
    assert reader.score_name == "lesion probability"
    blob_only = choose_threshold([(f, a, c, lo, sh) for f, _, a, c, lo, sh in training])
    false_reader = false_blob = found_reader = 0
    for _ in range(6):
        image, brain, context, lesion = _case(rng)
        found, features = candidates(image, brain, context)
        assert features.shape == (len(found.scores), 7)
        scored = reader.score(found, features).above(reader.thresholds["f1"])
        near = np.linalg.norm(scored.centres - lesion, axis=1) <= 3
        found_reader += int(near.any())
        false_reader += int((~near).sum())
        kept = found.above(blob_only)
        false_blob += int((np.linalg.norm(kept.centres - lesion, axis=1) > 3).sum())
    assert found_reader >= 5
    assert false_reader <= 1 < false_blob  # the look-alike passes blobness, not the reader


def test_reader_without_lesions_keeps_blobness() -> None:
    from lesionkit.metrics.detection import candidate_features, fit_reader

    image, brain = _volume(np.random.default_rng(3))
    found = blob_candidates(image, brain, (1.0, 1.0, 1.0), diameters_mm=(2.0, 12.0))
    features = candidate_features(found, image, brain, (1.0, 1.0, 1.0))
    none = (np.zeros((0, 3)), np.zeros(0), np.zeros(0))
    reader = fit_reader([(found, features, np.eye(4), *none)] * 2, {"f1": None})
    assert reader.model is None and reader.score_name == "blobness"
    np.testing.assert_array_equal(reader.score(found, features).scores, found.scores)
