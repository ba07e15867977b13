"""The engine's loss table: the voxel + gradient-L1 and edge-energy losses, log-cosh,
the absolute error and the Dice losses."""

import pytest
import torch

from lesionkit.losses import (
    LOSSES,
    EdgeEnergyLoss,
    GradientL1Loss,
    edge_energy,
)


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


def test_edge_energy_prefers_a_step_one_voxel_off_to_a_ramp_that_squared_error_prefers() -> None:
    edge = torch.zeros(1, 1, 6, 6, 16)
    edge[..., 8:] = 1.0
    ramp = edge.clone()
    ramp[..., 5:12] = torch.arange(1, 8) / 8  # the step spread over 8 voxels
    moved = torch.zeros_like(edge)
    moved[..., 9:] = 1.0  # the step one voxel further on

    def energy_distance(x: torch.Tensor) -> float:
        return float((edge_energy(x) - edge_energy(edge)).abs().mean())

    mse = torch.nn.functional.mse_loss
    assert mse(ramp, edge) < mse(moved, edge)
    assert energy_distance(ramp) > 1.5 * energy_distance(moved)
    loss = LOSSES["mse+edge-energy"]()
    assert isinstance(loss, EdgeEnergyLoss) and float(loss(edge, edge)) == 0.0
    expected = float(GradientL1Loss()(ramp, edge)) + energy_distance(ramp)
    assert float(loss(ramp, edge)) == pytest.approx(expected, rel=1e-5)


def test_edge_energy_keeps_the_shape_of_2d_and_3d_batches() -> None:
    assert edge_energy(torch.rand(2, 3, 8, 8)).shape == (2, 3, 8, 8)
    assert edge_energy(torch.rand(2, 1, 5, 6, 7)).shape == (2, 1, 5, 6, 7)
    assert float(edge_energy(torch.ones(1, 1, 4, 4, 4)).max()) < 1e-5  # flat: no edge


def test_log_cosh_and_mae_losses() -> None:
    import numpy as np
    import torch

    prediction, target = torch.tensor([0.0, 2.0, -30.0]), torch.tensor([0.0, 0.0, 0.0])
    expected = [*torch.log(torch.cosh(torch.tensor([0.0, 2.0]))).tolist(), 30.0 - np.log(2.0)]
    assert LOSSES["log-cosh"]()(prediction, target).item() == pytest.approx(np.mean(expected))
    assert LOSSES["mae"]()(prediction, target).item() == pytest.approx(32.0 / 3)


def test_batch_dice_gives_no_reward_for_predicting_nothing_on_empty_patches() -> None:
    # Two patches, one without lesion: predicting nothing anywhere scores the empty one as
    # a perfect per-patch Dice, but the batch Dice counts the missed lesion in full.
    target = torch.zeros(2, 1, 8, 8, 8)
    target[1, 0, 3:5, 3:5, 3:5] = 1  # a lesion of 8 voxels in one patch
    nothing, perfect = torch.full_like(target, -20.0), target * 40 - 20
    per_patch, batch = LOSSES["dice-bce"](), LOSSES["batch-dice-bce"]()
    # same cross-entropy; per-patch Dice loss about 0.55 (the empty patch near "perfect"),
    # batch Dice loss 1
    assert (batch(nothing, target) - per_patch(nothing, target)).item() > 0.4
    assert batch(perfect, target).item() < 0.01


def test_batch_dice_scores_a_batch_with_lesion_as_monai_and_an_empty_one_by_cross_entropy(
        ) -> None:
    from monai.losses import DiceCELoss

    loss = LOSSES["batch-dice-bce"]()
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, 8, generator=generator, requires_grad=True)
    target = torch.zeros(2, 1, 8, 8, 8)
    target[1, 0, 3:5, 3:5, 3:5] = 1
    monai = DiceCELoss(sigmoid=True, batch=True)
    assert loss(logits, target).item() == pytest.approx(monai(logits, target).item(), abs=1e-6)
    # Patches of a control: MONAI's smoothed batch Dice is 1 until the probabilities of all
    # 1024 voxels sum below 1e-5, so logits of -8 (probability 3e-4) still cost about 1 and
    # only about -25 earns the reward; scored by the cross-entropy alone, -8 is as good.
    empty = torch.zeros_like(target)
    low, lower = torch.full_like(empty, -8.0), torch.full_like(empty, -50.0)
    assert monai(low, empty).item() - monai(lower, empty).item() > 0.9
    assert loss(low, empty).item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy_with_logits(low, empty).item())
    assert loss(low, empty).item() - loss(lower, empty).item() < 1e-3
    loss(logits, empty).backward()
    assert torch.isfinite(logits.grad).all()
