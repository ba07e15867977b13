"""Subjects of any task: found in a BIDS dataset and loaded as real scans arrive.

Subjects are found in a BIDS dataset through the task's image specs (truth and brain
masks in any derivatives pipeline, longitudinal sessions and repeated runs as separate
predictions) and loaded as real scans arrive: reoriented, resampled to the model's voxel
size, put on one grid, given a brain mask, images in arbitrary units normalised per
image. Training reads them through :class:`lesionkit.store.SubjectStore` (arrays on disk);
files named one by one are laid out as a dataset by :mod:`lesionkit.files`.
Normalisation statistics (:mod:`lesionkit.normalisation`) are fitted on training subjects
only, inside the brain mask, and travel with the model folder so that predictions come
back in physical units; splits by subject are :mod:`lesionkit.splits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lesionkit.bids import BIDS_NAME, UNFETCHED, BIDSDataset, BIDSFile, active_filters
from lesionkit.io import (
    InputError,
    check_values,
    load_affine,
    load_volume,
    other_format,
    sidecar_unit_factor,
)
from lesionkit.normalisation import (
    PER_IMAGE,
    per_image_zscore,
    quantiles,
    sample_values,
)
from lesionkit.tasks.task import ImageSpec, LabelSpec, Task
from lesionkit.units import example_name, example_unit, unit_scope

if TYPE_CHECKING:
    import torch
    import torchio as tio



def with_truth(task: Task, pipeline: str | None) -> Task:
    """The task reading its image targets from one derivatives pipeline (``--truth``):
    every target found in a pipeline other than lesionkit's own moves to ``pipeline``."""
    if not pipeline:
        return task
    from dataclasses import replace

    targets = tuple(replace(t, derivatives=pipeline, other_pipelines=False)
                    if isinstance(t, ImageSpec) and t.derivatives not in (None, "lesionkit")
                    else t for t in task.targets)
    return replace(task, targets=targets)


def required_specs(task: Task, with_targets: bool = True) -> tuple[ImageSpec, ...]:
    """Images a subject must have: the mask is optional (computed when absent)."""
    specs = task.image_specs if with_targets else prediction_specs(task)
    return tuple(s for s in specs if s is not task.mask)


def _candidates(dataset: BIDSDataset, specs: Sequence[ImageSpec]) -> list[str]:
    names = set(dataset.subjects())
    for pipeline in {s.derivatives for s in specs if s.derivatives}:
        names |= set(dataset.subjects(derivatives=pipeline))
    return sorted(names)


def has_images(dataset: BIDSDataset, subject: str, specs: Sequence[ImageSpec],
               session: str | None = None) -> bool:
    """Whether a subject (session) holds every one of the images."""
    return all(dataset.locate(subject, s.suffix, **s.query(session)) for s in specs)


def available_subjects(dataset: BIDSDataset, task: Task, with_targets: bool = True) -> list[str]:
    """Subjects holding every image the task needs (inputs, and targets when asked)."""
    specs = required_specs(task, with_targets)
    return [name for name in _candidates(dataset, specs) if has_images(dataset, name, specs)]


def prediction_units(dataset: BIDSDataset, task: Task, subjects: Sequence[str] | None = None
                     ) -> list[tuple[str, str | None, str | None]]:
    """(subject, session, run) triples to predict: each session that holds the task's
    prediction inputs (session None for data without sessions, or when the task's inputs
    name their sessions themselves, as 3T and 7T sessions of one example), and each run
    of it where the first input was acquired in several runs (``run-<index>``; run None
    otherwise). The other inputs are read from the same run where they have one
    (:meth:`lesionkit.bids.BIDSDataset.get_run`).

    Raises:
        InputError: a subject asked for by name lacks an input; the message lists what
            the subject has.
    """
    specs = required_specs(task, with_targets=False)
    pinned = any(s.session for s in specs)
    units = []
    for name in subjects or _candidates(dataset, specs):
        sessions = [None] if pinned else (dataset.sessions(name) or [None])
        found = [(name, ses) for ses in sessions if has_images(dataset, name, specs, ses)]
        if subjects and not found:
            for spec in specs:  # raises with the list of the subject's files
                dataset.get(name, spec.suffix, **spec.query(sessions[0]))
        units.extend((name, ses, run) for name, ses in found
                     for run in _runs(dataset, name, specs[0], ses))
    return units


def _runs(dataset: BIDSDataset, subject: str, spec: ImageSpec, session: str | None
          ) -> list[str | None]:
    """The run labels of an image when each of its files is one run of it, else [None]."""
    runs = [f.entities.get("run") for f in dataset.locate(subject, spec.suffix,
                                                           **spec.query(session))]
    if len(runs) < 2 or None in runs or len(set(runs)) < len(runs):
        return [None]
    return sorted(runs, key=lambda r: (len(r), r))


def prediction_specs(task: Task) -> tuple[ImageSpec, ...]:
    """Images read at prediction: the prediction inputs, the brain mask (when an input is
    normalised per image inside it) and, per-lesion, the lesion map."""
    per_image = any(s.normalisation in PER_IMAGE for s in task.prediction_inputs)
    mask = task.mask if per_image else None
    return task.prediction_inputs + tuple(s for s in (mask, task.lesions) if s is not None)


def expected_name(spec: ImageSpec) -> str:
    """How an image is named, e.g. ``derivatives/lesionkit/sub-<label>_desc-matched_T1map``."""
    entities = "".join(f"_{k}-{v}" for k, v in spec.entities)
    session = f"_ses-{spec.session}" if spec.session else "[_ses-<label>]"
    where = f"derivatives/{spec.derivatives}/" if spec.derivatives else ""
    return f"{where}sub-<label>{session}{entities}_{spec.suffix}.nii[.gz]"


def missing_images(dataset: BIDSDataset, task: Task, with_targets: bool = True) -> str:
    """What the dataset's subjects lack for the task: the image most of them miss, how
    many miss it, and the command that writes it (``ImageSpec.made_by``)."""
    specs = required_specs(task, with_targets)
    names = _candidates(dataset, specs)
    if not names:
        return dataset.without_subjects()
    counts = [(sum(not dataset.locate(n, s.suffix, **s.query()) for n in names), s)
              for s in specs]
    count, spec = max(counts, key=lambda c: c[0]) if counts else (0, None)
    if spec is None or count == 0:
        return f"every image in {len(names)} subjects"
    made = f"; {spec.made_by} writes it" if spec.made_by else ""
    chosen = " ".join(f"--bids-filter {f}" for f in active_filters())
    made += f" (read with {chosen})" if chosen else ""
    misnamed = [] if spec.derivatives else dataset.misnamed(spec.suffix)
    if misnamed:
        made += (f"; {len(misnamed)} file(s) named like it are not BIDS names and are not "
                 f"read, e.g. {misnamed[0].relative_to(dataset.root)} ({BIDS_NAME})")
    others = [] if spec.derivatives else dataset.other_formats(spec.suffix)
    if others:
        made += (f"; {len(others)} file(s) of it in another format are not read, e.g. "
                 f"{others[0].relative_to(dataset.root)}, {other_format(others[0])}")
    links = [f for n in names for f in dataset.unfetched(n, spec.suffix, **spec.query())]
    if links:
        made += (f"; in {len(links)} of them a link to content that is not here "
                 f"({links[0].path.name}, ...; {UNFETCHED})")
    return f"{expected_name(spec)} missing in {count} of {len(names)} subjects{made}"


def training_subjects(dataset: BIDSDataset, task: Task) -> list[str]:
    """Subjects with every image the task needs that also pass the task's ``train_on``."""
    names = available_subjects(dataset, task)
    if not task.train_on:
        return names
    table = dataset.participants()
    ids = table["participant_id"].str.removeprefix("sub-")
    keep = np.ones(len(table), bool)
    for column, values in task.train_on.items():
        if column not in table.columns:
            raise InputError(f"{dataset.root / 'participants.tsv'}: expected a {column!r} "
                             f"column, found {list(table.columns)}")
        keep &= table[column].isin(values).to_numpy()
    allowed = set(ids[keep])
    return [name for name in names if name in allowed]


def session_examples(dataset: BIDSDataset, task: Task, subjects: Sequence[str]) -> list[str]:
    """Every session of the subjects that holds each image the task needs, as example
    names ("p01_ses-1", "p01_ses-2"); a subject without sessions is one example ("p02")."""
    specs = required_specs(task)
    examples = []
    for subject in subjects:
        for session in dataset.sessions(subject) or [None]:
            with unit_scope(session=session):
                if has_images(dataset, subject, specs):
                    examples.append(example_name(subject, session))
    return examples


def with_spacing(dataset: BIDSDataset, task: Task, subjects: Sequence[str]) -> Task:
    """The task with its network voxel size set: its own, else the median voxel size (mm)
    of the subjects' first input (from the file headers)."""
    if task.spacing is not None:
        return task
    from dataclasses import replace

    from lesionkit.geometry import median_voxel_size

    spec = task.inputs[0]
    affines = []
    for name in subjects:
        subject, session = example_unit(name)
        with unit_scope(session=session):
            affines += [load_affine(f.path) for f in dataset.locate(subject, spec.suffix,
                                                                     **spec.query())]
    return replace(task, spacing=median_voxel_size(affines))


def subject_labels(dataset: BIDSDataset, subject: str, task: Task) -> dict[str, int]:
    """Class indices of the task's participants.tsv targets for one subject."""
    values: dict[str, int] = {}
    specs = [t for t in task.targets if isinstance(t, LabelSpec)]
    if not specs:
        return values
    table = dataset.participants()
    row = table[table["participant_id"].isin([f"sub-{subject}", subject])]
    for spec in specs:
        if spec.column not in table.columns:
            raise InputError(f"{dataset.root / 'participants.tsv'}: expected a {spec.column!r} "
                             f"column, found {list(table.columns)}")
        value = row[spec.column].iloc[0] if len(row) else None
        value = value if isinstance(value, str) else "n/a"  # read as text; NaN where n/a
        if value not in spec.classes:
            raise InputError(f"{dataset.root / 'participants.tsv'}: expected {spec.column} in "
                             f"{spec.classes} for sub-{subject}, found {value!r}")
        values[spec.key] = spec.classes.index(value)
    return values


def check_truth_grid(path: Path, shape: Sequence[int], affine: np.ndarray, input_path: Path,
                     input_shape: Sequence[int], input_affine: np.ndarray,
                     tolerance: float = 0.01) -> None:
    """Refuse truth (a target, mask or lesion map) that is visibly off its input's grid.

    Truth on another voxel size or orientation is resampled by its affine (truth drawn in
    world space). Truth with the input's voxel size and orientation must hold the input's
    grid: same origin (within ``tolerance`` of a voxel) when the shapes agree, and the
    whole input field of view otherwise. A shifted header or a cropped image otherwise
    trains on misplaced truth without a word.

    Raises:
        InputError: The truth is shifted from, or does not cover, the input's grid.
    """
    if not np.allclose(affine[:3, :3], input_affine[:3, :3], atol=1e-4):
        return
    offset = np.linalg.solve(affine[:3, :3], input_affine[:3, 3] - affine[:3, 3])
    size = np.abs(np.diag(affine[:3, :3])).max()
    if tuple(shape) == tuple(input_shape) and np.abs(offset).max() > tolerance:
        raise InputError(f"{path}: expected the grid of {input_path.name} (same shape and voxel "
                         f"size), found it shifted by {np.abs(offset).max() * size:.3g} mm; "
                         "resample it onto the input's grid if the shift is real")
    end = offset + np.asarray(input_shape) - 1
    if (offset < -tolerance).any() or (end > np.asarray(shape) - 1 + tolerance).any():
        raise InputError(f"{path}: expected it to cover the field of view of {input_path.name} "
                         f"(shape {tuple(input_shape)}), found shape {tuple(shape)} at voxel "
                         f"offset {tuple(np.round(offset, 2))}")


def _passed_over_warnings(found: BIDSFile, spec: ImageSpec) -> list[str]:
    """A line for an input read although it carries an entity its spec prefers absent
    (a post-contrast T1w read where the subject has no other): the model learnt without it."""
    carried = [f"{k}-{found.entities[k]}" for k in spec.prefer_without if k in found.entities]
    if not carried:
        return []
    return [f"{found.path.name}: read as the {spec.suffix}, although it carries "
            f"{', '.join(carried)} and the model learnt from images without it (no "
            f"{spec.suffix} without it was found)"]


def _alignment_warnings(image: tio.ScalarImage, reference: tio.ScalarImage, where: str,
                        reference_name: str) -> list[str]:
    """A warning when two weighted images on one grid look displaced by a few mm.

    Raises:
        InputError: when they look displaced by a centimetre or more (another session,
            another frame): a prediction from them would be wrong without a word.
    """
    from lesionkit import geometry

    shift = geometry.misalignment_mm(image, reference)
    name, reference_name = Path(where).name, Path(reference_name).name
    if np.isnan(shift):
        return [f"{name}: its alignment with {reference_name} was not checked (the field "
                f"of view spans fewer than {2 * max(geometry.CHECK_FACTORS)} voxels of "
                f"{geometry.CHECK_VOXEL_MM:g} mm along an axis)"]
    if shift >= geometry.SHIFT_ERROR_MM:
        raise InputError(f"{where}: expected an image aligned with {reference_name} in world "
                         f"space, found it displaced by about {shift:.0f} mm (rigid "
                         "co-registration estimate); co-register the images, or use "
                         "--register")
    if shift >= geometry.SHIFT_WARNING_MM:
        return [f"{name}: displaced from {reference_name} by about {shift:.1f} mm (rigid "
                "co-registration estimate); --register co-registers them"]
    return []


def load_subject(dataset: BIDSDataset, subject: str, task: Task, specs: Sequence[ImageSpec],
                 session: str | None = None, register: bool = False, run: str | None = None
                 ) -> tio.Subject:
    """A TorchIO subject with the given images (raw units), keyed by spec key.

    Every image is reoriented to RAS+; the first is resampled to the task's ``spacing``
    and the others onto its grid (:mod:`lesionkit.geometry`). A weighted input (arbitrary
    units) stored on another grid than a weighted first input is checked for a displacement
    the affines do not know (:func:`lesionkit.geometry.misalignment_mm`): a warning from
    3 mm, an :class:`InputError` from 10 mm, unless ``register``. 4D series become
    channels. The brain mask is stored under ``"mask"``: the dataset's when it has one, else
    computed from the first input (:func:`_computed_mask`: on its own grid when that is
    fine enough, else on the model's); when the
    mask spec is not among ``specs`` (a task without one, or prediction without per-image
    normalisation), the non-zero voxels of the first input. Inputs normalised per
    image (``image-zscore``) are skull-stripped with the mask and normalised here. The
    task's preprocessing transforms are applied last. ``subject["notes"]`` says what was
    done (mask source: ``BrainMask`` in words, ``BrainMaskSource`` "dataset", "computed"
    or "non-zero"; voxel sizes, warnings) for the outputs' sidecars; an input whose
    field of view holds less than ``geometry.MIN_BRAIN_COVERAGE`` of the brain mask is
    named in a warning. Voxels an input stores as NaN (no data: SPM's and FSL's
    convention) read as its background (:func:`lesionkit.io.load_volume`); their count
    goes to the notes, and a warning when they, with the field of view, leave less than
    that share of the brain.

    Args:
        dataset: The BIDS dataset.
        subject: Subject label (without ``sub-``).
        task: Says which images are inputs, the mask and the voxel size.
        specs: The images to read; the first one gives the grid.
        session: Session to read where the specs name none.
        register: Co-register intensity images to the first one (dipy) instead of
            trusting their affines.
        run: Run to read where an image has several (:meth:`BIDSDataset.get_run`).
    """
    import torch
    import torchio as tio

    from lesionkit import geometry

    images, sources = {}, {}
    notes: dict[str, Any] = {"VoxelSizes": {}, "MissingVoxels": {}, "Warnings": []}
    missing: dict[str, tuple] = {}  # inputs holding NaN: file grid and valid voxels
    first_input = None
    for spec in specs:
        if spec is task.mask and not dataset.locate(subject, spec.suffix, **spec.query(session)):
            continue  # computed below
        found = dataset.get_run(subject, spec.suffix, run, **spec.query(session))
        path = found.path
        volume = load_volume(path, kind=spec.kind, unit=spec.unit, ndim=spec.ndim)
        data = np.asarray(volume.data, dtype=np.float32)
        factor, stated = sidecar_unit_factor(path, found.sidecar, spec.unit)
        if factor != 1.0:  # BIDS's seconds and ppm -> the task's ms and ppb
            data = data * np.float32(factor)
            notes.setdefault("UnitConversions", {})[path.name] = (
                f"{stated} (its sidecar) -> {spec.unit}: x {factor:g}")
        is_input = spec in task.inputs or spec in task.prediction_inputs
        if is_input and volume.missing is not None:  # NaN in the file: no data there
            absent = volume.missing if volume.missing.ndim == 3 else volume.missing.any(-1)
            missing[spec.key] = (data.shape[:3], volume.affine, ~absent)
            notes["MissingVoxels"][path.name] = int(absent.sum())
        if is_input:
            check_values(path, data, spec.unit, spec.kind)
            geometry.check_extent(path, data.shape[:3], volume.affine,
                                  task.spacing if first_input is None else None)
            first_input = first_input or (path, data.shape[:3], volume.affine)
        elif first_input is not None:
            check_truth_grid(path, data.shape[:3], volume.affine, *first_input)
        data = data[None] if data.ndim == 3 else np.moveaxis(data, -1, 0)
        image_type = tio.LabelMap if spec.kind == "label" else tio.ScalarImage
        image = image_type(tensor=torch.from_numpy(np.ascontiguousarray(data)),
                           affine=volume.affine)
        images[spec.key], sources[spec.key] = geometry.canonical(image), str(path)
        size = geometry.voxel_size(volume.affine)
        notes["VoxelSizes"][path.name] = [round(v, 3) for v in size]
        if spec in task.inputs or spec in task.prediction_inputs:
            warning = geometry.thickness_warning(path.name, size, task.spacing)
            notes["Warnings"] += [warning] if warning else []
            notes["Warnings"] += _passed_over_warnings(found, spec)
    first = specs[0].key
    first_grid = (images[first].spatial_shape, images[first].affine)
    native = images[first]
    images[first] = geometry.at_voxel_size(images[first], task.spacing)
    weighted = {s.key for s in task.inputs + task.prediction_inputs  # not maps with units
                if s.normalisation in PER_IMAGE and s.unit == "a.u."}
    input_keys = {s.key for s in task.inputs + task.prediction_inputs}
    grids = {key: (image.spatial_shape, image.affine, None) for key, image in images.items()
             if key != first and key in input_keys}
    grids.update(missing)
    for key, image in images.items():
        if key == first:
            continue
        moved = geometry.onto_grid(image, images[first], sources[key], sources[first],
                                   register)
        if (not register and {first, key} <= weighted
                and not geometry.same_grid(image, *first_grid)):
            notes["Warnings"] += _alignment_warnings(moved, images[first], sources[key],
                                                     sources[first])
        images[key] = moved
    reference = images[first]
    wanted = task.mask is not None and task.mask in specs
    if wanted and task.mask.key in images:
        mask = images.pop(task.mask.key).data > 0.5
        notes["BrainMask"] = f"dataset: {sources[task.mask.key]}"
        notes["BrainMaskSource"] = "dataset"
    elif wanted:
        mask, notes["BrainMask"] = _computed_mask(native, reference, sources[first])
        notes["BrainMaskSource"] = "computed"
    else:
        mask = (reference.data != 0).any(0, keepdim=True)
        notes["BrainMask"] = f"non-zero voxels of {sources[first]}"
        notes["BrainMaskSource"] = "non-zero"
    for key, (shape, affine, valid) in grids.items():
        share = geometry.brain_coverage(mask[0].numpy(), reference.affine, shape, affine, valid)
        warning = geometry.coverage_warning(Path(sources[key]).name, Path(sources[first]).name,
                                            share, 0 if valid is None else int((~valid).sum()))
        notes["Warnings"] += [warning] if warning else []
    if not notes["MissingVoxels"]:
        del notes["MissingVoxels"]
    for spec in specs:
        if spec.key in images and spec.suffix in DARK_CSF_BOUND:
            name = Path(sources[spec.key]).name
            ratio = bright_csf_ratio(images[spec.key].data, mask[0])
            notes.setdefault("BrightCSFRatio", {})[name] = (
                None if ratio is None else round(ratio, 3))
            warning = contrast_warning(ratio, spec.suffix, name)
            notes["Warnings"] += [warning] if warning else []
    for spec in specs:
        if spec.normalisation in PER_IMAGE and spec.key in images:
            images[spec.key].set_data(per_image_zscore(images[spec.key].data, mask[0]))
    images["mask"] = tio.LabelMap(tensor=mask.to(torch.uint8), affine=reference.affine)
    result = tio.Subject(**images, subject_id=subject, notes=notes)
    if task.preprocess:
        result = tio.Compose([t.build() for t in task.preprocess])(result)
    return result


def _computed_mask(native: tio.Image, reference: tio.Image, source: str
                   ) -> tuple[torch.Tensor, str]:
    """The brain mask of the first input on the model's grid (``reference``), and how it
    was made (:func:`lesionkit.brainmask.brain_mask`).

    BET reads the scan on its own grid (``native``, reoriented) when no voxel edge of it
    is longer than BET's working grid (:data:`lesionkit.brainmask.WORK_SPACING_MM`), as
    FSL's BET is run on a 1 mm scan, and the mask is then moved onto the model's grid;
    a coarser scan (2D slices of 3-6 mm) is read on the model's grid. On a 1 mm 3D FLAIR
    BET fitted to its 2 mm resample leaked below the temporal lobes (docs/real-data.md,
    "One real FLAIR as scanned").
    """
    import torch

    from lesionkit import geometry
    from lesionkit.brainmask import WORK_SPACING_MM, brain_mask

    own = max(geometry.voxel_size(native.affine)) <= WORK_SPACING_MM
    image = native if own else reference
    computed, how = brain_mask(image.data.float().mean(0).numpy(), image.affine,
                               source=source)
    verb = "fitted" if how.startswith("computed") else "read"  # BET, or non-zero voxels
    if not own:
        return torch.from_numpy(computed[None]), f"{how}; {verb} on the model's grid"
    size = " x ".join(f"{v:.2g}" for v in geometry.voxel_size(native.affine))
    return (geometry.mask_onto(computed, native, reference),
            f"{how}; {verb} on the image's own grid ({size} mm), then moved onto the "
            "model's grid")


#: Images whose cerebrospinal fluid is dark, by suffix: their :func:`bright_csf_ratio` on
#: the model's grid stays below this (the four real FLAIRs of docs/real-data.md 1.33-1.42,
#: 22 phantom FLAIRs of fixed and drawn protocols 1.22-1.54), where a T2w's bright CSF
#: puts it at 2.12-2.32 (the real T2ws read as the FLAIR; ``python
#: benchmarks/real_patients.py contrast``).
DARK_CSF_BOUND: dict[str, float] = {"FLAIR": 1.9}


def bright_csf_ratio(data: Any, mask: Any) -> float | None:
    """The 99th percentile of an image inside its brain mask over its median (None for an
    empty mask or a median at or below 0): near 1.4 for a FLAIR, whose CSF is dark, above
    2 for a T2w (:data:`DARK_CSF_BOUND`). An image stored with an offset (negative
    values) is read from its floor, as the brain mask reads it
    (:data:`lesionkit.brainmask.FLOOR_PERCENTILE`), so the offset does not change it.

    Args:
        data: (C, X, Y, Z) image in its stored intensities.
        mask: (X, Y, Z) brain mask.
    """
    from lesionkit.brainmask import FLOOR_PERCENTILE

    inside = sample_values(data[:, mask].float())
    if inside.numel() == 0:
        return None
    floor = min(quantiles(sample_values(data.float()), [FLOOR_PERCENTILE / 100])[0], 0.0)
    median, bright = (value - floor for value in quantiles(inside, [0.5, 0.99]))
    return bright / median if median > 0 else None


def contrast_warning(ratio: float | None, suffix: str, name: str) -> str | None:
    """A warning when an image read as ``suffix`` has bright CSF (a T2w under a FLAIR's
    name, which a lesion model reads as lesions all along the ventricles), else None.

    Args:
        ratio: Its :func:`bright_csf_ratio`.
        suffix: The image's BIDS suffix, a key of :data:`DARK_CSF_BOUND`.
        name: The file's name, for the warning.
    """
    bound = DARK_CSF_BOUND[suffix]
    if ratio is None or ratio <= bound:
        return None
    return (f"{name}: expected a {suffix} (dark CSF: the brightest 1 % of the brain below "
            f"{bound:g} times its median), found {ratio:.2f} times: is it a T2w or "
            f"another contrast? Bright CSF would be read as lesion")
