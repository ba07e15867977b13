"""Draw docs/phantom-normal-variants.png: the phantom's normal FLAIR hyperintensities.

Top row: the structures of :mod:`lesionkit.simulate.normal_variants` on the MNI152
template (ventricle lining, corticospinal tract at its longest, horn caps). Bottom row:
one 1 mm subject's noise-free FLAIR (the phantom's protocol) at the same template
coordinates, drawn with a fixed seed, every structure present at the largest factor,
shown from 0.6 to 1.4 times white matter::

    python scripts/normal_variants_figure.py [OUT.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CUTS_MM = ((0, -22.0), (1, -16.0), (2, 8.0), (2, -10.0), (2, -30.0))  # (axis, MNI mm)


def _plane(volume: np.ndarray, affine: np.ndarray, axis: int, mm: float) -> np.ndarray:
    index = round((mm - affine[axis, 3]) / affine[axis, axis])
    return np.take(volume, index, axis=axis).T


def main(argv: list[str] | None = None) -> int:
    """Write the figure; print its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lesionkit.simulate import normal_variants as nv
    from lesionkit.simulate import parameters as phys
    from lesionkit.simulate.anatomy import draw_deformation, source_coordinates, subject_anatomy
    from lesionkit.simulate.signal import flair
    from lesionkit.simulate.template import load_template
    from lesionkit.simulate.tissue import tissue_maps

    out = Path((argv or sys.argv[1:] or [ROOT / "docs" / "phantom-normal-variants.png"])[0])
    maps, affine = nv.template_variants()
    t = load_template()
    structures = sum(v for k, v in maps.items() if k != "cst_arc")
    background = t.wm + 0.6 * t.gm + 0.1 * t.csf

    rng = np.random.default_rng(0)
    deformation = draw_deformation(rng)
    anatomy = subject_anatomy(deformation, 1.0)
    draw = {name: nv.T2_FACTOR[1] for name in ("lining", "cst", *nv.CAPS)}
    draw["cst_cm"] = nv.CST_EXTENT_CM[1]
    tissue = tissue_maps(anatomy, phys.draw_tissue_values(rng))
    subject = nv.add_normal_variants(tissue, source_coordinates(deformation, 1.0), draw)
    a = phys.FLAIR
    image = flair(subject.pd, subject.t1_ms, subject.t2_ms, a.tr_ms, a.te_ms, a.ti_ms)
    wm = float(np.median(image[anatomy.wm > 0.9]))  # window: 0.6-1.4 x white matter

    fig, axes = plt.subplots(2, len(CUTS_MM), figsize=(3.2 * len(CUTS_MM), 6.6))
    names = "xyz"
    for col, (axis, mm) in enumerate(CUTS_MM):
        top, bottom = axes[0, col], axes[1, col]
        top.imshow(_plane(background, affine, axis, mm), origin="lower", cmap="gray")
        overlay = np.ma.masked_less(_plane(structures, affine, axis, mm), 0.05)
        top.imshow(overlay, origin="lower", cmap="autumn", alpha=0.7, vmin=0, vmax=1)
        top.set_title(f"template, {names[axis]} = {mm:g} mm", fontsize=9)
        bottom.imshow(_plane(image, anatomy.affine, axis, mm), origin="lower", cmap="gray",
                      vmin=0.6 * wm, vmax=1.4 * wm)
        bottom.set_title(f"phantom FLAIR, {names[axis]} = {mm:g} mm", fontsize=9)
        for ax in (top, bottom):
            ax.axis("off")
    fig.suptitle("Normal FLAIR hyperintensities of the phantom (ventricle lining, "
                 "corticospinal tract, horn caps)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
