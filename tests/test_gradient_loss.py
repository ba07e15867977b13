"""The voxel + gradient-L1 losses of the engine's loss table."""

import pytest
import torch

from lesionkit.training import LOSSES, GradientL1Loss


def _edge_and_blurred() -> tuple[torch.Tensor, torch.Tensor]:
    """A unit step along the last axis and the same step spread over two voxels."""
    edge = torch.zeros(1, 1, 4, 4, 8)
    edge[..., 4:] = 1.0
    blurred = edge.clone()
    blurred[..., 3], blurred[..., 4] = 1 / 3, 2 / 3
    return edge, blurred


def test_gradient_term_penalises_a_blurred_edge_beyond_mse() -> None:
    edge, blurred = _edge_and_blurred()
    mse = torch.nn.functional.mse_loss(blurred, edge)
    # along the last axis the steps differ by 1/3, 2/3, 1/3 of 7 per line; along the
    # other two axes not at all: mean over the three axes 4/21 / 3
    gradient = 4 / 63
    assert LOSSES["mse+gradient-l1"]()(blurred, edge) == pytest.approx(float(mse) + gradient)
    assert GradientL1Loss(weight=0.0)(blurred, edge) == pytest.approx(float(mse))
    assert GradientL1Loss()(edge, edge) == 0.0


def test_an_offset_costs_only_its_mse() -> None:
    target = torch.rand(2, 1, 6, 6, 6)
    assert GradientL1Loss()(target + 0.5, target) == pytest.approx(0.25)


def test_l1_variant_adds_the_gradient_term_to_the_absolute_error() -> None:
    edge, blurred = _edge_and_blurred()
    l1 = torch.nn.functional.l1_loss(blurred, edge)
    assert LOSSES["l1+gradient-l1"]()(blurred, edge) == pytest.approx(float(l1) + 4 / 63)
    with pytest.raises(ValueError, match="voxel loss"):
        GradientL1Loss(voxel="huber")
