"""Cohort writers: one BIDS dataset with ground truth per task.

``simulate_cohort(task, out_dir, subjects, seed, resolution)`` derives one seed per
subject with ``numpy.random.SeedSequence(seed).spawn(subjects)``, so a seed gives the same
subjects on any machine, and subject k does not depend on how many subjects follow it.
Within a subject, independent streams draw (in order) the deformation, the tissue
values, the lesions, the scanner fields, the noise and the demographics. Raw images go
under ``sub-XX/[ses-YY/]anat``; ground truth under ``derivatives/phantom``.

Groups (participants.tsv): fcd-classify alternates patient / control (sub-01 patient),
so patients and controls are 1:1 for an even count; enhance-r1 makes every third
subject (sub-02, sub-05, ...) an FCD patient (group fcd) and the others controls;
mrf-lesion and rim-classify subjects are MS patients (1-30 and 5-30 lesions drawn,
about half of them real lesion shapes from a lesion library by default),
contrast-amplify subjects tumour patients (30 % of them without an enhancing lesion).
Weighted images and QSM are simulated on the cohort grid itself (partial-volume tissue
fractions are the decimation); enhance-r1 simulates on the 7T grid and acquires the 3T
map by blurring and decimating to twice the voxel size.
"""

from __future__ import annotations

import inspect
import json
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.io import InputError, remove_stale_temporaries
from lesionkit.simulate import acquisitions as acq
from lesionkit.simulate import normal_variants as nv
from lesionkit.simulate import parameters as phys
from lesionkit.simulate.anatomy import (
    Anatomy,
    DeformationParams,
    draw_deformation,
    source_coordinates,
    subject_anatomy,
)
from lesionkit.simulate.randomise import map_snr
from lesionkit.simulate.signal import draw_smooth_field, r1_from_t1, reslice, smooth_field
from lesionkit.simulate.tissue import TissueMaps, tissue_maps


def write_weighted(sub: acq.Subject, *args: Any, **kwargs: Any) -> np.ndarray:
    """One weighted image: its nominal acquisition, or a drawn one with ``sub.randomise``
    (arguments of :func:`lesionkit.simulate.acquisitions.write_weighted`)."""
    from lesionkit.simulate.randomise import write_randomised

    return (write_randomised if sub.randomise else acq.write_weighted)(sub, *args, **kwargs)


def base_subject(sub: acq.Subject, spacing: float, field_strength: str = "3T",
                 deformation: DeformationParams | None = None, normal_variants: bool = True
                 ) -> tuple[Anatomy, dict, TissueMaps]:
    """Deformed anatomy at ``spacing`` mm, tissue quantiles and property maps at a field
    (``deformation``: drawn already from ``sub.rngs["anatomy"]``, else drawn here), with
    the normal FLAIR hyperintensities of :mod:`.normal_variants` unless
    ``normal_variants`` is False (they change T2 only)."""
    if deformation is None:
        deformation = draw_deformation(sub.rngs["anatomy"])
    anatomy = subject_anatomy(deformation, spacing)
    sub.row["atrophy"] = round(deformation.atrophy, 3)  # 0-1, see simulate.variety
    quantiles = phys.draw_tissue_quantiles(sub.rngs["tissue"])
    maps = tissue_maps(anatomy, phys.tissue_values(quantiles, field_strength))
    if normal_variants:
        coords = source_coordinates(deformation, spacing)
        maps = nv.add_normal_variants(maps, coords, nv.draw_variants(sub.rngs["variants"]))
    return anatomy, quantiles, maps


def _fcd(sub: acq.Subject, anatomy: Anatomy, maps: list[TissueMaps]
         ) -> tuple[Anatomy, list[TissueMaps], np.ndarray]:
    """Apply one drawn FCD to the anatomy and to each of ``maps`` (same geometry)."""
    from lesionkit.simulate import lesions_fcd

    fcd = lesions_fcd.draw_fcd(sub.rngs["lesions"], anatomy)
    out, fraction, new_anatomy = [], None, anatomy
    for m in maps:
        new_anatomy, m2, fraction = lesions_fcd.apply_fcd(anatomy, m, fcd)
        out.append(m2)
    return new_anatomy, out, fraction


def enhance_r1_subject(sub: acq.Subject) -> None:
    """3T R1 (1 mm or 2 mm; lower SNR, more blur) and 7T R1 (0.5 mm or 1 mm), same subject."""
    fine = sub.spacing / 2.0
    anatomy, quantiles, maps3 = base_subject(sub, fine, "3T", normal_variants=False)
    maps7 = tissue_maps(anatomy, phys.tissue_values(quantiles, "7T"))
    lesion = np.zeros(anatomy.shape, np.float32)
    if sub.group == "fcd":
        anatomy, (maps3, maps7), lesion = _fcd(sub, anatomy, [maps3, maps7])
    rng = sub.rngs["scanner"]
    gains = [smooth_field(draw_smooth_field(rng), anatomy.shape, 1 - phys.R1_RESIDUAL_B1,
                          1 + phys.R1_RESIDUAL_B1) ** 2 for _ in range(2)]
    mask, aff7 = anatomy.mask, anatomy.affine
    r1_7, _, _ = acq.quantitative_map(r1_from_t1(maps7.t1_ms), phys.R1_7T, mask, aff7,
                                      sub.rngs["noise"], gains[1])
    r1_3, aff3, _ = acq.quantitative_map(r1_from_t1(maps3.t1_ms), phys.R1_3T, mask, aff7,
                                         sub.rngs["noise"], gains[0], factor=2.0)
    resliced = np.where(mask, reslice(r1_3, aff3, anatomy.shape, aff7, order=4), 0.0)
    common = {"ResidualB1Error": phys.R1_RESIDUAL_B1}
    acq.save_image(sub, r1_7, aff7, "R1map", "s^-1", {**acq.sidecar(phys.R1_7T), **common},
               session="7T")
    acq.save_image(sub, r1_3, aff3, "R1map", "s^-1", {**acq.sidecar(phys.R1_3T), **common},
               session="3T", acq="native")
    resampled = {**acq.sidecar(phys.R1_3T), **common,
                 "Resampling": "scipy.ndimage order-4 B-spline onto the ses-7T grid"}
    acq.save_image(sub, resliced, aff7, "R1map", "s^-1", resampled, session="3T")
    acq.save_image(sub, np.where(mask, r1_from_t1(maps7.t1_ms), 0.0), aff7, "R1map", "s^-1",
               {"Description": "true 7T R1"}, session="7T", derivative=True)
    acq.save_truth_tissue(sub, anatomy, lesion, session="7T")
    sub.preview_images = {"R1 3T (resliced)": (resliced, aff7), "R1 7T": (r1_7, aff7)}


def fcd_classify_subject(sub: acq.Subject) -> None:
    """MPRAGE-like T1w and FLAIR of an FCD-II patient or a control."""
    anatomy, _, maps = base_subject(sub, sub.spacing)
    lesion = np.zeros(anatomy.shape, np.float32)
    if sub.group == "patient":
        healthy = maps
        anatomy, (maps,), lesion = _fcd(sub, anatomy, [maps])
        # how conspicuous the FCD is on FLAIR (participants.tsv; n/a for controls)
        sub.row["lesion_cnr_flair"] = round(acq.lesion_cnr(
            healthy, maps, lesion, anatomy.mask, anatomy.spacing, phys.FLAIR), 2)
    scanner = acq.draw_scanner(sub.rngs["scanner"])
    write_weighted(sub, maps, anatomy, phys.T1W_MPRAGE, scanner, 0, "T1w")
    write_weighted(sub, maps, anatomy, phys.FLAIR, scanner, 1, "FLAIR")
    acq.save_truth_tissue(sub, anatomy, lesion)


def _ms(sub: acq.Subject, anatomy: Anatomy, maps: TissueMaps, n_range: tuple[int, int],
        deformation: DeformationParams, lesion_library: Any = "shipped",
        session: str | None = None, keep_rim_fraction: bool = False,
        ) -> tuple[TissueMaps, np.ndarray, np.ndarray, tuple]:
    """Draw and paint MS lesions (real shapes from ``lesion_library`` mixed with parametric
    ones, see :mod:`.lesion_library`; ``keep_rim_fraction`` as there); write the label
    map and table (of ``session``). Returns maps, fraction, labels and (lesions, their
    fractions)."""
    from lesionkit.simulate import lesion_library as lib
    from lesionkit.simulate.lesions_ms import apply_ms_lesions

    library = lib.resolve_lesion_library(lesion_library)
    lesions = lib.draw_subject_ms_lesions(sub.rngs["lesions"], anatomy, n_range, library,
                                          deformation, keep_rim_fraction=keep_rim_fraction)
    fractions, labels = lib.ms_lesion_fractions(lesions, anatomy)
    maps = apply_ms_lesions(maps, lesions, fractions, anatomy.affine)
    acq.save_lesions(sub, labels, lib.ms_table_rows(lesions, fractions, anatomy.affine),
                     anatomy.affine, session)
    sub.row["n_lesions"] = len(lesions)
    sub.row["lesion_library"] = library.source if library else "none"
    sources = sorted({str(les.properties["source"]) for les in lesions
                      if les.properties.get("location") == "library"})
    sub.row["lesion_library_mask"] = ",".join(sources) or "n/a"
    return maps, fractions.total(), labels, (lesions, fractions)


def mrf_lesion_subject(sub: acq.Subject, lesion_library: Any = "shipped") -> None:
    """35-frame MRF-EPI series (Bloch, B1, complex noise), FLAIR and T1w of an MS patient."""
    from lesionkit.mrf import MRF_EPI

    deformation = draw_deformation(sub.rngs["anatomy"])
    anatomy, _, base = base_subject(sub, sub.spacing, deformation=deformation)
    session = "1" if sub.follow_up else None
    at = {"session": session} if session else {}
    maps, lesion, _, drawn = _ms(sub, anatomy, base, (1, 30), deformation, lesion_library,
                                 session)
    scanner = acq.draw_scanner(sub.rngs["scanner"])
    b1 = smooth_field(scanner.b1_control, anatomy.shape, *phys.B1_RANGE["3T"])
    snr = map_snr(sub, phys.MRF_SNR)
    mrf = acq.mrf_images(maps, b1, anatomy.mask, snr, sub.rngs["noise"], MRF_EPI)
    meta = {"MagneticFieldStrength": 3.0, "SNR": snr, **MRF_EPI.to_sidecar(),
            "PulseSequenceType": "MRF-EPI (slice-interleaved spoiled gradient echo EPI)"}
    acq.save_image(sub, mrf, anatomy.affine, "MRF", "a.u.", meta, dtype=np.int16, **at)
    write_weighted(sub, maps, anatomy, phys.FLAIR, scanner, 1, "FLAIR", **at)
    write_weighted(sub, maps, anatomy, phys.T1W_MPRAGE, scanner, 0, "T1w", **at)
    a, truth = anatomy.affine, {"Description": "phantom ground truth"}
    acq.save_image(sub, np.where(anatomy.mask, maps.t1_ms, 0), a, "T1map", "ms", truth,
                   derivative=True, **at)
    acq.save_image(sub, np.where(anatomy.mask, maps.t2s_ms, 0), a, "T2starmap", "ms", truth,
                   derivative=True, **at)
    acq.save_image(sub, b1, a, "TB1map", "1", {**truth, "Description": "relative transmit B1"},
                   derivative=True, **at)
    acq.save_truth_tissue(sub, anatomy, lesion, session)
    sub.preview_images = {"MRF (frame mean)": (mrf, a), **sub.preview_images}
    if sub.follow_up:
        _follow_up(sub, anatomy, base, *drawn, scanner)


def _follow_up(sub: acq.Subject, anatomy: Anatomy, base: TissueMaps, lesions: list,
               fractions: Any, scanner: acq.Scanner) -> None:
    """The second visit (``ses-2``) of an MS subject: its lesions evolved and its head
    moved (:mod:`lesionkit.simulate.followup`); FLAIR, T1w, the tissue and lesion truth,
    the change map and table."""
    from lesionkit.bids import bids_path
    from lesionkit.io import write_tsv
    from lesionkit.simulate import followup
    from lesionkit.simulate.lesion_library import ms_table_rows
    from lesionkit.simulate.lesions import label_map
    from lesionkit.simulate.lesions_ms import apply_ms_lesions

    rng, a = sub.rngs["followup"], anatomy.affine
    lesions2, fractions2, fates = followup.evolve(rng, lesions, fractions, anatomy)
    centre = a @ np.array([*((np.array(anatomy.shape) - 1) / 2), 1.0])
    motion = followup.draw_head_motion(rng, centre[:3])
    anatomy2, maps2 = followup.moved_subject(
        anatomy, apply_ms_lesions(base, lesions2, fractions2, a), motion)
    write_weighted(sub, maps2, anatomy2, phys.FLAIR, scanner, 1, "FLAIR", session="2")
    write_weighted(sub, maps2, anatomy2, phys.T1W_MPRAGE, scanner, 0, "T1w", session="2")
    labels = followup.moved(label_map(fractions2), a, motion, 0).astype(np.int16)
    rows = ms_table_rows(lesions2, fractions2, a)
    for row in rows:  # the drawn centres, where the moved head has them
        centre_mm = motion @ np.array([row["centre_x"], row["centre_y"], row["centre_z"], 1.0])
        row.update(centre_x=round(float(centre_mm[0]), 2), centre_y=round(float(centre_mm[1]), 2),
                   centre_z=round(float(centre_mm[2]), 2))
    first = sub.preview_lesions  # the preview outlines the first visit's lesions
    acq.save_lesions(sub, labels, rows, a, "2")
    sub.preview_lesions = first
    acq.save_truth_tissue(sub, anatomy2, followup.moved(fractions2.total(), a, motion, 1), "2")
    change = followup.moved(followup.change_truth(fractions, fractions2, fates), a, motion, 0)
    acq.save_image(sub, change.astype(np.int16), a, "dseg", "1", {
        "Description": "lesion changes since ses-1 (phantom ground truth)",
        "Levels": {str(v): k for k, v in followup.CHANGE_CODES.items()},
        "HeadMotion": np.round(motion, 6).tolist()},
        session="2", derivative=True, kind="label", label="change")
    write_tsv(followup.change_rows(fractions, fractions2, fates, a),
              bids_path(sub.root, sub.label, "changes", session="2",
                        derivatives=acq.PIPELINE, extension=".tsv"))
    for fate in ("new", "enlarging", "shrinking", "resolved"):
        sub.row[f"followup_{fate}"] = sum(f == fate for f in fates.values())
    shift = np.linalg.norm((motion @ np.array([*centre[:3], 1.0]))[:3] - centre[:3])
    sub.row["followup_head_shift_mm"] = round(float(shift), 2)


def rim_classify_subject(sub: acq.Subject, lesion_library: Any = "shipped") -> None:
    """QSM (ppb; dipole model, field noise, TKD streaking) and FLAIR of an MS patient.

    A quarter of the lesions get a vein running beside them (paramagnetic, +300 to +450
    ppb; :func:`lesionkit.simulate.lesions_ms.draw_lesion_veins`), recorded in the lesion
    table's ``vein`` column.
    """
    from lesionkit.simulate.lesions_ms import apply_veins, draw_lesion_veins
    from lesionkit.simulate.qsm import simulate_qsm

    deformation = draw_deformation(sub.rngs["anatomy"])
    anatomy, _, maps = base_subject(sub, sub.spacing, deformation=deformation)
    maps, lesion, labels, _ = _ms(sub, anatomy, maps, (5, 30), deformation, lesion_library,
                                  keep_rim_fraction=True)
    veins = draw_lesion_veins(sub.rngs["lesions"], labels, anatomy.affine)
    maps = apply_veins(maps, veins, anatomy.affine, anatomy.mask)
    _add_vein_column(sub, {v.lesion for v in veins})
    scanner = acq.draw_scanner(sub.rngs["scanner"])
    magnitude_snr = map_snr(sub, phys.QSM_MAGNITUDE_SNR)
    noise = phys.QSM_NOISE_PPB * phys.QSM_MAGNITUDE_SNR / magnitude_snr
    chi = simulate_qsm(maps.chi_ppb, anatomy.mask, anatomy.spacing, noise, sub.rngs["noise"])
    meta = {"MagneticFieldStrength": 3.0, "FieldNoiseSD_ppb": round(noise, 3),
            "EchoTime": phys.QSM_TE_MS / 1000.0, "MagnitudeSNR": magnitude_snr,
            "Reconstruction": "dipole forward model, Gaussian field noise, TKD (threshold 0.2)",
            "B0Direction": [0.0, 0.0, 1.0]}
    acq.save_image(sub, chi, anatomy.affine, "Chimap", "ppb", meta)
    sub.preview_images["QSM"] = (chi, anatomy.affine)
    write_weighted(sub, maps, anatomy, phys.FLAIR, scanner, 1, "FLAIR")
    acq.save_image(sub, maps.chi_ppb * anatomy.mask, anatomy.affine, "Chimap", "ppb",
               {"Description": "true susceptibility"}, derivative=True)
    acq.save_truth_tissue(sub, anatomy, lesion)


def _add_vein_column(sub: acq.Subject, with_vein: set[int]) -> None:
    """Add the ``vein`` column (1: a vein runs beside the lesion) to the lesion table."""
    import pandas as pd

    from lesionkit.bids import bids_path
    from lesionkit.io import write_tsv

    path = bids_path(sub.root, sub.label, "lesions", derivatives=acq.PIPELINE, extension=".tsv")
    table = pd.read_csv(path, sep="\t")
    table["vein"] = [int(int(label) in with_vein) for label in table["label"]]
    write_tsv(table.to_dict("records"), path, columns=list(table.columns))


def contrast_amplify_subject(sub: acq.Subject) -> None:
    """Pre-contrast SPGR T1, FLAIR, ADC, T1c at 0.025 and 0.1 mmol/kg, TSE-like reference;
    truth: lesions, enhancing and oedema fractions, normally enhancing vessels and choroid
    plexus, and the T1c at 0.4 mmol/kg (a derivative: never a training input)."""
    from lesionkit.simulate import lesions_tumour as tumour
    from lesionkit.simulate import vessels as vessel
    from lesionkit.simulate.lesions import lesion_table_rows

    anatomy, _, maps = base_subject(sub, sub.spacing)
    lesions = tumour.draw_tumours(sub.rngs["lesions"], anatomy)
    tm = tumour.tumour_maps(lesions, anatomy)
    maps = tumour.apply_tumours(maps, lesions, tm)
    vp = vessel.draw_vessels(sub.rngs["lesions"], anatomy)
    vm = vessel.vessel_maps(vp, anatomy)
    maps = vessel.apply_vessels(maps, vp, vm)
    tissue_share = 1.0 - vm.blood - vm.choroid
    scanner = acq.draw_scanner(sub.rngs["scanner"])
    a = anatomy.affine
    write_weighted(sub, maps, anatomy, phys.T1_SPGR, scanner, 0, "T1w")
    write_weighted(sub, maps, anatomy, phys.FLAIR, scanner, 1, "FLAIR")
    adc_acq = replace(phys.ADC_MAP, snr=map_snr(sub, phys.ADC_MAP.snr))
    factor = 1.0 + 0.5 * float(sub.rngs["randomise"].uniform()) if sub.randomise else 1.0
    adc, adc_affine, _ = acq.quantitative_map(maps.adc, adc_acq, anatomy.mask, a,
                                              sub.rngs["noise"], factor=factor)
    acq.save_image(sub, adc, adc_affine, "ADC", "1e-3 mm^2/s", acq.sidecar(adc_acq))

    def post_contrast(dose: float) -> TissueMaps:
        conc = (tumour.concentration_mM(tm.enhancing, dose, tm.uptake) * tissue_share
                + vessel.vessel_concentration_mM(vm, vp, dose))
        r1 = tumour.r1_with_contrast(r1_from_t1(maps.t1_ms), conc)
        return replace(maps, t1_ms=(1000.0 / r1).astype(np.float32))

    def meta(dose: float) -> dict:
        return {"ContrastBolusIngredient": "GADOLINIUM", "ContrastDose_mmol_per_kg": dose,
                "Relaxivity_per_mM_s": phys.R1_RELAXIVITY_PER_MM_S}

    for label, dose, sequence, k in (("low", 0.025, phys.T1_SPGR, 0),
                                     ("standard", 0.1, phys.T1_SPGR, 0),
                                     ("reference", 0.1, phys.T1_TSE, 2)):
        write_weighted(sub, post_contrast(dose), anatomy, sequence, scanner, k, "T1w",
                       meta(dose), ce="gadolinium", acq=label)
    if not sub.randomise:  # the quadruple dose as the nominal SPGR (same bias field as T1c)
        b1 = smooth_field(scanner.b1_control, anatomy.shape,
                          *phys.B1_RANGE[phys.T1_SPGR.field])
        bias = smooth_field(scanner.bias_controls[0], anatomy.shape,
                            1 - phys.T1_SPGR.bias_amplitude, 1 + phys.T1_SPGR.bias_amplitude)
        quadruple = acq.weighted_image(post_contrast(0.4), phys.T1_SPGR, anatomy.mask,
                                       anatomy.spacing, sub.rngs["noise"], b1, bias)
        acq.save_image(sub, quadruple, a, "T1w", "a.u.",
                       {**acq.sidecar(phys.T1_SPGR), **meta(0.4),
                        "Description": "phantom truth: T1c at four times the standard dose"},
                       derivative=True, ce="gadolinium", acq="quadruple")
    lesion = tm.fractions.total()
    acq.save_lesions(sub, tm.labels, lesion_table_rows(lesions, tm.fractions, a), a)
    truth = {"Description": "phantom ground truth"}
    acq.save_image(sub, tm.enhancing, a, "probseg", "1", truth, derivative=True,
               kind="probability", label="enhancing")
    acq.save_image(sub, tm.oedema, a, "probseg", "1", truth, derivative=True,
               kind="probability", label="oedema")
    acq.save_image(sub, vm.blood, a, "probseg", "1",
                   {"Description": "phantom ground truth: blood of sinuses and vessels"},
                   derivative=True, kind="probability", label="vessel")
    acq.save_image(sub, vm.choroid, a, "probseg", "1",
                   {"Description": "phantom ground truth: choroid plexus"},
                   derivative=True, kind="probability", label="choroid")
    acq.save_truth_tissue(sub, anatomy, lesion, abnormal=tm.oedema + vm.blood)
    sub.row["n_lesions"] = len(lesions)
    sub.preview_images = {k: v for k, v in sub.preview_images.items()
                          if k in ("T1w", "FLAIR", "T1w_gadolinium_standard")}


def _groups(task: str, n: int) -> list[str]:
    if task == "fcd-classify":
        return ["patient" if i % 2 == 0 else "control" for i in range(n)]
    if task == "enhance-r1":
        return ["fcd" if i % 3 == 1 else "control" for i in range(n)]
    return ["patient"] * n


COHORTS: dict[str, Callable[[acq.Subject], None]] = {
    "enhance-r1": enhance_r1_subject,
    "fcd-classify": fcd_classify_subject,
    "mrf-lesion": mrf_lesion_subject,
    "rim-classify": rim_classify_subject,
    "contrast-amplify": contrast_amplify_subject,
}
#: Cohorts that can write a second visit (``simulate --follow-up``).
FOLLOW_UP_COHORTS = ("mrf-lesion",)


def _check_out_dir(out: Path, task: str) -> None:
    """Accept a missing or empty folder, or an earlier phantom of the same task (replaced
    once the new cohort is complete)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: expected a folder for the dataset, found a file")
    if not out.exists() or not any(out.iterdir()):
        return
    desc = out / "dataset_description.json"
    try:
        name = json.loads(desc.read_text()).get("Name", "")
    except (OSError, ValueError):
        name = ""
    if name != f"lesionkit phantom {task}":
        raise InputError(f"{out}: expected an empty folder or a lesionkit phantom of {task}, "
                         "found other files; choose a new output folder")


def simulate_cohort(task: str, out_dir: str | Path, subjects: int = 4, seed: int = 0,
                    resolution: int = 2, preview: bool = False,
                    progress: Callable[[int], Any] | None = None,
                    randomise: bool | str = False,
                    lesion_library: str | Path | None = "shipped", workers: int = 0,
                    follow_up: bool = False) -> Path:
    """Write a phantom cohort for ``task`` as a BIDS dataset with truth under derivatives.

    Args:
        task: one of the keys of ``COHORTS`` (the task names of the CLI).
        out_dir: a new or empty folder (or an earlier phantom of the same task).
        subjects: number of subjects (labels "01", "02", ...).
        seed: cohort seed; subject k uses ``SeedSequence(seed).spawn(subjects)[k]``.
        resolution: 1 (native 1 mm; enhance-r1 3T 1 mm / 7T 0.5 mm) or 2 (2 mm; 2 mm / 1 mm).
        preview: also write a PNG montage per subject under derivatives/phantom.
        progress: called with 1 after each subject.
        randomise: domain randomisation of the weighted images (True or "standard":
            drawn field, sequence, grid and artefacts per image; "strong": also random
            intensities per tissue class) and of the quantitative maps' SNR (ADC: grid);
            see :mod:`lesionkit.simulate.randomise`. False: the fixed protocols.
        lesion_library: where cohorts with MS lesions take real lesion shapes from
            (mixed with parametric ones, :mod:`lesionkit.simulate.lesion_library`):
            "shipped", a folder of binary masks in MNI space, or None / "none" for
            parametric lesions only.
        workers: Processes simulating subjects in parallel (0 or 1: this process). Each
            subject draws from its own seeded streams, so the cohort is the same for any
            number of workers. The workers are spawned: a script that calls this with
            workers must do so under ``if __name__ == "__main__":``.
        follow_up: Each subject's first visit as ``ses-1`` and a second visit as
            ``ses-2``, its lesions evolved and its head moved (cohorts in
            ``FOLLOW_UP_COHORTS``; :mod:`lesionkit.simulate.followup`).

    Returns:
        The dataset root.
    """
    if task not in COHORTS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(COHORTS)}")
    if resolution not in (1, 2):
        raise ValueError(f"resolution must be 1 or 2 (mm), found {resolution!r}")
    if subjects < 1:
        raise ValueError(f"subjects must be at least 1, found {subjects}")
    if workers < 0:
        raise ValueError(f"workers must be 0 or more, found {workers}")
    mode = ("standard" if randomise is True else "" if randomise is False else randomise)
    if mode not in ("", "standard", "strong"):
        raise ValueError(f"randomise must be False, True, 'standard' or 'strong', found "
                         f"{randomise!r}")
    if follow_up and task not in FOLLOW_UP_COHORTS:
        raise InputError(f"--follow-up: expected a cohort with MS lesions that evolve "
                         f"({', '.join(FOLLOW_UP_COHORTS)}), found {task}")
    library = None
    if "lesion_library" in inspect.signature(COHORTS[task]).parameters:
        from lesionkit.simulate.lesion_library import resolve_lesion_library

        library = resolve_lesion_library(lesion_library)  # a bad folder fails here
    final = Path(out_dir)
    _check_out_dir(final, task)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and moved into place when complete: an interrupted run
    # leaves neither a half-written dataset nor a damaged earlier one.
    remove_stale_temporaries(final.parent, recursive=False)  # of a killed earlier run
    out = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}.partial-",
                                dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    out.chmod(0o777 & ~umask)  # mkdtemp creates 0700; the dataset gets the usual mode
    try:
        _write_cohort(task, out, subjects, seed, resolution, preview, progress, mode,
                      library, workers, follow_up)
    except BrokenProcessPool as error:
        shutil.rmtree(out, ignore_errors=True)
        raise InputError(
            f"{final}: expected {min(workers, subjects)} simulation workers to finish, found "
            f"one killed (most often for lack of memory: a 1 mm subject takes up to 5 GB); "
            f"nothing was written; try fewer --workers") from error
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(out, final)
    return final


#: The lesion library of a simulation worker process (set once by its initializer).
_WORKER: dict[str, Any] = {}


def _worker_library(library: Any) -> None:
    """Initializer of a simulation worker: its lesion library, one BLAS thread (the
    workers already share the cores)."""
    from threadpoolctl import threadpool_limits

    _WORKER["library"], _WORKER["limits"] = library, threadpool_limits(1)


def _write_subject(task: str, out: Path, seed: int, index: int,
                   child: np.random.SeedSequence, group: str, resolution: int,
                   randomise: str, preview: bool, follow_up: bool = False,
                   lesion_library: Any = None) -> dict[str, Any]:
    """Simulate and write subject ``index`` of a cohort; its participants.tsv row.

    In a worker process the lesion library is the one its initializer received.
    """
    lesion_library = _WORKER.get("library", lesion_library)
    sub = acq.make_subject(out, seed, index, child, group, resolution, randomise, follow_up)
    demo = sub.rngs["demographics"]
    run = COHORTS[task]
    if "lesion_library" in inspect.signature(run).parameters:
        run(sub, lesion_library=lesion_library)
    else:
        run(sub)
    row = {"participant_id": f"sub-{sub.label}", "group": group,
           "age": int(demo.integers(20, 71)), "sex": str(demo.choice(["F", "M"])), **sub.row}
    if preview:
        from lesionkit.simulate.preview import write_subject_preview

        write_subject_preview(sub)
    return row


def _write_cohort(task: str, out: Path, subjects: int, seed: int, resolution: int,
                  preview: bool, progress: Callable[[int], Any] | None,
                  randomise: str = "", lesion_library: Any = None, workers: int = 0,
                  follow_up: bool = False) -> None:
    """Write every file of a cohort under ``out`` (see :func:`simulate_cohort`)."""
    from lesionkit.bids import write_dataset_description, write_participants

    write_dataset_description(out, f"lesionkit phantom {task}")
    write_dataset_description(out / "derivatives" / acq.PIPELINE,
                              f"lesionkit phantom {task} truth",
                              "derivative")
    children = np.random.SeedSequence(seed).spawn(subjects)
    jobs = [(task, out, seed, i, child, group, resolution, randomise, preview, follow_up)
            for i, (child, group) in enumerate(zip(children, _groups(task, subjects),
                                                   strict=True))]
    if workers <= 1 or subjects == 1:
        rows = []
        for job in jobs:
            rows.append(_write_subject(*job, lesion_library=lesion_library))
            if progress is not None:
                progress(1)
        write_participants(out, rows)
        return
    # spawn, not fork: the parent may hold torch or BLAS threads; the lesion library
    # (about 11 MB) goes to each worker once, not with every subject
    pool = ProcessPoolExecutor(min(workers, subjects),
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_library, initargs=(lesion_library,))
    try:
        futures = [pool.submit(_write_subject, *job) for job in jobs]
        for done in as_completed(futures):
            done.result()  # the first failure stops the cohort
            if progress is not None:
                progress(1)
        rows = [f.result() for f in futures]
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    write_participants(out, rows)
