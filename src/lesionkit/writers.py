"""Writers of predictions by the task's declared output kind: voxel maps on the input's
grid (with their uncertainty, and the lesions read from a lesion probability map), one
row per subject (with Grad-CAM), or a lesion table per subject with a lesion-wise map;
and the names, entities and tables they write."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lesionkit.bids import bids_path, save_derivative
from lesionkit.io import load_volume, write_tsv
from lesionkit.lesions import LESION_MIN_DEPTH_MM
from lesionkit.tasks.task import OutputSpec
from lesionkit.volume import Volume

#: Columns of a lesion table before the probabilities.
LESION_COLUMNS = ("label", "centre_i", "centre_j", "centre_k", "centre_x_mm", "centre_y_mm",
                  "centre_z_mm", "volume_mm3")

#: Where subject classifiers' Grad-CAM maps are written (``desc-gradcam_probseg``).
CAM_SPEC = OutputSpec("probseg", "gradcam", "1", "probability")
#: The brain mask a prediction computed (written beside probability maps cleared outside it).
BRAIN_SPEC = OutputSpec("mask", "", "1", "label", entities=(("label", "brain"),))
#: The lesions read from a lesion probability map, one integer each (``desc-<model>_dseg``).
LESIONS_SPEC = OutputSpec("dseg", "", "1", "label")
#: Default probability at or above which ``predict`` reads a lesion map's voxel as lesion
#: for its lesion tables: the 33 % of the MRF study (METHODS.md), at which every lesion
#: figure of docs/results.md and docs/real-data.md is given.
LESION_THRESHOLD = 0.33


def surround_value(values: np.ndarray) -> float:
    """What surrounds an intensity map where it was not predicted: 0, or for a map with
    negative values (z-scores, whose air is below zero) the median of its outermost
    voxels, the background it shows there, so that no frame marks where it ends."""
    if values.size == 0 or float(values.min()) >= 0:
        return 0.0
    faces = [np.moveaxis(values, axis, 0)[[0, -1]].ravel() for axis in range(values.ndim)]
    return float(np.median(np.concatenate(faces)))


def on_input_grid(data: np.ndarray, grid_affine: np.ndarray, reference: Volume,
                   kind: str) -> np.ndarray:
    """A map from the preprocessed grid back onto the reference input's grid (TorchIO).

    Voxels of the input the network's grid does not cover (outside a crop) get 0, or for
    intensity maps with negative values (z-scores) their background
    (:func:`surround_value`).
    """
    if data.shape == reference.shape[:3] and np.allclose(grid_affine, reference.affine,
                                                         atol=1e-4):
        return data
    import torchio as tio

    target = (reference.shape[:3], reference.affine)
    interpolation = "nearest" if kind == "label" else "linear"

    def resampled(values: np.ndarray, how: str) -> np.ndarray:
        image = tio.ScalarImage(tensor=torch.from_numpy(values[None].astype(np.float32)),
                                affine=grid_affine)
        return tio.Resample(target, image_interpolation=how)(image).data[0].numpy()

    out = resampled(data, interpolation)
    if kind == "intensity" and data.size:
        covered = resampled(np.ones(data.shape, np.float32), "nearest") > 0.5
        out[~covered] = surround_value(data)
    return out


def _lesion_places(label_map: np.ndarray, affine: np.ndarray) -> list[dict[str, Any]]:
    """Per lesion of a label map, in label order: :data:`LESION_COLUMNS` (label, centre in
    voxels and in mm, volume in mm^3)."""
    from lesionkit.tasks.strategies import lesion_centres

    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    counts = np.bincount(label_map.ravel())
    rows = []
    for label, centre in sorted(lesion_centres(label_map).items()):
        world = affine @ np.array([*centre, 1.0])
        rows.append({"label": label, "centre_i": centre[0], "centre_j": centre[1],
                     "centre_k": centre[2], "centre_x_mm": round(float(world[0]), 2),
                     "centre_y_mm": round(float(world[1]), 2),
                     "centre_z_mm": round(float(world[2]), 2),
                     "volume_mm3": round(float(counts[label]) * voxel_mm3, 3)})
    return rows


def lesion_rows(label_map: np.ndarray, reference: Volume, mean: np.ndarray, std: np.ndarray,
                outputs: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per lesion: label, centre (voxels and mm), volume (mm^3), probability."""
    rows = []
    for i, row in enumerate(_lesion_places(label_map, reference.affine)):
        for c, spec in enumerate(outputs):
            name = "probability" if len(outputs) == 1 else spec.desc
            row[name] = float(mean[i, c])
            spread = float(std[i, c])
            row[f"{name}_uncertainty" if len(outputs) > 1 else "uncertainty"] = (
                None if np.isnan(spread) else spread)
        rows.append(row)
    return rows


@dataclass
class Written:
    """Where and how one subject's predictions are written."""

    out_root: Path
    subject: str
    session: str | None
    run: str | None
    sidecar: dict[str, Any]
    reference: Volume
    grid: np.ndarray
    paths: list[Path]
    carried: Mapping[str, str] = field(default_factory=dict)
    brain: np.ndarray | None = None

    def depth_mm(self) -> np.ndarray | None:
        """Depth (mm) of each voxel of the input's grid inside the brain mask (``brain``, on
        the network's grid, moved by nearest neighbour); None without a brain mask or where
        it does not reach the input's grid."""
        if self.brain is None:
            return None
        from lesionkit.geometry import voxel_size
        from lesionkit.lesions import depth_inside

        mask = on_input_grid(np.asarray(self.brain, np.float32), self.grid, self.reference,
                             "label") > 0.5
        if not mask.any():
            return None
        return depth_inside(mask, voxel_size(self.reference.affine))

    @property
    def run_entity(self) -> dict[str, str]:
        """Entities of the outputs' names beside sub, ses, label and desc: the first
        input's acquisition entities (``carried``) and ``run`` for one run of several."""
        return {**self.carried, **({"run": self.run} if self.run else {})}

    def save(self, data: np.ndarray, spec: Any, desc: str, kind: str, unit: str,
             like: Volume | None = None, grid: np.ndarray | None = None,
             meta: dict | None = None, dtype: type = np.float32) -> np.ndarray:
        """A map on the reference input's grid (from the network's ``grid``), with sidecar;
        returns the values written."""
        like = like or self.reference
        path = bids_path(self.out_root, self.subject, spec.suffix, session=self.session,
                         desc=desc, **self.run_entity, **dict(spec.entities))
        data = on_input_grid(data, self.grid if grid is None else grid, like, kind)
        data = (data.astype(np.float32) if np.issubdtype(dtype, np.floating)
                else np.rint(data).astype(dtype))  # a label map stored as its integers
        volume = Volume(data, like.affine, kind=kind, unit=unit)
        self.paths.append(save_derivative(volume, path, {**self.sidecar, **(meta or {})},
                                          dtype=dtype))
        return data

    def row(self) -> dict[str, Any]:
        """The columns that name this output's unit in a table of subjects: participant,
        session, run and the carried acquisition entities, where present."""
        return {"participant_id": f"sub-{self.subject}",
                **({"session_id": f"ses-{self.session}"} if self.session else {}),
                **({"run": self.run} if self.run else {}), **self.carried}


#: Entities of the first input that its outputs' names keep, as BIDS derivatives keep
#: their source's (``sub-01_acq-3D_FLAIR`` -> ``sub-01_acq-3D_label-lesion_..._probseg``),
#: so that the predictions of two acquisitions of one subject do not take one name.
CARRIED_ENTITIES = ("acq", "ce", "rec")


def carried_entities(source: Mapping[str, str], chosen_by: Sequence[tuple[str, str]]
                     ) -> dict[str, str]:
    """The :data:`CARRIED_ENTITIES` of an input file's name (``source``), except those its
    image spec chooses it by (``chosen_by``: a task's ``acq-standard`` dose is what the
    input is, not how it was acquired)."""
    named = {key for key, _ in chosen_by}
    return {k: source[k] for k in CARRIED_ENTITIES if source.get(k) and k not in named}


#: Units of quantities that cannot be negative (relaxation rates and times, diffusivity).
POSITIVE_UNITS = ("s^-1", "ms", "s", "1e-3 mm^2/s")


def _write_maps(out: Written, task: Any, mean: np.ndarray, std: np.ndarray, members: int,
                probability_meta: dict | None = None, lesions: LesionReading | None = None,
                load_rows: list[dict] | None = None, **_: Any) -> None:
    for c, spec in enumerate(task.outputs):
        meta = dict(probability_meta or {}) if spec.kind == "probability" else {}
        if spec.kind == "probability" and task.output_activation is None:
            # A regression head (the published method's) is not bounded by construction.
            outside = int(((mean[c] < 0) | (mean[c] > 1)).sum())
            mean[c] = np.clip(mean[c], 0.0, 1.0)
            meta["ValueRange"] = (f"regression output clipped to [0, 1] ({outside} voxels were "
                                  "outside on the network's grid)")
        elif spec.unit in POSITIVE_UNITS and (mean[c] < 0).any():
            # Relaxation rates and times, diffusivities: a negative value is not physical.
            below = int((mean[c] < 0).sum())
            mean[c] = np.maximum(mean[c], 0.0)
            meta["ValueRange"] = (f"{below} voxels below 0 {spec.unit} on the network's grid "
                                  "set to 0 (the quantity is positive)")
        if members < 2:
            meta["Uncertainty"] = (f"not written: {members} ensemble member (flips x folds); "
                                   "use --tta 2 or more, or more folds")
        written = out.save(mean[c], spec, spec.desc, spec.kind, spec.unit, meta=meta)
        if members >= 2:
            out.save(std[c], spec, "uncertainty", "intensity", spec.unit,
                     meta={"Description": f"standard deviation over {members} ensemble "
                                          "members (flips x folds)"})
        if lesions is not None and is_lesion_map(spec):
            row = _write_lesion_components(out, spec, written, lesions)
            if load_rows is not None:
                load_rows.append(row)


def is_lesion_map(spec: OutputSpec) -> bool:
    """Whether an output is a lesion probability map (a ``label-lesion`` probability)."""
    return spec.kind == "probability" and dict(spec.entities).get("label") == "lesion"


@dataclass(frozen=True)
class LesionReading:
    """How ``predict`` reads a lesion probability map as lesions.

    Attributes:
        threshold: Probability at or above which a voxel is lesion.
        min_ml: Smallest lesion kept (mL); 0 keeps every component.
        min_depth_mm: Depth inside the brain mask (mm) a lesion's deepest voxel must
            reach; 0 keeps every component. Not applied where the brain mask is only
            the input's non-zero voxels.
    """

    threshold: float = LESION_THRESHOLD
    min_ml: float = 0.0
    min_depth_mm: float = LESION_MIN_DEPTH_MM


#: How ``predict`` reads lesion maps unless told otherwise.
DEFAULT_LESION_READING = LesionReading()


def _write_lesion_components(out: Written, spec: OutputSpec, probability: np.ndarray,
                             reading: LesionReading) -> dict[str, Any]:
    """The lesions of a probability map on the input's grid: a label map
    (``desc-<model>_dseg``), a table of them (``desc-<model>_lesions.tsv``) and the
    subject's row of the lesion load table."""
    from scipy import ndimage

    from lesionkit.lesions import component_depths, lesion_components

    affine = out.reference.affine
    voxel_ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
    min_voxels = max(1, int(np.ceil(reading.min_ml / voxel_ml - 1e-9)))
    depth = out.depth_mm()
    labels = lesion_components(probability, reading.threshold, min_voxels, depth,
                               reading.min_depth_mm)
    count = int(labels.max())
    index = np.arange(1, count + 1)
    peaks = ndimage.maximum(probability, labels, index) if count else []
    means = ndimage.mean(probability, labels, index) if count else []
    depths = component_depths(labels, depth, count) if depth is not None else [None] * count
    rows = [{**row, "depth_mm": None if depths[i] is None else round(float(depths[i]), 2),
             "max_probability": round(float(peaks[i]), 4),
             "mean_probability": round(float(means[i]), 4)}
            for i, row in enumerate(_lesion_places(labels, affine))]
    min_depth = reading.min_depth_mm if depth is not None else 0.0
    reading_meta = {"LesionThreshold": reading.threshold, "MinLesionVolumeMl": reading.min_ml,
                    "MinLesionDepthMm": min_depth}
    deep = (f", reaching at least {min_depth:g} mm inside the brain mask" if min_depth > 0
            else "")
    out.save(labels, LESIONS_SPEC, spec.desc, "label", "1", grid=affine, dtype=np.int32,
             meta={**reading_meta, "Lesions": count, "Description": (
                 f"lesions: 26-connected components of the lesion probability map at or "
                 f"above {reading.threshold:g} on this grid, of at least {reading.min_ml:g} "
                 f"mL{deep}, numbered by decreasing volume (their table: desc-"
                 f"{spec.desc}_lesions.tsv; depth_mm: how deep the deepest voxel lies "
                 "inside the brain mask)")})
    table = bids_path(out.out_root, out.subject, "lesions", session=out.session,
                      extension=".tsv", desc=spec.desc, **out.run_entity)
    out.paths.append(write_tsv(rows, table, columns=[*LESION_COLUMNS, "depth_mm",
                                                     "max_probability", "mean_probability"]))
    return {**out.row(), "lesion_count": count,
            "lesion_volume_ml": round(float((labels > 0).sum()) * voxel_ml, 4),
            "lesion_threshold": reading.threshold, "min_lesion_ml": reading.min_ml,
            "min_lesion_depth_mm": min_depth}


def _write_subject(out: Written, task: Any, mean: np.ndarray, std: np.ndarray,
                   rows: list[dict], cam: Callable[[], np.ndarray] | None, members: int,
                   **_: Any) -> None:
    row = out.row()
    for c, spec in enumerate(task.outputs):
        row.update({spec.desc: float(mean[c]),
                    f"{spec.desc}_uncertainty": float(std[c]) if members >= 2 else None})
    rows.append(row)
    if cam is not None:
        out.save(cam(), CAM_SPEC, CAM_SPEC.desc, "probability", "1", meta={
            "ClassExplained": task.outputs[-1].desc,
            "Method": f"Grad-CAM (monai.visualize.GradCAM) on {task.inference.cam_layer}, "
                      "trilinear upsampling to the input grid, mean over folds, divided by "
                      "its maximum"})


def _write_lesions(out: Written, task: Any, mean: np.ndarray, std: np.ndarray,
                   lesion_path: Path, members: int, **_: Any) -> None:
    lesion_map = load_volume(lesion_path, kind="label")
    labels = np.rint(lesion_map.data).astype(np.int64)
    table = lesion_rows(labels, lesion_map, mean, std if members >= 2 else std * np.nan,
                        task.outputs)
    path = bids_path(out.out_root, out.subject, "lesions", session=out.session,
                     extension=".tsv", desc=task.outputs[-1].desc, **out.run_entity)
    names = (["probability", "uncertainty"] if len(task.outputs) == 1 else
             [c for s in task.outputs for c in (s.desc, f"{s.desc}_uncertainty")])
    out.paths.append(write_tsv(table, path, columns=[*LESION_COLUMNS, *names]))
    by_label = np.zeros(int(labels.max(initial=0)) + 1, np.float32)  # 0: no lesion
    by_label[[lesion["label"] for lesion in table]] = mean[:len(table), -1]
    out.save(by_label[labels], task.outputs[-1], task.outputs[-1].desc, "probability", "1",
             like=lesion_map, grid=lesion_map.affine)


#: Writers by the task's declared output kind.
WRITERS: dict[str, Callable[..., None]] = {
    "maps": _write_maps, "subjects": _write_subject, "lesions": _write_lesions}


def merged_rows(table: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An earlier table's rows with those of the same participant (session, run and
    acquisition entities) replaced."""
    if not table.is_file():
        return rows
    import pandas as pd

    def key(row: dict[str, Any]) -> tuple:
        return tuple(row.get(k) or None for k in ("participant_id", "session_id", "run",
                                                   *CARRIED_ENTITIES))

    earlier = pd.read_csv(table, sep="\t", dtype=str, keep_default_na=False)
    new = {key(r) for r in rows}
    kept = [r for r in earlier.to_dict("records")
            if key({k: (None if v in ("", "n/a") else v) for k, v in r.items()}) not in new]
    return sorted(kept + rows, key=lambda r: tuple(str(v or "") for v in key(r)))
