"""Lesion changes between sessions: the reading on hand-made volumes and its scores."""

from __future__ import annotations

import numpy as np

from lesionkit.changes import MIN_CHANGE_ML, ChangeReading, lesion_changes, score_changes
from two_visits import GROWS, NEW, RESOLVES, STAYS, VOXEL_MM, ball, sessions


def test_lesion_changes_reads_new_enlarging_and_resolved() -> None:
    """Each kind is read where it happened; the lesion that stayed is no change."""
    s = sessions()
    affine = np.diag([VOXEL_MM] * 3 + [1.0])
    changes = lesion_changes(s["2"]["map"], s["1"]["map"], s["2"]["image"], s["1"]["image"],
                             s["2"]["brain"], affine)
    kinds = {row["change"]: row for row in changes.rows}
    assert sorted(kinds) == ["enlarging", "new", "resolved"]
    for kind, centre in (("new", NEW), ("resolved", RESOLVES), ("enlarging", GROWS)):
        row = kinds[kind]
        assert np.linalg.norm(np.array([row["centre_i"], row["centre_j"], row["centre_k"]])
                              - centre) < 3.0, kind
    assert kinds["new"]["mean_z"] > 2 and kinds["resolved"]["mean_z"] < -2
    assert kinds["new"]["lesion_volume_baseline_mm3"] == 0.0
    assert kinds["enlarging"]["lesion_volume_baseline_mm3"] > 0.0
    assert (changes.counts == {"new": 1, "enlarging": 1, "shrinking": 0, "resolved": 1})
    assert changes.labels[STAYS] == 0
    assert set(np.unique(changes.labels)) == {0, 1, 2, 3}
    # the grown part only, not the lesion's old core, is the enlarging change
    assert changes.labels[GROWS] == 0
    sizes = [row["volume_mm3"] for row in changes.rows]
    assert sizes == sorted(sizes, reverse=True)


def test_a_map_that_differs_where_the_image_did_not_change_is_no_change() -> None:
    """A lesion called at follow-up only (a map's error) where the image did not change
    is not new, and neither is one the baseline map missed where the image shows it."""
    s = sessions()
    affine = np.diag([VOXEL_MM] * 3 + [1.0])
    follow_map = s["2"]["map"].copy()
    follow_map[ball((34, 20, 16), 3)] = 0.9  # a map error: the image is the same there
    base_map = s["1"]["map"].copy()
    base_map[ball(STAYS, 3)] = 0.0  # the baseline map missed a lesion the image holds
    changes = lesion_changes(follow_map, base_map, s["2"]["image"], s["1"]["image"],
                             s["2"]["brain"], affine)
    assert changes.labels[34, 20, 16] == 0 and changes.labels[STAYS] == 0
    assert changes.counts == {"new": 1, "enlarging": 1, "shrinking": 0, "resolved": 1}


def test_a_new_spot_at_the_brain_masks_edge_is_no_lesion_and_so_no_change() -> None:
    """As predict reads lesions: a component whose deepest voxel lies less than 3 mm inside
    the brain mask is none, at either visit; with the depth at 0 it is a new lesion."""
    from lesionkit.lesions import component_depths, depth_inside

    s = sessions()
    affine = np.diag([VOXEL_MM] * 3 + [1.0])
    depth = depth_inside(s["2"]["brain"], [VOXEL_MM] * 3)
    edge = ball((24, 28, 37), 2.5) & (depth < VOXEL_MM)  # the brain's outermost voxels
    assert edge.sum() >= 3 and component_depths(edge.astype(int), depth)[0] < 3.0
    follow_map, follow_image = s["2"]["map"].copy(), s["2"]["image"].copy()
    follow_map[edge] = 0.9
    follow_image[edge] += 300.0
    args = (follow_map, s["1"]["map"], follow_image, s["1"]["image"], s["2"]["brain"], affine)
    assert lesion_changes(*args).counts["new"] == 1  # NEW alone
    every = lesion_changes(*args, ChangeReading(min_depth_mm=0.0))
    assert every.counts["new"] == 2 and (every.labels[edge] > 0).any()


def test_thresholds_decide() -> None:
    """A higher z threshold than the change drops it; a size floor drops small ones."""
    s = sessions()
    affine = np.diag([VOXEL_MM] * 3 + [1.0])
    args = (s["2"]["map"], s["1"]["map"], s["2"]["image"], s["1"]["image"], s["2"]["brain"],
            affine)
    assert sum(lesion_changes(*args, ChangeReading(z_threshold=1000.0)).counts.values()) == 0
    assert sum(lesion_changes(*args, ChangeReading(min_ml=2.0)).counts.values()) == 0
    import inspect

    from lesionkit import cli

    given = inspect.signature(cli.changes).parameters["min_change_ml"].default
    assert round(MIN_CHANGE_ML, 4) == given  # the command's default is the module's


def test_score_changes_by_direction_or_any() -> None:
    """Hand-made: a new lesion found by an increase, a resolved one missed (the call there is
    an increase, the wrong direction, and so also false), a call elsewhere false; without
    kinds in the truth, direction does not count."""
    truth = np.zeros((20, 20, 20), np.int64)
    truth[2:5, 2:5, 2:5] = 1  # new
    truth[10:13, 10:13, 10:13] = 4  # resolved
    labels = np.zeros_like(truth)
    labels[3:6, 3:6, 3:6] = 1  # increase on the new lesion
    labels[11:13, 11:13, 11:13] = 2  # increase on the resolved lesion
    labels[16:18, 16:18, 16:18] = 3  # elsewhere
    kinds = {1: "new", 2: "enlarging", 3: "shrinking"}
    coded = score_changes(labels, kinds, truth, coded=True)
    assert (coded["true_changes"], coded["found"], coded["calls"], coded["false_calls"]) == (
        2, 1, 3, 2)
    assert (coded["new_true"], coded["new_found"], coded["resolved_true"],
            coded["resolved_found"]) == (1, 1, 1, 0)
    assert (coded["increase_calls"], coded["increase_false"], coded["decrease_calls"],
            coded["decrease_false"]) == (2, 1, 1, 1)
    assert coded["sensitivity"] == 0.5 and coded["ppv"] == round(1 / 3, 4)
    assert coded["f1"] == round(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3), 4)
    both = ((labels > 0) & (truth > 0)).sum()
    assert coded["dice"] == round(2 * both / ((labels > 0).sum() + (truth > 0).sum()), 4)
    plain = score_changes(labels, kinds, (truth > 0).astype(np.int64), coded=False)
    assert (plain["found"], plain["false_calls"]) == (2, 1) and "new_true" not in plain
    empty = score_changes(np.zeros_like(truth), {}, np.zeros_like(truth), coded=False)
    assert empty["sensitivity"] is None and empty["ppv"] is None and empty["f1"] is None
    assert empty["dice"] == 1.0  # two empty maps agree, as metrics.segmentation.dice
    missed = score_changes(np.zeros_like(truth), {}, truth, coded=True)
    assert missed["sensitivity"] == 0.0 and missed["ppv"] is None and missed["f1"] is None
