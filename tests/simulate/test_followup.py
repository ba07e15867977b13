"""The second visit of an MS phantom subject: evolved lesions, the change truth, head motion."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lesionkit.io import InputError
from lesionkit.simulate import followup
from lesionkit.simulate.lesion_library import ms_lesion_fractions
from lesionkit.simulate.lesions import FractionMaps
from lesionkit.simulate.lesions_ms import draw_ms_lesions
from lesionkit.simulate.template import load_template, to_spacing


@pytest.fixture(scope="module")
def anatomy():
    return to_spacing(load_template(), 2.0)


@pytest.fixture(scope="module")
def first_visit(anatomy):
    lesions = draw_ms_lesions(np.random.default_rng(3), anatomy, n_range=(25, 25))
    fractions, _ = ms_lesion_fractions(lesions, anatomy)
    return lesions, fractions


def test_evolve_keeps_grows_shrinks_resolves_and_adds(anatomy, first_visit) -> None:
    lesions, fractions = first_visit
    after, fractions2, fates = followup.evolve(np.random.default_rng(1), lesions, fractions,
                                               anatomy)
    assert set(fates) == {les.label for les in after} | {
        label for label, fate in fates.items() if fate == "resolved"}
    assert "stable" in fates.values() and "enlarging" in fates.values()
    for label, fate in fates.items():
        volume = {name: float(maps.crop(label)[1].sum()) if label in maps else 0.0
                  for name, maps in (("before", fractions), ("after", fractions2))}
        if fate == "stable":
            assert volume["after"] == pytest.approx(volume["before"])
        elif fate == "enlarging":
            assert volume["after"] > volume["before"]
        elif fate == "shrinking":
            assert 0 < volume["after"] < volume["before"]
        elif fate == "resolved":
            assert volume["after"] == 0.0 and label not in fractions2
        else:  # new: after the first visit's labels, clear of its lesions
            assert label > max(les.label for les in lesions) and volume["before"] == 0.0
            assert not ((fractions2[label] >= 0.5) & (fractions.total() >= 0.5)).any()


def test_change_truth_marks_what_changed() -> None:
    shape = (20, 20, 20)

    def ball(centre: tuple[int, int, int], radius: float) -> np.ndarray:
        grid = np.indices(shape)
        return (sum((grid[i] - centre[i]) ** 2 for i in range(3)) <= radius**2).astype(
            np.float32)

    def maps(balls: dict[int, np.ndarray]) -> FractionMaps:
        box = (slice(0, 20),) * 3
        return FractionMaps(shape, {k: (box, v) for k, v in balls.items()})

    before = maps({1: ball((5, 5, 5), 2), 2: ball((14, 5, 5), 2), 3: ball((5, 14, 5), 3)})
    after = maps({1: ball((5, 5, 5), 2), 2: ball((14, 5, 5), 3.5), 4: ball((14, 14, 14), 2)})
    truth = followup.change_truth(before, after, {1: "stable", 2: "enlarging",
                                                  3: "resolved", 4: "new"})
    codes = followup.CHANGE_CODES
    assert truth[5, 5, 5] == 0  # stable
    assert truth[14, 5, 5] == 0 and truth[14, 5, 8] == codes["enlarging"]  # grown rim only
    assert truth[5, 14, 5] == codes["resolved"] and truth[14, 14, 14] == codes["new"]
    assert set(np.unique(truth)) == {0, 1, 2, 4}


def test_head_motion_is_rigid_and_bounded() -> None:
    centre = np.array([10.0, -20.0, 30.0])
    for seed in range(20):
        motion = followup.draw_head_motion(np.random.default_rng(seed), centre)
        rotation = motion[:3, :3]
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(rotation) == pytest.approx(1.0)
        assert np.degrees(np.arccos((np.trace(rotation) - 1) / 2)) <= 3.0 * np.sqrt(3)
        shift = motion[:3, :3] @ centre + motion[:3, 3] - centre
        assert np.all(np.abs(shift) <= followup.MAX_SHIFT_MM + 1e-9)


def test_moved_shifts_the_head_by_the_motion() -> None:
    """A head moved 4 mm along x lies 2 voxels (of 2 mm) further along x on the grid."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    image = np.zeros((20, 20, 20), np.float32)
    image[8:11, 8:11, 8:11] = 1.0
    motion = np.eye(4)
    motion[0, 3] = 4.0
    out = followup.moved(image, affine, motion, order=1)
    centre = ndimage.center_of_mass(out)
    np.testing.assert_allclose(centre, (11.0, 9.0, 9.0), atol=0.05)


def test_cohort_with_a_second_visit(tmp_path) -> None:
    """ses-1 is the cohort's subject as without a second visit (same streams); ses-2 has
    its FLAIR, T1w and the truth, its head moved; other cohorts refuse the option."""
    import nibabel as nib

    from lesionkit.simulate import simulate_cohort

    plain = simulate_cohort("mrf-lesion", tmp_path / "plain", subjects=1, seed=4)
    visits = simulate_cohort("mrf-lesion", tmp_path / "visits", subjects=1, seed=4,
                             follow_up=True)
    first = nib.load(visits / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_FLAIR.nii.gz")
    same = nib.load(plain / "sub-01" / "anat" / "sub-01_FLAIR.nii.gz")
    np.testing.assert_array_equal(np.asarray(first.dataobj), np.asarray(same.dataobj))
    second = visits / "sub-01" / "ses-2" / "anat"
    assert sorted(p.name for p in second.glob("*.nii.gz")) == [
        "sub-01_ses-2_FLAIR.nii.gz", "sub-01_ses-2_T1w.nii.gz"]
    truth = visits / "derivatives" / "phantom" / "sub-01" / "ses-2" / "anat"
    change = np.asarray(nib.load(truth / "sub-01_ses-2_label-change_dseg.nii.gz").dataobj)
    assert set(np.unique(change)) <= {0, 1, 2, 3, 4}
    assert (truth / "sub-01_ses-2_changes.tsv").is_file()
    assert (truth / "sub-01_ses-2_label-lesion_mask.nii.gz").is_file()
    flair2 = np.asarray(nib.load(second / "sub-01_ses-2_FLAIR.nii.gz").dataobj, np.float32)
    assert np.corrcoef(flair2.ravel(), np.asarray(first.dataobj, np.float32).ravel())[0, 1] < 0.95
    with pytest.raises(InputError, match="--follow-up"):
        simulate_cohort("enhance-r1", tmp_path / "er", subjects=1, follow_up=True)
