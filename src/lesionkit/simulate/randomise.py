"""Domain randomisation of the phantom's weighted images (the SynthSeg idea: Billot et al.
2023, Med Image Anal 86:102789): every weighted image of a subject gets its own drawn
scanner, sequence, geometry and artefacts, so a network trained on the cohort sees the
spread of clinical acquisitions instead of one protocol.

Draws (``draw_*``) take the subject's ``randomise`` Generator and return frozen values;
the operations (:func:`acquire`, :func:`field_maps`, :func:`class_intensities`) are
deterministic given those values (noise comes from the subject's noise stream). Ranges and
sources are listed in docs/phantom.md, section "Domain randomisation". Quantitative maps
keep their units: only their SNR (and the ADC grid) is drawn (:func:`map_snr`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from lesionkit.simulate import parameters as phys
from lesionkit.simulate import signal
from lesionkit.simulate.tissue import TissueMaps, tissue_fractions

if TYPE_CHECKING:
    from lesionkit.simulate.acquisitions import Scanner, Subject
    from lesionkit.simulate.template import Anatomy

#: Mid CSF T1 (ms) at 1.5 and 3 T (field-independent, Rooney et al. 2007), for FLAIR TI.
T1_CSF_MS = 4250.0
#: Stored orientation: world axis normal to the slices (0 sagittal, 1 coronal, 2 axial).
ORIENTATIONS = {"sagittal": 0, "coronal": 1, "axial": 2}
#: Classes of the strong (synthetic-contrast) mode.
CLASSES = ("wm", "cortical_gm", "deep_gm", "csf", "lesion", "other")


@dataclass(frozen=True)
class Geometry:
    """Acquired grid: voxel size (mm) per stored axis (in-plane, in-plane, slice), the
    world axis normal to the slices, per-axis flips (+1/-1) of the storage and an oblique
    tilt (degrees) about the first in-plane axis."""

    voxel_mm: tuple[float, float, float]
    orientation: str
    flips: tuple[int, int, int]
    tilt_deg: float
    dimension: str  # "2D" or "3D"


@dataclass(frozen=True)
class Artefacts:
    """Drawn artefacts: receive bias (TorchIO ``BiasField`` order-3 coefficients), SNR,
    kept k-space fraction (Gibbs; 1 = none), ghosting (ghosts, intensity; None = none) along
    ``phase_axis``, motion (``tio.Motion`` degrees, translation mm, times; None = none)."""

    bias_coefficients: tuple[float, ...]
    snr: float
    gibbs_fraction: float
    phase_axis: int
    ghosting: tuple[int, float] | None
    motion: tuple[tuple, tuple, tuple] | None


@dataclass(frozen=True)
class Draw:
    """One randomised acquisition: sequence (``field`` included), grid, class means of
    the strong mode (None: signal equation)."""

    acquisition: phys.Acquisition
    geometry: Geometry
    intensities: dict[str, float] | None = None


def flair_null_ti(tr_ms: float, t1_ms: float = T1_CSF_MS) -> float:
    """Inversion time (ms) nulling T1 ``t1_ms`` at ``tr_ms``: T1 ln(2 / (1 + exp(-TR/T1)))."""
    return float(t1_ms * np.log(2.0 / (1.0 + np.exp(-tr_ms / t1_ms))))


def draw_sequence(rng: np.random.Generator, contrast: str) -> phys.Acquisition:
    """Field (1.5T/3T) and sequence parameters of a FLAIR, T2w or T1w (also T1c) image."""
    field = str(rng.choice(["1.5T", "3T"]))
    u = rng.uniform
    if contrast == "FLAIR":
        tr = u(6000, 11000)
        return phys.Acquisition("FLAIR-random", "ir-se", field, tr, u(80, 140),
                                flair_null_ti(tr) * u(0.9, 1.1), 90, snr=1.0)
    if contrast == "T2w":
        return phys.Acquisition("T2w-random", "se", field, u(3000, 6000), u(80, 120), 0, 90, 1.0)
    kind = str(rng.choice(["mprage", "se", "spgr"], p=[0.45, 0.3, 0.25]))
    if kind == "se":
        return phys.Acquisition("T1w-SE-random", "se", field, u(400, 700), u(8, 15), 0, 90, 1.0)
    if kind == "spgr":
        return phys.Acquisition("T1w-SPGR-random", "spgr", field, u(6, 12), u(2, 5), 0,
                                u(10, 25), 1.0)
    ti, esp, n = u(800, 1100), u(6, 8), int(rng.integers(160, 193))
    tr = max(u(1800, 2500), ti + (n - n // 2) * esp + 50)
    return phys.Acquisition("T1w-MPRAGE-random", "ir-gre", field, tr, u(2, 4), ti, u(7, 10),
                            1.0, echo_spacing_ms=esp, readouts=n)


def draw_geometry(rng: np.random.Generator, acq: phys.Acquisition, resolution: int
                  ) -> Geometry:
    """2D (thick slices) or 3D, voxel size, orientation, storage flips and oblique tilt.

    In-plane 0.5-1.2 mm x ``resolution``; slices 2-6 mm (2D, at least 1.5 x ``resolution``)
    or 1-1.5 mm x ``resolution`` (3D). Spin echoes are 2D, MPRAGE and SPGR 3D, FLAIR either.
    """
    two_d = acq.sequence == "se" or (acq.sequence == "ir-se" and rng.uniform() < 0.6)
    inplane = float(rng.uniform(0.5, 1.2) * resolution)
    thick = (rng.uniform(max(2.0, 1.5 * resolution), 6.0) if two_d
             else rng.uniform(1.0, 1.5) * resolution)
    orientation = str(rng.choice(list(ORIENTATIONS), p=[0.3, 0.2, 0.5]))
    flips = tuple(int(f) for f in rng.choice([-1, 1], 3))
    return Geometry((inplane, inplane, float(thick)), orientation, flips,
                    float(rng.uniform(-15, 15)), "2D" if two_d else "3D")


def draw_artefacts(rng: np.random.Generator) -> Artefacts:
    """Bias (coefficients +-0.2), SNR 10-40, Gibbs (p 0.5, keep 70-95 % of k-space),
    ghosting (p 0.3, 2-8 ghosts, intensity 0.1-0.5), motion (p 0.3, 1-2 moves of +-3 deg
    and +-3 mm)."""
    bias = tuple(float(c) for c in rng.uniform(-0.2, 0.2, 20))
    snr = float(rng.uniform(10, 40))
    gibbs = float(rng.uniform(0.7, 0.95)) if rng.uniform() < 0.5 else 1.0
    phase = int(rng.integers(0, 2))
    ghost = ((int(rng.integers(2, 9)), float(rng.uniform(0.1, 0.5)))
             if rng.uniform() < 0.3 else None)
    motion = None
    if rng.uniform() < 0.3:
        n = int(rng.integers(1, 3))
        times = np.sort(rng.uniform(0.2, 0.8, n))
        motion = (tuple(map(tuple, rng.uniform(-3, 3, (n, 3)).tolist())),
                  tuple(map(tuple, rng.uniform(-3, 3, (n, 3)).tolist())), tuple(times.tolist()))
    return Artefacts(bias, snr, gibbs, phase, ghost, motion)


def draw_class_intensities(rng: np.random.Generator) -> dict[str, float]:
    """Strong mode: a uniform 0.05-1 mean per class and 0-0.05 texture SD (suffix _sd)."""
    means = {c: float(rng.uniform(0.05, 1.0)) for c in CLASSES}
    return {**means, **{f"{c}_sd": float(rng.uniform(0.0, 0.05)) for c in CLASSES}}


def _mid(field: str, tissue: str, prop: str) -> float:
    return float(np.mean(getattr(phys.TISSUE_RANGES[field][tissue], prop)))


def field_maps(maps: TissueMaps, anatomy: Anatomy, field: str) -> TissueMaps:
    """Property maps of the subject (drawn at 3T) at another field.

    T1, T2 and T2* of every voxel are scaled by the tissue-fraction-weighted ratio of the
    range midpoints (field / 3T); a lesion voxel scales like the tissue it replaced, so
    lesion values keep their relation to the surrounding tissue.
    """
    if field == "3T":
        return maps
    fractions = tissue_fractions(anatomy)
    rest = np.clip(1.0 - sum(fractions.values()), 0.0, 1.0)
    scaled = {}
    for prop in ("t1_ms", "t2_ms", "t2s_ms"):
        ratio = rest + sum(f * (_mid(field, t, prop) / _mid("3T", t, prop))
                           for t, f in fractions.items())
        scaled[prop] = (getattr(maps, prop) * ratio).astype(np.float32)
    return replace(maps, **scaled)


def class_intensities(maps: TissueMaps, anatomy: Anatomy, means: dict[str, float],
                      texture: np.ndarray) -> np.ndarray:
    """Strong mode image: partial-volume mix of random class means plus class texture.

    Lesion (any abnormal tissue) fraction: T2 above the partial-volume T2 of the normal
    tissues, (T2 / expected - 1) / 0.4 clipped to 0-1 (MS, FCD, tumour and oedema all
    have long T2). ``texture`` is standard normal noise on the grid.
    """
    fractions = tissue_fractions(anatomy)
    pure = {t: float(np.median(maps.t2_ms[f > 0.9])) if np.any(f > 0.9) else 100.0
            for t, f in fractions.items()}
    total = sum(fractions.values())
    rate = sum(f / pure[t] for t, f in fractions.items()) / np.maximum(total, 1e-3)
    lesion = np.where(total > 0.5, np.clip((maps.t2_ms * rate - 1.0) / 0.4, 0, 1), 0.0)
    weights = {t: f * (1 - lesion) for t, f in fractions.items()}
    weights["lesion"] = lesion * total
    weights["other"] = np.clip(1.0 - total, 0, 1) * (maps.pd > 1e-3)
    mean = sum(w * means[c] for c, w in weights.items())
    sd = sum(w * means[f"{c}_sd"] for c, w in weights.items())
    return (mean + sd * texture).astype(np.float32)


def grid(shape: tuple[int, ...], affine: np.ndarray, geometry: Geometry
         ) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the acquired grid covering the phantom's field of view.

    Stored axes are (in-plane, in-plane, slice normal), with flips, rotated by the tilt
    about the first in-plane axis; the grid is centred on the phantom's centre.
    """
    normal = ORIENTATIONS[geometry.orientation]
    axes = [a for a in range(3) if a != normal] + [normal]
    direction = np.zeros((3, 3))
    for col, (axis, flip) in enumerate(zip(axes, geometry.flips, strict=True)):
        direction[axis, col] = flip
    t = np.deg2rad(geometry.tilt_deg)
    u = direction[:, 0]  # rotation axis: the first in-plane direction (Rodrigues)
    k = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    rot = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k
    m = rot @ direction @ np.diag(geometry.voxel_mm)
    corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in shape], indexing="ij")).reshape(3, -1)
    centre = affine[:3, :3] @ ((np.array(shape) - 1) / 2) + affine[:3, 3]
    world = affine[:3, :3] @ corners + affine[:3, 3:4] - centre[:, None]
    extent = np.abs(np.linalg.inv(m) @ world).max(axis=1) * 2
    new_shape = tuple(int(max(1, np.ceil(e - 1e-6))) for e in extent)
    out = np.eye(4)
    out[:3, :3] = m
    out[:3, 3] = centre - m @ ((np.array(new_shape) - 1) / 2)
    return new_shape, out


def acquire(image: np.ndarray, affine: np.ndarray, geometry: Geometry, blur_factor: float = 1.0
            ) -> tuple[np.ndarray, np.ndarray]:
    """Resample onto the acquired grid with its point spread and slice profile.

    The image is resliced (linear) onto an oblique grid that subdivides each acquired
    voxel into at most phantom-sized steps, blurred along each stored axis with a Gaussian
    of FWHM = acquired voxel x ``blur_factor`` (the slice profile through-plane), then
    sampled at the acquired voxel centres.

    Returns:
        (image, affine) of the acquired grid (world positions kept).
    """
    shape, out_affine = grid(image.shape, affine, geometry)
    step = float(np.linalg.norm(affine[:3, :3], axis=0).min())
    sub = [max(1, int(np.ceil(v / step - 1e-6))) for v in geometry.voxel_mm]
    fine = out_affine @ np.diag([*(1.0 / np.array(sub)), 1.0])
    fine[:3, 3] = out_affine[:3, :3] @ ((1.0 / np.array(sub) - 1) / 2) + out_affine[:3, 3]
    m = np.linalg.inv(affine) @ fine
    fine_shape = tuple(n * s for n, s in zip(shape, sub, strict=True))
    data = ndimage.affine_transform(image.astype(np.float32), m[:3, :3], offset=m[:3, 3],
                                    output_shape=fine_shape, order=1, mode="constant")
    for axis, s in enumerate(sub):
        sigma = blur_factor * s * signal.FWHM_TO_SIGMA
        data = ndimage.gaussian_filter1d(data, sigma, axis=axis, mode="nearest")
    coords = [np.arange(n) * s + (s - 1) / 2 for n, s in zip(shape, sub, strict=True)]
    return signal.separable_interpolate(data, coords, order=1), out_affine


def gibbs(image: np.ndarray, fraction: float, axes: tuple[int, ...] = (0, 1)) -> np.ndarray:
    """Gibbs ringing: keep the central ``fraction`` of k-space along ``axes`` (1 = none)."""
    if fraction >= 1.0:
        return image
    k = np.fft.fftshift(np.fft.fftn(image, axes=axes), axes=axes)
    for axis in axes:
        n = image.shape[axis]
        keep = np.abs(np.arange(n) - n // 2) <= fraction * n / 2
        k = k * keep.reshape([-1 if a == axis else 1 for a in range(image.ndim)])
    out = np.fft.ifftn(np.fft.ifftshift(k, axes=axes), axes=axes)
    return np.abs(out).astype(np.float32)


def torchio_artefacts(image: np.ndarray, affine: np.ndarray, art: Artefacts) -> np.ndarray:
    """Ghosting and motion (TorchIO ``Ghosting`` / ``Motion`` with the drawn values)."""
    if art.ghosting is None and art.motion is None:
        return image
    import torch
    import torchio as tio

    img = tio.ScalarImage(tensor=torch.from_numpy(image[None].copy()), affine=affine)
    if art.ghosting is not None:
        img = tio.Ghosting(art.ghosting[0], art.phase_axis, art.ghosting[1], None)(img)
    if art.motion is not None:
        degrees, translation, times = (np.array(v) for v in art.motion)
        img = tio.Motion(degrees, translation, times, "linear")(img)
    return img.data[0].numpy().astype(np.float32)


def bias_field(shape: tuple[int, ...], coefficients: tuple[float, ...]) -> np.ndarray:
    """Multiplicative receive field of TorchIO's ``BiasField`` (order 3), mean 1 in the FOV."""
    import torchio as tio

    field = tio.BiasField.generate_bias_field(np.zeros((1, *shape)), 3, list(coefficients))
    return (field / field.mean()).astype(np.float32)


def artefact_sidecar(draw: Draw, art: Artefacts) -> dict:
    """BIDS-like sidecar fields of the drawn geometry and artefacts."""
    g = draw.geometry
    return {"MRAcquisitionType": g.dimension, "SliceThickness": round(g.voxel_mm[2], 3),
            "InPlaneVoxelSize": round(g.voxel_mm[0], 3), "SliceOrientation": g.orientation,
            "ObliqueTiltDegrees": round(g.tilt_deg, 2), "StorageFlips": list(g.flips),
            "SNR": round(art.snr, 2), "BiasFieldCoefficients": [round(c, 4) for c in
                                                                 art.bias_coefficients],
            "GibbsKSpaceFraction": round(art.gibbs_fraction, 3),
            "PhaseEncodingAxis": art.phase_axis,
            "Ghosting": None if art.ghosting is None else
            {"NumberGhosts": art.ghosting[0], "Intensity": round(art.ghosting[1], 3)},
            "Motion": None if art.motion is None else
            {"Degrees": art.motion[0], "TranslationMm": art.motion[1], "Times": art.motion[2]},
            "DomainRandomisation": "strong" if draw.intensities else "standard"}


def contrast_of(acq: phys.Acquisition, suffix: str) -> str:
    """FLAIR, T2w or T1w (T1c included) family of an image."""
    if suffix in ("FLAIR", "T2w"):
        return suffix
    return "T2w" if acq.sequence == "se" and acq.te_ms >= 60 else "T1w"


def write_randomised(sub: Subject, maps: TissueMaps, anatomy: Anatomy, a: phys.Acquisition,
                     scanner: Scanner, k: int, suffix: str, extra: dict | None = None,
                     **entities: str) -> np.ndarray:
    """Acquire and write one weighted image with a drawn acquisition (``sub.randomise``).

    Images of one subject with the same suffix, base sequence and bias number (a
    pre-contrast T1w and its post-contrast T1c) share the drawn sequence and grid; each
    image draws its own artefacts.
    """
    from lesionkit.simulate import acquisitions as acq

    rng = sub.rngs["randomise"]
    key = (suffix, a.name, k)
    if key not in sub.draws:
        seq = draw_sequence(rng, contrast_of(a, suffix))
        strong = draw_class_intensities(rng) if sub.randomise == "strong" else None
        sub.draws[key] = Draw(seq, draw_geometry(rng, seq, sub.resolution), strong)
    draw: Draw = sub.draws[key]
    art = draw_artefacts(rng)
    seq = replace(draw.acquisition, snr=art.snr)
    if draw.intensities is None:
        b1 = signal.smooth_field(scanner.b1_control, anatomy.shape, *phys.B1_RANGE[seq.field])
        s = acq.signal_equation(field_maps(maps, anatomy, seq.field), seq, b1)
        meta = acq.sidecar(seq)
    else:
        texture = sub.rngs["noise"].standard_normal(anatomy.shape).astype(np.float32)
        s = class_intensities(maps, anatomy, draw.intensities, texture)
        meta = {"ContrastModel": "random mean per tissue class (SynthSeg-like)",
                "ClassIntensities": {c: round(v, 4) for c, v in draw.intensities.items()}}
    s = s * bias_field(anatomy.shape, art.bias_coefficients)
    sd = signal.noise_sd(s, anatomy.mask, art.snr)
    img, affine = acquire(s, anatomy.affine, draw.geometry, seq.blur_factor)
    img = torchio_artefacts(gibbs(img, art.gibbs_fraction), affine, art)
    img = signal.rician_noise(img, sd, sub.rngs["noise"]) * np.float32(acq.IMAGE_SCALE)
    meta = {**meta, **artefact_sidecar(draw, art), **(extra or {})}
    acq.save_image(sub, img, affine, suffix, "a.u.", meta, **entities)
    name = suffix + "".join(f"_{v}" for v in entities.values())
    back = signal.reslice(img, affine, anatomy.shape, anatomy.affine, order=1)
    sub.preview_images.setdefault(name, (back, anatomy.affine))
    return img


def map_snr(sub: Subject, snr: float) -> float:
    """SNR of a quantitative map: ``snr`` x 0.6-1.5 with randomisation, else ``snr``."""
    return float(snr * sub.rngs["randomise"].uniform(0.6, 1.5)) if sub.randomise else snr
