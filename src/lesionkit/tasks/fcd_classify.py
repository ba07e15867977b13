"""fcd-classify: FCD type II patient vs control from one T1w or FLAIR volume (METHODS.md 3).

Whole-volume 3D ResNet (MONAI ``resnet18`` by default; ``resnet10/34/50`` by value), one
input channel, two-class softmax head (index 0 control, 1 patient) trained with cross
entropy; subject labels from the participants.tsv column ``group``. The explanation is
Grad-CAM of the patient class on the last residual stage (``layer4``, see
:data:`CAM_LAYER`), upsampled to the input grid and scaled to [0, 1]; ``lesionkit
predict`` writes it beside the prediction (``sub-XX_desc-gradcam_probseg.nii.gz``), from
the folds that did not train on the subject.

Transfer-learning arms (``lesionkit crossval fcd-classify ... --arms``), as the paper:

- ``scratch``: MONAI's default initialisation.
- ``segmentation``: cross-modality transfer. The classifier's ResNet, with a small
  feature-pyramid decoder (``lesionkit.models.resnet_segmenter``), first learns lesion
  segmentation in stages through the same trainer (:data:`PRETRAINING_STAGES`: MS
  lesions on T1w, e.g. of a mrf-lesion phantom, then enhancing tumours on gadolinium
  T1w, e.g. of a contrast-amplify phantom; one ``--source-dir`` each, in that order, each
  stage starting from the encoder of the one before); the classifier starts from the
  last stage's encoder. Neither stage sees FLAIR or an FCD.
- ``medicalnet``: a MedicalNet (Med3D) checkpoint the user holds (``--weights``).
- ``normative`` (lesionkit's, not the paper's): the ResNet reads the FLAIR and its
  voxel-wise z-score against the fold's training controls (:func:`normative_arm`), the
  comparison with normal brains of MAP-style FCD morphometry. It needs every subject
  registered to one template (the model's grid); a subject on another grid is refused
  with one line. Training controls are scored against the other training controls
  (leave-one-out), as held-out subjects are against all of them. Measured on 120
  registered phantom subjects (docs/results.md): it fits its training subjects and is
  at chance held out (AUC 0.51), while the largest value of the same z-map alone
  reaches 0.84.
- ``normative-peak`` (lesionkit's): the same two channels read by a small fully
  convolutional scorer in place of the ResNet (``peak-fcn``, about 4,000 weights, see
  :func:`normative_peak_arm`): the patient logit is its highest voxel score, and its
  Grad-CAM is its own score map. On the same 120 subjects its loss stayed at ln 2 and
  it ranked held-out subjects below chance (AUC 0.37).
- ``normative-max`` (lesionkit's): logistic regression on the subject's largest z-score
  (:func:`normative_max_arm`, two weights): the comparison with normal brains with a
  threshold fitted on the training folds, the baseline a learning arm has to beat. On
  the same 120 subjects: accuracy 0.73, AUC 0.81 out of fold, 87 % of its Grad-CAM
  inside the lesion of a correctly classified patient.

Choices where the paper is silent (measured on 240 training and 60 held-out phantom
subjects at 2 mm, 12-15 epochs; docs/results.md has the record; with all of them both
arms are still at chance in a 5-fold cross-validation of 120 phantom subjects):
- Input z-scored inside the brain mask per image; no resampling: the network sees the
  dataset's grid (2 mm phantoms: 82 x 100 x 82 voxels).
- Shortcut type A for ResNet-18/34 and B for 10/50 and a stride-2 first convolution
  (MedicalNet's conventions), so that MedicalNet checkpoints fit.
- Global maximum pooling before the head (:data:`NETWORK_KWARGS`): with MONAI's average
  pooling the training loss stayed at ln 2 and the held-out AUC was 0.57; with maximum
  pooling the loss fell and the AUC was 0.66.
- Adam 1e-3 (0.66 against 0.54 at 3e-4 with batch 8), batch 4 (batch normalisation),
  15 epochs.
- Training augmentation (TorchIO): left-right flips and small random affines (scale
  +-5 %, rotation +-5 degrees, translation +-4 mm); without it the network memorises
  240 subjects within 4 epochs (training loss 0.51) and is at chance on held-out ones.
- Heat-Score is lesionkit's definition (the paper does not publish its formula): mean
  CAM inside the lesion mask over mean CAM inside the brain mask (1 = chance), reported
  over correctly classified patients with the energy fraction (CAM sum in the lesion
  over CAM sum in the brain) beside it; see ``lesionkit.explain``.

Choices for the segmentation arm (the paper used 23 public segmentation tasks): decoder
of 1x1 lateral convolutions of the four residual stages to 32 features, top-down
trilinear upsampling with addition and a 3x3x3 head; soft Dice over the batch +
cross-entropy, the Dice term only on batches with lesion voxels (``batch-dice-bce``,
:class:`lesionkit.losses.BatchDiceBCELoss`: with a Dice per patch, or on batches
without lesion, predicting no lesion anywhere was a minimum); Adam 1e-3; 48^3 patches,
70 % centred on a lesion voxel; up to 40 epochs per stage with early stopping on a
seeded validation split of its cohort; the fine-tuned encoder trains at the classifier's
rate (``pretrained_lr_factor`` 1: MedicalNet gives the encoder 1/100 of the head's rate;
at 1/10 with a 3e-4 head the loss stayed at ln 2).

Variants by value: :func:`fcd_task` (``modality="T1w"``, ``network="resnet50"``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.tasks.strategies import (
    QueueSampler,
    SlidingWindow,
    WholeVolume,
    WholeVolumeSampler,
)
from lesionkit.tasks.task import DemoStep, ImageSpec, LabelSpec, OutputSpec, Task, Transform

CLASSES = ("control", "patient")
GROUP = LabelSpec("group", "group", CLASSES)
BRAIN = ImageSpec("brain", "mask", derivatives="phantom", entities=(("desc", "brain"),),
                  kind="label", normalisation="none", other_pipelines=True)
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


def cam_path(predictions: str | os.PathLike[str], subject: str) -> Path | None:
    """The subject's Grad-CAM map that ``lesionkit predict`` wrote under ``predictions``
    (of the session of the enclosing :func:`lesionkit.units.unit_scope`), or None."""
    from lesionkit.bids import BIDSDataset

    if not Path(predictions).is_dir():
        return None
    found = BIDSDataset(predictions).find(subject=subject, suffix=CAM_SUFFIX, desc=CAM_DESC)
    return found[0].path if len(found) == 1 else None


def evaluate(task: Task, root: Path, predictions: Path, subjects: list[str]) -> list[dict]:
    """One row per subject: true group, patient probability, call, correctness, Heat-Score.

    Reads ``task-<name>_predictions.tsv`` (written by predict; its rows of the session
    of the enclosing :func:`lesionkit.units.unit_scope`) and, where present, the
    subject's Grad-CAM map with its lesion and brain masks.
    """
    import pandas as pd

    from lesionkit.bids import BIDSDataset
    from lesionkit.explain import energy_fraction, heat_score
    from lesionkit.io import InputError, load_volume
    from lesionkit.units import row_in_scope

    table = BIDSDataset(root).participants().set_index("participant_id")
    path = Path(predictions) / f"task-{task.name}_predictions.tsv"
    if not path.is_file():
        raise InputError(f"{path}: expected the predictions of {task.name} (run predict), "
                         "found no such file")
    table_rows = pd.read_csv(path, sep="\t", dtype={"participant_id": str, "session_id": str,
                                                   "run": str}).to_dict("records")
    predicted = pd.DataFrame([r for r in table_rows if row_in_scope(r)],
                             columns=list(table_rows[0]) if table_rows else None
                             ).set_index("participant_id")
    rows = []
    for subject in subjects:
        key = f"sub-{subject}"
        if key not in predicted.index:
            continue
        group = str(table["group"].get(key)) if "group" in table else "n/a"
        p = float(predicted.loc[key, "patient"])
        row: dict[str, Any] = {"participant_id": key, "group": group,
                               "label": CLASSES.index(group) if group in CLASSES else None,
                               "probability": p, "predicted": CLASSES[int(p >= 0.5)]}
        row["correct"] = row["predicted"] == group if row["label"] is not None else None
        lesion, brain = (_truth(root, subject, label="lesion"),
                         _truth(root, subject, desc="brain"))
        cam = cam_path(predictions, subject)
        scored = cam is not None and lesion is not None and brain is not None and lesion.any()
        cam_data = load_volume(cam, kind="probability").data if scored else None
        row["heat_score"] = heat_score(cam_data, lesion, brain) if scored else None
        row["energy_fraction"] = energy_fraction(cam_data, lesion, brain) if scored else None
        rows.append(row)
    return rows


def report_sections(task: Task, root: Path, predictions: Path, subjects: list[str],
                    rows: list[dict]) -> list:
    """Classification metrics with CIs, the Heat-Score summary and CAM overlays."""
    from lesionkit.explain import summarise_heat_scores
    from lesionkit.report import Section
    from lesionkit.summaries import classification_summary

    labelled = [r for r in rows if r.get("label") is not None]
    metrics = classification_summary([r["label"] for r in labelled],
                                     [r["probability"] for r in labelled]) if labelled else []
    patients = [r for r in labelled if r["label"] == 1 and r.get("heat_score") is not None]
    heat = summarise_heat_scores([r["heat_score"] for r in patients],
                                 [bool(r["correct"]) for r in patients],
                                 [r["energy_fraction"] for r in patients])
    text = ("Accuracy, sensitivity and specificity with Clopper-Pearson 95 % intervals; ROC "
            "AUC with a stratified bootstrap interval. " + HEAT_SCORE_NOTE)
    return [Section("fcd-classify: classification", text,
                    tables={"metrics": metrics, "Heat-Score": [vars(heat)],
                            "per subject": rows}, units=UNITS, first=task.metrics),
            Section("fcd-classify: Grad-CAM", "Grad-CAM of the patient class on the input "
                    "grid, drawn inside the brain mask only; cyan: the true lesion outline.",
                    figures=cam_figures(root, predictions,
                                        [r["participant_id"][4:] for r in patients],
                                        method=f"Grad-CAM of the {task.network} (patient "
                                               f"class, layer {task.inference.cam_layer})"))]


#: Units of the report's table columns (dimensionless ratios and fractions say their range).
UNITS = {"probability": "0-1", "estimate": "0-1", "ci_low": "0-1", "ci_high": "0-1",
         "heat_score": "ratio, 1 = chance", "heat_score_mean": "ratio, 1 = chance",
         "heat_score_sd": "ratio", "energy_fraction": "0-1", "energy_fraction_mean": "0-1",
         "energy_fraction_sd": "0-1"}


def cam_figures(root: str | os.PathLike[str], predictions: str | os.PathLike[str],
                subjects: Sequence[str], limit: int = 3, suffix: str | None = None,
                method: str = "Grad-CAM (patient class)", threshold: float = 0.1) -> dict:
    """CAM overlays (three planes through the lesion centre) with the lesion outline,
    drawn inside the phantom's brain mask only.

    Args:
        root: BIDS dataset of the images and truth masks.
        predictions: Folder holding the CAM maps (:func:`cam_path`).
        subjects: Subjects to show (the first ``limit`` that have a CAM).
        limit: Number of figures.
        suffix: Image shown beneath (default: FLAIR where present, else T1w).
        method: The method named in the captions.
        threshold: CAM values (0-1) below this are not drawn.
    """
    from scipy import ndimage

    from lesionkit.bids import BIDSDataset
    from lesionkit.io import load_volume
    from lesionkit.report import caption, overlay_figure

    dataset, figures = BIDSDataset(root), {}
    for subject in subjects:
        path = cam_path(predictions, subject)
        found = [f for s in ((suffix,) if suffix else ("FLAIR", "T1w"))
                 for f in dataset.find(subject=subject, suffix=s)]
        if len(figures) >= limit or path is None or not found:
            continue
        image = load_volume(found[0].path)
        lesion = _truth(Path(root), subject, label="lesion")
        centre = (tuple(round(c) for c in ndimage.center_of_mass(lesion))
                  if lesion is not None and lesion.any() else None)
        brain = _truth(Path(root), subject, desc="brain")
        text = caption(f"Grad-CAM over {found[0].suffix} through the lesion centre, true "
                       "lesion outlined in cyan", f"sub-{subject}", method,
                       f"CAM below {threshold:g} (of its maximum) not drawn")
        figures[text] = overlay_figure(
            image.data, load_volume(path, kind="probability").data, outline=lesion,
            centre=centre, overlay_label="Grad-CAM (0-1)", spacing=image.spacing,
            threshold=threshold, mask=brain)
    return figures


#: ResNet options: MedicalNet's stride-2 first convolution (the network sees the 2 mm
#: volume at 4 mm after it, a quarter of the compute) and global maximum pooling before
#: the head: a patient is a subject with a focal abnormality anywhere, which an average
#: over the whole brain dilutes (measured: see the module doc).
NETWORK_KWARGS = {"conv1_t_stride": 2, "pooling": "max"}
#: Grad-CAM layer: the last residual stage, as the paper. With the stride-2 first
#: convolution its cells are 64 mm for 2 mm input (3 x 4 x 3 for a brain; 32 mm with
#: stride 1, at 8 times the compute). The third stage (32 mm) is finer, but behind
#: maximum pooling its Grad-CAM weights came out negative for every channel sum: all-zero
#: maps for 12 of 12 held-out patients, against 3 of 12 on the last stage.
CAM_LAYER = "layer4"
#: Training augmentation: left-right flips in world space and small random affines.
AUGMENT = (Transform("RandomFlip", {"axes": ("LR",), "flip_probability": 0.5}),
           Transform("RandomAffine", {"scales": 0.05, "degrees": 5, "translation": 4}))
LESION = ImageSpec("lesion", "mask", derivatives="phantom", entities=(("label", "lesion"),),
                   kind="label", unit="1", normalisation="none", other_pipelines=True)


#: The segmentation arm's pretraining stages, in order: (name, what it learns, input).
#: Two lesion kinds on two modalities of two other cohorts, as the paper's 23-task
#: weights mix modalities and organs; neither is the classifier's FLAIR or its FCDs.
PRETRAINING_STAGES = (
    ("ms-t1w", "MS lesions on T1w (e.g. a mrf-lesion phantom)",
     ImageSpec("image", "T1w", unit="a.u.", exclude=("ce", "acq"),
               normalisation="image-zscore")),
    ("tumour-t1c", "enhancing tumours on standard-dose gadolinium T1w (e.g. a "
     "contrast-amplify phantom)",
     ImageSpec("image", "T1w", unit="a.u.", entities=(("ce", "gadolinium"),
                                                      ("acq", "standard")),
               normalisation="image-zscore")),
)
#: Training patch (voxels) of the pretraining stages. Their prediction (the stage's model
#: folder with ``lesionkit predict``) slides windows of up to 96^3 with sides that are
#: multiples of the encoder's stride of 32: with the default 32^3 windows, smaller than the
#: patches, the maps came out empty where whole volumes found the lesions.
PRETRAINING_PATCH = (48, 48, 48)


def pretraining_task(task: Task, stage: int = 0, epochs: int = 40) -> Task:
    """Lesion segmentation with the classifier's ResNet as encoder (one pretraining stage).

    Trained on a cohort with lesion masks (``derivatives/phantom`` ``label-lesion_mask``)
    and brain masks, on the stage's image (:data:`PRETRAINING_STAGES`); a later stage
    starts from the encoder of the one before. At most ``epochs`` epochs, early stopping
    on a seeded validation split of the source cohort.
    """
    depth = int(task.network.removeprefix("resnet"))
    name, what, image = PRETRAINING_STAGES[stage]
    return Task(
        name=f"{task.name}-pretraining-{name}",
        description=f"{what}: ResNet-{depth} encoder + feature-pyramid decoder",
        inputs=(image,), targets=(LESION,), mask=BRAIN,
        outputs=(OutputSpec("probseg", "pretraining", "1", "probability",
                            entities=(("label", "lesion"),)),),
        network="resnet-segmenter",
        network_kwargs={"depth": depth, **dict(task.network_kwargs)},
        loss="batch-dice-bce",
        sampler=QueueSampler(patch_size=PRETRAINING_PATCH, samples_per_volume=8,
                             centre_on="lesion", label_probabilities=((0, 0.3), (1, 0.7))),
        inference=SlidingWindow(window=(96, 96, 96), multiple=32),
        output_activation="sigmoid", learning_rate=1e-3, batch_size=2, max_epochs=epochs,
        patience=10, initialise=continue_segmentation if stage else None)


def pretraining_stages(task: Task, epochs: int = 40) -> tuple[Task, ...]:
    """Every pretraining stage of the segmentation arm (``Task.pretraining``)."""
    return tuple(pretraining_task(task, k, epochs) for k in range(len(PRETRAINING_STAGES)))


def demo_pretraining_stages(task: Task) -> tuple[Task, ...]:
    """The pretraining stages at 4 epochs each (``lesionkit demo``)."""
    return pretraining_stages(task, epochs=4)


def _segmenter_weights(source: Path) -> Path:
    return Path(source) / "fold-0" / "weights.safetensors"


def continue_segmentation(network: Any, source: Path) -> Any:
    """Start a pretraining stage from the encoder of the stage before (its model folder)."""
    from lesionkit.pretrained import load_encoder

    return load_encoder(network.encoder, _segmenter_weights(source), prefix="encoder.")


def initialise_from_segmentation(network: Any, source: Path) -> Any:
    """Copy the encoder of the last pretraining stage (fold 0) into the classifier."""
    from lesionkit.pretrained import load_encoder

    return load_encoder(network, _segmenter_weights(source), prefix="encoder.")


def initialise_from_medicalnet(network: Any, source: Path) -> Any:
    """Load a MedicalNet checkpoint (``--weights``) into the classifier's encoder."""
    from lesionkit.pretrained import load_medicalnet

    return load_medicalnet(network, source)


#: Smoothing of the normative comparison (Gaussian sigma, voxels: 2 mm on a 2 mm grid),
#: that of the location-blind detector of docs/results.md ("Registration to the MNI152
#: template"), fixed before the arm was tried.
NORMATIVE_SIGMA = 1.0
#: Training augmentation of the normative arm: no mirror flips (a flipped brain no longer
#: lies on the controls' voxels) and affines of a couple of millimetres, which keep the
#: comparison with the controls roughly in register.
NORMATIVE_AUGMENT = (
    Transform("RandomAffine", {"scales": 0.02, "degrees": 2, "translation": 2}),)


def fit_control_norms(dataset: Any) -> dict[str, Any]:
    """Voxel-wise mean and SD of the fold's training controls (smoothed, normalised input;
    :func:`lesionkit.models.fit_normative`); the fold's patients and held-out subjects are
    not part of it."""
    from lesionkit.models import fit_normative

    return fit_normative(dataset.unaugmented(), CLASSES.index("control"), NORMATIVE_SIGMA)


def normative_training_step(network: Any, loss: Any, batch: dict[str, Any]) -> Any:
    """Cross-entropy with each training control scored against the other training
    controls (leave-one-out; :meth:`lesionkit.models.NormativeDeviation.deviation`), as
    every held-out subject is."""
    target = batch["target"]
    return loss(network(batch["input"], members=target == CLASSES.index("control")), target)


def normative_arm(task: Task) -> dict[str, Any]:
    """The ``normative`` arm: the task's ResNet reads the image and its voxel-wise z-score
    against the fold's training controls (MAP-style morphometric comparison; subjects
    must be registered to one template). Predict it with one flip (the default)."""
    return _normative(task.network, {**task.network_kwargs, "base": task.network},
                      f"network.{CAM_LAYER}", task)


#: The ``normative-peak`` arm's scorer (``lesionkit.models.PeakScoreNet``): three 3x3x3
#: convolutions of 8 channels, the first with stride 2 (scores on a 4 mm grid for 2 mm
#: input, receptive field 28 mm, about the size of the phantom's FCDs), 4,000 weights.
PEAK_KWARGS = {"width": 8, "depth": 3, "stride": 2}


def normative_peak_arm(task: Task) -> dict[str, Any]:
    """The ``normative-peak`` arm: in place of the ResNet a small fully convolutional
    scorer over the image and its z-score against the fold's training controls, whose
    patient logit is its highest voxel score (``peak-fcn``): a learned form of "the
    largest deviation from normal brains", with too few weights to memorise subjects.
    Its Grad-CAM (on the scorer's last convolution) is its own score map. No training
    augmentation: a shift of a millimetre or two moves tissue boundaries off the
    controls' voxels, where the peak of the z-score can then lie instead of on a lesion."""
    return _normative("peak-fcn", {**PEAK_KWARGS, "base": "peak-fcn"}, "network.features",
                      task, augment=())


#: The ``normative-max`` arm's learning rate: its two weights (the z-score's and the
#: offset) must travel several units in the few hundred steps of a fold.
NORMATIVE_MAX_LEARNING_RATE = 0.05


def normative_max_arm(task: Task) -> dict[str, Any]:
    """The ``normative-max`` arm: the patient logit is a linear function of the subject's
    largest voxel z-score against the fold's training controls (``peak-fcn`` without
    convolutions over the z-score alone: logistic regression on the peak, two weights
    fitted on the training subjects). It cannot memorise a subject; it is the comparison
    with normal brains with a threshold learned on the training folds. Its Grad-CAM, on
    the score map, marks the voxels whose z-score alone passes that threshold."""
    values = _normative("peak-fcn", {"depth": 0, "with_image": False, "base": "peak-fcn"},
                        "network.score", task, augment=())
    return {**values, "learning_rate": NORMATIVE_MAX_LEARNING_RATE}


def _normative(network: str, kwargs: dict[str, Any], cam_layer: str, task: Task,
               augment: tuple[Transform, ...] = NORMATIVE_AUGMENT) -> dict[str, Any]:
    from lesionkit.models import normative_network

    return {"network": network, "network_factory": normative_network,
            "network_kwargs": kwargs, "fit_state": fit_control_norms,
            "training_step": normative_training_step, "augment": augment,
            "inference": replace(task.inference, cam_layer=cam_layer)}


#: Arms compared by ``lesionkit crossval``: transfer learning, and the comparison with
#: normal brains.
ARMS = {
    "scratch": {},
    "segmentation": {"pretraining": pretraining_stages,
                     "initialise": initialise_from_segmentation},
    "medicalnet": {"initialise": initialise_from_medicalnet},
    "normative": normative_arm,
    "normative-peak": normative_peak_arm,
    "normative-max": normative_max_arm,
}


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
        inputs=(ImageSpec(modality.lower(), modality, unit="a.u.",
                          normalisation="image-zscore", prefer_without=("ce",)),),
        targets=(GROUP,),
        mask=BRAIN,
        outputs=OUTPUTS,
        network=network,
        network_kwargs=NETWORK_KWARGS,
        loss="cross-entropy",
        sampler=WholeVolumeSampler(),
        augment=AUGMENT,
        inference=WholeVolume(cam_layer=CAM_LAYER),
        output_kind="subjects",
        output_activation="softmax",
        learning_rate=1e-3,
        batch_size=4,
        max_epochs=15,
        patience=10,
        metrics=("accuracy", "sensitivity", "specificity", "roc_auc", "heat_score",
                 "energy_fraction"),
        metric_units=UNITS,
        evaluate=evaluate,
        report_sections=report_sections,
        arms=ARMS,
    )
    return replace(task, **values)


FCD_CLASSIFY = fcd_task("FLAIR")
FCD_CLASSIFY_T1W = fcd_task("T1w")
#: Registry entries of this module (CLI names -> tasks).
FCD_TASKS = {t.name: t for t in (FCD_CLASSIFY, FCD_CLASSIFY_T1W)}

#: The demo: scratch against segmentation-pretrained half-width ResNet-10s on the same
#: 2 folds, the encoder pretrained for 4 epochs per stage on the demo's mrf-lesion T1w
#: (MS lesions) and contrast-amplify gadolinium T1w (tumours).
DEMO = DemoStep(
    task="fcd-classify", cohort="fcd-classify", subjects=8, held_out=8, epochs=3,
    overrides={"network": "resnet10", "network_kwargs": {**NETWORK_KWARGS, "widen_factor": 0.5},
               "arms": {**ARMS, "segmentation": {**ARMS["segmentation"],
                                                 "pretraining": demo_pretraining_stages}}},
    crossval_arms=("scratch", "segmentation"), folds=2,
    source_cohorts=("mrf-lesion", "contrast-amplify"))

#: Shipped model (``make models``): the scratch arm, a quarter-width ResNet-10, trained on
#: 40 phantom subjects and scored on 8 more.
SHIPPED_MODELS = (
    DemoStep(task="fcd-classify", cohort="fcd-classify", subjects=48, held_out=8, epochs=15,
             overrides={"network": "resnet10",
                        "network_kwargs": {**NETWORK_KWARGS, "widen_factor": 0.25}},
             shown=("accuracy", "roc_auc", "sensitivity", "specificity", "heat_score")),
)
