"""Brain mask of synthetic heads: raw (BET), skull-stripped (non-zero voxels), unusable."""

from __future__ import annotations

import numpy as np
import pytest

from lesionkit import brainmask
from lesionkit.brainmask import brain_mask, looks_skull_stripped
from lesionkit.io import InputError

SEMI_AXES_MM = np.array([65.0, 80.0, 55.0])  # brain ellipsoid, about 1200 mL


def _affine() -> np.ndarray:
    """Anisotropic (2 x 2 x 4 mm), permuted, flipped and rotated voxel-to-mm matrix."""
    angle = np.deg2rad(20.0)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0, 0, 1]]
    )
    axes = np.array([[-1.0, 0, 0], [0, 0, 1], [0, 1, 0]])  # i -> -x, j -> z, k -> y (coronal)
    affine = np.eye(4)
    affine[:3, :3] = rotation @ axes @ np.diag([2.0, 2.0, 4.0])
    affine[:3, 3] = -affine[:3, :3] @ (np.array([110, 90, 56]) / 2)  # centre the grid
    return affine


def _head(shell: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Image, affine, brain and shell masks of an ellipsoid head.

    The brain (intensity 100, texture +-10) is wrapped in 4 mm of dark CSF (10), then a
    7 mm shell of intensity ``shell`` (skull and scalp), in low noise (0-4), never exactly 0.
    """
    affine = _affine()
    shape = (110, 90, 56)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    radius = np.sqrt(((xyz / SEMI_AXES_MM) ** 2).sum(-1))  # 1 on the brain surface
    scale = SEMI_AXES_MM.min()
    rng = np.random.default_rng(0)
    image = rng.uniform(0.5, 4.0, shape)
    brain = radius <= 1.0
    csf = (radius > 1.0) & (radius <= 1.0 + 4 / scale)
    shell_mask = (radius > 1.0 + 4 / scale) & (radius <= 1.0 + 11 / scale)
    image[brain] = 100 + rng.normal(0, 5, brain.sum())
    image[csf] = 10 + rng.normal(0, 2, csf.sum())
    image[shell_mask] = shell + rng.normal(0, 5, shell_mask.sum())
    return image.astype(np.float32), affine, brain, shell_mask


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.mark.parametrize("shell", [160.0, 40.0], ids=["bright-shell", "dark-shell"])
def test_raw_head_is_brain_extracted(shell: float) -> None:
    image, affine, brain, shell_mask = _head(shell)
    assert not looks_skull_stripped(image, affine)
    mask, description = brain_mask(image, affine, iterations=300)
    assert mask.shape == image.shape and mask.dtype == bool
    assert _dice(mask, brain) > 0.8
    assert (mask & shell_mask).sum() < 0.2 * shell_mask.sum()
    assert description.startswith("computed: brainextractor")


def test_skull_stripped_input_gives_its_nonzero_voxels() -> None:
    image, affine, brain, _ = _head(160.0)
    stripped = np.where(brain, image, 0).astype(np.float32)
    assert looks_skull_stripped(stripped, affine)
    mask, description = brain_mask(stripped, affine)
    np.testing.assert_array_equal(mask, stripped != 0)
    assert description == "skull-stripped input: non-zero voxels"


def test_phantom_with_zero_background_is_skull_stripped() -> None:
    from lesionkit.simulate.anatomy import load_template, to_spacing

    anatomy = to_spacing(load_template(), 2.0)  # the phantoms' MNI brain, about 1900 mL
    image = np.where(anatomy.mask, 0.3 * anatomy.csf + 0.6 * anatomy.gm + anatomy.wm, 0.0)
    mask, description = brain_mask(image, anatomy.affine)
    assert description == "skull-stripped input: non-zero voxels"
    np.testing.assert_array_equal(mask, image != 0)


def test_raw_head_with_zeroed_background_is_not_taken_as_skull_stripped() -> None:
    # A scanner zeroes the air beyond a rim of noise around the head, and the slices cover
    # only its upper part: brain-sized, one blob, but with a dark rim of noise.
    image, affine, _, _ = _head(160.0)
    shape = image.shape
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    radius = np.sqrt(((xyz / SEMI_AXES_MM) ** 2).sum(-1))
    kept = (radius <= 1.0 + 19 / SEMI_AXES_MM.min()) & (xyz[..., 2] > -10.0)
    zeroed = np.where(kept, image, 0.0)
    volume_ml = kept.sum() * abs(np.linalg.det(affine[:3, :3])) / 1000
    assert 800 < volume_ml < 2500  # so only the dark rim tells it from a stripped brain
    assert not looks_skull_stripped(zeroed, affine)


@pytest.mark.parametrize("value", [0.0, 7.0], ids=["empty", "constant"])
def test_empty_or_constant_image_is_rejected(value: float) -> None:
    with pytest.raises(InputError, match=r"^scan\.nii\.gz: expected a brain image"):
        brain_mask(np.full((40, 40, 20), value, np.float32), _affine(), source="scan.nii.gz")


def test_implausible_volume_is_rejected() -> None:
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    image = np.zeros((60, 60, 60), np.float32)
    image += np.random.default_rng(0).uniform(0.5, 4.0, image.shape).astype(np.float32)
    image[20:40, 20:40, 20:40] = 100.0  # an 8 mL "brain" is too small to be one
    with pytest.raises(InputError, match=r"expected a brain mask of 200-3000 mL, found \d+ mL"):
        brain_mask(image, affine, iterations=100)


def test_not_3d_is_rejected() -> None:
    with pytest.raises(InputError, match="expected a 3D image"):
        brain_mask(np.ones((4, 4, 4, 2), np.float32), np.eye(4))


def test_a_constant_offset_does_not_move_the_mask() -> None:
    """Reconstructions that store negative values (a background of -200, say) get the mask
    of the same image without the offset: BET reads intensities from the image's floor."""
    image, affine, brain, _ = _head(160.0)
    mask, _ = brain_mask(image, affine, iterations=300)
    shifted, _ = brain_mask(image - 200.0, affine, iterations=300)
    assert _dice(shifted, mask) > 0.99 and _dice(shifted, brain) > 0.8


def test_failing_brain_extraction_is_one_line_naming_the_file(monkeypatch) -> None:
    import brainextractor

    def fail(self, iterations: int = 1000, **_) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(brainextractor.BrainExtractor, "run", fail)
    monkeypatch.setattr(brainmask, "_COMPUTED", {})
    image, affine, _, _ = _head(160.0)
    with pytest.raises(InputError) as error:
        brain_mask(image, affine, source="sub-01_FLAIR.nii.gz", iterations=10)
    message = str(error.value)
    assert message.startswith("sub-01_FLAIR.nii.gz: expected brain extraction")
    assert "ZeroDivisionError" in message and "desc-brain_mask" in message
    assert "\n" not in message


def test_a_scan_read_again_is_not_fitted_again(monkeypatch) -> None:
    """BET runs once per image content and voxel size in a process; each caller gets a
    mask of its own."""
    import brainextractor

    runs = []
    run = brainextractor.BrainExtractor.run
    monkeypatch.setattr(brainextractor.BrainExtractor, "run",
                        lambda self, **kwargs: runs.append(1) or run(self, **kwargs))
    monkeypatch.setattr(brainmask, "_COMPUTED", {})
    image, affine, _, _ = _head(160.0)
    first, _ = brain_mask(image, affine, iterations=50)
    first[:] = False  # the caller's copy
    again, _ = brain_mask(image.copy(), affine, iterations=50)
    assert len(runs) == 1 and again.any()
    coarser = affine @ np.diag([1.0, 1.0, 2.0, 1.0])
    brain_mask(image, coarser, iterations=50)
    image[0, 0, 0] += 1.0
    brain_mask(image, affine, iterations=50)
    assert len(runs) == 3
