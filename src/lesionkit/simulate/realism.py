"""Contrast ratios of phantom images against published and measured ranges.

A contrast ratio is the median intensity of a weighted image inside one tissue mask over
its median inside normal-appearing white matter (NAWM). Masks come from the ground truth:
grey matter and NAWM where their probability is at least ``PURE_TISSUE`` (0.9), CSF where
it is at least ``PURE_CSF`` (0.97), the lesion mask as written (lesion fraction >= 0.5).

``PUBLISHED_RATIOS`` gives, per ``(image, ratio)``, the range a phantom image must fall
in and where it comes from. Images: ``T1w`` (3D MPRAGE-like), ``FLAIR`` (2D TSE FLAIR),
``T2w`` (2D TSE), ``T1w-SPGR`` (pre-contrast 3D spoiled gradient echo), ``T1c`` (the same
sequence after gadolinium) and ``T1c-TSE`` (T1-weighted spin echo after gadolinium).
Ratios: ``GM/WM``, ``CSF/WM``, ``lesion/WM`` (MS lesions).

Where no published contrast-ratio range was at hand, the range was obtained from the
signal equations of :mod:`lesionkit.simulate.signal` with published relaxation times --
in vivo 3 T T1/T2 of Wansapura et al. 1999 (J Magn Reson Imaging 9:531; WM 832 / 80 ms,
GM 1331 / 110 ms), 1.5 T and 3 T values of Stanisz et al. 2005 (Magn Reson Med 54:507;
1.5 T WM 884 / 72, GM 1124 / 95; 3 T WM 1084 / 69, GM 1820 / 99 ms), CSF T1 4300 ms,
T2 1800 ms, water content WM 0.70, GM 0.81, CSF 1.0 (Tofts 2003) -- and clinical protocol
parameters (listed per entry). Pure-tissue estimates give stronger T1w contrast than
clinical images show (partial volume inside segmentation masks and magnetisation
transfer are not in them), so the T1w ranges are widened to the ratios measured on real
3 T MS scans (T1w GM/WM 0.83-0.87, lesion/WM 0.76-0.84; FLAIR lesion/WM 1.33-1.37; median
intensity inside masks) and to the values typical of clinical images. Each entry's
source string says which of these it rests on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

#: Probability from which a truth voxel counts as pure GM or NAWM.
PURE_TISSUE = 0.9
#: Probability from which a truth voxel counts as pure CSF: stricter, so that on a 2 mm
#: grid the mask holds mostly ventricular CSF, as a ventricle region would on a real scan.
PURE_CSF = 0.97

_EST3 = "signal-equation estimate, 3 T T1/T2 of Wansapura 1999 and Stanisz 2005"
_EST15 = "1.5 T T1/T2 of Stanisz 2005"
_REAL = "real 3 T MS scans"

#: {(image, ratio): (low, high, source)}: accepted range of each contrast ratio.
PUBLISHED_RATIOS: dict[tuple[str, str], tuple[float, float, str]] = {
    ("T1w", "GM/WM"): (0.70, 0.90, (
        f"{_REAL} 0.83-0.87; {_EST3} (MPRAGE TR 1900-2530, TI 900-1200 ms, 7-9 deg, "
        f"160-176 readouts) 0.59-0.73 pure tissue; {_EST15} 0.89-0.92")),
    ("T1w", "CSF/WM"): (0.15, 0.45, (
        f"{_EST3} (same MPRAGE protocols) 0.16-0.33; {_EST15} 0.17-0.27; "
        "typical clinical MPRAGE 0.2-0.4")),
    ("T1w", "lesion/WM"): (0.65, 0.90, (
        f"{_REAL} 0.76-0.84, widened by about 0.1 below (T1-hypointense lesions) and "
        "0.06 above (T1-isointense lesions)")),
    ("FLAIR", "GM/WM"): (1.05, 1.40, (
        f"{_EST3} (TSE FLAIR TR 9000-11000, TI 2500-2800, TE 90-125 ms) 1.07-1.37; "
        "typical clinical FLAIR 1.1-1.3")),
    ("FLAIR", "CSF/WM"): (0.0, 0.45, (
        f"{_EST3} (same FLAIR protocols) 0.02-0.23; typical clinical FLAIR 0.1-0.4 "
        "(partial volume and flow raise nulled CSF)")),
    ("FLAIR", "lesion/WM"): (1.25, 1.90, (
        f"{_REAL} 1.33-1.37; typical clinical FLAIR 1.3-1.8")),
    ("T2w", "GM/WM"): (1.10, 1.70, (
        f"{_EST3} (TSE TR 4000-6000, TE 80-100 ms) 1.46-1.74 pure tissue; typical "
        "clinical T2w 1.1-1.4")),
    ("T2w", "CSF/WM"): (2.0, 5.0, (
        f"{_EST3} (same T2w protocols) 2.3-4.4; typical clinical T2w 2-5")),
    ("T2w", "lesion/WM"): (1.30, 2.20, "typical clinical T2w 1.3-2"),
    ("T1w-SPGR", "GM/WM"): (0.74, 0.99, (
        f"{_EST3} (3D spoiled GRE TR 7-20 ms, TE 3-4.5 ms, 10-25 deg) 0.75-0.84; "
        f"{_EST15} 0.96-0.99")),
    ("T1w-SPGR", "CSF/WM"): (0.30, 0.55, (
        f"{_EST3} (same spoiled GRE protocols) 0.36-0.49; {_EST15} 0.38-0.43")),
    ("T1c", "GM/WM"): (0.74, 0.99, (
        "as T1w-SPGR: normal GM and WM do not enhance appreciably at 0.1 mmol/kg")),
    ("T1c", "CSF/WM"): (0.30, 0.55, "as T1w-SPGR"),
    ("T1c-TSE", "GM/WM"): (0.78, 1.02, (
        f"{_EST3} (T1w spin echo TR 450-700, TE 10-15 ms) 0.78-0.87; {_EST15} 0.99-1.02")),
    ("T1c-TSE", "CSF/WM"): (0.35, 0.60, (
        f"{_EST3} (same spin-echo protocols) 0.38-0.54; {_EST15} 0.41-0.46")),
}


def tissue_masks(gm: np.ndarray, nawm: np.ndarray, csf: np.ndarray,
                 lesion: np.ndarray | None = None, pure: float = PURE_TISSUE,
                 pure_csf: float = PURE_CSF) -> dict[str, np.ndarray]:
    """Boolean masks GM, WM (NAWM), CSF and lesion from truth probability maps.

    Args:
        gm, nawm, csf: probability maps (0-1) on one grid.
        lesion: lesion fraction or binary mask (voxels >= 0.5 count), or None.
        pure: probability from which a voxel counts as pure GM or WM.
        pure_csf: probability from which a voxel counts as pure CSF.

    Returns:
        ``{"GM", "WM", "CSF"[, "lesion"]: bool array}``; WM excludes lesion voxels.
    """
    les = None if lesion is None else np.asarray(lesion) >= 0.5
    out = {"GM": np.asarray(gm) >= pure, "WM": np.asarray(nawm) >= pure,
           "CSF": np.asarray(csf) >= pure_csf}
    if les is not None:
        out["WM"] &= ~les
        out["lesion"] = les
    return out


def contrast_ratios(images: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray],
                    min_voxels: int = 5) -> dict[tuple[str, str], float]:
    """Median intensity in each mask over the median in WM, per image (pure).

    Args:
        images: ``{image name: array}`` (any intensity unit; ratios are unitless).
        masks: ``{"WM": ..., "GM": ..., ...}`` boolean arrays on the images' grid.
        min_voxels: masks with fewer voxels are left out (e.g. a subject without lesions).

    Returns:
        ``{(image, "GM/WM"): ratio, ...}`` for every image and non-WM mask present.
    """
    wm = masks["WM"]
    if wm.sum() < min_voxels:
        raise ValueError(f"WM mask has {int(wm.sum())} voxels; need at least {min_voxels}")
    out = {}
    for name, img in images.items():
        ref = float(np.median(img[wm]))
        for tissue, m in masks.items():
            if tissue != "WM" and m.sum() >= min_voxels:
                out[(name, f"{tissue}/WM")] = float(np.median(img[m])) / ref
    return out


def _load(path: Path) -> np.ndarray:
    from lesionkit.io import load_volume

    return load_volume(path).data


def _image_name(path: Path) -> str | None:
    """Image name of a raw weighted image from its file name and sidecar (None: skip)."""
    meta = json.loads(path.with_name(path.name[:-len(".nii.gz")] + ".json").read_text())
    seq = meta.get("PulseSequenceType", "")
    if path.name.endswith("_FLAIR.nii.gz"):
        return "FLAIR"
    if path.name.endswith("_T2w.nii.gz"):
        return "T2w"
    if not path.name.endswith("_T1w.nii.gz"):
        return None
    if "ContrastBolusIngredient" in meta:
        if "acq-standard" in path.name:
            return "T1c"
        return "T1c-TSE" if "acq-reference" in path.name else None
    return "T1w-SPGR" if seq.startswith("spoiled") else "T1w"


def dataset_ratios(root: str | Path, lesion: bool = True
                   ) -> dict[str, dict[tuple[str, str], float]]:
    """Contrast ratios of every subject of a simulated (single-session) phantom dataset.

    Args:
        root: dataset written by ``simulate_cohort`` (e.g. mrf-lesion, contrast-amplify).
        lesion: also measure lesion/WM from the truth lesion mask (MS cohorts).

    Returns:
        ``{subject label: {(image, ratio): value}}``.
    """
    root = Path(root)
    out = {}
    for sub_dir in sorted(root.glob("sub-*")):
        label = sub_dir.name[4:]
        truth = root / "derivatives" / "phantom" / sub_dir.name / "anat"

        def probseg(name: str, truth: Path = truth, label: str = label) -> np.ndarray:
            return _load(truth / f"sub-{label}_label-{name}_probseg.nii.gz")

        les = _load(truth / f"sub-{label}_label-lesion_mask.nii.gz") if lesion else None
        masks = tissue_masks(probseg("GM"), probseg("NAWM"), probseg("CSF"), les)
        images = {}
        for path in sorted((sub_dir / "anat").glob("*.nii.gz")):
            name = _image_name(path)
            if name is not None:
                images[name] = _load(path)
        out[label] = contrast_ratios(images, masks)
    return out


def out_of_range(ratios: Mapping[tuple[str, str], float]) -> list[str]:
    """Descriptions of the measured ratios outside their ``PUBLISHED_RATIOS`` range."""
    bad = []
    for key, value in ratios.items():
        if key in PUBLISHED_RATIOS:
            lo, hi, _ = PUBLISHED_RATIOS[key]
            if not lo <= value <= hi:
                bad.append(f"{key[0]} {key[1]} = {value:.3f} outside {lo}-{hi}")
    return bad


def ms_subject_ratios(seed: int, spacing_mm: float = 2.0, acquisitions=None
                      ) -> dict[tuple[str, str], float]:
    """Contrast ratios of one in-memory MS subject, for images no cohort writes (e.g. T2w).

    The subject is drawn as the MS cohorts draw theirs (deformed anatomy, correlated
    tissue values, MS lesions, transmit and receive fields, Rician noise), from
    ``numpy.random.SeedSequence(seed)``; nothing is written.

    Args:
        seed: seed of the subject.
        spacing_mm: voxel size (mm).
        acquisitions: ``{image name: Acquisition}``; default T1w, FLAIR and T2w.

    Returns:
        ``{(image, ratio): value}`` as :func:`contrast_ratios`.
    """
    from lesionkit.simulate import acquisitions as acq
    from lesionkit.simulate import parameters as phys
    from lesionkit.simulate.anatomy import draw_deformation, subject_anatomy
    from lesionkit.simulate.lesions import lesion_fractions
    from lesionkit.simulate.lesions_ms import apply_ms_lesions, draw_ms_lesions
    from lesionkit.simulate.signal import smooth_field
    from lesionkit.simulate.tissue import tissue_maps

    if acquisitions is None:
        acquisitions = {"T1w": phys.T1W_MPRAGE, "FLAIR": phys.FLAIR, "T2w": phys.T2W_TSE}
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
    anatomy = subject_anatomy(draw_deformation(rngs[0]), spacing_mm)
    maps = tissue_maps(anatomy, phys.draw_tissue_values(rngs[1]))
    lesions = draw_ms_lesions(rngs[2], anatomy, n_range=(5, 30))
    fractions, _ = lesion_fractions(lesions, anatomy)
    maps = apply_ms_lesions(maps, lesions, fractions, anatomy.affine)
    scanner = acq.draw_scanner(rngs[3])
    images = {}
    for k, (name, a) in enumerate(acquisitions.items()):
        b1 = smooth_field(scanner.b1_control, anatomy.shape, *phys.B1_RANGE[a.field])
        bias = smooth_field(scanner.bias_controls[k], anatomy.shape, 1 - a.bias_amplitude,
                            1 + a.bias_amplitude)
        images[name] = acq.weighted_image(maps, a, anatomy.mask, anatomy.spacing, rngs[4],
                                          b1, bias)
    lesion = fractions.total()
    nawm = anatomy.wm * np.clip(1.0 - lesion, 0.0, 1.0)
    return contrast_ratios(images, tissue_masks(anatomy.gm, nawm, anatomy.csf, lesion))
