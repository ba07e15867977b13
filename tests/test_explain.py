"""Grad-CAM, Heat-Score, energy fraction and CAM volumes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.networks.nets import resnet10

from lesionkit.explain import (
    cam_volume,
    energy_fraction,
    grad_cam,
    heat_score,
    summarise_heat_scores,
)
from lesionkit.volume import Volume

N = 24  # grid of the synthetic volumes (voxels per side)
BLOB_RADIUS = 3  # voxels
GRID = np.indices((N, N, N)).astype(np.float32)
CENTRE = (N - 1) / 2
BRAIN = ((GRID - CENTRE) ** 2).sum(0) <= 10.0**2


def _ball(centre: np.ndarray, radius: float) -> np.ndarray:
    return ((GRID - np.asarray(centre, np.float32)[:, None, None, None]) ** 2).sum(0) <= radius**2


def _draw_blob_centre(rng: np.random.Generator) -> np.ndarray:
    """Random blob centre 7 voxels off the middle along a random axis and side, jittered."""
    centre = CENTRE + rng.uniform(-1.0, 1.0, 3)
    centre[rng.integers(3)] += rng.choice([-7.0, 7.0])
    return centre


def _volume(noise: np.ndarray, blob: np.ndarray | None) -> np.ndarray:
    """Sphere of intensity 1 plus noise; class 1 adds a bright blob (+2)."""
    image = BRAIN.astype(np.float32) + noise
    return (image if blob is None else image + 2.0 * blob).astype(np.float32)


def _batch(rng: np.random.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    labels = np.arange(size) % 2
    images = [
        _volume(
            rng.normal(0.0, 0.3, (N, N, N)).astype(np.float32),
            _ball(_draw_blob_centre(rng), BLOB_RADIUS) if label else None,
        )
        for label in labels
    ]
    return torch.from_numpy(np.stack(images)[:, None]), torch.from_numpy(labels)


def _tiny_resnet() -> torch.nn.Module:
    return resnet10(
        spatial_dims=3, n_input_channels=1, num_classes=2,
        widen_factor=0.125, conv1_t_size=3, no_max_pool=True,
    )


@pytest.fixture
def one_thread():
    """Tiny 3D convolutions run faster on one thread than on a contended pool."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- Heat-Score and energy fraction on hand-made maps ---------------------------------

def _masks() -> tuple[np.ndarray, np.ndarray]:
    brain = np.zeros((10, 10, 10), bool)
    brain[1:9, 1:9, 1:9] = True
    lesion = np.zeros_like(brain)
    lesion[2:4, 2:4, 2:5] = True
    return lesion, brain


def test_uniform_cam_scores_chance():
    lesion, brain = _masks()
    cam = np.full(brain.shape, 0.4)
    assert heat_score(cam, lesion, brain) == pytest.approx(1.0)
    assert energy_fraction(cam, lesion, brain) == pytest.approx(lesion.sum() / brain.sum())


def test_cam_on_lesion_scores_above_chance_and_elsewhere_below():
    lesion, brain = _masks()
    focused = np.where(lesion, 1.0, 0.1)
    assert heat_score(focused, lesion, brain) > 1.0
    # 12 lesion voxels at 1, 500 others at 0.1: (1) / ((12 + 50) / 512)
    assert heat_score(focused, lesion, brain) == pytest.approx(512 / 62)
    assert energy_fraction(focused, lesion, brain) == pytest.approx(12 / 62)
    elsewhere = np.where(lesion, 0.0, 1.0)
    assert heat_score(elsewhere, lesion, brain) == pytest.approx(0.0)


def test_heat_score_ignores_cam_outside_brain_and_its_scale():
    lesion, brain = _masks()
    rng = np.random.default_rng(0)
    cam = rng.uniform(0.0, 1.0, brain.shape)
    outside = cam.copy()
    outside[~brain] = 100.0
    assert heat_score(outside, lesion, brain) == pytest.approx(heat_score(cam, lesion, brain))
    assert heat_score(3 * cam, lesion, brain) == pytest.approx(heat_score(cam, lesion, brain))


def test_heat_score_rejects_bad_inputs():
    lesion, brain = _masks()
    with pytest.raises(ValueError, match="grid"):
        heat_score(np.ones((9, 10, 10)), lesion, brain)
    with pytest.raises(ValueError, match="no voxel"):
        heat_score(np.ones(brain.shape), np.zeros_like(lesion), brain)
    assert math.isnan(heat_score(np.zeros(brain.shape), lesion, brain))


def test_summary_keeps_correct_patients_only():
    summary = summarise_heat_scores(
        [2.0, 4.0, 100.0, float("nan")], [True, True, False, True], [0.1, 0.3, 0.9, 0.5]
    )
    assert summary.n == 2
    assert summary.heat_score_mean == pytest.approx(3.0)
    assert summary.heat_score_sd == pytest.approx(math.sqrt(2.0))
    assert summary.energy_fraction_mean == pytest.approx(0.2)
    with pytest.raises(ValueError):
        summarise_heat_scores([1.0, 2.0], [True])


# --- Grad-CAM ------------------------------------------------------------------------

def test_grad_cam_is_on_the_input_grid_and_leaves_the_model_alone(one_thread):
    torch.manual_seed(0)
    model = _tiny_resnet().train()
    x = torch.randn(1, 1, 20, 24, 28)
    with torch.no_grad():
        cam = grad_cam(model, x)
    assert cam.shape == (20, 24, 28)
    assert cam.dtype == np.float32
    assert cam.min() >= 0.0
    assert cam.max() == pytest.approx(1.0) or cam.max() == 0.0
    assert model.training  # still in the mode the caller left it in
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    with torch.inference_mode():
        np.testing.assert_allclose(grad_cam(model.eval(), x), grad_cam(model, x.clone()))


def test_grad_cam_rejects_unknown_layer_and_batches():
    model = _tiny_resnet()
    with pytest.raises(ValueError, match="layer9"):
        grad_cam(model, torch.zeros(1, 1, 16, 16, 16), target_layer="layer9")
    with pytest.raises(ValueError, match="shape"):
        grad_cam(model, torch.zeros(2, 1, 16, 16, 16))


def test_grad_cam_peaks_on_a_planted_blob(one_thread):
    """A tiny ResNet learns 'bright blob present'; its CAM must point at the blob."""
    rng = np.random.default_rng(7)
    torch.manual_seed(7)
    model = _tiny_resnet()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(20):
        x, y = _batch(rng, 8)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    # Twenty steps leave BatchNorm running statistics far from the final weights':
    # re-estimate them (cumulative average) before evaluating.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        for _ in range(2):
            model(_batch(rng, 8)[0])
    model.eval()

    for _ in range(2):  # held-out positives
        centre = _draw_blob_centre(rng)
        blob = _ball(centre, BLOB_RADIUS)
        x = torch.from_numpy(_volume(rng.normal(0.0, 0.3, (N, N, N)).astype(np.float32), blob))
        x = x[None, None]
        with torch.no_grad():
            assert model(x).softmax(1)[0, 1] > 0.5
        cam = grad_cam(model, x, class_index=1)
        assert heat_score(cam, blob, BRAIN) > 1.5
        peak = np.array(np.unravel_index(cam.argmax(), cam.shape))
        mirror = 2 * CENTRE - centre  # the same place on the other side of the volume
        assert np.linalg.norm(peak - centre) < np.linalg.norm(peak - mirror)


# --- CAM as a volume -------------------------------------------------------------------

def test_cam_volume_keeps_grid_and_writes_float(tmp_path):
    from lesionkit.io import load_volume, save_volume

    affine = np.array([[0, 0, 1.5, -20], [-1.2, 0, 0, 30], [0, 1.0, 0, -12], [0, 0, 0, 1]])
    like = Volume(np.zeros((6, 7, 8), np.int16), affine, kind="intensity", unit="a.u.")
    cam = np.linspace(0.0, 1.0, 6 * 7 * 8).reshape(6, 7, 8)
    volume = cam_volume(cam, like)
    assert (volume.kind, volume.unit) == ("probability", "1")
    np.testing.assert_array_equal(volume.affine, like.affine)
    back = load_volume(save_volume(volume, tmp_path / "cam.nii.gz"), kind="probability")
    np.testing.assert_allclose(back.data, cam, atol=1e-6)
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)
    with pytest.raises(ValueError, match="grid"):
        cam_volume(cam[:5], like)


def test_grad_cam_leaves_no_copy_of_the_model_behind(monkeypatch) -> None:
    """The hooked copy and its autograd graph are freed after each map (a 2 mm brain
    leaked about 70 MB per subject before)."""
    import gc
    import weakref

    from monai.visualize import class_activation_maps

    made = []
    original = class_activation_maps.ModelWithHooks.__init__

    def remember(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(weakref.ref(self))

    model = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2,
                     widen_factor=0.25).eval()
    monkeypatch.setattr(class_activation_maps.ModelWithHooks, "__init__", remember)
    for _ in range(3):
        grad_cam(model, torch.randn(1, 1, 24, 24, 24), "layer4", 1)
    gc.disable()  # nothing may depend on a later collection
    try:
        assert len(made) == 3 and all(ref() is None for ref in made)
    finally:
        gc.enable()
