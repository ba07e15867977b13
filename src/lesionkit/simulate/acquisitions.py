"""Images of the phantom (signal equation, point spread, receive bias, noise) and their
writing as BIDS files with sidecars.

The image functions take the tissue property maps (and drawn smooth fields) of one
subject on one grid and return the acquired image; noise is drawn from the Generator
passed in, the other inputs are fixed parameters. :class:`Subject` carries one subject's
random streams while its files are written; every sidecar records ``Phantom: true``,
the cohort seed and the subject index (its ``SeedSequence`` spawn key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lesionkit.simulate import signal
from lesionkit.simulate.parameters import B1_RANGE, Acquisition
from lesionkit.simulate.signal import draw_smooth_field, smooth_field
from lesionkit.simulate.tissue import TissueMaps

if TYPE_CHECKING:
    from lesionkit.simulate.template import Anatomy

#: Arbitrary scale of weighted images (a.u.): signal per unit M0 times this.
IMAGE_SCALE = 1000.0
#: Name of the ground-truth derivative folder (derivatives/phantom).
PIPELINE = "phantom"
#: Independent random streams of one subject, in spawn order.
#: (Streams added later go last, which leaves the earlier ones unchanged.)
STREAMS = ("anatomy", "tissue", "lesions", "scanner", "noise", "demographics", "randomise",
           "followup", "variants")
LESION_COLUMNS = ("label", "type", "centre_x", "centre_y", "centre_z", "long_axis_mm",
                  "short_axis_mm", "volume_mm3", "rim")


def signal_equation(maps: TissueMaps, acq: Acquisition, b1: np.ndarray | float = 1.0
                    ) -> np.ndarray:
    """Noise-free signal (per unit M0) of a weighted acquisition from the property maps."""
    if acq.sequence == "spgr":
        return signal.spgr(maps.pd, maps.t1_ms, maps.t2s_ms, acq.tr_ms, acq.te_ms,
                           acq.flip_deg, b1)
    if acq.sequence == "ir-gre" and acq.readouts > 0:
        return signal.mprage(maps.pd, maps.t1_ms, maps.t2s_ms, acq.tr_ms, acq.te_ms,
                             acq.ti_ms, acq.flip_deg, acq.echo_spacing_ms, acq.readouts, b1)
    if acq.sequence == "ir-gre":
        return signal.ir_gradient_echo(maps.pd, maps.t1_ms, maps.t2s_ms, acq.tr_ms, acq.te_ms,
                                       acq.ti_ms, acq.flip_deg, b1)
    if acq.sequence == "ir-se":
        return signal.flair(maps.pd, maps.t1_ms, maps.t2_ms, acq.tr_ms, acq.te_ms, acq.ti_ms, b1)
    if acq.sequence == "se":
        return signal.spin_echo(maps.pd, maps.t1_ms, maps.t2_ms, acq.tr_ms, acq.te_ms)
    raise ValueError(f"unknown sequence {acq.sequence!r}; known: spgr, ir-gre, ir-se, se")


def weighted_image(
    maps: TissueMaps,
    acq: Acquisition,
    mask: np.ndarray,
    spacing_mm: tuple[float, float, float],
    rng: np.random.Generator,
    b1: np.ndarray | float = 1.0,
    bias: np.ndarray | float = 1.0,
) -> np.ndarray:
    """Magnitude image (a.u.): signal equation, blur, receive bias, Rician noise at acq.snr.

    The noise SD per complex channel is the mean noise-free signal in ``mask`` / SNR.
    """
    s = signal_equation(maps, acq, b1)
    s = signal.blur(s, spacing_mm, acq.blur_factor * float(np.mean(spacing_mm))) * bias
    sd = signal.noise_sd(s, mask, acq.snr)
    return signal.rician_noise(s, sd, rng) * np.float32(IMAGE_SCALE)


def lesion_cnr(before: TissueMaps, after: TissueMaps, fraction: np.ndarray,
               mask: np.ndarray, spacing_mm: tuple[float, float, float], acq: Acquisition
               ) -> float:
    """Contrast-to-noise ratio of a lesion on one weighted image (noise-free effect / noise SD).

    The mean over the lesion core (``fraction`` >= 0.5) of the noise-free, blurred signal
    with the lesion minus the signal of the same subject without it (uniform B1 and
    receive field), over the image's noise SD (mean signal in ``mask`` / SNR, as
    :func:`weighted_image`). Nan without a core.
    """
    core = fraction >= 0.5
    if not core.any():
        return float("nan")
    fwhm = acq.blur_factor * float(np.mean(spacing_mm))
    s0, s1 = (signal.blur(signal_equation(m, acq), spacing_mm, fwhm) for m in (before, after))
    return float(np.mean((s1 - s0)[core]) / signal.noise_sd(s1, mask, acq.snr))


def quantitative_map(
    true_map: np.ndarray,
    acq: Acquisition,
    mask: np.ndarray,
    affine: np.ndarray,
    rng: np.random.Generator,
    gain: np.ndarray | float = 1.0,
    factor: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Measured quantitative map: gain error, blur, decimation, Gaussian noise.

    The brain-masked map is blurred with FWHM = acquired voxel x ``acq.blur_factor``
    (normalised by the blurred mask so the brain edge is not darkened) and sampled on a
    grid ``factor`` times coarser. Noise SD = mean of the true map in ``mask`` /
    ``acq.snr``. Values outside the (acquired-grid) brain mask are 0.

    Returns:
        (map, affine, mask) on the acquired grid; units are those of ``true_map``.
    """
    masked = np.where(mask, true_map * gain, 0.0).astype(np.float32)
    weight = mask.astype(np.float32)
    m, new_affine = signal.blur_decimate(masked, affine, factor, acq.blur_factor)
    w, _ = signal.blur_decimate(weight, affine, factor, acq.blur_factor)
    new_mask = w >= 0.5
    m = np.where(w > 1e-3, m / np.maximum(w, 1e-3), 0.0).astype(np.float32)
    sd = float(np.mean(true_map[mask]) / acq.snr)
    out = np.where(new_mask, signal.gaussian_noise(m, sd, rng), 0.0).astype(np.float32)
    return out, new_affine, new_mask


def mrf_images(
    maps: TissueMaps,
    b1: np.ndarray,
    mask: np.ndarray,
    snr: float,
    rng: np.random.Generator,
    schedule=None,
) -> np.ndarray:
    """35 MRF-EPI magnitude images (a.u., last axis = measurement) with complex noise.

    Bloch simulation (lesionkit.mrf) of every voxel with tissue (pd > 0), scaled by pd,
    then complex Gaussian noise with SD = mean |signal| in ``mask`` over all frames / SNR.
    """
    from lesionkit import mrf

    schedule = mrf.MRF_EPI if schedule is None else schedule
    head = maps.pd > 1e-3
    out = np.zeros((*maps.shape, len(schedule)), np.float32)
    fp = mrf.simulate_fingerprints(maps.t1_ms[head], maps.t2s_ms[head], b1[head], schedule)
    out[head] = fp * maps.pd[head, None]
    sd = float(np.mean(np.abs(out[mask])) / snr)
    noisy = signal.rician_noise(out, sd, rng)
    return noisy * np.float32(IMAGE_SCALE)


def sidecar(acq: Acquisition, field_tesla: float | None = None) -> dict:
    """BIDS sidecar fields of an acquisition (times in s, flip angle in degrees)."""
    meta: dict = {"MagneticFieldStrength": field_tesla or float(acq.field.rstrip("T"))}
    if acq.sequence != "map":
        meta.update({
            "RepetitionTime": acq.tr_ms / 1000.0,
            "EchoTime": acq.te_ms / 1000.0,
            "FlipAngle": acq.flip_deg,
            "PulseSequenceType": {"spgr": "spoiled gradient echo",
                                  "ir-gre": "inversion recovery gradient echo (MPRAGE-like)",
                                  "ir-se": "inversion recovery spin echo (FLAIR)",
                                  "se": "spin echo (TSE-like)"}[acq.sequence],
        })
        if acq.ti_ms:
            meta["InversionTime"] = acq.ti_ms / 1000.0
        if acq.readouts:
            meta.update({"RepetitionTimeExcitation": acq.echo_spacing_ms / 1000.0,
                         "RepetitionTimePreparation": acq.tr_ms / 1000.0,
                         "NumberShots": acq.readouts})
    meta.update({"SNR": acq.snr, "PointSpreadFWHMVoxels": acq.blur_factor})
    return meta


@dataclass
class Subject:
    """One subject being written: label, group, random streams and outputs for the preview."""

    root: Path
    label: str
    group: str
    index: int
    seed: int
    resolution: int
    rngs: dict[str, np.random.Generator]
    preview_images: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    preview_lesions: np.ndarray | None = None
    row: dict[str, Any] = field(default_factory=dict)
    #: Domain randomisation: "" (none), "standard" or "strong" (lesionkit.simulate.randomise).
    randomise: str = ""
    #: Randomised acquisitions drawn so far, shared by images of the same sequence.
    draws: dict[Any, Any] = field(default_factory=dict)
    #: Write a second visit (``ses-2``) of an MS subject (lesionkit.simulate.followup).
    follow_up: bool = False

    @property
    def spacing(self) -> float:
        """Isotropic voxel size (mm) of the cohort's main grid."""
        return float(self.resolution)

    def sidecar(self, extra: dict | None = None) -> dict:
        """Provenance every sidecar carries, plus ``extra``."""
        meta = {"Phantom": True, "PhantomSeed": self.seed, "PhantomSubjectIndex": self.index}
        return {**(extra or {}), **meta}


def streams(child: np.random.SeedSequence) -> dict[str, np.random.Generator]:
    """A subject's independent random streams, by name (:data:`STREAMS`), from its seed
    sequence (a stream added at the end of ``STREAMS`` leaves the others as they were)."""
    return {name: np.random.default_rng(s)
            for name, s in zip(STREAMS, child.spawn(len(STREAMS)), strict=True)}


def make_subject(root: Path, seed: int, index: int, child: np.random.SeedSequence,
                 group: str, resolution: int, randomise: str = "",
                 follow_up: bool = False) -> Subject:
    """Subject ``index`` (0-based) with its independent random streams (:func:`streams`)."""
    rngs = streams(child)
    return Subject(root, f"{index + 1:02d}", group, index, seed, resolution, rngs,
                   randomise=randomise, follow_up=follow_up)


def save_image(sub: Subject, data: np.ndarray, affine: np.ndarray, suffix: str, unit: str,
               sidecar: dict, session: str | None = None, derivative: bool = False,
               kind: str = "intensity", dtype: Any = None, **entities: str) -> Path:
    """Write a NIfTI + JSON sidecar (Units, provenance) into the raw dataset or the truth.

    Float intensities are stored as float32 unless ``dtype`` asks otherwise (int16 is
    stored with a scale factor, as scanners do).
    """
    from lesionkit.bids import bids_path, save_derivative
    from lesionkit.volume import Volume

    path = bids_path(sub.root, sub.label, suffix, session=session,
                     derivatives=PIPELINE if derivative else None, **entities)
    dtype = dtype or {"label": np.int16}.get(kind, np.float32)
    if suffix == "mask":
        dtype = np.uint8
    data = np.asarray(data)
    vol = Volume(data.astype(np.float32 if kind != "label" else dtype), affine, kind, unit)
    return save_derivative(vol, path, sub.sidecar(sidecar), dtype=dtype)


def save_truth_tissue(sub: Subject, anatomy: Anatomy, lesion: np.ndarray,
                      session: str | None = None, abnormal: np.ndarray | None = None) -> None:
    """Brain mask, GM/WM/CSF/NAWM probabilities and the binary lesion mask (>= 0.5).

    NAWM is the WM probability times one minus the lesion fraction (and minus any other
    ``abnormal`` fraction, e.g. oedema).
    """
    a = anatomy.affine
    desc = {"Description": "phantom ground truth"}
    save_image(sub, anatomy.mask, a, "mask", "1", desc, session, True, "label", desc="brain")
    other = 0.0 if abnormal is None else abnormal
    nawm = anatomy.wm * np.clip(1.0 - np.clip(lesion, 0, 1) - other, 0, 1)
    for name, prob in (("GM", anatomy.gm), ("WM", anatomy.wm), ("CSF", anatomy.csf),
                       ("NAWM", nawm)):
        save_image(sub, np.clip(prob, 0, 1), a, "probseg", "1", desc, session, True,
                   "probability", label=name)
    save_image(sub, lesion >= 0.5, a, "mask", "1", desc, session, True, "label",
               label="lesion")
    if sub.preview_lesions is None:
        sub.preview_lesions = lesion >= 0.5


def save_lesions(sub: Subject, labels: np.ndarray, rows: list[dict], affine: np.ndarray,
                 session: str | None = None) -> None:
    """Lesion label map (desc-lesions_dseg) and the per-lesion table
    (sub-XX[_ses-YY]_lesions.tsv)."""
    from lesionkit.bids import bids_path
    from lesionkit.io import write_tsv

    save_image(sub, labels, affine, "dseg", "1", {"Description": "one integer per lesion"},
               session, derivative=True, kind="label", desc="lesions")
    path = bids_path(sub.root, sub.label, "lesions", session=session, derivatives=PIPELINE,
                     extension=".tsv")
    if rows:
        write_tsv(rows, path)
    else:
        from lesionkit.io import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text("\t".join(LESION_COLUMNS) + "\n")
    sub.preview_lesions = labels


@dataclass(frozen=True)
class Scanner:
    """Smooth scanner fields of one subject: transmit B1 and per-image receive bias."""

    b1_control: np.ndarray
    bias_controls: tuple[np.ndarray, ...]


def draw_scanner(rng: np.random.Generator, n_images: int = 8) -> Scanner:
    """Draw the control values of the B1 field and of ``n_images`` receive bias fields."""
    return Scanner(draw_smooth_field(rng), tuple(draw_smooth_field(rng) for _ in range(n_images)))


def write_weighted(sub: Subject, maps: TissueMaps, anatomy: Anatomy, a: Acquisition,
                   scanner: Scanner, k: int, suffix: str, extra: dict | None = None,
                   **entities: str) -> np.ndarray:
    """Acquire and write one weighted image (bias field number ``k``; ``extra`` sidecar).

    Cohorts with ``sub.randomise`` call :func:`lesionkit.simulate.randomise.write_randomised`
    instead (through ``cohorts.write_weighted``).
    """
    shape = anatomy.shape
    b1 = smooth_field(scanner.b1_control, shape, *B1_RANGE[a.field])
    bias = smooth_field(scanner.bias_controls[k], shape, 1 - a.bias_amplitude,
                        1 + a.bias_amplitude)
    img = weighted_image(maps, a, anatomy.mask, anatomy.spacing, sub.rngs["noise"], b1, bias)
    save_image(sub, img, anatomy.affine, suffix, "a.u.", {**sidecar(a), **(extra or {})},
               **entities)
    sub.preview_images.setdefault(suffix + "".join(f"_{v}" for v in entities.values()),
                                  (img, anatomy.affine))
    return img
