"""False lesion components of a FLAIR lesion model on the phantom's normal hyperintensities.

The phantom's FLAIR carries normal hyperintensities that are not lesions
(:mod:`lesionkit.simulate.normal_variants`; docs/phantom.md). This benchmark draws each
subject's structures again from the seed and index in its FLAIR sidecar
(``PhantomSeed``, ``PhantomSubjectIndex``), thresholds a model's lesion probability map,
and counts the face-connected components that touch no true lesion and, of them, those
that touch a structure (fraction above 0.3)::

    lesionkit simulate mrf-lesion held6 --subjects 6 --seed 2000 --resolution 2
    lesionkit predict flair-only-lesion-dr held6 --out-dir P --tta 2
    python benchmarks/normal_variant_fps.py held6 P --desc flaironlylesiondr

How bright the structures are on the phantom's FLAIR: noise-free FLAIR of in-memory
subjects (seeds 0..N-1, 2 mm), the median over each structure's voxels (fraction above
0.5) and over cortical grey matter, against the white-matter median (docs/phantom.md)::

    python benchmarks/normal_variant_fps.py ratios --subjects 8
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

#: A component touches a structure where the structure's fraction exceeds this.
TOUCH_FRACTION = 0.3


def subject_variants(flair_json: Path, spacing_mm: float) -> np.ndarray:
    """Summed fraction (0..) of a phantom subject's normal hyperintensities on its grid.

    Args:
        flair_json: the subject's FLAIR sidecar written by ``lesionkit simulate``.
        spacing_mm: the cohort's voxel size (mm).
    """
    from lesionkit.simulate import acquisitions as acq
    from lesionkit.simulate import normal_variants as nv
    from lesionkit.simulate.anatomy import draw_deformation, source_coordinates

    if not flair_json.is_file():
        raise SystemExit(f"error: {flair_json}: expected the FLAIR's JSON sidecar, found no "
                         "such file")
    meta = json.loads(flair_json.read_text())
    if not meta.get("Phantom") or "PhantomSeed" not in meta:
        raise SystemExit(f"error: {flair_json}: expected a phantom sidecar with PhantomSeed, "
                         "found none")
    index = int(meta["PhantomSubjectIndex"])
    child = np.random.SeedSequence(int(meta["PhantomSeed"])).spawn(index + 1)[index]
    rngs = acq.streams(child)
    deformation = draw_deformation(rngs["anatomy"])  # the first draw of every cohort
    fractions = nv.variant_fractions(source_coordinates(deformation, spacing_mm),
                                     nv.draw_variants(rngs["variants"]))
    return sum(fractions.values())


def structure_ratios(seed: int, spacing_mm: float = 2.0) -> dict[str, float]:
    """FLAIR (noise-free, ``parameters.FLAIR``) of each drawn structure and of grey matter
    (probability >= 0.9) over white matter (>= 0.9), medians, for one in-memory subject
    drawn from ``numpy.random.SeedSequence(seed)`` (deformation, tissue, structures)."""
    from lesionkit.simulate import normal_variants as nv
    from lesionkit.simulate import parameters as phys
    from lesionkit.simulate.anatomy import draw_deformation, source_coordinates, subject_anatomy
    from lesionkit.simulate.signal import flair
    from lesionkit.simulate.tissue import tissue_maps

    anatomy_rng, tissue_rng, variant_rng = map(
        np.random.default_rng, np.random.SeedSequence(seed).spawn(3))
    deformation = draw_deformation(anatomy_rng)
    anatomy = subject_anatomy(deformation, spacing_mm)
    coords = source_coordinates(deformation, spacing_mm)
    draw = nv.draw_variants(variant_rng)
    maps = nv.add_normal_variants(
        tissue_maps(anatomy, phys.draw_tissue_values(tissue_rng)), coords, draw)
    a = phys.FLAIR
    image = flair(maps.pd, maps.t1_ms, maps.t2_ms, a.tr_ms, a.te_ms, a.ti_ms)
    wm = float(np.median(image[anatomy.wm > 0.9]))
    out = {name: float(np.median(image[frac > 0.5])) / wm
           for name, frac in nv.variant_fractions(coords, draw).items() if (frac > 0.5).any()}
    out["grey matter"] = float(np.median(image[anatomy.gm > 0.9])) / wm
    return out


def false_components(probability: np.ndarray, truth: np.ndarray, variants: np.ndarray,
                     threshold: float = 0.33) -> tuple[int, int]:
    """Components at ``threshold`` touching no true lesion, and those of them touching a
    normal hyperintensity (fraction above :data:`TOUCH_FRACTION`)."""
    from scipy import ndimage

    labels, _ = ndimage.label(probability >= threshold)
    false = touching = 0
    for k, component in enumerate(ndimage.find_objects(labels), start=1):
        here = labels[component] == k
        if (here & truth[component]).any():
            continue
        false += 1
        touching += bool((here & (variants[component] > TOUCH_FRACTION)).any())
    return false, touching


def print_ratios(argv: list[str]) -> int:
    """Print the range over subjects of each structure's FLAIR ratio (caps pooled)."""
    parser = argparse.ArgumentParser(description="FLAIR of the structures over white matter")
    parser.add_argument("--subjects", type=int, default=8)
    args = parser.parse_args(argv)
    ranges: dict[str, list[float]] = {}
    for seed in range(args.subjects):
        for name, value in structure_ratios(seed).items():
            key = "caps" if name.startswith(("frontal", "occipital")) else name
            ranges.setdefault(key, []).append(value)
    for key, values in ranges.items():
        print(f"{key}\t{min(values):.2f}-{max(values):.2f}\t({len(values)} values)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Print the counts per subject and in all (or, with ``ratios``, the FLAIR ratios)."""
    import nibabel as nib

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ratios"]:
        return print_ratios(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="Phantom cohort (lesionkit simulate).")
    parser.add_argument("predictions", type=Path, help="lesionkit predict's output folder.")
    parser.add_argument("--desc", required=True, help="desc of the probability maps.")
    parser.add_argument("--threshold", type=float, default=0.33)
    args = parser.parse_args(argv)
    total = [0, 0]
    for flair in sorted(args.data.glob("sub-*/anat/sub-*_FLAIR.nii.gz")):
        sub = flair.name.split("_")[0]
        prob_path = (args.predictions / sub / "anat"
                     / f"{sub}_label-lesion_desc-{args.desc}_probseg.nii.gz")
        truth_path = (args.data / "derivatives" / "phantom" / sub / "anat"
                      / f"{sub}_label-lesion_mask.nii.gz")
        for path in (prob_path, truth_path):
            if not path.exists():
                print(f"error: {path}: expected a file, found none", file=sys.stderr)
                return 1
        image = nib.load(flair)
        variants = subject_variants(flair.with_name(flair.name.replace(".nii.gz", ".json")),
                                    float(image.header.get_zooms()[0]))
        probability = np.asarray(nib.load(prob_path).dataobj, np.float32)
        truth = np.asarray(nib.load(truth_path).dataobj) > 0
        if not probability.shape == truth.shape == variants.shape:
            print(f"error: {prob_path}: expected the cohort grid {truth.shape}, found "
                  f"{probability.shape}", file=sys.stderr)
            return 1
        false, touching = false_components(probability, truth, variants, args.threshold)
        total[0] += false
        total[1] += touching
        print(f"{sub}\tfalse components {false}\ttouching a normal hyperintensity {touching}")
    print(f"all\tfalse components {total[0]}\ttouching a normal hyperintensity {total[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
