"""Reference MRF reconstruction over a BIDS dataset: MP-PCA denoising + dictionary matching.

For each subject with an ``MRF`` series (4D, 35 frames, schedule in its JSON sidecar)
the series is denoised with MP-PCA (dipy) inside a brain mask and matched voxel-wise
to the dictionary atom with the largest normalised inner product (chunked, memory
bounded; :mod:`lesionkit.mrf`). Written under ``derivatives/lesionkit``::

    sub-XX/anat/sub-XX_desc-matched_T1map.nii.gz      T1 (ms)
    sub-XX/anat/sub-XX_desc-matched_T2starmap.nii.gz  T2* (ms)
    sub-XX/anat/sub-XX_desc-matched_TB1map.nii.gz     relative transmit B1 (1 = nominal)
    sub-XX/anat/sub-XX_desc-matched_PDmap.nii.gz      proton density scale (a.u.)
    sub-XX/anat/sub-XX_desc-brain_mask.nii.gz         the mask matched inside

The matched T1 and T2* maps are the training targets of the ``mrf-lesion`` tasks, as
in the MRF study (the network learns what the matching gives).

The brain mask is the phantom's (``derivatives/phantom``, ``desc-brain_mask``) when
present, otherwise Otsu's threshold of the frame-mean image with holes filled and
the largest connected component kept.

Example:
    >>> paths = match_dataset("/data/mrf", subjects=["01"])  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit import mrf
from lesionkit.bids import BIDSDataset, BIDSFile, bids_path, derivatives_root, save_derivative
from lesionkit.io import InputError, check_values, load_volume
from lesionkit.volume import Volume

#: ``desc-`` entity of the matched maps.
MATCHED = "matched"
#: Output name of :func:`lesionkit.mrf.match_volume` -> (BIDS suffix, unit, kind).
OUTPUTS = {"t1_ms": ("T1map", "ms"), "t2s_ms": ("T2starmap", "ms"), "b1": ("TB1map", "1"),
           "pd": ("PDmap", "a.u.")}


def brain_mask(series: np.ndarray) -> np.ndarray:
    """Brain mask of a 4D magnitude series (x, y, z, frames) from its frame mean.

    Otsu's threshold, holes filled, largest 3D connected component kept.
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    mean = np.asarray(series, dtype=np.float32).mean(axis=-1)
    if not np.any(mean > mean.min()):
        raise ValueError("the series is constant; no brain to mask")
    mask = ndimage.binary_fill_holes(mean > threshold_otsu(mean))
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    return np.asarray(mask, dtype=bool)


def _subject_mask(dataset: BIDSDataset, subject: str, series: Volume) -> tuple[np.ndarray, str]:
    """The phantom brain mask where the dataset has one, else :func:`brain_mask`."""
    found = dataset.find(subject=subject, suffix="mask", derivatives="phantom", desc="brain")
    if found:
        mask = load_volume(found[0].path, kind="label").data > 0.5
        if mask.shape != series.shape[:3]:
            raise InputError(f"{found[0].path}: expected a mask of shape {series.shape[:3]}, "
                             f"found {mask.shape}")
        return mask, str(found[0].path)
    return brain_mask(series.data), "Otsu threshold of the frame-mean MRF image"


def _schedule(found: BIDSFile) -> mrf.MRFSchedule:
    import json

    keys = ("FlipAngle", "EchoTime", "RepetitionTime", "InversionPulse")
    try:
        sidecar = json.loads(found.sidecar.read_text())
        return mrf.MRFSchedule.from_sidecar(sidecar)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{found.sidecar}: expected the MRF schedule ({', '.join(keys)}), "
                         f"found {type(error).__name__}: {error}") from error


def dictionary_sidecar(dictionary: mrf.Dictionary) -> dict[str, Any]:
    """JSON description of a dictionary: ranges (ms), grid steps, B1 values, atom count."""
    def steps(values: np.ndarray) -> float:
        grid = np.unique(values)
        return round(float(np.median(grid[1:] / grid[:-1]) - 1.0), 4) if grid.size > 1 else 0.0

    return {"DictionaryAtoms": len(dictionary),
            "DictionaryT1Range_ms": [float(dictionary.t1_ms.min()), float(dictionary.t1_ms.max())],
            "DictionaryT2starRange_ms": [float(dictionary.t2s_ms.min()),
                                         float(dictionary.t2s_ms.max())],
            "DictionaryRelativeStep": max(steps(dictionary.t1_ms), steps(dictionary.t2s_ms)),
            "DictionaryB1Values": sorted(float(b) for b in np.unique(dictionary.b1)),
            "Matching": "maximum absolute normalised inner product"}


def match_subject(
    dataset: BIDSDataset,
    subject: str,
    dictionary: mrf.Dictionary | None = None,
    denoise: bool = True,
    progress: Callable[[float], None] | None = None,
) -> list[Path]:
    """Denoise and match one subject's MRF series; write the matched maps and the mask.

    Args:
        dataset: The BIDS dataset.
        subject: Subject label without ``sub-``.
        dictionary: Dictionary to match against (default: the paper's grid for the
            series' own schedule; built when the schedule differs from the given one).
        denoise: MP-PCA denoising (dipy) before matching.
        progress: Called with the completed fraction of the matching (0-1).

    Returns:
        Paths written (NIfTI files; each has a JSON sidecar).
    """
    found = dataset.get(subject, "MRF")
    series = load_volume(found.path, unit="a.u.", ndim=4)
    check_values(found.path, np.asarray(series.data), "a.u.")
    schedule = _schedule(found)
    if series.shape[3] != len(schedule):
        raise InputError(f"{found.path}: expected {len(schedule)} frames as in its sidecar, "
                         f"found {series.shape[3]}")
    if dictionary is None or dictionary.schedule != schedule:
        dictionary = mrf.build_dictionary(schedule=schedule)
    mask, mask_source = _subject_mask(dataset, subject, series)
    maps = mrf.match_volume(series.data, mask, dictionary, denoise=denoise, progress=progress)
    session = found.entities.get("ses")
    sidecar = {"Sources": [str(found.path)], "BrainMask": mask_source,
               "Denoising": ("MP-PCA (dipy.denoise.localpca.mppca, patch radius 2)"
                             if denoise else "none"),
               **dictionary_sidecar(dictionary), "Command": shlex.join(sys.argv)}
    reference = series.with_data(np.zeros(series.shape[:3], np.float32))
    written = []
    for name, (suffix, unit) in OUTPUTS.items():
        path = bids_path(dataset.root, subject, suffix, session=session,
                         derivatives="lesionkit", desc=MATCHED)
        volume = reference.with_data(maps[name], kind="intensity", unit=unit)
        written.append(save_derivative(volume, path, sidecar, dtype=np.float32))
    path = bids_path(dataset.root, subject, "mask", session=session, derivatives="lesionkit",
                     desc="brain")
    volume = reference.with_data(mask.astype(np.uint8), kind="label", unit="1")
    written.append(save_derivative(volume, path, {"Sources": [str(found.path)],
                                                  "Description": mask_source}, dtype=np.uint8))
    return written


def match_dataset(
    data_dir: str | os.PathLike[str],
    subjects: Sequence[str] | None = None,
    denoise: bool = True,
    progress: Callable[[int], Any] | None = None,
    dictionary: mrf.Dictionary | None = None,
) -> list[Path]:
    """Reference MRF maps (T1, T2* in ms; B1; PD) for every subject with an MRF series.

    Args:
        data_dir: BIDS dataset root.
        subjects: Subject labels without ``sub-`` (default: every subject with ``MRF``).
        denoise: MP-PCA denoising before matching.
        progress: Called with 1 after each subject.
        dictionary: Dictionary to match against (default: T1 300-3500 ms, T2* 10-2500 ms
            on 5 % geometric grids, B1 0.6-1.4 in steps of 0.1, entries T1 < T2* dropped).

    Returns:
        Paths written under ``derivatives/lesionkit``.

    Raises:
        InputError: no MRF series, a series without schedule, or a wrong frame count.
    """
    dataset = BIDSDataset(data_dir)
    names = list(subjects) if subjects else [
        s for s in dataset.subjects() if dataset.find(subject=s, suffix="MRF")]
    if not names:
        raise InputError(f"{dataset.root}: expected subjects with an MRF series "
                         "(sub-XX_MRF.nii.gz), found none")
    dictionary = dictionary or mrf.build_dictionary()
    written = []
    for subject in names:
        maps = match_subject(dataset, subject, dictionary, denoise)
        derivatives_root(dataset.root)  # its description, once there is something in it
        written += maps
        if progress is not None:
            progress(1)
    return written
