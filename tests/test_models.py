"""Network registry: every entry builds and maps a 3D batch to the right shape."""

from __future__ import annotations

import pytest
import torch

from lesionkit.models import NETWORKS, build_network

KWARGS = {"unet": {"channels": (4, 8, 16)}, "residual-unet": {"channels": (4, 8)},
          "unet2d": {"channels": (4, 4, 8, 8, 16)}}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_network_shapes(name: str) -> None:
    network = build_network(name, 2, 3, **KWARGS.get(name, {})).eval()
    with torch.no_grad():
        output = network(torch.randn(1, 2, 16, 16, 16))
    dense = "unet" in name or "segmenter" in name
    assert tuple(output.shape) == ((1, 3, 16, 16, 16) if dense else (1, 3))


def test_unet_depth_follows_channels() -> None:
    shallow = build_network("unet", 1, 1, channels=(4, 8))
    deep = build_network("unet", 1, 1, channels=(4, 8, 16, 32))
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(deep) > 4 * count(shallow)


def test_resnet_shortcut_follows_medicalnet() -> None:
    # MedicalNet: parameter-free shortcut A for ResNet-18/34, 1x1x1 convolution B for 10/50.
    assert not isinstance(build_network("resnet18", 1, 2).layer2[0].downsample, torch.nn.Module)
    assert isinstance(build_network("resnet10", 1, 2).layer2[0].downsample, torch.nn.Module)


def test_unknown_network_lists_names() -> None:
    with pytest.raises(KeyError, match="resnet18"):
        build_network("vgg", 1, 1)


def test_resnet_pooling_and_first_stride_are_values() -> None:
    x = torch.zeros(1, 1, 32, 32, 32)
    network = build_network("resnet10", 1, 2, widen_factor=0.25, pooling="max",
                            conv1_t_stride=2)
    assert isinstance(network.avgpool, torch.nn.AdaptiveMaxPool3d)
    assert network.eval()(x).shape == (1, 2)
    averaged = build_network("resnet10", 1, 2, widen_factor=0.25)
    assert isinstance(averaged.avgpool, torch.nn.AdaptiveAvgPool3d)
    # no tensors differ: a checkpoint of one pooling loads into the other
    assert averaged.state_dict().keys() == network.state_dict().keys()
    with pytest.raises(ValueError, match="pooling"):
        build_network("resnet10", 1, 2, pooling="mean")
