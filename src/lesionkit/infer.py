"""Inference: the task's strategy, mirror flips, fold ensembles, uncertainty.

Every prediction is the mean over (folds x flips); the standard deviation over the same
set is written beside it as the uncertainty, in the output's unit. Inputs are
normalised with each fold's training statistics and outputs inverted back to physical
units before averaging. A subject of the dataset a model trained on that some folds
trained on is predicted by the other folds only, so predicting a cross-validated model's
own subjects gives out-of-fold predictions; a subject of any other dataset, whatever its
label, by every fold. Outputs are written by the task's declared output kind
(:mod:`lesionkit.writers`): voxel maps on the input's grid, one subject table, or a
lesion table per subject with a lesion-wise map.
"""

from __future__ import annotations

import itertools
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lesionkit.bids import (
    BIDSDataset,
    check_output_place,
    write_dataset_description,
)
from lesionkit.data import (
    load_subject,
    missing_images,
    prediction_specs,
    prediction_units,
)
from lesionkit.files import named_as_given
from lesionkit.io import (
    InputError,
    all_or_nothing,
    load_volume,
    remove_stale_temporaries,
    write_tsv,
)
from lesionkit.model_folder import FoldModel, TrainedModel, load_model
from lesionkit.normalisation import apply_normalisation, invert
from lesionkit.units import unit_label
from lesionkit.volume import mask_box
from lesionkit.writers import (
    BRAIN_SPEC,
    DEFAULT_LESION_READING,
    WRITERS,
    LesionReading,
    Written,
    carried_entities,
    merged_rows,
    surround_value,
)

SPATIAL_AXES = (2, 3, 4)


ACTIVATIONS: dict[str | None, Callable[[torch.Tensor], torch.Tensor]] = {
    None: lambda y: y,
    "sigmoid": torch.sigmoid,
    "softmax": lambda y: torch.softmax(y, dim=1),
}


def flips(count: int) -> list[tuple[int, ...]]:
    """The first ``count`` (1-8) mirror flips of a (B, C, X, Y, Z) tensor; () is identity."""
    if not 1 <= count <= 8:
        raise ValueError(f"test-time augmentation takes 1 to 8 flips, found {count}")
    every = [axes for n in range(4) for axes in itertools.combinations(SPATIAL_AXES, n)]
    return every[:count]


def resolve_device(device: str = "auto") -> str:
    """"auto" -> "cuda" when available, else "cpu"."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def folds_for(model: TrainedModel, subject: str, root: str | os.PathLike[str]
              ) -> list[FoldModel]:
    """The folds that did not train on ``subject`` of the dataset at ``root`` (all folds
    when every fold did, or when the model trained on another dataset, whose subject
    labels name other people; a fold that trained on any session of it trained on it)."""
    from lesionkit.units import subjects_of, trained_on

    if not trained_on(model.config, root):
        return list(model.folds)
    held_out = [f for f in model.folds if subject not in subjects_of(f.train)]
    return held_out or list(model.folds)


def normalised_input(fold: FoldModel, inputs: dict[str, np.ndarray], specs: Sequence[Any],
                     device: str) -> torch.Tensor:
    """(1, C, X, Y, Z) input: each image (C_i, X, Y, Z) normalised by the fold's statistics."""
    channels = [apply_normalisation(np.asarray(inputs[s.key], np.float32),
                                    fold.normalisation[s.key]) for s in specs]
    return torch.from_numpy(np.concatenate(channels)[None].astype(np.float32)).to(device)


def channels_last(network: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """On a CPU: the network's convolutions and the input in channels-last memory.

    oneDNN's convolutions run faster on channels-last tensors: on a 2-core CPU the
    enhance-r1 U-Net's whole-volume pass over a 1 mm brain took 0.68-0.77 s against
    1.11-1.26 s contiguous, the mrf-lesion 2D U-Net over a 2 mm brain 2.23-2.47 s against
    2.51-2.74 s (two runs of ``python benchmarks/profile_inference.py``). The
    network is converted in place (values unchanged); 2D networks applied slice-wise
    get 2D channels-last weights, and 3D networks 3D ones with the input to match. On
    CUDA nothing changes.

    Returns:
        The input, converted where the network is 3D.
    """
    if x.device.type != "cpu":
        return x
    kinds = {type(m) for m in network.modules()}
    if kinds & {torch.nn.Conv3d, torch.nn.ConvTranspose3d}:
        network.to(memory_format=torch.channels_last_3d)
        return x.contiguous(memory_format=torch.channels_last_3d) if x.ndim == 5 else x
    if kinds & {torch.nn.Conv2d, torch.nn.ConvTranspose2d}:
        network.to(memory_format=torch.channels_last)
    return x


def autocast(device: str, enabled: bool) -> Any:
    """Mixed precision for inference: bfloat16 on a CPU, float16 on CUDA (off: a no-op)."""
    import contextlib

    if not enabled:
        return contextlib.nullcontext()
    kind = torch.device(device).type
    return torch.autocast(kind, dtype=torch.bfloat16 if kind == "cpu" else torch.float16)


class RunningMoments:
    """Mean and standard deviation of arrays added one at a time (Welford's update).

    An ensemble of folds x flips is reduced as it is predicted, so memory holds three
    maps whatever the number of members, not one per member.
    """

    def __init__(self) -> None:
        self.count = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None

    def add(self, x: np.ndarray) -> None:
        """Add one member (every member has the same shape)."""
        x = np.asarray(x, np.float64)
        self.count += 1
        if self._mean is None:
            self._mean, self._m2 = x.copy(), np.zeros_like(x)
            return
        delta = x - self._mean
        self._mean += delta / self.count
        self._m2 += delta * (x - self._mean)

    @property
    def mean(self) -> np.ndarray:
        """Mean over the members (float32)."""
        if self._mean is None:
            raise ValueError("no ensemble member was added")
        return self._mean.astype(np.float32)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation over the members (float32; 0 for one member)."""
        if self._m2 is None:
            raise ValueError("no ensemble member was added")
        return np.sqrt(self._m2 / self.count).astype(np.float32)


def _precision_name(device: str) -> str:
    """"bfloat16" or "float16": what :func:`autocast` computes in on ``device``."""
    return str(autocast(device, True).fast_dtype).removeprefix("torch.")


def brain_box(mask: np.ndarray, margin: int, align: int = 16
              ) -> tuple[slice, slice, slice] | None:
    """The mask's bounding box grown by ``margin`` voxels on every side, within the volume,
    its start moved down to a multiple of ``align`` voxels.

    Dense maps are predicted on this box only: the reference methods work inside the
    brain too, and a scan's field of view holds much background (neck, air). Networks
    are fully convolutional but not shift-invariant: a box whose start is a multiple of
    the network's total down-sampling (16 covers lesionkit's dense networks) keeps the
    pooling grid of a pass over the whole volume, so inside the box the maps are those of
    that pass but for the receptive field's reach past the box's edge (the enhance-r1
    benchmark in docs/results.md and the real-scan check in docs/real-data.md measure
    it). None when the mask is empty or the box is the whole volume.
    """
    grown = mask_box(np.asarray(mask) > 0, margin)
    if grown is None:
        return None
    box = tuple(slice(b.start // align * align, b.stop) for b in grown)
    whole = all(b.start == 0 and b.stop == n for b, n in zip(box, mask.shape, strict=True))
    return None if whole else (box[0], box[1], box[2])


def _uncropped(values: np.ndarray, box: tuple[slice, ...], shape: Sequence[int],
               outputs: Sequence[Any], std: bool) -> np.ndarray:
    """(C, *shape) maps with ``values`` (C, *box) in the box; outside, 0 (standard
    deviations, non-negative maps) or the box's background (:func:`surround_value`)."""
    full = np.zeros((len(values), *shape), np.float32)
    for c, spec in enumerate(outputs):
        if not std and spec.kind == "intensity":
            full[c] = surround_value(values[c])
    full[(slice(None), *box)] = values
    return full


def clear_outside_brain(maps: np.ndarray, mask: np.ndarray, spacing: Sequence[float],
                        margin_mm: float, channels: Sequence[int]) -> int:
    """Set ``channels`` of (C, X, Y, Z) ``maps`` to 0 farther than ``margin_mm`` from the mask.

    Lesion and tissue probabilities belong to the brain; what a network marks in the scalp,
    the orbits or the skull is no lesion. The margin keeps the edge of a lesion that a
    computed brain mask cuts (the distance is Euclidean, in mm, from the nearest mask voxel).

    Args:
        maps: (C, X, Y, Z) maps, changed in place.
        mask: (X, Y, Z) brain mask on the same grid.
        spacing: Voxel size of that grid in mm.
        margin_mm: Voxels farther than this from the mask are cleared.
        channels: Indices of the maps to clear (the others are left as they are).

    Returns:
        The number of grid voxels cleared (per map); 0 when the mask is empty.
    """
    from scipy import ndimage

    inside = np.asarray(mask) > 0
    if not inside.any() or not channels:
        return 0
    far = ndimage.distance_transform_edt(~inside, sampling=tuple(spacing)) > margin_mm
    for c in channels:
        maps[c][far] = 0.0
    return int(far.sum())


def predict_arrays(model: TrainedModel, inputs: dict[str, np.ndarray], tta: int | None = None,
                   device: str = "cpu", lesions: np.ndarray | None = None,
                   folds: Sequence[FoldModel] | None = None,
                   features: dict[int, np.ndarray] | None = None, amp: bool = False,
                   box: tuple[slice, slice, slice] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over folds x flips, in the outputs' units.

    Args:
        model: A loaded model folder.
        inputs: Input key -> array (C, X, Y, Z) in physical units.
        tta: Mirror flips (1-8; default: the task's).
        device: Torch device.
        lesions: (X, Y, Z) lesion label map, for per-lesion tasks.
        folds: Folds to average (default: all).
        features: Lesion label -> (F,) per-lesion features, for tasks with
            ``lesion_features`` (passed to the inference strategy).
        amp: Mixed precision (:func:`autocast`); outputs are returned in float32.
        box: For voxel maps: predict this box only (:func:`brain_box`); the maps come
            back on the whole grid.

    Returns:
        (mean, std): (C_out, X, Y, Z) maps, (C_out,) subject scores or (N, C_out) lesion
        scores (lesions in increasing label order).
    """
    task = model.task
    if task.output_kind == "lesions" and (lesions is None or not (lesions > 0).any()):
        empty = np.zeros((0, task.out_channels), np.float32)
        return empty, empty.copy()  # no lesion to score
    activation = ACTIVATIONS[task.output_activation]
    if box is not None and task.output_kind == "maps":
        shape = next(iter(inputs.values())).shape[1:]
        cropped = {k: np.asarray(v)[(slice(None), *box)] for k, v in inputs.items()}
        mean, std = predict_arrays(model, cropped, tta, device, None, folds, None, amp)
        return (_uncropped(mean, box, shape, task.outputs, False),
                _uncropped(std, box, shape, task.outputs, True))
    label_map = None if lesions is None else torch.from_numpy(np.asarray(lesions, np.int64))
    ensemble = RunningMoments()
    extra = {"features": features} if features is not None else {}
    for fold in folds or model.folds:
        x = channels_last(fold.network,
                          normalised_input(fold, inputs, task.prediction_inputs, device))
        for axes in flips(tta or task.inference.flips):
            flipped = None if label_map is None else (
                label_map.flip([a - 2 for a in axes]) if axes else label_map)
            with torch.inference_mode(), autocast(device, amp):
                y = task.inference.predict(fold.network, x.flip(axes) if axes else x, flipped,
                                           **extra)
                if fold.logit_offset is not None and y.ndim == 2:  # subject or lesion scores
                    y = y + y.new_tensor(fold.logit_offset)
                y = activation(y.flip(axes) if axes and y.ndim == 5 else y)
            y = y.float().cpu().numpy()
            y = y[0] if task.output_kind != "lesions" else np.moveaxis(y, 1, 0)
            ensemble.add(np.stack([invert(y[c], fold.normalisation, spec.target)
                                   for c, spec in enumerate(task.outputs)]))
    mean, std = ensemble.mean, ensemble.std
    if task.output_kind == "lesions":
        mean, std = mean.T, std.T
    return mean, std


def _cam(model: TrainedModel, folds: Sequence[FoldModel], inputs: dict[str, np.ndarray],
         layer: str, device: str) -> np.ndarray:
    """Grad-CAM of the last class, mean over folds, scaled to [0, 1]."""
    from lesionkit.explain import grad_cam

    specs = model.task.prediction_inputs
    cams = [grad_cam(f.network, normalised_input(f, inputs, specs, device), layer,
                     class_index=model.task.out_channels - 1) for f in folds]
    cam = np.mean(cams, axis=0)
    return cam / cam.max() if cam.max() > 0 else cam


def predict(
    model_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    tta: int | None = None,
    device: str = "auto",
    subjects: Sequence[str] | None = None,
    progress: bool = True,
    out_dir: str | os.PathLike[str] | None = None,
    trusted: tuple[str, ...] = (),
    register: bool = False,
    allow_incomplete: bool = False,
    amp: bool = False,
    sessions: Sequence[str] | None = None,
    folds: Sequence[int] | None = None,
    sources: Mapping[str, str] | None = None,
    keep_going: bool = False,
    keep_outside_brain: bool = False,
    lesions: LesionReading | None = DEFAULT_LESION_READING,
) -> list[Path]:
    """Apply a model folder to a BIDS dataset; write the predictions as BIDS derivatives.

    Each subject (each session of it, for longitudinal data) is read as
    :func:`lesionkit.data.load_subject` describes: reoriented, resampled to the model's
    voxel size, its images put on one grid, the brain mask found or computed, images
    in arbitrary units normalised per image. Voxel maps land on the first input's exact
    grid and affine, with a ``desc-uncertainty`` map when the ensemble has at least two
    members; subject outputs become one TSV row per subject (with Grad-CAM maps where
    the task's inference names a layer); per-lesion outputs become ``_lesions.tsv``
    tables and a map holding each lesion's probability. Sidecars record the sources,
    the mask, the voxel sizes and any warning. Output names keep the first input's
    acquisition entities (:data:`CARRIED_ENTITIES`, :func:`carried_entities`).

    Args:
        model_dir: Model folder written by ``train``, or a shipped model's name.
        data_dir: BIDS dataset with the task's prediction inputs (read only).
        tta: Mirror flips (1-8; default: the task's).
        device: "auto", "cpu" or "cuda".
        subjects: Subjects to predict (default: all with the inputs).
        progress: Show a progress bar.
        out_dir: Derivatives folder to write (default ``DATA_DIR/derivatives/lesionkit``).
        trusted: Modules outside lesionkit whose hook functions and strategy classes the
            model's task may name.
        register: Co-register each subject's images to its first input (dipy) instead of
            trusting their affines.
        allow_incomplete: Predict with a model folder whose training did not finish.
        amp: Mixed precision (bfloat16 on a CPU, float16 on CUDA): faster where the
            processor has bfloat16 or tensor-core units, at a small loss of precision
            (recorded in the sidecars as ``MixedPrecision``).
        sessions: Sessions to predict (labels with or without ``ses-``; default: every
            session holding the inputs); subjects without any of them are skipped.
        folds: Indices of the model folder's folds that predict every subject (default:
            for each subject the folds that did not train on it, all when every fold
            did). A fold's own training subjects predicted by that fold alone feed what
            is fitted downstream of a cross-validation fold on its training subjects
            only (a task's evaluation, for example).
        sources: The file each input path of ``data_dir`` stands for, recorded in the
            sidecars instead of that path (the links of
            :func:`lesionkit.files.dataset_of_files`).
        keep_going: A subject (session, run) whose inputs are refused is named in one line
            on stderr and the others are predicted; the error at the end lists them.
        keep_outside_brain: Keep probability maps whole instead of setting them to 0
            farther than the task's ``brain_margin_mm`` from the brain mask
            (:func:`clear_outside_brain`; the sidecars say which was done, and a computed
            mask is written beside the maps as ``label-brain_mask``).
        lesions: How a lesion probability map (:func:`is_lesion_map`) is read as lesions:
            for each, a label map of its lesions (``desc-<model>_dseg``), their table
            (``desc-<model>_lesions.tsv``: centre, volume, depth inside the brain mask,
            peak and mean probability) and
            a row of ``task-<name>_lesionload.tsv`` (lesion count and volume in mL, brain
            mask volume); None writes none of them.

    Nothing is created before the first subject's inputs are read and checked; tables of
    subject outputs are merged with an earlier table of the folder (rows of the subjects
    predicted now are replaced, the others kept).

    Returns:
        Paths written.
    """
    from rich.progress import track

    from lesionkit.shipped import alternatives, resolve_model

    device = resolve_device(device)
    model_dir = resolve_model(model_dir)
    model = load_model(model_dir, device, trusted)
    if not model.config["training"].get("complete", True) and not allow_incomplete:
        raise InputError(f"{Path(model_dir) / 'config.yaml'}: expected a finished training, "
                         "found an interrupted one (complete: false); resume it with train "
                         "--resume, or predict anyway with --allow-incomplete")
    task = model.task
    if folds is not None and (not folds or not all(0 <= i < len(model.folds) for i in folds)):
        raise InputError(f"{model.path}: expected fold indices from 0 to "
                         f"{len(model.folds) - 1}, found {list(folds)}")
    dataset = BIDSDataset(data_dir)
    units = prediction_units(dataset, task, subjects)
    if sessions:
        wanted = {s.removeprefix("ses-") for s in sessions}
        chosen = [unit for unit in units if unit[1] in wanted]
        if not chosen:
            found = sorted({f"ses-{unit[1]}" for unit in units if unit[1]}) or ["none"]
            raise InputError(f"{dataset.root}: expected sessions "
                             f"{', '.join(f'ses-{s}' for s in sorted(wanted))} holding the "
                             f"inputs of task {task.name}, found {', '.join(found)}")
        units = chosen
    if not units:
        others = alternatives(dataset, task, subjects)
        raise InputError(f"{dataset.root}: expected subjects with the inputs of task "
                         f"{task.name}, found none among {len(dataset.subjects())} subjects: "
                         f"{missing_images(dataset, task, with_targets=False)}"
                         + ("; shipped models that write the same from the images there: "
                            f"{', '.join(others)}" if others else ""))
    skipped = sorted(set(dataset.subjects()) - {unit[0] for unit in units})
    if skipped and not subjects:
        print(f"warning: {dataset.root}: skipped {len(skipped)} subject(s) without the inputs "
              f"of task {task.name}: sub-{', sub-'.join(skipped[:10])}", file=sys.stderr)
    out_root = Path(out_dir) if out_dir else dataset.root / "derivatives" / "lesionkit"
    check_output_place(dataset.root, out_root, "a predictions folder")
    if out_root.exists() and not out_root.is_dir():
        raise InputError(f"{out_root}: expected a folder for the predictions, found a file")
    remove_stale_temporaries(out_root)
    specs = prediction_specs(task)
    flip_count = tta or task.inference.flips
    layer = getattr(task.inference, "cam_layer", None)
    paths: list[Path] = []
    rows: list[dict] = []
    loads: list[dict] = []
    failed: list[str] = []
    for subject, session, run in track(units, description="predict", disable=not progress):
        subject_rows: list[dict] = []
        subject_loads: list[dict] = []
        try:
            loaded = load_subject(dataset, subject, task, specs, session, register, run)
            found = [dataset.get_run(subject, s.suffix, run, **s.query(session)) for s in specs
                     if s is not task.mask]
            first_input = next(s for s in specs if s is not task.mask)
            inputs = {s.key: loaded[s.key].data.numpy() for s in task.prediction_inputs}
            channels = sum(len(v) for v in inputs.values()) + getattr(task.inference,
                                                                      "extra_channels", 0)
            if model.config.get("in_channels") not in (None, channels):
                raise InputError(f"{found[0].path}: expected {model.config['in_channels']} input "
                                 f"channels (frames) for the model {model.path.name}, found "
                                 f"{channels}")
            label_map = (np.rint(loaded[task.lesions.key].data[0].numpy()).astype(np.int64)
                         if task.lesions is not None else None)
            chosen = (folds_for(model, subject, dataset.root) if folds is None
                      else [model.folds[i] for i in folds])
            features = None
            if task.lesion_features is not None:
                from lesionkit.lesion_features import subject_features

                features = subject_features(dataset, subject, task, task.prediction_inputs,
                                            session, run=run)
            margin = getattr(task.inference, "crop_margin", None)
            box = (brain_box(loaded["mask"].data[0].numpy(), margin)
                   if margin is not None and task.output_kind == "maps" else None)
            try:
                mean, std = predict_arrays(model, inputs, flip_count, device, label_map, chosen,
                                           features, amp=amp, box=box)
            except InputError as error:  # the network refused the input (e.g. another grid)
                raise InputError(f"{found[0].path}: {error}") from error
            margin_mm = (None if keep_outside_brain or task.output_kind != "maps"
                         else getattr(task.inference, "brain_margin_mm", None))
            cleared = [c for c, spec in enumerate(task.outputs) if spec.kind == "probability"]
            outside: dict[str, Any] = {}
            if margin_mm is not None and cleared:
                count = clear_outside_brain(mean, loaded["mask"].data[0].numpy(),
                                            loaded["mask"].spacing, margin_mm, cleared)
                clear_outside_brain(std, loaded["mask"].data[0].numpy(),
                                    loaded["mask"].spacing, margin_mm, cleared)
                outside = {"OutsideBrain": {
                    "MarginMm": margin_mm, "VoxelsCleared": count,
                    "Description": f"probabilities set to 0 farther than {margin_mm:g} mm "
                                   "from the brain mask (BrainMask) on the network's grid; "
                                   "lesionkit predict --keep-outside-brain keeps them"}}
            notes = loaded["notes"]
            if sources:  # files named with --image: the notes name them, not their links
                notes["Warnings"] = [named_as_given(w, sources) for w in notes["Warnings"]]
                notes["BrainMask"] = named_as_given(notes["BrainMask"], sources)
                for key in ("VoxelSizes", "MissingVoxels", "UnitConversions",
                            "BrightCSFRatio"):
                    if isinstance(notes.get(key), dict):
                        notes[key] = {named_as_given(k, sources): v
                                      for k, v in notes[key].items()}
            sidecar = {"ModelFolder": str(model.path), "Task": task.name,
                       "TestTimeFlips": flip_count, "Folds": len(chosen),
                       **({"FoldIndices": list(folds)} if folds is not None else {}),
                       "Sources": [(sources or {}).get(str(f.path), str(f.path)) for f in found],
                       "BrainMask": notes["BrainMask"],
                       "InputVoxelSizes": notes["VoxelSizes"],
                       **({"InputNaNVoxels": {
                           "Voxels": notes["MissingVoxels"],
                           "Description": "voxels stored as NaN (no data), read as the "
                                          "image's background (0 where 0 is in its range)"}}
                          if notes.get("MissingVoxels") else {}),
                       **({"InputUnitConversions": notes["UnitConversions"]}
                          if notes.get("UnitConversions") else {}),
                       **({"InputBrightCSFRatio": {
                           "Values": notes["BrightCSFRatio"],
                           "Description": "99th percentile of the image inside the brain "
                                          "over its median on the model's grid; a FLAIR's "
                                          "dark CSF keeps it near 1.4, a T2w's bright CSF "
                                          "above 2 (a warning above "
                                          "lesionkit.data.DARK_CSF_BOUND)"}}
                          if notes.get("BrightCSFRatio") else {}),
                       "ModelVoxelSize": list(task.spacing) if task.spacing else None,
                       **({"MixedPrecision": _precision_name(device)} if amp else {}),
                       **({"PredictedBox": {
                           "Voxels": [[b.start, b.stop] for b in box],
                           "Description": f"brain mask bounding box + {margin} voxels on the "
                                          "network's grid, its start on a multiple of 16; "
                                          "outside it 0 (or, for a map with negative "
                                          "values, the median of the box's outer faces)"}}
                          if box is not None else {}),
                       **({"Warnings": notes["Warnings"]} if notes["Warnings"] else {}),
                       "Command": shlex.join(sys.argv)}
            for warning in notes["Warnings"]:
                print(f"warning: sub-{subject}: {warning}", file=sys.stderr)
            written: list[Path] = []
            with all_or_nothing():  # a subject refused while written leaves nothing
                if not (out_root / "dataset_description.json").is_file():  # something to write
                    write_dataset_description(out_root, "lesionkit predictions",
                                              dataset_type="derivative")
                out = Written(out_root, subject, session or found[0].entities.get("ses"), run,
                               sidecar, load_volume(found[0].path, ndim=None),
                               np.asarray(loaded["mask"].affine), written,
                               carried_entities(found[0].entities, first_input.entities),
                               brain=(loaded["mask"].data[0].numpy()
                                      if notes["BrainMaskSource"] != "non-zero" else None))
                cam = ((lambda f=chosen, i=inputs: _cam(model, f, i, layer, device)) if layer
                       else None)
                WRITERS[task.output_kind](out, task, mean, std, rows=subject_rows, cam=cam,
                                          lesion_path=found[-1].path,
                                          members=flip_count * len(chosen),
                                          probability_meta=outside, lesions=lesions,
                                          load_rows=subject_loads)
                if outside and notes["BrainMaskSource"] == "computed":
                    out.save(loaded["mask"].data[0].numpy(), BRAIN_SPEC,
                             task.outputs[-1].desc, "label", "1", dtype=np.uint8, meta={
                                 "Description": "the brain mask this prediction computed and "
                                                "cleared the probability maps outside of, on "
                                                "the network's grid, nearest neighbour onto "
                                                "the input's grid"})
            paths += written
            rows += subject_rows
            brain_ml = (float(loaded["mask"].data.sum()) * float(np.prod(loaded["mask"].spacing))
                        / 1000.0)
            brain = ({"brain_volume_ml": round(brain_ml, 1)}
                     if notes["BrainMaskSource"] != "non-zero" else {})  # not a brain mask
            loads += [{**row, **brain} for row in subject_loads]
        except InputError as error:
            if not keep_going:
                raise
            failed.append(unit_label(subject, session, run))
            print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
    if rows:
        table = out_root / f"task-{task.name}_predictions.tsv"
        paths.append(write_tsv(merged_rows(table, rows), table))
    if loads:
        table = out_root / f"task-{task.name}_lesionload.tsv"
        paths.append(write_tsv(merged_rows(table, loads), table))
    if failed:
        raise InputError(f"{dataset.root}: expected every subject (session, run) predicted, "
                         f"found {len(failed)} of {len(units)} refused, each named above: "
                         f"{', '.join(failed[:10])}{' ...' if len(failed) > 10 else ''}; the "
                         f"other {len(units) - len(failed)} are written under {out_root}")
    return paths
