"""Two visits of one hand-made subject: images, lesion maps and brain masks on one grid,
and the same written as ``predict`` writes them; shared by the tests of lesion changes."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

SHAPE = (48, 56, 44)
VOXEL_MM = 2.0
#: Voxel size (mm) of the files compare() reads: the brain is 334 mL there, a plausible
#: brain mask (171 mL at VOXEL_MM is refused as too small to be one).
FILE_VOXEL_MM = 2.5


def ball(centre: tuple[float, float, float], radius: float) -> np.ndarray:
    grid = np.indices(SHAPE).astype(float)
    return sum((grid[i] - centre[i]) ** 2 for i in range(3)) <= radius**2


def head(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A head-like image (skull, brain with texture, ventricles) and its brain mask."""
    grid = np.indices(SHAPE).astype(float)
    centre = np.array(SHAPE) / 2
    radii = np.array(SHAPE) / 2 - 3
    r = np.sqrt(sum(((grid[i] - centre[i]) / radii[i]) ** 2 for i in range(3)))
    brain = r < 0.8
    texture = ndimage.gaussian_filter(np.random.default_rng(99).normal(size=SHAPE), 2.0)
    image = np.where(brain, 100.0 + 400.0 * texture, 0.0)
    image[(r >= 0.85) & (r < 1.0)] = 160.0  # skull
    image[ball((centre[0] - 5, centre[1], centre[2]), 4)] = 30.0  # ventricles
    image[ball((centre[0] + 5, centre[1], centre[2]), 4)] = 30.0
    image += np.random.default_rng(seed).normal(0, 3.0, SHAPE)
    return image.astype(np.float32), brain


#: Lesion centres (voxels): one that stays, one that resolves, one new, one that grows.
STAYS, RESOLVES, NEW, GROWS = (24, 18, 14), (14, 34, 22), (30, 38, 28), (20, 28, 30)


def sessions() -> dict[str, dict[str, np.ndarray]]:
    """Baseline and follow-up images and lesion maps of one subject, on one grid."""
    out = {}
    for session, balls in (("1", [(STAYS, 3), (RESOLVES, 3), (GROWS, 2)]),
                           ("2", [(STAYS, 3), (NEW, 3), (GROWS, 3.5)])):
        image, brain = head(seed=int(session))
        lesions = np.zeros(SHAPE, bool)
        for centre, radius in balls:
            lesions |= ball(centre, radius)
        image[lesions] += 120.0
        out[session] = {"image": image, "map": lesions.astype(np.float32), "brain": brain}
    return out


def write_predictions(root: Path, shift_mm: float = 0.0) -> Path:
    """Raw images and predict-like maps (with sidecars) of two sessions; the baseline
    stored with its head shifted by ``shift_mm`` along x in world space."""
    s = sessions()
    predictions = root / "pred"
    for session in ("1", "2"):
        affine = np.diag([FILE_VOXEL_MM] * 3 + [1.0])
        if session == "1":
            affine[0, 3] = shift_mm
        source = root / "raw" / "sub-01" / f"ses-{session}" / "anat" / (
            f"sub-01_ses-{session}_FLAIR.nii.gz")
        source.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(s[session]["image"], affine), source)
        folder = predictions / "sub-01" / f"ses-{session}" / "anat"
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"sub-01_ses-{session}_label-lesion_desc-flairlesion_probseg"
        nib.save(nib.Nifti1Image(s[session]["map"], affine), folder / f"{stem}.nii.gz")
        (folder / f"{stem}.json").write_text(json.dumps(
            {"Sources": [str(source)], "Task": "flair-lesion"}))
        nib.save(nib.Nifti1Image(s[session]["brain"].astype(np.uint8), affine),
                 folder / f"sub-01_ses-{session}_label-brain_desc-flairlesion_mask.nii.gz")
    return predictions
