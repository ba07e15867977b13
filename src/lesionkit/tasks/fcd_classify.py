"""fcd-classify: FCD type II patient vs control from one T1w or FLAIR volume (METHODS.md 3).

Whole-volume 3D ResNet (MONAI ``resnet18`` by default; ``resnet10/34/50`` by value), one
input channel, two-class softmax head (index 0 control, 1 patient) trained with cross
entropy; subject labels from the participants.tsv column ``group``. The explanation is
Grad-CAM of the patient class on the last residual stage (``layer4``), upsampled to the
input grid and scaled to [0, 1] (:func:`explain`; maps in ``derivatives/lesionkit`` as
``sub-XX_desc-gradcam_probseg.nii.gz``).

Choices where the paper is silent:
- Input z-scored inside the brain mask with training-subject statistics; no resampling:
  the network sees the dataset's grid (2 mm phantoms: 82 x 100 x 82 voxels).
- Shortcut type A for ResNet-18/34 and B for 10/50 (MedicalNet's convention), so that
  MedicalNet checkpoints fit; Adam 1e-4, batch 2.
- Training augmentation (TorchIO): left-right flips and small random affines (scale
  +-5 %, rotation +-5 degrees, translation +-4 mm); an FCD may sit in either hemisphere,
  and a few dozen subjects are far fewer than a 3D ResNet would like.
- Heat-Score is lesionkit's definition (the paper does not publish its formula): mean
  CAM inside the lesion mask over mean CAM inside the brain mask (1 = chance), reported
  over correctly classified patients with the energy fraction (CAM sum in the lesion
  over CAM sum in the brain) beside it; see ``lesionkit.explain``.

Variants by value: :func:`fcd_task` (``modality="T1w"``, ``network="resnet50"``, ...).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.tasks.task import ImageSpec, LabelSpec, OutputSpec, SamplerSpec, Task

CLASSES = ("control", "patient")
GROUP = LabelSpec("group", "group", CLASSES)
BRAIN = ImageSpec("brain", "mask", derivatives="phantom", entities=(("desc", "brain"),),
                  kind="label", normalisation="none")
OUTPUTS = tuple(OutputSpec("prob", name, "1", kind="probability") for name in CLASSES)
CAM_SUFFIX, CAM_DESC = "probseg", "gradcam"
HEAT_SCORE_NOTE = (
    "Heat-Score (lesionkit's definition; the paper does not publish its formula): mean "
    "Grad-CAM inside the lesion mask / mean Grad-CAM inside the brain mask (1 = chance, "
    "> 1 = attention on the lesion), over correctly classified patients; energy fraction "
    "= Grad-CAM sum inside the lesion / sum inside the brain.")


def _truth(root: Path, subject: str, **entities: str) -> np.ndarray | None:
    from lesionkit.bids import BIDSDataset
    from lesionkit.io import load_volume

    found = BIDSDataset(root).find(subject=subject, suffix="mask", derivatives="phantom",
                                   **entities)
    return load_volume(found[0].path, kind="label").data > 0.5 if found else None


def cam_path(root: str | os.PathLike[str], subject: str) -> Path:
    """Where :func:`explain` writes a subject's Grad-CAM map."""
    from lesionkit.bids import bids_path

    return bids_path(root, subject, CAM_SUFFIX, derivatives="lesionkit", desc=CAM_DESC)


def evaluate(root: Path, subjects: list[str], task_name: str = "fcd-classify") -> list[dict]:
    """One row per subject: true group, patient probability, call, correctness, Heat-Score.

    Reads ``derivatives/lesionkit/task-<name>_predictions.tsv`` (written by predict) and,
    where present, the subject's Grad-CAM map with its lesion and brain masks.
    """
    import pandas as pd

    from lesionkit.bids import BIDSDataset
    from lesionkit.explain import energy_fraction, heat_score
    from lesionkit.io import InputError, load_volume

    table = BIDSDataset(root).participants().set_index("participant_id")
    path = Path(root) / "derivatives" / "lesionkit" / f"task-{task_name}_predictions.tsv"
    if not path.is_file():
        raise InputError(f"{path}: expected the predictions of {task_name} (run predict), "
                         "found no such file")
    predictions = pd.read_csv(path, sep="\t").set_index("participant_id")
    rows = []
    for subject in subjects:
        key = f"sub-{subject}"
        if key not in predictions.index:
            continue
        group = str(table["group"].get(key)) if "group" in table else "n/a"
        p = float(predictions.loc[key, "patient"])
        row: dict[str, Any] = {"participant_id": key, "group": group,
                               "label": CLASSES.index(group) if group in CLASSES else None,
                               "p_patient": p, "predicted": CLASSES[int(p >= 0.5)]}
        row["correct"] = row["predicted"] == group if row["label"] is not None else None
        lesion, brain = (_truth(root, subject, label="lesion"),
                         _truth(root, subject, desc="brain"))
        cam = cam_path(root, subject)
        scored = cam.is_file() and lesion is not None and brain is not None and lesion.any()
        cam_data = load_volume(cam, kind="probability").data if scored else None
        row["heat_score"] = heat_score(cam_data, lesion, brain) if scored else None
        row["energy_fraction"] = energy_fraction(cam_data, lesion, brain) if scored else None
        rows.append(row)
    return rows


def report_sections(root: Path, subjects: list[str], rows: list[dict]) -> list:
    """Classification metrics with CIs, the Heat-Score summary and CAM overlays."""
    from lesionkit.crossval import classification_summary
    from lesionkit.explain import summarise_heat_scores
    from lesionkit.report import Section

    labelled = [r for r in rows if r.get("label") is not None]
    metrics = classification_summary([r["label"] for r in labelled],
                                     [r["p_patient"] for r in labelled]) if labelled else []
    patients = [r for r in labelled if r["label"] == 1 and r.get("heat_score") is not None]
    heat = summarise_heat_scores([r["heat_score"] for r in patients],
                                 [bool(r["correct"]) for r in patients],
                                 [r["energy_fraction"] for r in patients])
    text = ("Accuracy, sensitivity and specificity with Clopper-Pearson 95 % intervals; ROC "
            "AUC with a stratified bootstrap interval. " + HEAT_SCORE_NOTE)
    return [Section("fcd-classify: classification", text,
                    tables={"metrics": metrics, "Heat-Score": [vars(heat)],
                            "per subject": rows}),
            Section("fcd-classify: Grad-CAM", "Grad-CAM of the patient class on the input "
                    "grid; cyan: the true lesion outline.",
                    figures=cam_figures(root, [r["participant_id"][4:] for r in patients]))]


def cam_figures(root: str | os.PathLike[str], subjects: Sequence[str], limit: int = 3,
                cams: dict[str, Path] | None = None, suffix: str | None = None) -> dict:
    """CAM overlays (three planes through the lesion centre) with the lesion outline.

    Args:
        root: BIDS dataset of the images and truth masks.
        subjects: Subjects to show (the first ``limit`` that have a CAM).
        limit: Number of figures.
        cams: Subject -> CAM file (default: :func:`cam_path`).
        suffix: Image shown beneath (default: FLAIR where present, else T1w).
    """
    from scipy import ndimage

    from lesionkit.bids import BIDSDataset
    from lesionkit.io import load_volume
    from lesionkit.report import overlay_figure

    dataset, figures = BIDSDataset(root), {}
    for subject in subjects:
        path = (cams or {}).get(subject, cam_path(root, subject))
        found = [f for s in ((suffix,) if suffix else ("FLAIR", "T1w"))
                 for f in dataset.find(subject=subject, suffix=s)]
        if len(figures) >= limit or not Path(path).is_file() or not found:
            continue
        image = load_volume(found[0].path)
        lesion = _truth(Path(root), subject, label="lesion")
        centre = (tuple(round(c) for c in ndimage.center_of_mass(lesion))
                  if lesion is not None and lesion.any() else None)
        figures[f"sub-{subject}: Grad-CAM over {found[0].suffix}"] = overlay_figure(
            image.data, load_volume(path, kind="probability").data, outline=lesion,
            centre=centre, overlay_label="Grad-CAM (0-1)", spacing=image.spacing)
    return figures


def explain(model_dir: str | os.PathLike[str], data_dir: str | os.PathLike[str],
            subjects: Sequence[str] | None = None, device: str = "cpu",
            target_layer: str = "layer4", progress: bool = True) -> list[Path]:
    """Write Grad-CAM maps of the patient class for each subject as BIDS derivatives.

    Each subject is explained by the folds that did not train on it (all folds when
    every fold did); their CAMs are averaged and scaled to [0, 1]. Maps are written on
    the input's grid and affine to ``derivatives/lesionkit/sub-XX/anat/
    sub-XX_desc-gradcam_probseg.nii.gz`` with a JSON sidecar.

    Returns:
        Paths of the written maps.
    """
    import torch
    from rich.progress import track

    from lesionkit.bids import BIDSDataset, save_derivative
    from lesionkit.data import apply_normalisation, available_subjects
    from lesionkit.explain import cam_volume, grad_cam
    from lesionkit.io import load_volume
    from lesionkit.model_folder import load_model

    model = load_model(model_dir, device)
    task, dataset = model.task, BIDSDataset(data_dir)
    names = list(subjects) if subjects else available_subjects(dataset, task, with_targets=False)
    entries = model.config["folds"]
    written = []
    for subject in track(names, description="explain", disable=not progress):
        found = [dataset.get(subject, s.suffix, **s.query()) for s in task.inputs]
        volumes = [load_volume(f.path, kind=s.kind, unit=s.unit)
                   for f, s in zip(found, task.inputs, strict=True)]
        held_out = [i for i, e in enumerate(entries) if subject not in e.get("train", [])]
        chosen = held_out or list(range(len(entries)))
        cams = []
        for i in chosen:
            fold = model.folds[i]
            x = np.stack([apply_normalisation(v.data, fold.normalisation[s.key])
                          for v, s in zip(volumes, task.inputs, strict=True)])
            tensor = torch.from_numpy(x[None].astype(np.float32)).to(device)
            cams.append(grad_cam(fold.network, tensor, target_layer, class_index=1))
        cam = np.mean(cams, axis=0)
        cam = cam / cam.max() if cam.max() > 0 else cam
        sidecar = {"ModelFolder": str(model.path), "Task": task.name, "ClassExplained": "patient",
                   "Method": f"Grad-CAM (monai.visualize.GradCAM) on {target_layer}, "
                             "trilinear upsampling to the input grid, divided by its maximum",
                   "Folds": [entries[i]["fold"] for i in chosen],
                   "Sources": [str(f.path) for f in found], "Command": shlex.join(sys.argv)}
        written.append(save_derivative(cam_volume(cam, volumes[0]), cam_path(dataset.root,
                                                                              subject), sidecar))
    return written


def fcd_task(modality: str = "FLAIR", network: str = "resnet18", **values: Any) -> Task:
    """The fcd-classify task for ``modality`` ("FLAIR" or "T1w") and a ResNet depth.

    Args:
        modality: BIDS suffix of the single input.
        network: ``resnet10``, ``resnet18``, ``resnet34`` or ``resnet50``.
        **values: Further Task fields (e.g. ``network_kwargs={"widen_factor": 0.5}``).
    """
    if modality not in ("FLAIR", "T1w"):
        raise ValueError(f"fcd-classify reads FLAIR or T1w, found {modality!r}")
    name = "fcd-classify" if modality == "FLAIR" else "fcd-classify-t1w"
    task = Task(
        name=name,
        description=f"{modality} -> FCD-II patient vs control (3D ResNet) + Grad-CAM",
        inputs=(ImageSpec(modality.lower(), modality, unit="a.u."),),
        targets=(GROUP,),
        mask=BRAIN,
        outputs=OUTPUTS,
        network=network,
        loss="cross-entropy",
        sampler=SamplerSpec(kind="whole", augment=("flip", "affine")),
        inference="whole_volume",
        output_activation="softmax",
        learning_rate=1e-4,
        batch_size=2,
        max_epochs=30,
        patience=10,
        metrics=("accuracy", "sensitivity", "specificity", "roc_auc", "heat_score",
                 "energy_fraction"),
        evaluate=partial(evaluate, task_name=name),
        report_sections=report_sections,
    )
    return replace(task, **values)


FCD_CLASSIFY = fcd_task("FLAIR")
FCD_CLASSIFY_T1W = fcd_task("T1w")
#: Registry entries of this module (CLI names -> tasks).
FCD_TASKS = {t.name: t for t in (FCD_CLASSIFY, FCD_CLASSIFY_T1W)}


def comparison_report(out_dir: str | os.PathLike[str], data_dir: str | os.PathLike[str],
                      path: str | os.PathLike[str] | None = None) -> Path:
    """HTML page of a ``lesionkit.crossval.compare_arms`` run: metrics, tests, CAM overlays.

    Returns:
        The written page (default ``OUT/report.html``).
    """
    import json

    from lesionkit.report import PHANTOM_NOTE, Section, write_report

    out = Path(out_dir)
    summary = json.loads((out / "comparison.json").read_text())
    metrics = [{"arm": arm, **row} for arm, entry in summary["arms"].items()
               for row in entry["metrics"]]
    heat = [{"arm": arm, **entry["heat_score"]} for arm, entry in summary["arms"].items()]
    settings = (f"{summary['subjects']} subjects, stratified {summary['folds']}-fold "
                f"cross-validation, {summary['epochs']} epochs per fold, {summary['network']} "
                f"{summary['network_kwargs']}, Adam {summary.get('learning_rate')}, batch "
                f"{summary.get('batch_size')}, augmentation {summary.get('augment')}, seed "
                f"{summary['seed']}. Command: "
                f"{summary['command']}")
    sections = [Section("Transfer arms: held-out classification", settings + "\n\n" +
                        "Accuracy, sensitivity and specificity with Clopper-Pearson 95 % "
                        "intervals; ROC AUC with a stratified bootstrap interval. Pairs: "
                        "McNemar mid-p on per-subject correctness (b: right only under a, "
                        "c: right only under b) and the paired bootstrap of the AUC "
                        "difference.",
                        tables={"metrics": metrics, "paired tests": summary["pairs"]}),
                Section("Transfer arms: Heat-Score", HEAT_SCORE_NOTE, tables={"Heat-Score": heat})]
    for arm in summary["arms"]:
        found = sorted((out / f"arm-{arm}" / "cams").glob("sub-*.nii.gz"))
        cams = {p.name.split("_")[0][4:]: p for p in found}
        sections.append(Section(f"Grad-CAM, arm {arm}", "Held-out patients; cyan: lesion "
                                "outline.", figures=cam_figures(data_dir, list(cams),
                                                                cams=cams)))
    description = Path(data_dir) / "dataset_description.json"
    phantom = description.is_file() and "phantom" in description.read_text()
    return write_report(Path(path) if path else out / "report.html",
                        "lesionkit fcd-classify: transfer arms", sections,
                        data_note=PHANTOM_NOTE if phantom else None)
