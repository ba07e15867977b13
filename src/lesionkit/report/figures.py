"""Figure helpers for reports: slice panels, curves and overlays.

Figures are ``matplotlib.figure.Figure`` objects on the Agg canvas (no pyplot state,
no display needed); pass them to ``Section(figures=...)``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["curve_figure", "overlay_figure", "slice_panel"]


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """2D slice oriented for display: first remaining axis left-right, second bottom-up."""
    return np.take(np.asarray(volume, dtype=np.float64), index, axis=axis).T


def _aspect(spacing: Sequence[float] | None, axis: int) -> float:
    if spacing is None:
        return 1.0
    horizontal, vertical = (float(s) for i, s in enumerate(spacing) if i != axis)
    return vertical / horizontal


def _busiest_slice(mask: np.ndarray, axis: int) -> int:
    """Index along ``axis`` with the most foreground voxels (the middle when empty)."""
    mask = np.asarray(mask)
    counts = np.count_nonzero(mask, axis=tuple(i for i in range(mask.ndim) if i != axis))
    return int(np.argmax(counts)) if counts.any() else mask.shape[axis] // 2


def slice_panel(
    images: Mapping[str, np.ndarray],
    axis: int = 2,
    index: int | None = None,
    outline: np.ndarray | None = None,
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
    shared_range: bool = True,
    diverging: Collection[str] = (),
    unit: str = "",
    spacing: Sequence[float] | None = None,
    mask: np.ndarray | None = None,
) -> Figure:
    """One slice of several co-registered volumes side by side.

    Args:
        images: panel title -> 3D volume (same shape), e.g. 3T / enhanced / 7T / difference.
        axis: slicing axis (2 = axial for RAS-ordered arrays).
        index: slice index; default the slice with most ``outline`` voxels, else the middle.
        outline: binary mask drawn as a contour on every panel (e.g. the lesion).
        cmap: colormap of the ordinary panels.
        vmin, vmax: display range of the ordinary panels; default 1st/99th percentiles.
        shared_range: one range for all ordinary panels (else one per panel).
        diverging: titles of panels (differences) shown with a diverging colormap,
            symmetric about zero.
        unit: colorbar label (e.g. "s^-1").
        spacing: voxel size in mm, for the aspect ratio.
        mask: binary mask (e.g. the brain); the diverging panels are drawn only inside it
            and take their range from inside it, so that a network's output outside the
            brain does not light up the background of a difference map.
    """
    volumes = {name: np.asarray(v, dtype=np.float64) for name, v in images.items()}
    if mask is not None:
        inside = np.asarray(mask) > 0.5
        volumes.update({name: np.where(inside, v, np.nan) for name, v in volumes.items()
                        if name in diverging})
    shape = next(iter(volumes.values())).shape
    if index is None:
        index = _busiest_slice(outline, axis) if outline is not None else shape[axis] // 2
    planes = {name: _plane(v, axis, index) for name, v in volumes.items()}
    ordinary = [p for name, p in planes.items() if name not in diverging]
    shared = None
    if ordinary:
        shared = np.percentile(np.concatenate([p.ravel() for p in ordinary]), [1, 99])
    figure = _new_figure(3.2 * len(planes), 3.4)
    axes = np.atleast_1d(figure.subplots(1, len(planes)))
    contour = None if outline is None else _plane(outline, axis, index)
    for ax, (name, plane) in zip(axes, planes.items(), strict=True):
        if name in diverging:
            finite = np.abs(plane[np.isfinite(plane)])
            limit = float(np.percentile(finite, 99)) if finite.size else 0.0
            colors, low, high = "RdBu_r", -(limit or 1.0), limit or 1.0
            plane = np.ma.masked_invalid(plane)  # outside the mask: not drawn
        else:
            low, high = shared if shared_range else np.percentile(plane, [1, 99])
            colors = cmap
            low, high = vmin if vmin is not None else low, vmax if vmax is not None else high
        shown = ax.imshow(
            plane,
            cmap=colors,
            vmin=low,
            vmax=high,
            origin="lower",
            aspect=_aspect(spacing, axis),
            interpolation="nearest",
        )
        if contour is not None and contour.any():
            ax.contour(contour, levels=[0.5], colors="yellow", linewidths=0.8)
        ax.set_title(name)
        ax.set_axis_off()
        figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.02, label=unit)
    return figure


def curve_figure(
    x: np.ndarray,
    ys: Mapping[str, np.ndarray],
    xlabel: str,
    ylabel: str,
    marker_x: float | None = None,
    marker_label: str | None = None,
    title: str | None = None,
) -> Figure:
    """Curves sharing one x axis, with an optional vertical marker line.

    Example: Dice and detection rate against threshold with ``marker_x=0.33``.
    """
    figure = _new_figure(5.5, 3.6)
    ax = figure.subplots()
    x = np.asarray(x)
    few = x.size <= 20  # a dot on each point, so that one epoch still shows
    for name, y in ys.items():
        ax.plot(x, np.asarray(y), label=name, marker="o" if few else None, markersize=3)
    if x.size and np.all(np.mod(x.astype(float), 1) == 0):  # epochs, counts: no 1.5
        if x.size <= 12:
            ax.set_xticks(x)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if marker_x is not None:
        label = marker_label if marker_label is not None else f"{xlabel} = {marker_x:g}"
        ax.axvline(marker_x, color="0.4", linestyle="--", linewidth=1, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return figure


def overlay_figure(
    image: np.ndarray,
    overlay: np.ndarray,
    outline: np.ndarray | None = None,
    centre: Sequence[int] | None = None,
    cmap: str = "hot",
    alpha: float = 0.5,
    threshold: float = 0.1,
    overlay_label: str = "",
    spacing: Sequence[float] | None = None,
    mask: np.ndarray | None = None,
) -> Figure:
    """Three orthogonal slices of ``image`` with ``overlay`` (probability or Grad-CAM) on top.

    With ``mask`` (the brain), the overlay is drawn only inside it: a Grad-CAM upsampled
    from a coarse grid, or a probability map, is transparent over the background.

    Args:
        image: 3D anatomical volume (grey scale).
        overlay: 3D map on the same grid, e.g. lesion probability or CAM in 0-1.
        outline: binary mask drawn as a contour (e.g. the true lesion).
        centre: voxel index the three planes pass through; default the overlay maximum.
        cmap: overlay colormap.
        alpha: overlay opacity.
        threshold: overlay values below this are not drawn.
        overlay_label: colorbar label.
        spacing: voxel size in mm, for the aspect ratio.
        mask: binary mask on the same grid (e.g. the brain); the overlay is not drawn
            outside it, and the default centre is the maximum inside it.
    """
    image = np.asarray(image, dtype=np.float64)
    overlay = np.asarray(overlay, dtype=np.float64)
    if mask is not None:
        inside = np.asarray(mask) > 0.5
        if inside.shape != overlay.shape:
            raise ValueError(f"mask {inside.shape} and overlay {overlay.shape}: expected the "
                             "same grid")
        overlay = np.where(inside, overlay, np.nan)  # NaN: below any threshold, not drawn
    shown_values = overlay[np.isfinite(overlay)]
    if centre is None:
        centre = np.unravel_index(int(np.nanargmax(overlay)) if shown_values.size else 0,
                                  overlay.shape)
    low, high = np.percentile(image, [1, 99])
    top = max(float(shown_values.max()) if shown_values.size else threshold, threshold)
    figure = _new_figure(10.0, 3.6)
    axes = figure.subplots(1, 3)
    for ax, axis, name in zip(axes, (0, 1, 2), ("sagittal", "coronal", "axial"), strict=True):
        aspect = _aspect(spacing, axis)
        ax.imshow(
            _plane(image, axis, centre[axis]),
            cmap="gray",
            vmin=low,
            vmax=high,
            origin="lower",
            aspect=aspect,
            interpolation="nearest",
        )
        plane = _plane(overlay, axis, centre[axis])
        heat = np.ma.masked_where(~(plane >= threshold), plane)  # NaN is masked too
        shown = ax.imshow(
            heat,
            cmap=cmap,
            alpha=alpha,
            vmin=threshold,
            vmax=top,
            origin="lower",
            aspect=aspect,
            interpolation="nearest",
        )
        if outline is not None:
            contour = _plane(outline, axis, centre[axis])
            if contour.any():
                ax.contour(contour, levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_title(f"{name} {centre[axis]}")
        ax.set_axis_off()
    figure.colorbar(shown, ax=list(axes), fraction=0.02, pad=0.02, label=overlay_label)
    return figure
