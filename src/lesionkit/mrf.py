"""MR fingerprinting with an EPI readout (MRF-EPI): schedule, Bloch model, dictionary, matching.

The sequence is the 35-measurement slice-interleaved spoiled gradient-echo EPI of the
Mannheim MRF-EPI protocol (Rieger et al. 2018; Hermann et al. 2021). The signal model
uses instantaneous pulses and perfect spoiling. For measurement ``i`` of duration
``TR_i`` (ms)::

    [inversion: Mz <- -Mz, then recovery for the inversion delay (15 ms)]
    s_i = Mz * sin(B1 * alpha_i) * exp(-TE_i / T2*)      # Mz just before the pulse
    Mz <- Mz * cos(B1 * alpha_i)
    Mz <- 1 - (1 - Mz) * exp(-t / T1)                    # t = rest of TR_i

Relaxation times are in ms, B1 is the relative flip-angle scale (1 = nominal), proton
density is left to the caller. The MR images are magnitudes, so dictionaries hold
``|s|`` by default. With TR (3.5-6.4 s) well above tissue T1, T1 is encoded weakly
(incomplete recovery after the 15 ms inversion delay). For noiseless off-grid T1/T2*
(T1 400-3300 ms, T2* 15-300 ms), 99.7 % match within one 5 % step when B1 is on its
grid; B1 between grid values moves the matched T1 by up to 13 % (99 % within 8 %).

Example:
    >>> d = build_dictionary(step=0.2, b1_values=[1.0])
    >>> x = simulate_fingerprints(1000.0, 50.0, 1.0)[None]
    >>> t1, t2s, b1, pd = match(np.abs(x), d)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

# Authors' schedule (METHODS.md section 2).
_FLIP_DEG = (46, 42, 50, 56, 58, 58, 54, 48, 38, 36, 46, 56, 64, 64, 38, 40, 60, 76, 86, 82,
             72, 54, 34, 40, 50, 64, 66, 68, 66, 60, 54, 46, 38, 36, 42)  # fmt: skip
_TE_OFFSET_MS = (0.0, 3.0, 5.1, 6.2, 5.2, 2.8, 0.4, 0.3, 3.7, 9.7, 16.0, 19.4, 17.9, 4.7, 9.8,
                 21.1, 30.4, 33.1, 27.4, 4.8, 0.0, 5.2, 18.8, 34.8, 45.6, 34.2, 17.3, 3.5, 7.2,
                 46.0, 60.5, 30.6, 0.5, 0.9, 3.5)  # fmt: skip
_MIN_TE_MS = 16.0
_TR_RANGE_MS = (3530.0, 6370.0)
#: Relative B1 values of the default dictionary (0.6-1.4 in steps of 0.1).
B1_VALUES = tuple(round(0.6 + 0.1 * k, 1) for k in range(9))


@dataclass(frozen=True)
class MRFSchedule:
    """Per-measurement acquisition parameters of an MRF series.

    Attributes:
        flip_deg: nominal flip angles (deg).
        te_ms: echo times (ms).
        tr_ms: duration of each measurement for one slice, i.e. time between that
            slice's consecutive excitations (ms), inversion delay included.
        inversion: whether a 180 deg inversion precedes the measurement.
        inversion_delay_ms: time from an inversion to the excitation (ms).
    """

    flip_deg: tuple[float, ...]
    te_ms: tuple[float, ...]
    tr_ms: tuple[float, ...]
    inversion: tuple[bool, ...]
    inversion_delay_ms: float = 15.0

    def __post_init__(self) -> None:
        n = len(self.flip_deg)
        if any(len(v) != n for v in (self.te_ms, self.tr_ms, self.inversion)):
            raise ValueError("flip_deg, te_ms, tr_ms and inversion must have equal lengths")
        delay = np.where(self.inversion, self.inversion_delay_ms, 0.0)
        if np.any(np.asarray(self.tr_ms) < delay):
            raise ValueError("each TR must be at least the inversion delay")

    def __len__(self) -> int:
        return len(self.flip_deg)

    def to_sidecar(self) -> dict:
        """BIDS sidecar fields: FlipAngle (deg), EchoTime and RepetitionTime (s), InversionPulse."""
        return {
            "FlipAngle": [float(a) for a in self.flip_deg],
            "EchoTime": [round(t / 1000.0, 7) for t in self.te_ms],
            "RepetitionTime": [round(t / 1000.0, 7) for t in self.tr_ms],
            "InversionPulse": [bool(v) for v in self.inversion],
            "InversionDelay": self.inversion_delay_ms / 1000.0,
        }

    @classmethod
    def from_sidecar(cls, sidecar: dict) -> MRFSchedule:
        """Inverse of :meth:`to_sidecar` (times in s in the sidecar, ms here)."""
        return cls(
            flip_deg=tuple(float(a) for a in sidecar["FlipAngle"]),
            te_ms=tuple(round(float(t) * 1000.0, 4) for t in sidecar["EchoTime"]),
            tr_ms=tuple(round(float(t) * 1000.0, 4) for t in sidecar["RepetitionTime"]),
            inversion=tuple(bool(v) for v in sidecar["InversionPulse"]),
            inversion_delay_ms=round(float(sidecar.get("InversionDelay", 0.015)) * 1000.0, 4),
        )


def _default_schedule() -> MRFSchedule:
    """The MRF-EPI schedule.

    The paper gives only the TR range (3530-6370 ms). In a slice-interleaved EPI the
    time per slice grows with the echo time, so TR_i is taken affine in the TE offset:
    3530 ms at the shortest echo and 6370 ms at the longest. Inversions precede the odd
    measurements (1-based), i.e. indices 0, 2, 4, ...
    """
    offsets = np.asarray(_TE_OFFSET_MS)
    lo, hi = _TR_RANGE_MS
    tr = lo + (hi - lo) * offsets / offsets.max()
    return MRFSchedule(
        flip_deg=tuple(float(a) for a in _FLIP_DEG),
        te_ms=tuple(round(_MIN_TE_MS + float(o), 4) for o in offsets),
        tr_ms=tuple(round(float(t), 4) for t in tr),
        inversion=tuple(i % 2 == 0 for i in range(len(offsets))),
    )


MRF_EPI = _default_schedule()


def simulate_fingerprints(
    t1_ms: np.ndarray | float,
    t2s_ms: np.ndarray | float,
    b1: np.ndarray | float = 1.0,
    schedule: MRFSchedule = MRF_EPI,
    n_dummy: int = 3,
    dtype: type = np.float32,
) -> np.ndarray:
    """Signed MRF signals per unit proton density from the Bloch model above.

    Args:
        t1_ms, t2s_ms, b1: T1 (ms), T2* (ms), relative B1; broadcast against each other.
        schedule: the acquisition schedule.
        n_dummy: full schedule repetitions run first so Mz starts in its steady state.
        dtype: output dtype (computation is float64).

    Returns:
        Array of shape ``broadcast_shape + (len(schedule),)``. Take ``np.abs`` for
        magnitude images and multiply by proton density.
    """
    t1, t2s, b1 = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (t1_ms, t2s_ms, b1))
    )
    flip = np.deg2rad(np.asarray(schedule.flip_deg))
    te = np.asarray(schedule.te_ms)
    tr = np.asarray(schedule.tr_ms)
    delay = schedule.inversion_delay_ms
    r1 = 1.0 / t1
    out = np.empty((*t1.shape, len(schedule)), dtype=dtype)
    mz = np.ones_like(t1)
    for cycle in range(n_dummy + 1):
        for i in range(len(schedule)):
            rest = tr[i]
            if schedule.inversion[i]:
                mz = 1.0 - (1.0 + mz) * np.exp(-delay * r1)
                rest -= delay
            angle = b1 * flip[i]
            if cycle == n_dummy:
                out[..., i] = mz * np.sin(angle) * np.exp(-te[i] / t2s)
            mz = 1.0 - (1.0 - mz * np.cos(angle)) * np.exp(-rest * r1)
    return out


@dataclass(frozen=True)
class Dictionary:
    """Normalised MRF atoms and the parameters they stand for.

    Attributes:
        atoms: (n_atoms, n_measurements) float32, unit L2 norm.
        norms: (n_atoms,) L2 norm of each simulated fingerprint before normalisation.
        t1_ms, t2s_ms, b1: (n_atoms,) parameters of each atom (ms, ms, relative).
        schedule: the schedule the atoms were simulated with.
    """

    atoms: np.ndarray
    norms: np.ndarray
    t1_ms: np.ndarray
    t2s_ms: np.ndarray
    b1: np.ndarray
    schedule: MRFSchedule = field(default=MRF_EPI)

    def __len__(self) -> int:
        return len(self.atoms)


def geometric_grid(start: float, stop: float, step: float) -> np.ndarray:
    """Values start * (1 + step)**k up to stop (inclusive within rounding)."""
    n = int(np.floor(np.log(stop / start) / np.log1p(step) + 1e-9)) + 1
    return start * (1.0 + step) ** np.arange(n)


def build_dictionary(
    t1_range: tuple[float, float] = (300.0, 3500.0),
    t2s_range: tuple[float, float] = (10.0, 2500.0),
    step: float = 0.05,
    b1_values: Sequence[float] | np.ndarray = B1_VALUES,
    schedule: MRFSchedule = MRF_EPI,
    magnitude: bool = True,
) -> Dictionary:
    """Dictionary on geometric T1 and T2* grids (ms) times B1 values; T1 < T2* dropped.

    Args:
        t1_range, t2s_range: grid limits (ms).
        step: relative grid step (0.05 = 5 %).
        b1_values: relative B1 values.
        schedule: acquisition schedule.
        magnitude: store |signal| atoms, to match magnitude images.
    """
    t1_grid = geometric_grid(*t1_range, step)
    t2s_grid = geometric_grid(*t2s_range, step)
    b1_grid = np.round(np.asarray(b1_values, dtype=np.float64), 6)
    t1, t2s, b1 = (g.ravel() for g in np.meshgrid(t1_grid, t2s_grid, b1_grid, indexing="ij"))
    keep = t1 >= t2s
    t1, t2s, b1 = t1[keep], t2s[keep], b1[keep]
    signals = simulate_fingerprints(t1, t2s, b1, schedule, dtype=np.float64)
    if magnitude:
        signals = np.abs(signals)
    norms = np.linalg.norm(signals, axis=1)
    atoms = (signals / norms[:, None]).astype(np.float32)
    return Dictionary(atoms, norms, t1, t2s, b1, schedule)


def match(
    signals: np.ndarray,
    dictionary: Dictionary,
    chunk: int | None = None,
    b1_map: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Match fingerprints to the atom with the largest absolute normalised inner product.

    Args:
        signals: (n, n_measurements) fingerprints.
        dictionary: from :func:`build_dictionary`.
        chunk: voxels per block; default keeps the (chunk, n_atoms) product near 128 MiB,
            so memory does not grow with n.
        b1_map: optional (n,) known relative B1; each voxel is matched only against the
            atoms of the nearest dictionary B1 value.

    Returns:
        t1_ms, t2s_ms, b1, pd, each (n,) float32; pd = inner product / fingerprint norm,
        i.e. the proton-density scale of the matched fingerprint.
    """
    x = np.asarray(signals, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != dictionary.atoms.shape[1]:
        raise ValueError(f"signals must be (n, {dictionary.atoms.shape[1]}), found {x.shape}")
    if b1_map is None:
        return _match_all(x, dictionary, chunk)
    levels = np.unique(dictionary.b1)
    nearest = levels[np.abs(np.asarray(b1_map).ravel()[:, None] - levels).argmin(axis=1)]
    out = tuple(np.empty(len(x), dtype=np.float32) for _ in range(4))
    for level in levels:
        voxels = np.flatnonzero(nearest == level)
        if voxels.size:
            sub = _subset(dictionary, dictionary.b1 == level)
            for o, r in zip(out, _match_all(x[voxels], sub, chunk), strict=True):
                o[voxels] = r
    return out


def _subset(d: Dictionary, keep: np.ndarray) -> Dictionary:
    return Dictionary(d.atoms[keep], d.norms[keep], d.t1_ms[keep], d.t2s_ms[keep], d.b1[keep],
                      d.schedule)  # fmt: skip


def _match_all(
    x: np.ndarray, d: Dictionary, chunk: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = len(x)
    chunk = chunk or max(64, (1 << 25) // max(len(d), 1))
    best = np.empty(n, dtype=np.int64)
    inner = np.empty(n, dtype=np.float32)
    atoms_t = np.ascontiguousarray(d.atoms.T)
    buffer = np.empty((min(chunk, n), len(d)), dtype=np.float32)  # reused: one block in memory
    for start in range(0, n, chunk):
        rows = x[start : start + chunk]
        block = np.matmul(rows, atoms_t, out=buffer[: len(rows)])
        np.abs(block, out=block)
        idx = block.argmax(axis=1)
        best[start : start + chunk] = idx
        inner[start : start + chunk] = block[np.arange(len(idx)), idx]
    # Restore the sign of the inner product (|.| was maximised).
    sign = np.sign(np.einsum("ij,ij->i", x, d.atoms[best]))
    pd = sign * inner / d.norms[best]
    return (d.t1_ms[best].astype(np.float32), d.t2s_ms[best].astype(np.float32),
            d.b1[best].astype(np.float32), pd.astype(np.float32))  # fmt: skip


def denoise_mppca(
    series4d: np.ndarray, mask: np.ndarray | None = None, patch_radius: int = 2
) -> np.ndarray:
    """MP-PCA denoising of a 4D series (x, y, z, measurements) with dipy (Veraart 2016).

    Returns a float32 array of the same shape; voxels outside ``mask`` are left as given.
    """
    from dipy.denoise.localpca import mppca

    data = np.asarray(series4d, dtype=np.float32)
    if data.ndim != 4:
        raise ValueError(f"series4d must be 4D (x, y, z, measurements), found {data.ndim}D")
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 only for uncovered voxels
        denoised = mppca(data, mask=mask, patch_radius=patch_radius, suppress_warning=True)
    denoised = np.asarray(denoised, dtype=np.float32)
    if mask is not None:
        denoised[~np.asarray(mask, dtype=bool)] = data[~np.asarray(mask, dtype=bool)]
    return denoised


def match_volume(
    series4d: np.ndarray,
    mask: np.ndarray,
    dictionary: Dictionary,
    denoise: bool = True,
    progress: Callable[[float], None] | None = None,
) -> dict[str, np.ndarray]:
    """Denoise (optional) and match a 4D MRF series inside a mask.

    Args:
        series4d: (x, y, z, measurements) magnitude images (a.u.).
        mask: (x, y, z) boolean brain mask.
        dictionary: from :func:`build_dictionary`.
        denoise: apply :func:`denoise_mppca` first.
        progress: called with the completed fraction (0-1) after each block.

    Returns:
        {"t1_ms", "t2s_ms", "b1", "pd"}: 3D float32 maps, zero outside the mask.
    """
    mask = np.asarray(mask, dtype=bool)
    data = denoise_mppca(series4d, mask) if denoise else np.asarray(series4d, np.float32)
    x = data[mask]
    if progress is not None:
        progress(0.0)
    results = [np.empty(len(x), dtype=np.float32) for _ in range(4)]
    block = 65536
    for start in range(0, len(x), block):
        parts = match(x[start : start + block], dictionary)
        for r, p in zip(results, parts, strict=True):
            r[start : start + block] = p
        if progress is not None:
            progress(min(1.0, (start + block) / max(len(x), 1)))
    maps = {}
    for name, values in zip(("t1_ms", "t2s_ms", "b1", "pd"), results, strict=True):
        volume = np.zeros(mask.shape, dtype=np.float32)
        volume[mask] = values
        maps[name] = volume
    return maps
