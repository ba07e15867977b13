"""lesionkit's own TorchIO transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchio as tio

from lesionkit.tasks.task import Transform
from lesionkit.tasks.transforms import RandomRot90


def _subject() -> tio.Subject:
    image = torch.arange(2 * 4 * 4 * 3, dtype=torch.float32).reshape(2, 4, 4, 3)
    label = (image[:1] % 5 == 0).to(torch.uint8)
    return tio.Subject(image=tio.ScalarImage(tensor=image), label=tio.LabelMap(tensor=label))


def test_rot90_turns_every_image_alike_by_quarter_turns_in_its_plane():
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        subject = _subject()
        out = Transform("RandomRot90", {"axes": (0, 1), "probability": 0.75}).build()(subject)
        image, label = out["image"].data, out["label"].data
        turns = [k for k in range(4) if torch.equal(image, torch.rot90(subject["image"].data,
                                                                        k, (1, 2)))]
        assert len(turns) == 1  # a quarter turn about the third axis, no interpolation
        assert torch.equal(label, torch.rot90(subject["label"].data, turns[0], (1, 2)))
        seen.add(turns[0])
    assert seen == {0, 1, 2, 3}


def test_rot90_with_probability_zero_changes_nothing():
    subject = _subject()
    out = RandomRot90(probability=0.0)(subject)
    assert torch.equal(out["image"].data, subject["image"].data)
    np.testing.assert_array_equal(out["image"].affine, subject["image"].affine)


@pytest.mark.parametrize("axes", [(0,), (1, 1), (0, 3)])
def test_rot90_needs_two_spatial_axes(axes):
    with pytest.raises(ValueError, match="two different spatial axes"):
        RandomRot90(axes=axes)


def test_rot90_refuses_a_plane_that_is_not_square():
    subject = _subject()  # 4 x 4 x 3: square in (0, 1), not in (1, 2)
    with pytest.raises(ValueError, match="equal sizes"):
        RandomRot90(axes=(1, 2), probability=1.0)(subject)
