"""2D networks applied slice by slice to 3D batches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lesionkit.models import build_network
from lesionkit.slicewise import SliceWise, unet_2d

TINY = {"channels": (4, 4, 8, 8, 16)}


def test_slicewise_keeps_shape_and_slices_stay_independent() -> None:
    torch.manual_seed(0)
    network = unet_2d(3, 2, **TINY).eval()
    x = torch.randn(2, 3, 20, 23, 5)
    with torch.no_grad():
        y = network(x)
        changed = x.clone()
        changed[:, :, :, :, 2] += 5.0
        z = network(changed)
    assert y.shape == (2, 2, 20, 23, 5)
    torch.testing.assert_close(y[..., [0, 1, 3, 4]], z[..., [0, 1, 3, 4]])
    assert not torch.allclose(y[..., 2], z[..., 2])


def test_slicewise_runs_the_2d_network_on_each_slice() -> None:
    conv = nn.Conv2d(2, 1, 3, padding=1)
    wrapped = SliceWise(conv, multiple=4)
    x = torch.randn(1, 2, 6, 7, 3)
    with torch.no_grad():
        expected = torch.stack([conv(nn.functional.pad(x[..., k], (0, 1, 0, 2)))[..., :6, :7]
                                for k in range(3)], dim=-1)
        torch.testing.assert_close(wrapped(x), expected)


def test_unet_2d_matches_the_study_layout() -> None:
    network = unet_2d(35, 5)
    inner = network.network
    assert inner.conv_0.conv_0.conv.in_channels == 35
    assert inner.conv_0.conv_0.conv.out_channels == 32
    assert isinstance(inner.down_4[1], nn.Dropout) and inner.down_4[1].p == 0.5
    assert inner.final_conv.out_channels == 5 and inner.final_conv.kernel_size == (1, 1)
    assert network.multiple == 16


def test_registry_builds_the_2d_unet_and_rejects_other_depths() -> None:
    network = build_network("unet2d", 35, 5, **TINY)
    assert isinstance(network, SliceWise)
    assert network(torch.zeros(2, 35, 16, 16, 1)).shape == (2, 5, 16, 16, 1)
    with pytest.raises(ValueError, match="5 stage channels"):
        unet_2d(1, 1, channels=(4, 8))
    with pytest.raises(ValueError, match="strides of 2"):
        unet_2d(1, 1, strides=(2, 1, 2, 2), **TINY)
    assert isinstance(unet_2d(1, 1, strides=[2, 2, 2, 2], **TINY), SliceWise)  # CLI --channels
    with pytest.raises(ValueError, match=r"\(B, C, X, Y, Z\)"):
        network(torch.zeros(1, 35, 16, 16))


def test_passes_of_a_few_slices_give_the_one_pass_result() -> None:
    torch.manual_seed(0)
    network = unet_2d(3, 2, **TINY).eval()
    x = torch.randn(2, 3, 16, 16, 7)  # 14 slices: passes of 4, 4, 4 and 2
    with torch.no_grad():
        chunked = network(x)
        network.slices_per_pass = 100
        whole = network(x)
    torch.testing.assert_close(chunked, whole)
    assert SliceWise(nn.Identity()).slices_per_pass == 4


def test_context_stacks_neighbouring_slices_as_channels() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(1, 2, 3, 4, 4)
    seen = []

    def record(slices: torch.Tensor) -> torch.Tensor:
        seen.append(slices)
        return slices

    stacked = SliceWise(record, context=1)(x)  # identity network: the stack itself
    assert len(seen) == 1 and stacked.shape == (1, 6, 3, 4, 4)
    below, here, above = stacked[:, 0:2], stacked[:, 2:4], stacked[:, 4:6]
    torch.testing.assert_close(here, x)
    torch.testing.assert_close(below[..., 1:], x[..., :-1])
    torch.testing.assert_close(above[..., :-1], x[..., 1:])
    torch.testing.assert_close(below[..., 0], x[..., 0])  # the first slice repeated
    torch.testing.assert_close(above[..., -1], x[..., -1])  # the last slice repeated


def test_unet_2d_with_context_reads_the_neighbours() -> None:
    torch.manual_seed(0)
    network = unet_2d(1, 1, context_slices=2, **TINY).eval()
    assert network.network.conv_0.conv_0.conv.in_channels == 5 and network.context == 2
    x = torch.randn(1, 1, 16, 16, 9)
    changed = x.clone()
    changed[..., 4] += 5.0
    with torch.no_grad():
        y, z = network(x), network(changed)
    assert y.shape == (1, 1, 16, 16, 9)
    differs = [not torch.allclose(y[..., k], z[..., k]) for k in range(9)]
    assert differs == [False, False, True, True, True, True, True, False, False]
    with pytest.raises(ValueError, match="context_slices: expected 0 or more"):
        unet_2d(1, 1, context_slices=-1, **TINY)
    with pytest.raises(ValueError, match="context: expected 0 or more"):
        SliceWise(nn.Identity(), context=-1)
