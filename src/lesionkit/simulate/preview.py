"""PNG montage of one phantom subject: three planes per image, lesion outlines in colour."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from lesionkit.simulate.acquisitions import Subject

MAX_ROWS = 4


def focus_point(lesions: np.ndarray | None, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Voxel at the centre of mass of the largest lesion (connected component), else the
    centre of the grid."""
    if lesions is None or not np.any(lesions):
        return tuple(s // 2 for s in shape[:3])
    comps, n = ndimage.label(np.asarray(lesions) > 0)
    sizes = ndimage.sum_labels(np.ones(comps.shape), comps, index=np.arange(1, n + 1))
    largest = int(np.argmax(sizes)) + 1
    centre = ndimage.center_of_mass(comps == largest)
    return tuple(int(np.rint(c)) for c in centre)


def _planes(volume: np.ndarray, point: tuple[int, int, int]) -> list[np.ndarray]:
    i, j, k = point
    return [volume[:, :, k].T, volume[:, j, :].T, volume[i, :, :].T]


def montage(images: dict[str, np.ndarray], lesions: np.ndarray | None, path: str | Path,
            title: str = "") -> Path:
    """Write a montage: one row per image (axial, coronal, sagittal), lesion outlines in red.

    Args:
        images: name -> 3D array (same grid as ``lesions``; 4D arrays show their mean).
        lesions: lesion mask or label map on that grid, or None.
        path: PNG file, written atomically.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lesionkit.io import atomic_path

    names = list(images)[:MAX_ROWS]
    shape = np.shape(images[names[0]])
    point = focus_point(lesions if lesions is not None and lesions.shape == shape[:3] else None,
                        shape)
    fig, axes = plt.subplots(len(names), 3, figsize=(9, 3 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        vol = np.asarray(images[name], np.float32)
        vol = vol.mean(axis=-1) if vol.ndim == 4 else vol
        nonzero = vol[vol != 0]
        lo, hi = np.percentile(nonzero, [1, 99]) if nonzero.size else (0.0, 1.0)
        les = lesions if lesions is not None and lesions.shape == vol.shape else None
        for col, plane in enumerate(_planes(vol, point)):
            ax = axes[row, col]
            ax.imshow(plane, cmap="gray", vmin=lo, vmax=hi, origin="lower")
            if les is not None:
                outline = _planes((les > 0).astype(np.float32), point)[col]
                if outline.any():
                    ax.contour(outline, levels=[0.5], colors="red", linewidths=0.8)
            ax.set_axis_off()
        axes[row, 0].set_title(name, loc="left", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return path


def write_subject_preview(sub: Subject) -> Path:
    """Montage of a written subject under derivatives/phantom/sub-XX/figures/."""
    path = sub.root / "derivatives" / "phantom" / f"sub-{sub.label}" / "figures"
    images = {name: img for name, (img, _) in sub.preview_images.items()}
    title = f"sub-{sub.label} ({sub.group})"
    return montage(images, sub.preview_lesions, path / f"sub-{sub.label}_preview.png", title)
