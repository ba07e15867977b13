"""``lesionkit changes`` on a predictions folder: each session of a subject against the one
before it, registered, read (:func:`lesionkit.changes.lesion_changes`) and written, and
scored against a change truth where one is given.

For each pair the baseline's image (the first input its map was predicted from) is
rigidly co-registered onto the follow-up's (:func:`register_sessions`) and moved with its
lesion map onto the follow-up's grid; the changes are written beside the follow-up's map
(``desc-<model>change_dseg.nii.gz``, its sidecar and table) and a row per pair in
``task-<model>_lesionchange.tsv``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.changes import (
    CHANGE_COLUMNS,
    KINDS,
    ChangeReading,
    lesion_changes,
    score_changes,
)
from lesionkit.io import InputError, instead_of_folder
from lesionkit.session_maps import (
    SessionMap,
    brain_of,
    image_of,
    lesion_maps,
    session_order,
    sidecar_of,
    sources_of,
    with_earlier,
)

#: Voxel edge (mm) of the grid on which the two sessions are co-registered when theirs is
#: finer, and the pyramid's downsampling factors there.
REGISTRATION_MM = 1.5
REGISTRATION_FACTORS = (4, 2, 1)
#: Share of a follow-up voxel that must lie inside the moved baseline's field of view
#: (linear interpolation of ones) for the two sessions to be compared there.
COVERED = 0.999
#: The defaults of the reading.
DEFAULT_READING = ChangeReading()
#: Columns of the scores against a change truth (``task-<model>_changescores.tsv``).
SCORE_COLUMNS = ("participant_id", "session_id", "baseline_session_id", "model", "truth",
                 "true_changes", "found", "sensitivity", "calls", "false_calls", "ppv", "f1",
                 "dice", *(f"{kind}_{what}" for kind in KINDS for what in ("true", "found")),
                 *(f"{d}_{what}" for d in ("increase", "decrease") for what in ("calls", "false")))


def _on_grid(matrix: np.ndarray, moving: Any, static: Any) -> Any:
    from dipy.align.imaffine import AffineMap

    return AffineMap(matrix, domain_grid_shape=static.shape[:3], domain_grid2world=static.affine,
                     codomain_grid_shape=moving.shape[:3],
                     codomain_grid2world=moving.affine)


def register_sessions(baseline: Any, followup: Any, brain: np.ndarray) -> np.ndarray:
    """The rigid transform from the follow-up's world to the baseline's (see
    :func:`lesionkit.geometry.rigid_matrix`), estimated on grids of at most
    ``REGISTRATION_MM`` voxels, inside the follow-up's brain mask."""
    from nibabel.processing import resample_to_output

    from lesionkit.geometry import rigid_matrix, voxel_size
    from lesionkit.io import nifti_image

    def coarse(data: np.ndarray, affine: np.ndarray, order: int) -> Any:
        image = nifti_image(np.asarray(data, np.float32), affine)
        if min(voxel_size(affine)) >= REGISTRATION_MM:
            return image
        return resample_to_output(image, voxel_sizes=REGISTRATION_MM, order=order)

    static = coarse(followup.data, followup.affine, 1)
    moving = coarse(baseline.data, baseline.affine, 1)
    mask = coarse(brain.astype(np.float32), followup.affine, 0)
    return rigid_matrix(np.asarray(moving.dataobj), moving.affine, np.asarray(static.dataobj),
                        static.affine, static_mask=np.asarray(mask.dataobj) > 0.5,
                        factors=REGISTRATION_FACTORS)


def _shift_mm(matrix: np.ndarray, brain: np.ndarray, affine: np.ndarray) -> float:
    """Mean displacement (mm) of the brain's voxels by the transform."""
    points = np.argwhere(brain)[::11]
    if not len(points):
        return 0.0
    world = points @ affine[:3, :3].T + affine[:3, 3]
    moved = world @ matrix[:3, :3].T + matrix[:3, 3]
    return float(np.linalg.norm(moved - world, axis=1).mean())


def _check_comparable(brain: np.ndarray, brain_source: str, follow_image: Any,
                      base_image: Any, followup: SessionMap, baseline: SessionMap) -> None:
    """Refuse, before registering them, a follow-up brain mask too small to be a brain
    (under ``PLAUSIBLE_VOLUME_ML[0]``, the bound of every computed mask) and an image with
    no contrast (inside that brain at follow-up; anywhere at baseline).

    Raises:
        InputError: naming the mask or the map whose image it is.
    """
    from lesionkit.brainmask import PLAUSIBLE_VOLUME_ML

    voxel_ml = abs(float(np.linalg.det(np.asarray(follow_image.affine)[:3, :3]))) / 1000.0
    volume_ml = float(brain.sum()) * voxel_ml
    if volume_ml < PLAUSIBLE_VOLUME_ML[0]:
        raise InputError(f"{brain_source}: expected the follow-up's brain mask "
                         f"({followup.path.name}) of at least {PLAUSIBLE_VOLUME_ML[0]:.0f} mL, "
                         f"found {volume_ml:.1f} mL")
    for session_map, values in ((followup, np.asarray(follow_image.data)[brain]),
                                (baseline, np.asarray(base_image.data))):
        low, high = np.percentile(values, [2, 98])
        if not high > low:
            where = " inside the brain" if session_map is followup else ""
            raise InputError(f"{session_map.path}: expected its image "
                             f"({sources_of(session_map.path)[0]}) to have contrast{where}, "
                             f"found 2nd and 98th percentiles both {low:g}")


def compare_sessions(baseline: SessionMap, followup: SessionMap, out_dir: Path,
                     reading: ChangeReading = DEFAULT_READING) -> tuple[list[Path], dict]:
    """Read the lesion changes from ``baseline`` to ``followup``; write their label map,
    its sidecar and its table beside where the follow-up's map would lie under
    ``out_dir``.

    Returns:
        The files written and the pair's row of the summary table.

    Raises:
        InputError: a map or its first input is missing or unreadable, or the two do not
            share a grid.
    """
    from lesionkit.bids import build_name, parse_name
    from lesionkit.io import load_volume, save_volume, write_json, write_tsv

    follow_map = load_volume(followup.path, kind="probability")
    base_map = load_volume(baseline.path, kind="probability")
    follow_image = load_volume(image_of(followup, follow_map.shape), ndim=None)
    base_image = load_volume(image_of(baseline, base_map.shape), ndim=None)
    follow_image, base_image = (v.with_data(np.asarray(v.data, np.float32).mean(-1))
                                if np.ndim(v.data) == 4 else v
                                for v in (follow_image, base_image))
    brain, brain_source = brain_of(followup, follow_image)
    _check_comparable(brain, brain_source, follow_image, base_image, followup, baseline)
    try:
        matrix = register_sessions(base_image, follow_image, brain)
    except (ValueError, np.linalg.LinAlgError) as error:
        raise InputError(f"{baseline.path}: expected its image to register onto the "
                         f"follow-up's ({followup.path}), found that the rigid registration "
                         f"failed ({error})") from error
    mapping = _on_grid(matrix, base_image, follow_image)
    moved_image = mapping.transform(np.asarray(base_image.data, np.float32))
    moved_map = np.clip(mapping.transform(np.asarray(base_map.data, np.float32)), 0, 1)
    # Only where the baseline scan was acquired: past its field of view the moved image
    # is 0, which would read as everything there having brightened.
    covered = mapping.transform(np.ones(base_image.shape[:3], np.float32)) >= COVERED
    compared = brain & covered
    coverage = float(compared.sum()) / max(int(brain.sum()), 1)
    try:
        changes = lesion_changes(np.asarray(follow_map.data, np.float32), moved_map,
                                 np.asarray(follow_image.data, np.float32), moved_image,
                                 compared, follow_map.affine, reading)
    except ValueError as error:
        where = ("" if coverage == 1.0 else f" (the moved baseline's field of view covers "
                 f"{100 * coverage:.1f} % of the follow-up's brain mask)")
        raise InputError(f"{followup.path}: expected two sessions whose images can be "
                         f"compared, found that {error}{where}") from error
    entities, _, extension = parse_name(followup.path.name)  # type: ignore[misc]
    relative = followup.path.parent.relative_to(followup.path.parents[2])
    desc = f"{entities.get('desc', '')}change"
    folder = Path(out_dir) / f"sub-{followup.subject}" / relative
    label_path = folder / build_name({**entities, "desc": desc}, "dseg", extension)
    table_path = label_path.with_name(label_path.name.removesuffix(extension) + ".tsv")
    shift = _shift_mm(matrix, brain, follow_map.affine)
    save_volume(follow_map.with_data(changes.labels, kind="label"), label_path,
                dtype=np.int32)
    sidecar = {
        "Description": (
            "lesion changes since the baseline session, numbered by decreasing volume (their "
            f"table: {table_path.name}): voxels that are lesion at follow-up and not at "
            f"baseline and at least {reading.z_threshold:g} robust SD brighter (new or "
            "enlarging), and voxels that are lesion at baseline and not at follow-up and at "
            "least as much darker (shrinking or resolved), in 26-connected components of at "
            f"least {reading.min_ml:g} mL; lesions: components of the map reaching at least "
            f"{reading.min_depth_mm:g} mm inside the brain mask; baseline rigidly "
            "co-registered (dipy, mutual information)"),
        "BaselineSession": baseline.session, "FollowUpSession": followup.session,
        "Sources": [str(baseline.path), str(followup.path)],
        "Images": [str(image_of(baseline, base_map.shape)),
                   str(image_of(followup, follow_map.shape))],
        "BrainMask": brain_source, "LesionThreshold": reading.threshold,
        "ChangeZThreshold": reading.z_threshold, "MinChangeVolumeMl": reading.min_ml,
        "MinLesionDepthMm": reading.min_depth_mm,
        "DifferenceSD": round(changes.noise_sd, 4),
        "RegistrationShiftMm": round(shift, 2),
        "BrainCompared": round(coverage, 4),
        "BaselineToFollowUp": np.round(np.linalg.inv(matrix), 5).tolist(),
        "Changes": {kind: changes.counts[kind] for kind in KINDS},
    }
    sidecar_path = write_json(sidecar, label_path.with_name(
        label_path.name.removesuffix(extension) + ".json"))
    write_tsv(changes.rows, table_path, columns=CHANGE_COLUMNS)
    row = {"participant_id": f"sub-{followup.subject}", "session_id": f"ses-{followup.session}",
           "baseline_session_id": f"ses-{baseline.session}",
           **{k: v for k, v in followup.entities if k not in ("label", "desc")},
           **{kind: changes.counts[kind] for kind in KINDS},
           **{f"{kind}_volume_ml": changes.volumes_ml[kind] for kind in KINDS},
           "registration_shift_mm": round(shift, 2), "difference_sd": round(changes.noise_sd, 4),
           "brain_compared": round(coverage, 4),
           "model": str(sidecar_of(followup.path).get("Task") or entities.get("desc", "lesion")),
           "lesion_threshold": reading.threshold,
           "z_threshold": reading.z_threshold, "min_change_ml": round(reading.min_ml, 4),
           "min_lesion_depth_mm": reading.min_depth_mm}
    return [label_path, sidecar_path, table_path], row



def _truth_of(dataset: Any, subject: str, session: str, pipeline: str | None) -> Any:
    """The subject's change truth of ``session`` (``label-change_dseg``, else
    ``label-change_mask``) in ``pipeline`` (default: the one derivatives pipeline holding
    it), or None."""
    for suffix in ("dseg", "mask"):
        found = dataset.locate(subject, suffix, derivatives=pipeline,
                               other_pipelines=pipeline is None, session=session,
                               label="change")
        if found:
            return found[0]
    return None


def score(label_paths: Sequence[Path], data_dir: str | os.PathLike[str],
          pipeline: str | None = None, model: str = "n/a") -> list[dict[str, Any]]:
    """Score change maps :func:`compare` wrote (of one ``model``) against the change truth
    of ``data_dir`` (:func:`score_changes`), put on each map's grid (nearest neighbour)
    where it lies on another.

    Returns:
        A row per change map with a truth (:data:`SCORE_COLUMNS`).

    Raises:
        InputError: no map has a truth, or a truth is unreadable.
    """
    import csv

    from nibabel.processing import resample_from_to

    from lesionkit.bids import BIDSDataset, parse_name
    from lesionkit.io import load_volume, nifti_image

    dataset = BIDSDataset(data_dir)
    rows = []
    for path in label_paths:
        entities = parse_name(path.name)[0]  # type: ignore[index]
        sidecar = sidecar_of(path)
        truth_file = _truth_of(dataset, entities["sub"], entities["ses"], pipeline)
        if truth_file is None:
            continue
        calls = load_volume(path, kind="label")
        truth = load_volume(truth_file.path, kind="label")
        if truth.shape[:3] != calls.shape[:3] or not np.allclose(truth.affine, calls.affine,
                                                                   atol=1e-3):
            truth = truth.with_data(np.asarray(resample_from_to(
                nifti_image(np.asarray(truth.data, np.float32), truth.affine),
                (calls.shape[:3], calls.affine), order=0).dataobj), kind="label")
        with path.with_name(path.name.removesuffix(".nii.gz").removesuffix(".nii")
                            + ".tsv").open(newline="") as handle:
            kinds = {int(r["label"]): r["change"] for r in csv.DictReader(handle,
                                                                          delimiter="\t")}
        rows.append({
            "participant_id": f"sub-{entities['sub']}", "session_id": f"ses-{entities['ses']}",
            "baseline_session_id": f"ses-{sidecar.get('BaselineSession', 'n/a')}",
            "model": model, "truth": str(truth_file.path),
            **score_changes(np.asarray(calls.data).astype(np.int64), kinds,
                            np.rint(np.asarray(truth.data)).astype(np.int64),
                            coded=truth_file.path.name.split("_")[-1].startswith("dseg"))})
    if not rows:
        raise InputError(f"{dataset.root}: expected a change truth "
                         "(sub-<label>_ses-<label>_label-change_dseg or _mask) of a session "
                         f"whose changes were read, found none for {len(label_paths)} map(s)")
    return rows


def compare(predictions: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None,
            subjects: Sequence[str] | None = None, sessions: Sequence[str] | None = None,
            reading: ChangeReading = DEFAULT_READING,
            progress: Any = None, earlier: str | os.PathLike[str] | None = None,
            truth: str | os.PathLike[str] | None = None, truth_pipeline: str | None = None
            ) -> tuple[list[Path], Path]:
    """Read the lesion changes of every subject with lesion maps of two or more sessions
    in a predictions folder: each session against the one before it.

    Args:
        predictions: The folder ``lesionkit predict`` wrote, or the dataset whose
            ``derivatives/lesionkit`` it wrote (predict's default).
        out_dir: Where to write (default: the maps' folder), as BIDS derivatives.
        subjects: Subject labels (default: all).
        sessions: Sessions in time order (default: ``sessions.tsv`` ``acq_time``, else
            their labels' order).
        reading: Thresholds.
        progress: Called with each pair's description before it is read.
        earlier: A folder of maps written before (the BIDS app's OUTPUT_DIR, when each
            session is its own job): its other sessions of the same subjects and models
            are paired with those of ``predictions``; pairs of its own sessions alone are
            not read again. Outputs still go to ``out_dir``.
        truth: A dataset holding change truths (``label-change_dseg`` or ``_mask`` of the
            later session, :func:`score`): the changes read are scored against them in
            ``task-<model>_changescores.tsv``.
        truth_pipeline: Its derivatives pipeline (default: the one holding them).

    Returns:
        The files written and the summary table ``task-<model>_lesionchange.tsv``.

    Raises:
        InputError: no subject has lesion maps of two sessions, a pair cannot be read, or
            ``truth`` holds no change truth of the pairs read (their changes are written).
    """
    from lesionkit.io import all_or_nothing, write_tsv

    predictions = Path(predictions)
    if not predictions.is_dir():
        raise InputError(f"{predictions}: expected the predictions folder of lesionkit "
                         f"predict, found {instead_of_folder(predictions)}")
    groups = lesion_maps(predictions, subjects)
    beneath = predictions / "derivatives" / "lesionkit"  # predict's default beside the data
    if not groups and beneath.is_dir():
        predictions, groups = beneath, lesion_maps(beneath, subjects)
    out = Path(out_dir) if out_dir is not None else predictions
    mine = {m.path for maps in groups.values() for m in maps}
    groups = with_earlier(groups, None if earlier is None else Path(earlier), subjects)
    pairs = []
    for maps in groups.values():
        ordered = session_order(maps, sessions)
        pairs += [pair for pair in itertools.pairwise(ordered)
                  if pair[0].path in mine or pair[1].path in mine]
    if not pairs:
        found = sorted({m.session for maps in groups.values() for m in maps})
        named = f" named by --sessions ({', '.join(sessions)})" if sessions else ""
        raise InputError(f"{predictions}: expected lesion probability maps "
                         f"(*_label-lesion_*_probseg.nii.gz) of two or more sessions{named} "
                         f"of a subject, found {len(groups)} subject map set(s) in session(s) "
                         f"{', '.join(found) or 'none'}")
    if truth is not None:
        from lesionkit.bids import BIDSDataset

        BIDSDataset(truth)  # a missing truth folder is said before any pair is read
    written: list[Path] = []
    rows: dict[str, list[dict]] = {}
    label_maps: dict[str, list[Path]] = {}
    for baseline, followup in pairs:
        if progress is not None:
            progress(f"sub-{followup.subject}: ses-{baseline.session} -> ses-{followup.session}")
        with all_or_nothing():
            paths, row = compare_sessions(baseline, followup, out, reading)
        written += paths
        rows.setdefault(row["model"], []).append(row)
        label_maps.setdefault(row["model"], []).append(paths[0])
    tables = [write_tsv(model_rows, out / f"task-{model}_lesionchange.tsv")
              for model, model_rows in rows.items()]
    if truth is not None:
        tables += [write_tsv(score(paths, truth, truth_pipeline, model),
                             out / f"task-{model}_changescores.tsv", columns=SCORE_COLUMNS)
                   for model, paths in label_maps.items()]
    if not (out / "dataset_description.json").is_file():  # another --out-dir: a derivative
        from lesionkit.bids import write_dataset_description

        tables.append(write_dataset_description(out, "lesionkit lesion changes", "derivative"))
    return written + tables, tables[0]
