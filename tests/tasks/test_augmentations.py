"""Training-time randomisation of weighted images: builds, alters images, keeps labels."""

from __future__ import annotations

import pytest
import torch
import torchio as tio

from lesionkit.tasks.augmentations import (
    AXIAL_CONTEXT_RANDOMISATION,
    WEIGHTED_IMAGE_RANDOMISATION,
    Z_RANGE,
    weighted_image_randomisation,
)


def _subject() -> tio.Subject:
    torch.manual_seed(0)
    image = torch.randn(1, 24, 24, 24)
    label = (torch.rand(1, 24, 24, 24) > 0.8).to(torch.uint8)
    return tio.Subject(flair=tio.ScalarImage(tensor=image),
                       gm=tio.ScalarImage(tensor=image.clone()),  # a target map, not an input
                       lesion=tio.LabelMap(tensor=label))


def test_every_transform_builds():
    for t in WEIGHTED_IMAGE_RANDOMISATION:
        assert isinstance(t.build(), tio.Transform)
    composed = tio.Compose([t.build() for t in WEIGHTED_IMAGE_RANDOMISATION])
    out = composed(_subject())
    assert out.flair.shape == (1, 24, 24, 24)


@pytest.mark.parametrize("transform", [t for t in WEIGHTED_IMAGE_RANDOMISATION
                                       if t.name not in ("RandomAffine", "RescaleIntensity")],
                         ids=lambda t: t.name)
def test_intensity_transforms_change_the_input_only(transform):
    subject = _subject()
    built = transform.build()
    built.probability = 1.0
    torch.manual_seed(1)
    out = built(subject)
    assert not torch.equal(out.flair.data, subject.flair.data)
    assert torch.equal(out.gm.data, subject.gm.data)  # not named: untouched
    assert torch.equal(out.lesion.data, subject.lesion.data)  # binary and aligned


def test_the_signal_scale_wrap_is_an_exact_inverse():
    first, last = (t for t in WEIGHTED_IMAGE_RANDOMISATION if t.name == "RescaleIntensity")
    subject = _subject()
    assert first.kwargs["in_min_max"] == Z_RANGE == last.kwargs["out_min_max"]
    out = tio.Compose([first.build(), last.build()])(subject)
    assert torch.allclose(out.flair.data, subject.flair.data, atol=1e-5)


def test_the_spatial_transform_moves_labels_with_images():
    affine = next(t for t in WEIGHTED_IMAGE_RANDOMISATION if t.name == "RandomAffine").build()
    affine.probability = 1.0
    subject = _subject()
    subject["flair"].set_data(subject.lesion.data.float())  # the image is the label
    out = affine(subject)
    assert set(torch.unique(out.lesion.data).tolist()) <= {0, 1}
    moved = out.flair.data > 0.5
    agree = (moved == (out.lesion.data > 0)).float().mean()
    assert agree > 0.9


def test_thick_slices_can_favour_the_axial_axis():
    thick = next(t for t in AXIAL_CONTEXT_RANDOMISATION if t.name == "RandomAnisotropy")
    assert thick.kwargs["p"] == 0.4 and thick.kwargs["axes"] == (0, 1, 2, 2)
    built = thick.build()
    torch.manual_seed(0)
    axes = [built.get_params(built.axes, built.downsampling_range)[0] for _ in range(4000)]
    assert abs(axes.count(2) / len(axes) - 0.5) < 0.03  # a repeated axis is drawn more often
    assert abs(axes.count(0) / len(axes) - 0.25) < 0.03
    subject = _subject()
    built.probability = 1.0
    out = built(subject)  # thick slices: the image changes, its grid and the labels do not
    assert out.flair.shape == subject.flair.shape
    assert not torch.equal(out.flair.data, subject.flair.data)
    assert torch.equal(out.lesion.data, subject.lesion.data)


def test_what_lies_beside_the_brain_is_an_option_off_in_every_recipe():
    beside = {"RandomExtracerebral", "RandomUnsuppressedCSF"}
    for recipe in (WEIGHTED_IMAGE_RANDOMISATION, AXIAL_CONTEXT_RANDOMISATION):
        assert not beside & {t.name for t in recipe}
    asked = weighted_image_randomisation(extracerebral=0.5, unsuppressed_csf=0.3)
    names = {t.name: t for t in asked}
    assert names["RandomExtracerebral"].kwargs["p"] == 0.5
    assert names["RandomUnsuppressedCSF"].kwargs["include"] == ("flair",)  # FLAIR only
    no_flair = weighted_image_randomisation(("t1w",), extracerebral=0.5, unsuppressed_csf=0.3)
    assert "RandomUnsuppressedCSF" not in {t.name for t in no_flair}
    subject = _subject()
    subject.add_image(tio.LabelMap(tensor=torch.ones(1, 24, 24, 24, dtype=torch.uint8)
                                   .index_fill_(1, torch.arange(4), 0)), "mask")
    out = tio.Compose([t.build() for t in asked])(subject)
    assert out.flair.shape == (1, 24, 24, 24)
