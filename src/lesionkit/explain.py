"""Grad-CAM on 3D volumes and the Heat-Score that measures attention on a lesion.

Grad-CAM (Selvaraju et al. 2017) comes from :class:`monai.visualize.GradCAM`; this module
picks the layer, upsamples to the input grid, scales to [0, 1] and scores the map against
a lesion mask. The FCD paper (Lasagni et al., seed 002) introduces a "Heat-Score" but does
not publish its formula; the definitions below are lesionkit's:

- :func:`heat_score`: mean CAM inside the lesion / mean CAM inside the brain. 1 means the
  lesion gets the attention of an average brain voxel (chance); > 1 means the network
  looked at the lesion. It does not depend on how the CAM was scaled.
- :func:`energy_fraction`: CAM sum inside the lesion / CAM sum inside the brain, the
  share of the attention that falls on the lesion (0..1). For a uniform CAM it equals
  the lesion's share of the brain volume.

Example:
    >>> cam = grad_cam(model, x)  # doctest: +SKIP
    >>> heat_score(cam, lesion_mask, brain_mask)  # doctest: +SKIP
    2.7
"""

from __future__ import annotations

import copy
import gc
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lesionkit.volume import Volume

#: Last residual stage of MONAI's ResNet family (resnet10 ... resnet200).
DEFAULT_TARGET_LAYER = "layer4"


def _scale_to_unit(cam: torch.Tensor) -> torch.Tensor:
    """Divide a non-negative map by its maximum, per item; an all-zero map stays zero.

    Dividing (rather than min-max stretching) keeps 0 meaning "no positive evidence",
    so ratios such as the Heat-Score do not depend on the scaling.
    """
    peak = cam.flatten(1).amax(dim=1).clamp_min(torch.finfo(cam.dtype).tiny)
    return cam / peak.view(-1, *([1] * (cam.ndim - 1)))


def grad_cam(
    model: torch.nn.Module,
    volume_tensor: torch.Tensor,
    target_layer: str = DEFAULT_TARGET_LAYER,
    class_index: int = 1,
) -> np.ndarray:
    """Grad-CAM of one volume for one class, on the input grid, scaled to [0, 1].

    The map is computed on a copy of ``model`` (in eval mode, all parameters
    differentiable), so the caller's model keeps its hooks, flags and gradients as they
    were; it works inside ``torch.no_grad()`` or ``torch.inference_mode()`` too. MONAI's
    default upsampler (trilinear interpolation to the input's spatial size) brings the
    coarse map of ``target_layer`` to the input grid; the map is then divided by its
    maximum (MONAI's default post-processing would instead map the maximum to 0).

    Args:
        model: A classifier returning logits of shape (1, n_classes).
        volume_tensor: Input of shape (1, C, X, Y, Z), as fed to the model.
        target_layer: Name of the module whose activations are weighted, as listed by
            ``model.named_modules()``; "layer4" is the last residual stage of MONAI's ResNet.
        class_index: Class to explain (1 = FCD patient in fcd-classify).

    Returns:
        float32 array (X, Y, Z) in [0, 1]; all zeros when no voxel supports the class.

    Raises:
        ValueError: the input is not (1, C, X, Y, Z) or ``target_layer`` is not in the model.
    """
    from monai.visualize import GradCAM

    if volume_tensor.ndim != 5 or volume_tensor.shape[0] != 1:
        raise ValueError(
            "grad_cam expects a tensor of shape (1, C, X, Y, Z), "
            f"found {tuple(volume_tensor.shape)}"
        )
    layers = dict(model.named_modules())
    if target_layer not in layers or not target_layer:
        top = [name for name in layers if name and "." not in name]
        raise ValueError(f"target layer {target_layer!r} not in the model; top-level layers: {top}")
    with torch.inference_mode(False), torch.enable_grad():
        explained = copy.deepcopy(model).requires_grad_(True)
        cam = GradCAM(explained, target_layers=target_layer, postprocessing=_scale_to_unit)
        parameter = next(explained.parameters())
        x = volume_tensor.detach().clone().to(device=parameter.device, dtype=parameter.dtype)
        # a layer that reads the input itself gets its backward hook called with inputs
        # that need no gradient (a PyTorch warning) unless the input asks for one
        x.requires_grad_(True)
        result = cam(x, class_idx=class_index)
        # The hooks keep the layer's output, whose autograd graph holds the hooks: a cycle
        # through C++ objects that Python's garbage collector cannot free (about 70 MB per
        # call for a 2 mm brain). Break it, and collect the copy's remaining Python cycle
        # (hooks <-> wrapper) now rather than after many subjects.
        hooked = cam.nn_module
        hooked.activations.clear()
        hooked.gradients.clear()
        hooked.score = None
        out = result[0, 0].detach().cpu().numpy().astype(np.float32)
    del cam, hooked, explained, result
    gc.collect()
    return out


def _masks(
    cam: np.ndarray, lesion_mask: np.ndarray, brain_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cam = np.asarray(cam, dtype=np.float64)
    lesion = np.asarray(lesion_mask) >= 0.5
    brain = np.asarray(brain_mask) >= 0.5
    if cam.shape != lesion.shape or cam.shape != brain.shape:
        raise ValueError(
            f"CAM {cam.shape}, lesion mask {lesion.shape} and brain mask {brain.shape} "
            "must share one grid"
        )
    lesion &= brain
    if not lesion.any():
        raise ValueError("the lesion mask has no voxel inside the brain mask")
    return cam, lesion, brain


def heat_score(cam: np.ndarray, lesion_mask: np.ndarray, brain_mask: np.ndarray) -> float:
    """Mean CAM inside the lesion over mean CAM inside the brain (lesionkit's definition).

    The FCD paper does not publish its Heat-Score formula; this is the definition
    lesionkit uses. 1 = chance, > 1 = attention on the lesion, < 1 = attention elsewhere.

    Args:
        cam: Class activation map (any non-negative scale), shape (X, Y, Z).
        lesion_mask: Lesion mask on the same grid (voxels >= 0.5 count; only those
            inside the brain mask are used).
        brain_mask: Brain mask on the same grid (voxels >= 0.5 count).

    Returns:
        The ratio; NaN when the CAM is zero everywhere in the brain.

    Raises:
        ValueError: grids differ or the lesion has no voxel inside the brain.
    """
    cam, lesion, brain = _masks(cam, lesion_mask, brain_mask)
    brain_mean = float(cam[brain].mean())
    return float(cam[lesion].mean()) / brain_mean if brain_mean > 0 else math.nan


def energy_fraction(cam: np.ndarray, lesion_mask: np.ndarray, brain_mask: np.ndarray) -> float:
    """CAM sum inside the lesion over CAM sum inside the brain (lesionkit's definition).

    Args and masks as :func:`heat_score`.

    Returns:
        The share of the attention on the lesion, 0..1; NaN when the CAM is zero in the brain.
    """
    cam, lesion, brain = _masks(cam, lesion_mask, brain_mask)
    brain_sum = float(cam[brain].sum())
    return float(cam[lesion].sum()) / brain_sum if brain_sum > 0 else math.nan


@dataclass(frozen=True)
class HeatScoreSummary:
    """Heat-Score and energy fraction over correctly classified patients.

    Attributes:
        n: Patients counted (correctly classified, with a defined score).
        heat_score_mean: Mean Heat-Score.
        heat_score_sd: Sample standard deviation (ddof=1) of the Heat-Score; NaN if n < 2.
        energy_fraction_mean: Mean energy fraction (NaN when none were given).
        energy_fraction_sd: Sample standard deviation of the energy fraction.
    """

    n: int
    heat_score_mean: float
    heat_score_sd: float
    energy_fraction_mean: float = math.nan
    energy_fraction_sd: float = math.nan


def _mean_sd(values: np.ndarray) -> tuple[float, float]:
    if values.size == 0:
        return math.nan, math.nan
    sd = float(values.std(ddof=1)) if values.size > 1 else math.nan
    return float(values.mean()), sd


def summarise_heat_scores(
    heat_scores: Sequence[float],
    correct: Sequence[bool],
    energy_fractions: Sequence[float] | None = None,
) -> HeatScoreSummary:
    """Summarise per-patient scores over the correctly classified patients, as the paper does.

    Args:
        heat_scores: One Heat-Score per patient (controls have no lesion: leave them out).
        correct: Whether each patient was classified correctly.
        energy_fractions: Optional energy fraction per patient, in the same order.

    Returns:
        Mean, SD and count; patients whose Heat-Score is NaN (a CAM zero in the whole
        brain) are left out of ``n``.
    """
    scores = np.asarray(heat_scores, dtype=np.float64)
    keep = np.asarray(correct, dtype=bool)
    if scores.shape != keep.shape:
        raise ValueError(f"{scores.size} heat scores but {keep.size} correctness flags")
    keep &= np.isfinite(scores)
    heat_mean, heat_sd = _mean_sd(scores[keep])
    energy_mean = energy_sd = math.nan
    if energy_fractions is not None:
        energy = np.asarray(energy_fractions, dtype=np.float64)
        if energy.shape != scores.shape:
            raise ValueError(f"{scores.size} heat scores but {energy.size} energy fractions")
        energy_mean, energy_sd = _mean_sd(energy[keep])
    return HeatScoreSummary(int(keep.sum()), heat_mean, heat_sd, energy_mean, energy_sd)


def cam_volume(cam: np.ndarray, like: Volume) -> Volume:
    """Put a CAM on the grid of the volume it explains, ready for ``lesionkit.io.save_volume``.

    The result has ``like``'s affine, kind "probability" and unit "1". The input's NIfTI
    header (its data type and intensity scaling belong to the input) is not carried
    over; the map is stored as float32.

    Raises:
        ValueError: the CAM's shape is not the spatial shape of ``like``.
    """
    cam = np.asarray(cam, dtype=np.float32)
    if cam.shape != like.shape[:3]:
        raise ValueError(f"CAM shape {cam.shape} differs from the volume's grid {like.shape[:3]}")
    return Volume(data=cam, affine=like.affine, kind="probability", unit="1")
