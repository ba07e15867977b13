"""U-Net up-sampling options: interpolation or sub-pixel convolution leave no checkerboard."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from lesionkit.metrics.image import nyquist_power
from lesionkit.models import build_network


def _output(upsample: str) -> np.ndarray:
    torch.manual_seed(0)
    network = build_network("unet", 1, 1, channels=(4, 8, 16), strides=(2, 2),
                            upsample=upsample).eval()
    smooth = gaussian_filter(np.random.default_rng(0).normal(size=(32, 32, 32)), 3.0)
    with torch.no_grad():
        out = network(torch.from_numpy(smooth / smooth.std()).float()[None, None])
    assert out.shape == (1, 1, 32, 32, 32)
    return out[0, 0, 4:-4, 4:-4, 4:-4].numpy()  # away from the padded borders


@pytest.mark.parametrize("upsample", ["nontrainable", "pixelshuffle"])
def test_upsampling_leaves_no_two_voxel_texture(upsample: str) -> None:
    # Untrained weights already show it: a stride-2 transposed convolution imprints its
    # kernel's uneven overlap on a smooth input, interpolation does not.
    textured = nyquist_power(_output("deconv"), taper=0)
    assert textured > 1e-3
    assert nyquist_power(_output(upsample), taper=0) < textured / 20


def test_unknown_upsampling_is_refused() -> None:
    with pytest.raises(ValueError, match="upsample"):
        build_network("unet", 1, 1, channels=(4, 8), upsample="bicubic")
