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


NETWORKS: dict[str, Callable[..., nn.Module]] = {
    "unet": unet,
    "residual-unet": residual_unet,
    "resnet10": _resnet(10),
    "resnet18": _resnet(18),
    "resnet34": _resnet(34),
    "resnet50": _resnet(50),
    "unet2d": unet_2d,
    "resnet-segmenter": resnet_segmenter,
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
