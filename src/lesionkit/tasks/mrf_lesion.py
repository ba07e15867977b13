"""mrf-lesion: T1, T2*, NAWM, GM and lesion probability maps from MRF-EPI (METHODS.md section 2).

The 35 magnitude frames of an MRF-EPI series are the input channels of a 2D U-Net
applied slice-wise (depth 4, 32 first-level filters doubling, two 3x3 conv + ReLU per
stage, 2x2 max-pool, 2x2 transposed convolutions, dropout 0.5 at the bridge, 1x1
regression head). Five regression targets: T1 and T2* (ms) as dictionary matching
gives them (``lesionkit mrf-match`` writes ``desc-matched`` maps), the NAWM and GM
probabilities (0-1) and the binary lesion mask, so the lesion channel regresses a
probability. MSE loss, Adam 1e-4, 64x64 patches (``(64, 64, 1)`` slices), mini-batch
64, 100 epochs. Patches containing lesion voxels are drawn five times as often.

Variants (the paper's Table 1 by configuration; ``dataclasses.replace``):

- ``mrf-lesion``: 35 frames -> 5 outputs, MSE (MSE-5). ``--loss mae`` / ``log-cosh``
  give MAE-5 / LCL-5.
- ``mrf-lesion-only``: 35 frames -> lesion probability (MSE-1).
- ``mrf-lesion-dice``: 35 frames -> lesion probability, Dice loss, sigmoid (DICE-1).
- ``mrf-relaxometry-lesion``: matched T1 and T2* -> lesion probability (MSE-2-1).
- ``flair-lesion``: FLAIR and T1w -> lesion probability, for data without MRF: inputs
  normalised per image (robust z-score inside the brain mask, so any scanner's scale
  works), a sigmoid head trained with Dice + binary cross-entropy, so the output is a
  probability in [0, 1] by construction.
- ``flair-lesion-dr``: the same, trained with domain randomisation of the weighted
  images (:data:`lesionkit.tasks.augmentations.WEIGHTED_IMAGE_RANDOMISATION`: affine,
  thick slices, bias field, gamma, ghosting, motion, noise).
- ``flair-only-lesion-dr``: FLAIR alone -> lesion probability, for scans without a T1w
  (many clinical MS protocols have a FLAIR and no 3D T1w). Without the T1w a single
  slice does not tell a lesion from cortex cut flat at the top or bottom of the brain,
  so each axial slice is read with the slice above and below as two more channels
  (``context_slices`` 1; patches of 5 slices, 32 per subject and epoch) and thick axial
  slices are drawn more often (:data:`~lesionkit.tasks.augmentations.AXIAL_CONTEXT_RANDOMISATION`);
  otherwise as ``flair-lesion-dr``.
- ``mrf-lesion-3d``: the 5-output task with the registry's 3D U-Net on 64x64x16 patches.

Choices where the paper is silent or does not fit:
- NAWM and GM targets are the phantom's tissue probabilities (the study used SPM on
  the matched T1 maps); the lesion target is the phantom's binary lesion mask.
- Inputs and targets are z-scored with statistics of the training subjects inside the
  brain mask (the 35 frames share one shift and scale, keeping the fingerprint shape).
  T1 and T2* are z-scored in log space (after flooring at their 1st percentile), like
  the dictionary's geometric grid: matched CSF T2* reaches 2500 ms, tens of standard
  deviations above the brain's mean, and in linear units those few voxels dominated the
  squared loss of all five outputs. Outputs are inverted back to ms. Probabilities are
  untouched.
- Lesion oversampling is by patch: a patch holding a lesion voxel is five times as
  likely (the study repeated lesion slices five times).
- The learning rate halves every 20 epochs, as in the study.
- Predictions run the 2D network on whole slices (zero-padded in-plane to a multiple of
  16, a few slices per pass): no overlapping windows to blend, and the network sees the
  whole slice it was trained on in 64x64 parts. The 3D variant uses Gaussian-blended
  sliding windows.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from lesionkit.tasks.augmentations import (
    AXIAL_CONTEXT_RANDOMISATION,
    WEIGHTED_IMAGE_RANDOMISATION,
)
from lesionkit.tasks.strategies import QueueSampler, SlidingWindow, WholeVolume
from lesionkit.tasks.task import Command, DemoStep, ImageSpec, OutputSpec, Task

THRESHOLD = 0.33  # lesion probability threshold reported by the study
TISSUE_THRESHOLD = 0.8  # NAWM / GM binarisation

MRF = ImageSpec("mrf", "MRF", unit="a.u.", ndim=4)
MATCH = "lesionkit mrf-match DATA"
T1_MATCHED = ImageSpec("t1", "T1map", derivatives="lesionkit", entities=(("desc", "matched"),),
                       unit="ms", normalisation="log-zscore", made_by=MATCH)
T2S_MATCHED = ImageSpec("t2s", "T2starmap", derivatives="lesionkit",
                        entities=(("desc", "matched"),), unit="ms", normalisation="log-zscore",
                        made_by=MATCH)
NAWM = ImageSpec("nawm", "probseg", derivatives="phantom", entities=(("label", "NAWM"),),
                 kind="probability", unit="1", normalisation="none")
GM = ImageSpec("gm", "probseg", derivatives="phantom", entities=(("label", "GM"),),
               kind="probability", unit="1", normalisation="none")
# Truth and masks: the phantom's (or the named pipeline's), else any one pipeline's.
LESION = ImageSpec("lesion", "mask", derivatives="phantom", entities=(("label", "lesion"),),
                   kind="label", unit="1", normalisation="none", other_pipelines=True)
BRAIN = ImageSpec("brain", "mask", derivatives="lesionkit", entities=(("desc", "brain"),),
                  kind="label", unit="1", normalisation="none", other_pipelines=True,
                  made_by=MATCH)
PHANTOM_BRAIN = replace(BRAIN, derivatives="phantom")
# Weighted images in arbitrary units: normalised per image inside its brain mask.
# Both acquired before contrast: a ce-gadolinium file is read only where it is the one.
FLAIR = ImageSpec("flair", "FLAIR", normalisation="image-zscore", prefer_without=("ce",))
T1W = ImageSpec("t1w", "T1w", normalisation="image-zscore", prefer_without=("ce",))
# Matched maps as inputs (MSE-2-1): same files, other keys than the targets.
T1_INPUT = replace(T1_MATCHED, key="t1_in")
T2S_INPUT = replace(T2S_MATCHED, key="t2s_in")


def _outputs(desc: str, relaxometry: bool) -> tuple[OutputSpec, ...]:
    maps = (OutputSpec("T1map", desc, "ms", target="t1"),
            OutputSpec("T2starmap", desc, "ms", target="t2s"),
            OutputSpec("probseg", desc, "1", "probability", entities=(("label", "NAWM"),)),
            OutputSpec("probseg", desc, "1", "probability", entities=(("label", "GM"),)))
    lesion = OutputSpec("probseg", desc, "1", "probability", entities=(("label", "lesion"),))
    return (*maps, lesion) if relaxometry else (lesion,)


def _find(root: Path, subject: str, suffix: str, derivatives: str | None,
          other_pipelines: bool = False, like: Path | None = None, unit: str | None = None,
          **entities: str) -> np.ndarray | None:
    """The one matching image as an array; with ``like`` (a NIfTI file), on that file's
    grid (nearest neighbour: truth and masks drawn on another grid than the prediction);
    with ``unit``, in that unit (from the ``Units`` of its sidecar, as inputs are read)."""
    from lesionkit.bids import BIDSDataset
    from lesionkit.io import load_affine, load_volume

    found = BIDSDataset(root).locate(subject, suffix, derivatives=derivatives,
                                     other_pipelines=other_pipelines, **entities)
    if len(found) > 1:
        from lesionkit.bids import choice_hint
        from lesionkit.io import InputError

        several = len({f.entities.get("ses") for f in found}) > 1
        raise InputError(f"{found[0].path.parent}: expected one '{suffix}' image of "
                         f"sub-{subject} to score, found {len(found)} "
                         f"({', '.join(f.path.name for f in found)})"
                         + ("; evaluation takes one session per subject" if several
                            else choice_hint(found)))
    if not found:
        return None
    kind = "label" if like else "intensity"
    volume = found[0].load_in(unit, kind) if unit else load_volume(found[0].path, kind=kind)
    if like is not None:
        from lesionkit.volume import resample_to

        target = load_volume(like)
        if volume.shape != target.shape or not np.allclose(volume.affine, load_affine(like),
                                                           atol=1e-3):
            volume = resample_to(volume, target.shape, target.affine, order=0)
    return np.asarray(volume.data, np.float64)


def _path(root: Path, subject: str, suffix: str, **entities: str) -> Path | None:
    """The one prediction file of a subject matching the query, or None."""
    from lesionkit.bids import BIDSDataset

    found = BIDSDataset(root).find(subject=subject, suffix=suffix, **entities)
    return found[0].path if len(found) == 1 else None


def _image(root: Path, subject: str, spec: ImageSpec, like: Path | None = None
           ) -> np.ndarray | None:
    """The array of a task's image spec (truth, mask), wherever its pipeline rule finds it,
    on the grid of ``like`` when given."""
    query = {k: v for k, v in spec.query().items() if k not in ("session", "derivatives",
                                                             "other_pipelines")}
    return _find(root, subject, spec.suffix, spec.derivatives, spec.other_pipelines, like,
                 **query)


def _brain(task: Task, root: Path, subject: str, like: Path) -> np.ndarray:
    """The dataset's brain mask of the subject on the prediction's grid (the whole image
    when the dataset has none)."""
    mask = _image(root, subject, task.mask, like) if task.mask is not None else None
    if mask is None:
        from lesionkit.io import load_volume

        return np.ones(load_volume(like).shape[:3], bool)
    return mask > 0.5


def _truth(task: Task, root: Path, subject: str, like: Path) -> np.ndarray | None:
    """The subject's binary lesion mask on the prediction's grid, from the pipeline of the
    task's lesion target."""
    spec = next(t for t in task.dense_targets if t.key == LESION.key)
    truth = _image(root, subject, spec, like)
    return None if truth is None else truth > 0.5


def _deviation(a: np.ndarray | None, b: np.ndarray | None, mask: np.ndarray) -> float | None:
    from lesionkit.metrics import relative_deviation

    return None if a is None or b is None else relative_deviation(a, b, mask)


def evaluate(task: Task, root: Path, predictions: Path, subjects: list[str]) -> list[dict]:
    """Metrics per subject from the predictions (``desc`` of the task's outputs).

    Rows ``method="network"``: lesion Dice and detection rate (3D components) at 33 %,
    the lesions missed at 33 % and the median size (voxels) of missed and of detected
    lesions, lesion-wise precision, recall and F1 and the false-positive components at
    33 % (:func:`lesionkit.metrics.lesion_wise`), the best Dice over the 0-100 % sweep and
    its threshold, NAWM and GM Dice at 80 %,
    mean relative deviation (%) of T1 and T2* inside the brain against the matched maps
    and against the phantom's truth. Rows ``method="matching"``: the matched maps'
    deviation from the truth (the reference pipeline's own error). Missing maps give None.
    """
    from lesionkit.metrics import (
        detection_rate,
        dice,
        lesion_hits,
        lesion_wise,
        probability_dice,
        threshold_sweep,
    )

    desc = task.outputs[-1].desc
    rows = []
    for subject in subjects:
        like = _path(predictions, subject, "probseg", label="lesion", desc=desc)
        lesion_prob = _find(predictions, subject, "probseg", None, label="lesion", desc=desc)
        if lesion_prob is None or like is None:
            continue
        if lesion_prob.min() < -1e-4 or lesion_prob.max() > 1 + 1e-4:
            from lesionkit.io import InputError

            raise InputError(f"{predictions}: expected sub-{subject}'s lesion probability in "
                             f"[0, 1], found {lesion_prob.min():.3g} to {lesion_prob.max():.3g}")
        brain = _brain(task, root, subject, like)
        truth = _truth(task, root, subject, like)
        if truth is None and task.outputs[0].target is None:  # the lesion map is all it has
            from lesionkit.io import InputError

            spec = next(t for t in task.dense_targets if t.key == LESION.key)
            where, hint = (("any derivatives pipeline", " (name the pipeline with --truth)")
                           if spec.other_pipelines else (spec.derivatives, ""))
            raise InputError(f"{root}: expected sub-{subject}'s lesion mask "
                             f"(sub-{subject}_label-lesion_mask.nii[.gz]) in {where}, found "
                             f"none{hint}")
        predicted = {key: _find(predictions, subject, suffix, None, desc=desc, **entities)
                     for key, suffix, entities in _MAPS}
        matched = {k: _find(root, subject, s, "lesionkit", unit="ms", desc="matched")
                   for k, s in (("t1", "T1map"), ("t2s", "T2starmap"))}
        real = {k: _find(root, subject, s, "phantom", unit="ms") for k, s in
                (("t1", "T1map"), ("t2s", "T2starmap"))}
        row: dict = {"participant_id": f"sub-{subject}", "method": "network"}
        if truth is not None:
            sweep = threshold_sweep(lesion_prob, truth, mask=brain)
            best = int(np.nanargmax(sweep["dice"].to_numpy()))
            inside = np.where(brain, lesion_prob, 0.0)
            hits = lesion_hits(inside, truth, THRESHOLD)
            sizes = np.bincount(_components(truth).ravel())[1:]  # voxels per lesion
            row.update({"n_lesions": int(hits.size), "missed_lesions": int((~hits).sum()),
                        "missed_median_voxels": _median(sizes[~hits]),
                        "detected_median_voxels": _median(sizes[hits]),
                        **lesion_wise(lesion_prob, truth, THRESHOLD, mask=brain),
                        "lesion_dice": dice((lesion_prob >= THRESHOLD) & brain, truth),
                        "detection_rate": detection_rate(inside, truth, THRESHOLD),
                        "best_dice": float(sweep["dice"].iloc[best]),
                        "best_threshold": float(sweep["threshold"].iloc[best])})
        for key in ("nawm", "gm"):
            reference = _find(root, subject, "probseg", "phantom", label=key.upper())
            row[f"{key}_dice"] = (None if predicted[key] is None or reference is None else
                                  probability_dice(predicted[key], reference, TISSUE_THRESHOLD))
        for key in ("t1", "t2s"):
            row[f"{key}_deviation_matching"] = _deviation(predicted[key], matched[key], brain)
            row[f"{key}_deviation_truth"] = _deviation(predicted[key], real[key], brain)
        rows.append(row)
        if any(v is not None for v in matched.values()):
            rows.append({"participant_id": f"sub-{subject}", "method": "matching",
                         **{f"{k}_deviation_truth": _deviation(matched[k], real[k], brain)
                            for k in ("t1", "t2s")}})
    return rows


_MAPS = (("t1", "T1map", {}), ("t2s", "T2starmap", {}), ("nawm", "probseg", {"label": "NAWM"}),
         ("gm", "probseg", {"label": "GM"}))


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if values.size else None


def _components(truth: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.label(truth, structure=np.ones((3, 3, 3)))[0]


def report_sections(task: Task, root: Path, predictions: Path, subjects: list[str],
                    rows: list[dict]) -> list:
    """The metric tables, mean Dice / detection-rate curves against threshold, overlays."""
    from lesionkit.metrics import threshold_sweep
    from lesionkit.report import Section, caption, curve_figure, overlay_figure
    from lesionkit.summaries import summarise

    desc = task.outputs[-1].desc
    summary = summarise(rows)
    table = [{"method": method, **{f"{k} (mean)": v["mean"] for k, v in columns.items()},
              **{f"{k} (sd)": v["std"] for k, v in columns.items()}}
             for method, columns in summary.items()]
    sweeps, overlays = [], {}
    method = f"{task.name} {task.network} ({task.description.split(' -> ')[0]} input)"
    for subject in subjects:
        like = _path(predictions, subject, "probseg", label="lesion", desc=desc)
        prob = _find(predictions, subject, "probseg", None, label="lesion", desc=desc)
        truth = None if like is None else _truth(task, root, subject, like)
        if prob is None or truth is None or not truth.any():
            continue
        brain = _brain(task, root, subject, like)
        sweeps.append(threshold_sweep(prob, truth, mask=brain))
        if len(overlays) < 3:
            anatomy, beneath = _find(root, subject, "FLAIR", None), "FLAIR"
            if anatomy is None:
                anatomy = _find(root, subject, "T1map", "lesionkit", desc="matched")
                beneath = "matched T1 map"
            if anatomy is None:
                anatomy, beneath = prob, "the probability itself"
            centre = np.unravel_index(int(np.argmax(np.where(truth, prob, -1.0))), prob.shape)
            text = caption(f"lesion probability on {beneath} inside the brain mask, through "
                           "the most probable true-lesion voxel; true lesions outlined in cyan",
                           f"sub-{subject}", method, f"probabilities below 5 % not drawn; "
                           f"lesions scored at {THRESHOLD * 100:.0f} %")
            overlays[text] = overlay_figure(anatomy, prob, outline=truth, centre=centre,
                                            threshold=0.05, overlay_label="probability (0-1)",
                                            mask=brain)
    figures = {}
    if sweeps:
        x = sweeps[0]["threshold"].to_numpy() * 100.0
        curves = {"lesion Dice": np.mean([s["dice"] for s in sweeps], axis=0),
                  "detection rate": np.nanmean([s["detection_rate"] for s in sweeps], axis=0)}
        marked = f"{THRESHOLD * 100:.0f} %"
        figures[caption("mean lesion Dice and detection rate against the probability "
                        "threshold, inside the brain mask", f"{len(sweeps)} held-out "
                        f"subject{'s' if len(sweeps) > 1 else ''} with lesions", method,
                        f"swept 0-100 %, the study's {marked} marked")] = curve_figure(
            x, curves, "threshold (%)", "value (0-1)", marker_x=THRESHOLD * 100,
            marker_label=marked)
    text = (f"{task.name} ({task.description}) on {len(subjects)} subjects of {root.name}. "
            "Lesion Dice and detection rate (fraction of true lesions, 3D 26-connected "
            "components, touched by a voxel at or above threshold) at 33 %; lesion-wise "
            "precision, recall and F1 and false-positive components at 33 %; best Dice over "
            "the 0-100 % sweep.")
    if any(s.suffix == MRF.suffix for s in task.inputs) or task.outputs[0].target:
        text += (" NAWM and GM Dice after binarising both maps at 80 %; mean relative "
                 "deviation (%) of T1 and T2* inside the brain against dictionary matching and "
                 "against the phantom's true maps. MRF study values (5 test patients): Dice "
                 "0.61, detection 0.85, NAWM 0.92, GM 0.91, T1 5.2 %, T2* 5.1 %.")
    return [Section(f"{task.name}: metrics", text,
                    tables={"mean over subjects": table, "per subject": rows}, units=UNITS,
                    first=task.metrics),
            Section(f"{task.name}: lesion probability", figures={**figures, **overlays})]


#: Units of the report's table columns (Dice, rates and F1 are fractions, 0-1).
UNITS = {**{f"{k}_deviation_{r}": "%" for k in ("t1", "t2s") for r in ("matching", "truth")},
         "missed_median_voxels": "voxels", "detected_median_voxels": "voxels",
         "best_threshold": "0-1", "false_positive_components": "count",
         "n_lesions": "count", "missed_lesions": "count"}


def _task(name: str, description: str, inputs: tuple[ImageSpec, ...],
          targets: tuple[ImageSpec, ...], relaxometry: bool, **fields) -> Task:
    desc = name.replace("-", "")
    return Task(
        name=name, description=description, inputs=inputs, targets=targets,
        outputs=_outputs(desc, relaxometry), mask=fields.pop("mask", BRAIN),
        network=fields.pop("network", "unet2d"),
        network_kwargs=fields.pop("network_kwargs", {"channels": (32, 64, 128, 256, 512),
                                                     "bridge_dropout": 0.5}),
        loss=fields.pop("loss", "mse"),
        sampler=fields.pop("sampler", QueueSampler(patch_size=(64, 64, 1), samples_per_volume=128,
                                                   centre_on="mask", oversample="lesion",
                                                   oversample_factor=5.0)),
        inference=fields.pop("inference", WholeVolume(crop_margin=16)),
        learning_rate=1e-4, lr_halving_epochs=20, batch_size=64, max_epochs=100, patience=20,
        metrics=("lesion_dice", "detection_rate", "lesion_precision", "lesion_recall",
                 "lesion_f1", "false_positive_components", "best_dice", "nawm_dice", "gm_dice",
                 "t1_deviation_matching", "t2s_deviation_matching", "t1_deviation_truth",
                 "t2s_deviation_truth"),
        metric_units=UNITS,
        evaluate=evaluate, report_sections=report_sections, **fields)


MRF_LESION = _task("mrf-lesion", "35 MRF-EPI frames -> T1, T2* (ms), NAWM, GM and lesion "
                   "probability", (MRF,), (T1_MATCHED, T2S_MATCHED, NAWM, GM, LESION), True)
MRF_LESION_ONLY = _task("mrf-lesion-only", "35 MRF-EPI frames -> lesion probability",
                        (MRF,), (LESION,), False)
MRF_LESION_DICE = _task("mrf-lesion-dice", "35 MRF-EPI frames -> lesion probability (Dice loss)",
                        (MRF,), (LESION,), False, loss="dice", output_activation="sigmoid")
MRF_RELAXOMETRY_LESION = _task("mrf-relaxometry-lesion", "matched T1 and T2* (ms) -> lesion "
                               "probability", (T1_INPUT, T2S_INPUT), (LESION,), False)
FLAIR_LESION = _task("flair-lesion", "FLAIR and T1w -> lesion probability", (FLAIR, T1W),
                     (LESION,), False, mask=PHANTOM_BRAIN, loss="dice-bce",
                     output_activation="sigmoid")
MRF_LESION_3D = replace(_task(
    "mrf-lesion-3d", "35 MRF-EPI frames -> T1, T2*, NAWM, GM, lesion probability (3D U-Net)",
    (MRF,), (T1_MATCHED, T2S_MATCHED, NAWM, GM, LESION), True, network="unet",
    inference=SlidingWindow(window=(64, 64, 16), overlap=0.5),
    network_kwargs={"channels": (32, 64, 128, 256), "strides": (2, 2, 2), "norm": "batch"},
    sampler=QueueSampler(patch_size=(64, 64, 16), samples_per_volume=16, centre_on="mask",
                         oversample="lesion", oversample_factor=5.0)),
    batch_size=4)

FLAIR_LESION_DR = _task("flair-lesion-dr", "FLAIR and T1w -> lesion probability, trained "
                        "with domain randomisation", (FLAIR, T1W), (LESION,), False,
                        mask=PHANTOM_BRAIN, loss="dice-bce", output_activation="sigmoid",
                        augment=WEIGHTED_IMAGE_RANDOMISATION)
#: 12 patches of 5 slices a step: 60 slices, about the 64 of the one-slice variants.
FLAIR_ONLY_LESION_DR = replace(_task(
    "flair-only-lesion-dr", "FLAIR -> lesion probability (no T1w), each axial slice read "
    "with its neighbours, trained with domain randomisation", (FLAIR,), (LESION,), False,
    mask=PHANTOM_BRAIN, loss="dice-bce", output_activation="sigmoid",
    network_kwargs={"channels": (32, 64, 128, 256, 512), "bridge_dropout": 0.5,
                    "context_slices": 1},
    sampler=QueueSampler(patch_size=(64, 64, 5), samples_per_volume=32, centre_on="mask",
                         oversample="lesion", oversample_factor=5.0),
    augment=AXIAL_CONTEXT_RANDOMISATION), batch_size=12)

#: Every variant by CLI name.
MRF_LESION_TASKS: dict[str, Task] = {t.name: t for t in (
    MRF_LESION, MRF_LESION_ONLY, MRF_LESION_DICE, MRF_RELAXOMETRY_LESION, FLAIR_LESION,
    FLAIR_LESION_DR, FLAIR_ONLY_LESION_DR,
    MRF_LESION_3D)}


def mrf_match(
    data_dir: Annotated[Path, typer.Argument(help="BIDS dataset with 4D MRF series.")],
    subjects: Annotated[str | None, typer.Option(help="Comma-separated subjects.")] = None,
    denoise: Annotated[bool, typer.Option(help="MP-PCA denoising (dipy) first.")] = True,
) -> None:
    """Reference MRF maps by dictionary matching: T1 and T2* (ms), B1 and PD."""
    from rich.progress import Progress

    from lesionkit.bids import BIDSDataset
    from lesionkit.mrf_reference import match_dataset

    names = [s.strip().removeprefix("sub-") for s in subjects.split(",")] if subjects else None
    with Progress() as bar:
        job = bar.add_task("mrf-match", total=len(names or BIDSDataset(data_dir).subjects()))
        written = match_dataset(data_dir, names, denoise=denoise,
                                progress=lambda n=1: bar.advance(job, n))
    typer.echo(f"wrote {len(written)} files under {Path(data_dir) / 'derivatives' / 'lesionkit'}")


def demo_prepare(data_dir: Path) -> str:
    """The demo's reference maps: dictionary matching without MP-PCA (a minute per subject)."""
    import time

    from lesionkit.mrf_reference import match_dataset

    start = time.perf_counter()
    match_dataset(data_dir, denoise=False)
    return (f"mrf-lesion reference maps (dictionary matching, MP-PCA off) in "
            f"{time.perf_counter() - start:.0f} s")


#: Extra CLI commands of this task module.
COMMANDS = (Command("mrf-match", mrf_match),)

#: The demo: match the reference maps, train a narrow 2D U-Net on 6 subjects (40 short
#: epochs, the learning rate 20x the paper's and halving every 20), score 2 held-out ones.
DEMO = DemoStep(
    task="mrf-lesion", cohort="mrf-lesion", subjects=8, held_out=2, epochs=40, prepare=demo_prepare,
    overrides={"network_kwargs": {"channels": (8, 16, 32, 64, 128), "bridge_dropout": 0.5},
               "learning_rate": 2e-3, "batch_size": 16},
    shown=("lesion_dice", "detection_rate", "nawm_dice", "gm_dice", "t1_deviation_matching",
           "t2s_deviation_matching", "t1_deviation_truth", "t2s_deviation_truth"))

#: Shipped models (``make models``): mrf-lesion with a 16-256 2D U-Net (the demo's 8-128
#: network left the lesion channel at zero on this cohort, with lesion patches drawn 5 or
#: 20 times as often: docs/results.md), 60 epochs of 1024 patches on 10 phantom subjects;
#: and flair-lesion-dr, the FLAIR + T1w lesion model for scanners without MRF, trained
#: with domain randomisation on the same cohort (the settings of the real-scan checks in
#: docs/real-data.md); flair-only-lesion-dr, the same recipe on the FLAIR alone with 60
#: epochs (without the T1w its validation loss after 20 was 1.02 against 0.58:
#: docs/results.md, "Shipped models"), four networks averaged (each validated on 2 of
#: the 8 training subjects; half the false components of one network on a real healthy
#: FLAIR: docs/real-data.md).
_FLAIR_RECIPE = {"network_kwargs": {**FLAIR_LESION_DR.network_kwargs,
                                    "channels": (16, 32, 64, 128, 256)},
                 "learning_rate": 1e-3, "batch_size": 32, "patience": 8}
#: The FLAIR-only recipe: the same with the task's slice context, 8 patches of 5 slices per
#: step (40 slices, the 24 steps per epoch of the recipe above).
_FLAIR_ONLY_RECIPE = {**_FLAIR_RECIPE, "batch_size": 8,
                      "network_kwargs": {**FLAIR_ONLY_LESION_DR.network_kwargs,
                                         "channels": (16, 32, 64, 128, 256)}}
SHIPPED_MODELS = (
    replace(DEMO, subjects=10, epochs=60, examples_per_epoch=1024, overrides={
        "network_kwargs": {"channels": (16, 32, 64, 128, 256), "bridge_dropout": 0.5},
        "learning_rate": 1e-3, "batch_size": 16}),
    *(DemoStep(task=name, cohort="mrf-lesion", subjects=10, held_out=2, epochs=epochs,
               overrides=recipe, networks=networks,
               shown=("lesion_dice", "detection_rate", "lesion_precision", "lesion_recall"))
      for name, epochs, recipe, networks in (
          ("flair-lesion-dr", 20, _FLAIR_RECIPE, 1),
          ("flair-only-lesion-dr", 60, _FLAIR_ONLY_RECIPE, 4))),
)
