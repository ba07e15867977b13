"""2D networks applied slice by slice to 3D batches.

The engine feeds every network (B, C, X, Y, Z) tensors. :class:`SliceWise` folds the
Z axis into the batch, runs a 2D network on each (X, Y) slice and unfolds the result,
so a 2D U-Net trains on (X, Y, 1) patches and predicts whole volumes with the same
sliding-window inference as the 3D networks.

With ``context`` k > 0 each slice is read together with its k neighbours on either side
along Z, stacked as channels (a "2.5D" network): a 2D network then sees whether a bright
spot continues above and below, which tells a lesion from cortex cut tangentially at the
top or bottom of the brain. Slices beyond the volume's ends repeat its first or last
slice (as at a field of view's edge), so such a network trains on patches of more than
one slice, for example (X, Y, 5).

Example:
    >>> net = unet_2d(35, 5)
    >>> net(torch.zeros(2, 35, 64, 64, 3)).shape
    torch.Size([2, 5, 64, 64, 3])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class SliceWise(nn.Module):
    """Apply a 2D network to every slice along the last axis of a (B, C, X, Y, Z) tensor.

    Slices are zero-padded in-plane up to a multiple of ``multiple`` (the network's total
    down-sampling) and the output cropped back, so any in-plane size works. In evaluation
    mode a whole volume goes through in passes of a few slices: on a 2-core CPU with
    channels-last weights (:func:`lesionkit.infer.channels_last`), passes of 4 or 8
    slices of a 2 mm brain took 2.3-2.5 s against 3.1 s for one pass of all 82 (larger
    buffers, more page faults; ``python benchmarks/profile_inference.py``).

    Args:
        network: A 2D network mapping (N, C_in, X, Y) to (N, C_out, X, Y).
        multiple: In-plane sizes are padded to a multiple of this.
        slices_per_pass: Slices per forward pass on a CPU (on CUDA: 16 times as many).
        context: Neighbouring slices on either side stacked as channels; the 2D network
            then takes ``C * (2 * context + 1)`` input channels, ordered by slice offset
            (-context first), each offset holding all C channels.
    """

    def __init__(self, network: nn.Module, multiple: int = 1, slices_per_pass: int = 4,
                 context: int = 0) -> None:
        super().__init__()
        if context < 0:
            raise ValueError(f"context: expected 0 or more slices, found {context}")
        self.network = network
        self.multiple = multiple
        self.slices_per_pass = slices_per_pass
        self.context = context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"expected a (B, C, X, Y, Z) tensor, found shape {tuple(x.shape)}")
        if self.context:
            k = self.context
            padded = nn.functional.pad(x, (k, k, 0, 0, 0, 0), mode="replicate")
            x = torch.cat([padded[..., i:i + x.shape[-1]] for i in range(2 * k + 1)], dim=1)
        b, c, nx, ny, nz = x.shape
        slices = x.permute(0, 4, 1, 2, 3).reshape(b * nz, c, nx, ny)
        px, py = (-n % self.multiple for n in (nx, ny))
        if px or py:
            slices = nn.functional.pad(slices, (0, py, 0, px))
        # Training keeps one pass: batch normalisation sees the whole batch.
        step = len(slices) if self.training else self.slices_per_pass * (16 if slices.is_cuda
                                                                          else 1)
        y = torch.cat([self.network(slices[i:i + step]) for i in range(0, len(slices), step)]
                      )[:, :, :nx, :ny]
        return y.reshape(b, nz, y.shape[1], nx, ny).permute(0, 2, 3, 4, 1)


def unet_2d(
    in_channels: int,
    out_channels: int,
    channels: Sequence[int] = (32, 64, 128, 256, 512),
    strides: Sequence[int] | None = None,
    norm: str = "batch",
    bridge_dropout: float = 0.5,
    context_slices: int = 0,
) -> nn.Module:
    """The MRF study's 2D U-Net (Ronneberger 2015 style), applied slice-wise.

    MONAI's ``BasicUNet``: two 3x3 convolutions + normalisation + ReLU per stage,
    2x2 max-pooling, 2x2 transposed-convolution up-sampling, skip concatenation and a
    1x1 output convolution (a regression head: no activation). Inputs of any in-plane
    size are accepted (MONAI pads skips where sizes are odd).

    Args:
        in_channels: Input channels (35 MRF frames).
        out_channels: Output channels.
        channels: Features of the five stages; 4 pooling steps ("depth 4"), 32 first-level
            filters doubling down to the bridge.
        strides: Accepted for the registry's common signature; pooling is 2x2, so only
            None or all 2 are valid.
        norm: MONAI normalisation name ("batch", "instance") applied after each convolution.
        bridge_dropout: Dropout probability after the bridge (deepest) stage only.
        context_slices: Neighbouring slices on either side read with each slice (see
            :class:`SliceWise`); 0 is the study's plain 2D network.
    """
    from monai.networks.nets import BasicUNet

    if len(channels) != 5:
        raise ValueError(f"expected 5 stage channels (depth 4), found {len(channels)}")
    if strides is not None and any(int(s) != 2 for s in strides):
        raise ValueError(f"the 2D U-Net pools by 2; expected strides of 2, found {list(strides)}")
    act = ("relu", {"inplace": True})
    if context_slices < 0:
        raise ValueError(f"context_slices: expected 0 or more, found {context_slices}")
    network = BasicUNet(spatial_dims=2, in_channels=in_channels * (2 * context_slices + 1),
                        out_channels=out_channels,
                        features=(*channels, channels[0]), act=act, norm=norm,
                        upsample="deconv")
    if bridge_dropout > 0:
        network.down_4 = nn.Sequential(network.down_4, nn.Dropout(bridge_dropout))
    return SliceWise(network, multiple=16, context=context_slices)
