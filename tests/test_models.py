"""Network registry: every entry builds and maps a 3D batch to the right shape."""

from __future__ import annotations

import pytest
import torch

from lesionkit.models import NETWORKS, build_network

KWARGS = {"unet": {"channels": (4, 8, 16)}, "residual-unet": {"channels": (4, 8)},
          "residual-unet-on-input": {"channels": (4, 8)},
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


def _examples(values: list[tuple[float, int]], shape=(6, 5, 4)) -> list[dict]:
    return [{"input": torch.full((1, *shape), v), "target": torch.tensor(t)} for v, t in values]


def test_normative_fit_uses_the_reference_class_only() -> None:
    import numpy as np

    from lesionkit.models import fit_normative

    # controls (class 0) at 1, 2, 3; a patient (class 1) at 100 must not move the fit
    state = fit_normative(_examples([(1.0, 0), (100.0, 1), (2.0, 0), (3.0, 0)]), 0, sigma=0)
    np.testing.assert_allclose(state["normative_mean"], 2.0)
    np.testing.assert_allclose(state["normative_sd"], 1.0)  # sample SD of 1, 2, 3
    assert state["normative_count"][0] == 3 and state["normative_mean"].shape == (1, 6, 5, 4)
    # identical controls: the SD floor, not zero
    state = fit_normative(_examples([(1.0, 0), (1.0, 0)]), 0, sigma=0, floor=0.05)
    np.testing.assert_allclose(state["normative_sd"], 0.05)
    with pytest.raises(ValueError, match="at least two training subjects of class 0"):
        fit_normative(_examples([(1.0, 0), (5.0, 1)]), 0, sigma=0)
    mixed = _examples([(1.0, 0)]) + _examples([(2.0, 0)], shape=(6, 5, 5))
    with pytest.raises(ValueError, match="one grid"):
        fit_normative(mixed, 0, sigma=0)


def test_normative_network_reads_the_image_and_its_z_score() -> None:
    from lesionkit.io import InputError
    from lesionkit.models import NormativeDeviation, fit_normative, normative_network

    state = fit_normative(_examples([(1.0, 0), (2.0, 0), (3.0, 0)], shape=(16, 16, 16)), 0,
                          sigma=1.0)
    network = normative_network(1, 2, state=state, base="resnet10", widen_factor=0.25)
    assert isinstance(network, NormativeDeviation)
    assert network.network.conv1.in_channels == 2  # the image and its z-score
    x = torch.full((1, 1, 16, 16, 16), 4.0)
    z = network.deviation(x)
    # away from the edges, smoothing a constant leaves it: (4 - 2) / 1
    torch.testing.assert_close(z[0, 0, 8, 8, 8], torch.tensor(2.0), atol=1e-4, rtol=0)
    assert network.eval()(x).shape == (1, 2)
    assert set(network.state_dict()) >= {"mean", "sd"}  # saved with the weights
    with pytest.raises(InputError, match="16 x 16 x 16 voxels"):
        network(torch.zeros(1, 1, 16, 16, 12))
    with pytest.raises(ValueError, match="fitted state"):
        normative_network(1, 2)
    alone = normative_network(1, 2, state=state, base="peak-fcn", with_image=False).eval()
    assert alone.network.features[0].in_channels == 1  # the z-score alone
    with torch.no_grad():
        torch.testing.assert_close(alone(x), alone.network(alone.deviation(x)))


def test_normative_members_are_scored_without_themselves() -> None:
    import numpy as np

    from lesionkit.models import NormativeDeviation, fit_normative

    values = [1.0, 2.0, 3.0, 6.0]
    state = fit_normative(_examples([(v, 0) for v in values]), 0, sigma=0, floor=1e-6)
    network = NormativeDeviation(torch.nn.Identity(), state)
    x = torch.full((2, 1, 6, 5, 4), 6.0)
    z = network.deviation(x, members=torch.tensor([True, False]))
    others = np.array(values[:3])
    expected = (6.0 - others.mean()) / others.std(ddof=1)  # the group without 6
    np.testing.assert_allclose(z[0].numpy(), expected, rtol=1e-4)
    in_sample = (6.0 - np.mean(values)) / np.std(values, ddof=1)
    np.testing.assert_allclose(z[1].numpy(), in_sample, rtol=1e-4)


def test_peak_score_net_logit_is_the_peak_of_its_score_map() -> None:
    from lesionkit.models import PeakScoreNet

    torch.manual_seed(0)
    network = build_network("peak-fcn", 2, 2).eval()
    assert isinstance(network, PeakScoreNet)
    assert sum(p.numel() for p in network.parameters()) < 5000  # too few to memorise
    x = torch.randn(3, 2, 16, 16, 16)
    with torch.no_grad():
        logits, scores = network(x), network.score_map(x)
    assert scores.shape == (3, 1, 8, 8, 8)  # stride 2: scores on a grid of half the size
    torch.testing.assert_close(logits[:, 0], torch.zeros(3))  # the reference class
    torch.testing.assert_close(logits[:, 1], scores.flatten(1).amax(dim=1))
    with pytest.raises(ValueError, match="at least 2 classes"):
        PeakScoreNet(1, 1)
    # without convolutions: a linear function of the largest value (one channel), which
    # starts as the largest value itself (a negative weight would read the lowest)
    linear = PeakScoreNet(1, 2, depth=0).eval()
    with torch.no_grad():
        y = torch.randn(2, 1, 6, 6, 6)
        torch.testing.assert_close(linear(y)[:, 1], y.flatten(1).amax(dim=1))
        linear.score.weight.fill_(2.0)
        linear.score.bias.fill_(-3.0)
        y = torch.randn(2, 1, 6, 6, 6)
        torch.testing.assert_close(linear(y)[:, 1], 2.0 * y.flatten(1).amax(dim=1) - 3.0)


def test_peak_score_net_is_location_blind() -> None:
    from lesionkit.models import PeakScoreNet

    torch.manual_seed(1)
    network = PeakScoreNet(1, 2).eval()
    spot = torch.zeros(2, 1, 24, 24, 24)
    # the same spot at two places on the stride's grid, both far enough from the edges
    # that no zero padding reaches the scores they move
    spot[0, 0, 8:10, 10:12, 12:14] = 5.0
    spot[1, 0, 14:16, 8:10, 10:12] = 5.0
    with torch.no_grad():
        logits = network(spot)
    torch.testing.assert_close(logits[0], logits[1])


def test_input_residual_passes_its_input_channel_through_a_zero_correction() -> None:
    network = build_network("residual-unet-on-input", 3, 1, channel=1, channels=(4, 8)).eval()
    x = torch.randn(2, 3, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(network(x), network.network(x) + x[:, 1:2])
        for parameter in network.network.parameters():
            parameter.zero_()
        assert torch.equal(network(x), x[:, 1:2])
