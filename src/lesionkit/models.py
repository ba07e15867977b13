"""Network registry: names users type -> factories over MONAI networks.

Every factory takes ``in_channels`` and ``out_channels`` first, then its own keyword
arguments, and returns a ``torch.nn.Module`` for 3D inputs shaped (B, C, X, Y, Z).

Example::

    from lesionkit.models import build_network
    net = build_network("unet", 1, 1, channels=(16, 32, 64), strides=(2, 2))
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from lesionkit.slicewise import unet_2d


def unet(
    in_channels: int,
    out_channels: int,
    channels: Sequence[int] = (32, 64, 128, 256),
    strides: Sequence[int] | None = None,
    kernel_size: int = 3,
    up_kernel_size: int = 3,
    num_res_units: int = 0,
    norm: str = "batch",
    dropout: float = 0.0,
    act: str | tuple = "prelu",
    upsample: str = "deconv",
) -> nn.Module:
    """3D U-Net (Cicek 2016 style) of configurable depth and width.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        channels: Features per level; its length is the depth.
        strides: Down-sampling strides between levels (default 2 everywhere).
        kernel_size: Convolution kernel size.
        up_kernel_size: Up-convolution kernel size.
        num_res_units: Residual units per level (0: plain convolutions).
        norm: Normalisation layer name understood by MONAI.
        dropout: Dropout probability.
        act: Activation name (or name and arguments) understood by MONAI.
        upsample: How the decoder up-samples: "deconv" (MONAI's transposed convolution
            of stride 2, which leaves a 2-voxel checkerboard where its kernel overlaps
            unevenly), "nontrainable" (trilinear interpolation, then the same convolution
            at stride 1) or "pixelshuffle" (sub-pixel convolution with ICNR
            initialisation and a 2-voxel average, then that convolution). MONAI's
            ``UpSample`` block in the last two.
    """
    from monai.networks.nets import UNet

    if upsample not in ("deconv", "nontrainable", "pixelshuffle"):
        raise ValueError("upsample must be 'deconv', 'nontrainable' or 'pixelshuffle', "
                         f"found {upsample!r}")
    strides = tuple(strides) if strides is not None else (2,) * (len(channels) - 1)
    return (UNet if upsample == "deconv" else _upsampling_unet(upsample))(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=tuple(channels),
        strides=strides,
        kernel_size=kernel_size,
        up_kernel_size=up_kernel_size,
        num_res_units=num_res_units,
        norm=norm,
        dropout=dropout,
        act=act,
    )


@functools.cache
def _upsampling_unet(mode: str) -> type[nn.Module]:
    """MONAI's UNet whose up layers up-sample with MONAI's ``UpSample`` in ``mode``, then
    apply the UNet's own up layer at stride 1 (a convolution: no uneven overlap)."""
    from monai.networks.blocks import UpSample
    from monai.networks.nets import UNet

    class UpsamplingUNet(UNet):
        def _get_up_layer(self, in_channels: int, out_channels: int, strides: int,
                          is_top: bool) -> nn.Module:
            layer = super()._get_up_layer(in_channels, out_channels, 1, is_top)
            if strides == 1:
                return layer
            # every channel up-sampled (pixelshuffle: its own convolution to 8x channels)
            up = UpSample(self.dimensions, in_channels, in_channels, strides, mode=mode,
                          pre_conv="default" if mode == "pixelshuffle" else None,
                          interp_mode="trilinear", align_corners=False)
            return nn.Sequential(up, layer)

    UpsamplingUNet.__name__ = UpsamplingUNet.__qualname__ = f"UNet({mode})"
    return UpsamplingUNet


def residual_unet(
    in_channels: int,
    out_channels: int,
    channels: Sequence[int] = (32, 64, 128, 256),
    strides: Sequence[int] | None = None,
    num_res_units: int = 2,
    norm: str = "instance",
    act: str | tuple = ("leakyrelu", {"negative_slope": 0.2}),
) -> nn.Module:
    """3D U-Net with residual units in encoder and decoder (LeakyReLU 0.2 by default)."""
    return unet(in_channels, out_channels, channels, strides, num_res_units=num_res_units,
                norm=norm, act=act)


class InputResidual(nn.Module):
    """``network(x) + x[:, channel]``: the network learns a correction to one of its input
    channels, which passes through unchanged where the correction is zero (image-to-image
    tasks whose output is an input image, changed)."""

    def __init__(self, network: nn.Module, channel: int = 0) -> None:
        super().__init__()
        self.network = network
        self.channel = channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x) + x[:, self.channel:self.channel + 1]


def residual_unet_on_input(
    in_channels: int,
    out_channels: int,
    channels: Sequence[int] = (32, 64, 128, 256),
    strides: Sequence[int] | None = None,
    num_res_units: int = 2,
    norm: str = "instance",
    act: str | tuple = ("leakyrelu", {"negative_slope": 0.2}),
    channel: int = 0,
) -> nn.Module:
    """:func:`residual_unet` (the same options, named so that the command line's
    ``--channels`` reaches them) whose output is added to input ``channel``
    (:class:`InputResidual`; to every output channel)."""
    return InputResidual(residual_unet(in_channels, out_channels, channels, strides,
                                       num_res_units, norm, act), channel)


def _resnet(depth: int) -> Callable[..., nn.Module]:
    def factory(
        in_channels: int,
        out_channels: int,
        shortcut_type: str | None = None,
        widen_factor: float = 1.0,
        conv1_t_stride: int = 1,
        bias_downsample: bool = True,
        pooling: str = "avg",
        no_max_pool: bool = False,
    ) -> nn.Module:
        from monai.networks import nets

        if pooling not in ("avg", "max"):
            raise ValueError(f"pooling must be 'avg' or 'max', found {pooling!r}")
        # MedicalNet convention: shortcut A for 18/34, B for 10/50; its first convolution
        # has stride 2 and its B shortcuts no bias (conv1_t_stride=2, bias_downsample=False).
        shortcut = shortcut_type or ("A" if depth in (18, 34) else "B")
        network = getattr(nets, f"resnet{depth}")(
            spatial_dims=3,
            n_input_channels=in_channels,
            num_classes=out_channels,
            shortcut_type=shortcut,
            widen_factor=widen_factor,
            conv1_t_stride=conv1_t_stride,
            bias_downsample=bias_downsample,
            no_max_pool=no_max_pool,
        )
        if pooling == "max":  # no weights: checkpoints load either way
            network.avgpool = nn.AdaptiveMaxPool3d(1)
        return network

    factory.__name__ = f"resnet{depth}"
    factory.__doc__ = (f"3D ResNet-{depth} classifier (MONAI), global average (or, with "
                       "``pooling='max'``, maximum) pooling + linear head.")
    return factory


STAGES = ("layer1", "layer2", "layer3", "layer4")


def _stage_width(stage: nn.Module) -> int:
    """Output channels of a residual stage (its last convolution)."""
    return [m for m in stage.modules() if isinstance(m, nn.Conv3d)][-1].out_channels


class ResNetSegmenter(nn.Module):
    """A MONAI ResNet encoder with a feature-pyramid decoder giving voxel logits.

    Decoder: 1x1 lateral convolutions of the four residual stages to ``features``
    channels, top-down trilinear upsampling with addition, a 3x3x3 head and trilinear
    upsampling to the input size. Pretrains a classifier's encoder on segmentation.

    Args:
        encoder: A ``monai.networks.nets.ResNet`` (its ``avgpool``/``fc`` are unused).
        out_channels: Output channels (1: lesion logit).
        features: Decoder width.
    """

    def __init__(self, encoder: nn.Module, out_channels: int = 1, features: int = 32) -> None:
        super().__init__()
        self.encoder = encoder
        self.lateral = nn.ModuleList(nn.Conv3d(_stage_width(getattr(encoder, s)), features, 1)
                                     for s in STAGES)
        self.head = nn.Conv3d(features, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.encoder
        h = e.act(e.bn1(e.conv1(x)))
        h = h if e.no_max_pool else e.maxpool(h)
        stages = []
        for name in STAGES:
            h = getattr(e, name)(h)
            stages.append(h)
        top = self.lateral[-1](stages[-1])
        for lateral, skip in zip(self.lateral[-2::-1], stages[-2::-1], strict=True):
            top = F.interpolate(top, size=skip.shape[2:], mode="trilinear") + lateral(skip)
        return F.interpolate(self.head(top), size=x.shape[2:], mode="trilinear")


def resnet_segmenter(in_channels: int, out_channels: int, depth: int = 18,
                     features: int = 32, **resnet_kwargs: Any) -> nn.Module:
    """A ResNet-``depth`` encoder (as the classifier's) with a feature-pyramid decoder."""
    encoder = NETWORKS[f"resnet{depth}"](in_channels, 2, **resnet_kwargs)
    return ResNetSegmenter(encoder, out_channels, features)


class PeakScoreNet(nn.Module):
    """A fully convolutional voxel scorer whose class logits are its score maps' peaks.

    For "is there a focal abnormality anywhere in this volume": ``depth`` 3x3x3
    convolutions with batch normalisation and ReLU (the first with stride ``stride``)
    give ``width`` channels per voxel (the module :attr:`features`, the layer to explain
    with Grad-CAM), a 1x1 convolution one score map per class after the first, and a
    class's logit is the largest value of its map over the volume (global maximum pooling
    of a score map, weakly supervised localisation). The first class is the reference:
    its logit is 0, so with two classes the second's probability is the sigmoid of the
    peak score. With a few thousand weights the network holds little about individual
    training subjects, and its Grad-CAM is its own score map.

    Args:
        in_channels: Input channels.
        out_channels: Classes (at least 2).
        width: Channels of every convolution.
        depth: Number of 3x3x3 convolutions (receptive field 2 * depth + 1 voxels of the
            strided grid). 0: none, the score is a weighted sum of the input channels per
            voxel, so a one-channel input's logit is a linear function of its largest
            value (logistic regression on the peak while the weight stays positive; it
            starts at 1, the bias at 0).
        stride: Stride of the first convolution (2: the scores are on a grid of twice the
            input's spacing, an eighth of the work).
    """

    def __init__(self, in_channels: int, out_channels: int = 2, width: int = 8,
                 depth: int = 3, stride: int = 2) -> None:
        super().__init__()
        if out_channels < 2 or depth < 0:
            raise ValueError(f"PeakScoreNet needs at least 2 classes and a depth of 0 or "
                             f"more, found {out_channels} and {depth}")
        layers: list[nn.Module] = []
        for k in range(depth):
            layers += [nn.Conv3d(in_channels if k == 0 else width, width, 3,
                                 stride=stride if k == 0 else 1, padding=1),
                       nn.BatchNorm3d(width), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.score = nn.Conv3d(width if depth else in_channels, out_channels - 1, 1)
        if not depth:
            # Start from the peak of the input's mean: with a negative weight the peak of
            # the score is the input's *lowest* value, a trap the loss does not lead out of.
            nn.init.constant_(self.score.weight, 1.0 / in_channels)
            nn.init.zeros_(self.score.bias)

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, classes - 1, X', Y', Z') voxel scores (logits against the first class)."""
        return self.score(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, classes) logits: 0 for the first class, each other class's peak score."""
        peaks = self.score_map(x).flatten(2).amax(dim=2)
        return torch.cat([torch.zeros_like(peaks[:, :1]), peaks], dim=1)


def peak_fcn(in_channels: int, out_channels: int, width: int = 8, depth: int = 3,
             stride: int = 2) -> nn.Module:
    """Fully convolutional scorer with global maximum pooling (:class:`PeakScoreNet`)."""
    return PeakScoreNet(in_channels, out_channels, width, depth, stride)


def smoothed(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing of (B, C, X, Y, Z) volumes (MONAI ``GaussianFilter``; ``sigma`` in
    voxels, 0: unchanged)."""
    if sigma <= 0:
        return x
    from monai.networks.layers import GaussianFilter

    return GaussianFilter(3, sigma).to(x.device)(x)


def fit_normative(examples: Any, reference: int, sigma: float, floor: float = 0.05
                  ) -> dict[str, Any]:
    """Voxel-wise mean and standard deviation of a reference group's smoothed inputs.

    The normative comparison of MAP-style morphometry: a subject's voxel is later scored
    by how far it lies from the same voxel of the reference group (training controls),
    which needs every subject on one grid (registered to one template).

    Args:
        examples: Training examples (``{"input": (C, X, Y, Z), "target": class}``), without
            augmentation.
        reference: Class index of the reference group (e.g. 0, controls).
        sigma: Gaussian smoothing before the comparison (voxels).
        floor: Least standard deviation (input units), so that voxels where the
            reference group agrees to the last digit (outside the brain) do not explode.

    Returns:
        ``normative_mean`` and ``normative_sd`` (C, X, Y, Z), ``normative_sigma`` (1,) and
        ``normative_count`` (1,): the state of :class:`NormativeDeviation`.

    Raises:
        InputError: fewer than two reference examples, or examples on different grids.
    """
    from lesionkit.io import InputError

    total = square = None
    count = 0
    for item in examples:
        if int(item["target"]) != reference:
            continue
        x = smoothed(torch.as_tensor(item["input"], dtype=torch.float32)[None], sigma)[0]
        x = x.double()
        if total is not None and x.shape != total.shape:
            raise InputError("expected every subject on one grid (registered to one "
                             f"template), found {tuple(total.shape[1:])} and "
                             f"{tuple(x.shape[1:])} voxels")
        total = x if total is None else total + x
        square = x * x if square is None else square + x * x
        count += 1
    if count < 2 or total is None or square is None:
        raise InputError(f"expected at least two training subjects of class {reference} for "
                         f"the normative comparison, found {count}")
    mean = total / count
    sd = ((square / count - mean * mean).clamp(min=0) * count / (count - 1)).sqrt()
    return {"normative_mean": mean.float().numpy(),
            "normative_sd": sd.clamp(min=floor).float().numpy(),
            "normative_sigma": np.array([sigma], np.float32),
            "normative_count": np.array([count], np.int64)}


class NormativeDeviation(nn.Module):
    """A network that reads its input and the input's voxel-wise z-score against a
    reference group (:func:`fit_normative`), stacked as channels.

    The z-score, ``(smoothed(x) - mean) / sd`` clipped to +-``limit``, is computed inside
    the module from buffers saved with the weights, so a model folder predicts with the
    statistics of the subjects it was trained on.

    Args:
        network: Network taking twice the input channels (with ``with_image``), else as
            many.
        state: :func:`fit_normative`'s result.
        limit: Clip of the z-score.
        with_image: Whether the network reads the input beside its z-score (False: the
            z-score alone).
    """

    def __init__(self, network: nn.Module, state: dict[str, Any], limit: float = 10.0,
                 with_image: bool = True) -> None:
        super().__init__()
        self.network, self.limit, self.with_image = network, limit, with_image
        # (1, C, X, Y, Z): 5D like the input, so channels-last conversion takes them too
        self.register_buffer("mean", torch.as_tensor(np.asarray(state["normative_mean"]))[None])
        self.register_buffer("sd", torch.as_tensor(np.asarray(state["normative_sd"]))[None])
        self.sigma = float(np.asarray(state["normative_sigma"]).ravel()[0])
        self.count = int(np.asarray(state["normative_count"]).ravel()[0])

    def deviation(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, X, Y, Z) z-scores of ``x`` against the reference group.

        Args:
            x: (B, C, X, Y, Z) inputs.
            members: (B,) True for examples that are part of the fitted reference group
                (training controls): their z-score is taken against the group without
                them (leave-one-out), as a held-out subject's is. Without it a member's
                own values pull the mean toward it and widen the SD, so its extremes come
                out smaller than those of a subject outside the group.
        """
        if tuple(x.shape[1:]) != tuple(self.mean.shape[1:]):
            from lesionkit.io import InputError

            raise InputError(
                "expected an input on the grid of the model's normative maps ("
                f"{' x '.join(map(str, self.mean.shape[2:]))} voxels, {self.mean.shape[1]} "
                f"channel(s): subjects registered to the training template), found "
                f"{' x '.join(map(str, x.shape[2:]))} voxels, {x.shape[1]} channel(s)")
        z = (smoothed(x, self.sigma) - self.mean) / self.sd
        n = self.count
        if members is not None and bool(members.any()) and n > 2:
            # Member x of n: x - mean_without = d n / (n - 1); the sum of squares without
            # it loses d^2 n / (n - 1), over n - 2 degrees of freedom (d = z sd).
            rest = ((n - 1) - z * z * n / (n - 1)).clamp(min=1e-3)
            alone = z * n / (n - 1) * torch.sqrt((n - 2) / rest)
            z = torch.where(members.view(-1, *([1] * (z.ndim - 1))).to(z.device), alone, z)
        return z.clamp(-self.limit, self.limit)

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """The wrapped network's output for ``x`` and its z-score (see :meth:`deviation`),
        or for the z-score alone."""
        z = self.deviation(x, members)
        return self.network(torch.cat([x, z], dim=1) if self.with_image else z)


def normative_network(in_channels: int, out_channels: int, state: dict[str, Any] | None = None,
                      base: str = "resnet18", with_image: bool = True, **kwargs: Any
                      ) -> nn.Module:
    """The registered network ``base`` (``**kwargs`` its options) over the input and its
    normative z-score, or the z-score alone (``with_image`` False;
    :class:`NormativeDeviation`): ``Task.network_factory`` of tasks whose ``fit_state``
    is :func:`fit_normative`."""
    if state is None:
        raise ValueError("normative_network needs the fitted state (Task.fit_state)")
    channels = 2 * in_channels if with_image else in_channels
    return NormativeDeviation(NETWORKS[base](channels, out_channels, **kwargs), state,
                              with_image=with_image)


NETWORKS: dict[str, Callable[..., nn.Module]] = {
    "unet": unet,
    "residual-unet": residual_unet,
    "resnet10": _resnet(10),
    "resnet18": _resnet(18),
    "resnet34": _resnet(34),
    "resnet50": _resnet(50),
    "unet2d": unet_2d,
    "resnet-segmenter": resnet_segmenter,
    "peak-fcn": peak_fcn,
    "residual-unet-on-input": residual_unet_on_input,
}


def build_network(name: str, in_channels: int, out_channels: int, **kwargs: Any) -> nn.Module:
    """Build a registered network.

    Args:
        name: Registry name (see :data:`NETWORKS`).
        in_channels: Input channels.
        out_channels: Output channels (or classes).
        **kwargs: Factory keyword arguments.

    Raises:
        KeyError: Unknown name; the message lists the known ones.
    """
    if name not in NETWORKS:
        raise KeyError(f"unknown network {name!r}; known: {', '.join(sorted(NETWORKS))}")
    return NETWORKS[name](in_channels, out_channels, **kwargs)
