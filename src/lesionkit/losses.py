"""The engine's loss table: the names a task's ``loss`` may take, and the losses of its
own (a gradient term that keeps edges, a local edge energy, log-cosh, binary
cross-entropy on one logit); MONAI's Dice losses for segmentation, and its batch Dice
counted only on batches with foreground."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import nn


def _dice_loss() -> nn.Module:
    from monai.losses import DiceLoss

    return DiceLoss(sigmoid=True)


def _dice_bce_loss() -> nn.Module:
    from monai.losses import DiceCELoss

    return DiceCELoss(sigmoid=True)


class BatchDiceBCELoss(nn.Module):
    """Soft Dice over the whole batch + binary cross-entropy, the Dice term only on
    batches that hold foreground (MONAI ``DiceLoss(batch=True)``, ``BCEWithLogitsLoss``).

    Per-example Dice scores a patch without lesion as perfect when nothing is predicted,
    so on sparse lesions (most patches empty) predicting nothing anywhere is a local
    minimum; one Dice over the batch's voxels has no such reward. A batch with no
    foreground at all (patches of a control) has no Dice to score: there the smoothed
    Dice is 1 unless the summed probability over every voxel falls below its smoothing
    term (1e-5), which drives the logits of every voxel to -25 or lower and rewards a
    network that marks nothing anywhere. Such batches are scored by the cross-entropy
    alone.
    """

    def __init__(self) -> None:
        super().__init__()
        from monai.losses import DiceLoss

        self.dice = DiceLoss(sigmoid=True, batch=True)
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(logits.dtype)
        dice = self.dice(logits, target)
        return torch.where(target.any(), dice, torch.zeros_like(dice)) + self.bce(logits, target)


class LogCoshLoss(nn.Module):
    """Mean log(cosh(prediction - target)), computed stably as |x| + softplus(-2|x|) - log 2."""

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = (prediction - target).abs()
        return (x + nn.functional.softplus(-2.0 * x) - math.log(2.0)).mean()


class BinaryCrossEntropy(nn.Module):
    """Binary cross-entropy on logits of shape (B, 1) or (B,) against 0/1 labels."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(
            logits.reshape(target.shape[0], -1)[:, 0], target.float().reshape(-1))


class GradientL1Loss(nn.Module):
    """A voxel loss plus ``weight`` times the L1 distance of the images' finite differences.

    The second term is the mean absolute difference of prediction and target gradients
    (forward differences along every spatial axis of (B, C, *spatial) tensors): a
    blurred edge costs as much as a misplaced one, so the network keeps edges that the
    voxel loss alone lets it smooth. The voxel loss is the squared error (``"mse"``) or
    the absolute error (``"l1"``): where an edge's position is uncertain, the squared
    error is least for the mean of the possible edges (a ramp), the absolute error for
    their median (a step).
    """

    def __init__(self, weight: float = 1.0, voxel: str = "mse") -> None:
        super().__init__()
        if voxel not in ("mse", "l1"):
            raise ValueError(f"voxel loss must be 'mse' or 'l1', got {voxel!r}")
        self.weight = weight
        self.voxel = voxel

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        error = prediction - target
        gradients = [error.diff(dim=axis).abs().mean() for axis in range(2, error.ndim)]
        voxel = error.square().mean() if self.voxel == "mse" else error.abs().mean()
        return voxel + self.weight * torch.stack(gradients).mean()


def edge_energy(x: torch.Tensor, window: int = 3) -> torch.Tensor:
    """Local edge energy of (B, C, *spatial) images (2D or 3D): the gradient magnitude
    (forward differences, 0 past the far edge) averaged over ``window`` voxels per axis.

    It says how much edge a neighbourhood holds, not exactly where within it: along a
    monotone edge the gradient magnitudes sum to the contrast however the edge is
    spread, so an edge spread over more voxels than ``window`` loses energy at its
    centre, whereas a step moved by one voxel keeps most of it.
    """
    dims = x.ndim - 2
    gradient = [nn.functional.pad(x.diff(dim=axis), [0, 0] * (x.ndim - 1 - axis) + [0, 1])
                for axis in range(2, x.ndim)]
    magnitude = torch.sqrt(sum(g.square() for g in gradient) + 1e-12)
    pool = nn.functional.avg_pool3d if dims == 3 else nn.functional.avg_pool2d
    return pool(magnitude, window, 1, window // 2, count_include_pad=False)


class EdgeEnergyLoss(GradientL1Loss):
    """The voxel + gradient-L1 loss plus ``energy_weight`` times the mean absolute
    difference of the images' local edge energies (:func:`edge_energy`).

    Voxel losses, squared or absolute, reward an edge smoothed over the places it could
    be; the edge-energy term rewards as much edge as the target has in each
    neighbourhood, wherever it lies within it, so the network is paid for steep edges at
    their most likely place (an edge ramped over 8 voxels costs less squared error than
    a step one voxel off, but more edge-energy distance). On enhance-r1 phantoms it
    raised the relative edge sharpness from 0.227 to 0.270 for an RMSE of 0.061 against
    0.055 s^-1, but much of that gain is a grain in flat tissue: a noisy target has edge
    energy everywhere (docs/results.md, "A sharpness score that noise does not raise").
    """

    def __init__(self, weight: float = 1.0, voxel: str = "mse", energy_weight: float = 1.0,
                 window: int = 3) -> None:
        super().__init__(weight, voxel)
        self.energy_weight = energy_weight
        self.window = window

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        energy = (edge_energy(prediction, self.window)
                  - edge_energy(target, self.window)).abs().mean()
        return super().forward(prediction, target) + self.energy_weight * energy


#: Loss registry: names used by tasks -> factories.
LOSSES: dict[str, Callable[[], nn.Module]] = {
    "mse": nn.MSELoss,
    "l1": nn.L1Loss,
    "mae": nn.L1Loss,
    "log-cosh": LogCoshLoss,
    "mse+gradient-l1": GradientL1Loss,
    "l1+gradient-l1": functools.partial(GradientL1Loss, voxel="l1"),
    "mse+edge-energy": EdgeEnergyLoss,
    "bce": nn.BCEWithLogitsLoss,
    "binary-cross-entropy": BinaryCrossEntropy,
    "cross-entropy": nn.CrossEntropyLoss,
    "dice": _dice_loss,
    "dice-bce": _dice_bce_loss,
    "batch-dice-bce": BatchDiceBCELoss,
}
