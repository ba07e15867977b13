"""contrast-amplify: low-dose -> standard-dose T1c, applied to the standard dose (METHODS.md 4).

Training pairs: the post-contrast T1c at 0.025 mmol/kg (with the pre-contrast T1w,
FLAIR and ADC) -> the T1c at 0.1 mmol/kg. At prediction the standard-dose T1c takes the
T1c slot (``predict_inputs``) and the network's output is the amplified,
quadruple-dose-like "T1c-pro", written as ``desc-amplified`` T1w with the
``desc-uncertainty`` map (standard deviation over the ensemble) on the T1c's grid.

Preprocessing: every image z-scored inside its own brain mask (robust: median and
interquartile range / 1.349); the subject cropped to a 160 x 192 x 160 mm box centred on
the brain (TorchIO ``CropOrPad`` in mm with the brain mask: 160 x 192 x 160 voxels at
1 mm, half that at 2 mm). 3D U-Net with residual units in encoder and decoder (MONAI
``UNet``, ``num_res_units=2``: short skips by addition, long skips by concatenation),
LeakyReLU 0.2, batch normalisation, whose output is added to its T1c input
(``residual-unet-on-input``, below); MSE; Adam 1e-3; random mirroring on all three axes
(TorchIO ``RandomFlip``). Batch, not instance, normalisation: the inputs' z-scores
carry absolute meaning (how bright a voxel is against the brain), which instance
normalisation of each 32^3 patch takes away; with it the same training gave T1c-pro an
SSIM of 0.05-0.11 against the quadruple dose on four held-out phantom subjects, with
batch normalisation 0.80. Trained with 5 folds as the study (the task's default;
``--folds 1`` for one train/validation split), prediction averages 5 folds x 8 flips =
40 predictions (8 flips are the default; the folds are those of the model folder).

Arms (``lesionkit crossval --arms``): ``input-residual`` (the task as above),
``unclipped`` (the same preprocessing, the plain U-Net: its output is the amplified
T1c itself) and ``paper``: the study's preprocessing, the z-score clipped to the
training subjects' 1st/99th percentiles and mapped to [0, 1]
(``image-zscore-percentile``, fitted per fold on its training subjects, stored in the
model folder), with a sigmoid head (:func:`amplifier`). Why the default departs from the
study:

- No clip: on the phantom, enhancing voxels (lesions, vessels, choroid plexus) are
  under 1 % of the brain, so the 99th percentile of the standard-dose T1c (robust z
  2.4, 12 training subjects of seed 0) lies below most enhancing lesions (z 1.9-6.3)
  and the low-dose T1c's (z 1.65) below the standard-dose lesions fed in at prediction:
  clipping removes the contrast to be amplified, and the ``paper`` arm's T1c-pro came
  out flat (docs/results.md). Without the clip and the sigmoid the output is unbounded
  and can exceed the standard dose.
- The output added to the T1c: the network learns what to add to the T1c, and what it
  cannot tell from noise, such as a metastasis of one or two voxels at the low dose,
  passes through as it came instead of being smoothed away. In 5-fold cross-validation
  on 30 phantom subjects (24 epochs per fold, docs/results.md) it kept the plain
  U-Net's contrast (CNR 3.6 times the T1c's), came nearer the true quadruple dose (RMSE
  0.49 against 0.71) and kept the small metastases, and the reader stand-in found 50
  of 59 lesions on its T1c-pro against 40 on the plain U-Net's (48 on the T1c).

Choices where the paper is silent or does not fit the engine:
- Output unit: the robust z-score of the standard-dose T1c (the target's normalisation
  inverted; ``paper`` arm: percentile mapping undone, clipping not). The evaluation
  maps it to the input T1c's own intensity scale with that T1c's median and IQR / 1.349
  inside the brain (brain tissue barely enhances, so the amplified image keeps the
  T1c's median and spread); CNR, LBR and CEP are computed there.
- Crop only, no padding: with sliding-window inference the network needs no fixed
  input size, and padding would only add background.
- Training on 32^3 (2 mm) patches of a grid (steps 16) instead of whole volumes,
  batch 4, and prediction by Gaussian-blended sliding windows (at most 96^3, fitted to
  the volume with at least 12.5 % overlap); the study's 2x2x2 down/up-sampling is
  MONAI's strided 3x3x3 convolutions.
- Inputs are stacked T1c first (T1c, T1w, FLAIR, ADC) so that outputs land on the T1c's
  grid.

Evaluation (phantom truth; every case with enhancing lesions): CNR, LBR and CEP
(:mod:`lesionkit.metrics.contrast`) in the enhancing part of the lesions (lesion mask
and enhancing fraction >= 0.5) against normal-appearing white matter (NAWM probability
>= 0.9), for T1c, T1c-pro and the phantom's true quadruple-dose T1c; RMSE and SSIM of
T1c and T1c-pro against the quadruple dose (in the T1c's robust z-score units) and
their lesion contrast over the quadruple dose's. No reader: an automatic stand-in
(:mod:`lesionkit.metrics.detection`) runs on T1c, T1c-pro and the quadruple dose alike.
Laplacian-of-Gaussian blobs are its candidates; a gradient-boosting classifier of what a
reader sees of each (blobness, size, depth below the brain surface, brightness at the
centre and in the surround, and the same on the pre-contrast T1w, FLAIR and ADC) scores
them, fitted on the training cases only (the folds that did not see the case), with
three thresholds chosen there on out-of-fold scores: the best F1 and the lowest
thresholds with at most 0.5 and at most one false detection per training case. Two
readings (:data:`READINGS`): the study's protocol as METHODS.md sets it, the same
detector with the same thresholds on every image (the stand-in fitted on the training
cases' standard-dose T1c); and, as a reader learns the kind of image read, a stand-in
for each kind fitted on the training cases' images of that kind: their T1c, their
quadruple dose, and their T1c-pro as the model that predicted the case makes it (in
cross-validation the case's own fold, which trained on them and never saw the case;
:func:`_training_outputs`). Read by the T1c's stand-in, T1c-pro lost lesions the T1c
shows; by its own, it found more at about the same rate of false detections
(docs/results.md). Lesion axes below one voxel (small metastases measured on the grid)
count as one voxel for the matching. The blob score alone could not tell the phantom's
enhancing vessels and choroid plexus from metastases (on 30 phantom subjects at best
F1: 20 % sensitivity at 5.2 false detections per case on T1c; with the classifier 81 %
at 1.9; docs/results.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.tasks.strategies import GridSampler, SlidingWindow
from lesionkit.tasks.task import DemoStep, ImageSpec, OutputSpec, Task, Transform

#: Per-image robust z-score (unclipped): the default, see the module doc.
NORMALISATION = "image-zscore"
#: The study's preprocessing: that z-score clipped to the training 1st/99th percentiles,
#: mapped to [0, 1] (the ``paper`` arm, with a sigmoid head).
PAPER_NORMALISATION = "image-zscore-percentile"
GADOLINIUM = ("ce", "gadolinium")
T1C_LOW = ImageSpec("t1c", "T1w", entities=(GADOLINIUM, ("acq", "low")),
                    normalisation=NORMALISATION)
T1C = ImageSpec("t1c", "T1w", entities=(GADOLINIUM, ("acq", "standard")),
                normalisation=NORMALISATION)
T1C_TARGET = replace(T1C, key="t1c_target")
T1W = ImageSpec("t1w", "T1w", exclude=("ce", "acq"), normalisation=NORMALISATION)
FLAIR = ImageSpec("flair", "FLAIR", normalisation=NORMALISATION, prefer_without=("ce",))
ADC = ImageSpec("adc", "ADC", unit="1e-3 mm^2/s", normalisation=NORMALISATION)
BRAIN = ImageSpec("brain", "mask", derivatives="phantom", entities=(("desc", "brain"),),
                  kind="label", unit="1", normalisation="none", other_pipelines=True)
AMPLIFIED = OutputSpec("T1w", "amplified", "z (standard-dose T1c, robust z-score)",
                       target="t1c_target", entities=(GADOLINIUM,))
#: Truth images of the phantom (derivatives/phantom).
QUADRUPLE = {"suffix": "T1w", "ce": "gadolinium", "acq": "quadruple"}
#: Paper values (79 test cases): T1c -> T1c-pro.
PAPER = {"cnr": (9.1, 44.5), "lbr": (1.31, 1.66), "cep": (85.6, 112.4),
         "sensitivity (all)": (0.59, 0.75), "sensitivity (>= 5 mm)": (0.70, 0.85),
         "sensitivity (>= 10 mm)": (0.88, 0.96), "false detections per case": (0.05, 0.14)}
METHODS = ("T1c", "T1c-pro", "quadruple-dose")
#: Detector operating points: name -> false-detection budget per training case (None: F1).
OPERATING_POINTS = {"f1": None, "fp05": 0.5, "fp1": 1.0}
#: The two readings: column prefix -> what reads every image. "" is the study's protocol
#: as METHODS.md sets it (the same detector with the same thresholds on every image: the
#: stand-in fitted on the training cases' T1c); "own-" gives each kind of image a
#: stand-in fitted on the training cases' images of that kind (:func:`readers`).
READINGS = {"": "T1c's reader stand-in on every image",
            "own-": "each image's own reader stand-in"}
#: Every detection column's point (reading prefix + operating point), in report order.
POINTS = tuple(prefix + name for prefix in READINGS for name in OPERATING_POINTS)
_POINT_TEXT = {"f1": "best F1", "fp05": "at most 0.5 false detections per training case",
               "fp1": "at most one false detection per training case"}
#: How each point reads in the report.
POINT_NAMES = {prefix + name: f"{READINGS[prefix]}, {_POINT_TEXT[name]}"
               for prefix in READINGS for name in OPERATING_POINTS}
STRATA_MM = (0.0, 5.0, 10.0)
#: Half the size of the crop box (mm): the study's 160 x 192 x 160 voxels at 1 mm.
CROP_MM = (160, 192, 160)


def amplifier(in_channels: int, out_channels: int,
              channels: tuple[int, ...] = (32, 64, 128, 256),
              strides: tuple[int, ...] | None = None, num_res_units: int = 2,
              norm: str = "batch") -> Any:
    """The residual 3D U-Net (:func:`lesionkit.models.residual_unet`, LeakyReLU 0.2) with
    a sigmoid head, so that the output is in the [0, 1] of the normalised target (the
    ``paper`` arm)."""
    from torch import nn

    from lesionkit.models import residual_unet

    return nn.Sequential(residual_unet(in_channels, out_channels, channels, strides,
                                       num_res_units=num_res_units, norm=norm), nn.Sigmoid())


# --- reading ------------------------------------------------------------------------------

def _read(root: Path, subject: str, suffix: str, derivatives: str | None = None,
          like: Any = None, kind: str = "intensity", **entities: str | None) -> Any:
    """The one matching volume (None when absent), on the grid of ``like`` when given."""
    from lesionkit.bids import BIDSDataset

    query = {"derivatives": derivatives, "other_pipelines": derivatives is not None,
             **entities}
    found = BIDSDataset(root).locate(subject, suffix, **query)
    return _on_grid(found[0].path, like, kind) if len(found) == 1 else None


def _entities(spec: ImageSpec) -> dict[str, Any]:
    """A raw image spec's entity query (None: the entity must be absent)."""
    return {**dict(spec.entities), **dict.fromkeys(spec.exclude)}


def _robust(image: np.ndarray, brain: np.ndarray) -> tuple[float, float]:
    """Median and interquartile range / 1.349 inside the brain (the per-image z-score)."""
    q1, median, q3 = np.percentile(image[brain], [25, 50, 75])
    return float(median), float(q3 - q1) / 1.349 or 1.0


def _lesion_table(root: Path, subject: str) -> Any:
    import pandas as pd

    from lesionkit.bids import BIDSDataset

    found = BIDSDataset(root).find(subject=subject, suffix="lesions", derivatives="phantom",
                                   extension=".tsv")
    if not found:
        return None
    table = pd.read_csv(found[0].path, sep="\t")
    return table if len(table) else table.iloc[0:0]


def _reference(table: Any, voxel_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lesion centres (mm), long and short axes (mm, at least ``voxel_mm``)."""
    if table is None or not len(table):
        return np.zeros((0, 3)), np.zeros(0), np.zeros(0)
    axes = [np.maximum(table[c].to_numpy(float), voxel_mm) for c in ("long_axis_mm",
                                                                    "short_axis_mm")]
    return table[["centre_x", "centre_y", "centre_z"]].to_numpy(float), *axes


def _on_grid(path: str | Path, like: Any = None, kind: str = "intensity") -> Any:
    """A volume from ``path``, resampled onto the grid of ``like`` when that differs."""
    from lesionkit.io import load_volume

    volume = load_volume(path, kind=kind)
    if like is not None and (volume.shape != like.shape or
                             not np.allclose(volume.affine, like.affine, atol=1e-3)):
        from lesionkit.volume import resample_to

        volume = resample_to(volume, like.shape, like.affine,
                             order=0 if kind == "label" else 1)
    return volume


@functools.lru_cache(maxsize=512)
def _candidates(path: str, mtime: float, brain_path: str, context: tuple[str, ...]
                ) -> tuple[Any, np.ndarray]:
    """Detector candidates of one image file and their features (cached: training cases
    recur per subject).

    The detector and the features z-score every image inside the brain, so any linear
    intensity scale (z-score units, the T1c's scale) gives the same candidates.

    Args:
        path: The image read.
        mtime: Its modification time (a key of the cache).
        brain_path: Brain mask of the subject.
        context: The subject's other images (paths) for the reader's features.
    """
    from lesionkit.metrics.detection import blob_candidates, candidate_features

    image = _on_grid(path)
    brain = _on_grid(brain_path, image, "label").data > 0.5
    found = blob_candidates(image.data, brain, image.spacing)
    others = [_on_grid(other, image).data for other in context]
    return found, candidate_features(found, image.data, brain, image.spacing, others)


def _file_candidates(path: Path, brain_path: Path, context: tuple[str, ...] = ()
                     ) -> tuple[Any, np.ndarray]:
    return _candidates(str(path), path.stat().st_mtime, str(brain_path), context)


def _brain_path(spec: ImageSpec | None, root: Path, subject: str) -> Path | None:
    from lesionkit.bids import BIDSDataset

    spec = spec or BRAIN
    found = BIDSDataset(root).locate(subject, spec.suffix, derivatives=spec.derivatives,
                                     other_pipelines=spec.other_pipelines,
                                     **dict(spec.entities))
    return found[0].path if len(found) == 1 else None


def context_specs(task: Task) -> tuple[ImageSpec, ...]:
    """The images besides the T1c that the reader stand-in looks at (pre-contrast T1w,
    FLAIR and, where the task reads it, ADC)."""
    return tuple(s for s in task.predict_inputs if s.key != T1C.key)


def _context_paths(context: tuple[ImageSpec, ...], root: Path, subject: str
                   ) -> tuple[str, ...] | None:
    paths = [_image_path(root, subject, spec) for spec in context]
    return None if None in paths else tuple(str(p) for p in paths)


def _case_candidates(mask: ImageSpec | None, context: tuple[ImageSpec, ...], root: Path,
                     subject: str, image: str | None = None) -> Any:
    """Candidates and features of a training case's image (path; default its
    standard-dose T1c) with its lesion references."""
    from lesionkit.io import load_affine

    brain = _brain_path(mask, root, subject)
    path = Path(image) if image else _image_path(root, subject, T1C)
    others = _context_paths(context, root, subject)
    table = _lesion_table(root, subject)
    if brain is None or path is None or others is None or table is None:
        return None
    affine = load_affine(path)
    voxel = float(np.abs(np.linalg.det(affine[:3, :3])) ** (1 / 3))
    return (*_file_candidates(path, brain, others), affine, *_reference(table, voxel))


def _sidecar(predictions: Path, subject: str) -> dict[str, Any]:
    """The sidecar of ``subject``'s T1c-pro ({} when there is none or it cannot be read)."""
    from lesionkit.bids import BIDSDataset
    from lesionkit.io import read_sidecar

    found = BIDSDataset(predictions).find(subject=subject, suffix=AMPLIFIED.suffix,
                                          desc=AMPLIFIED.desc)
    return read_sidecar(found[0].sidecar, "its model folder is not known"
                        ) if found else {}


def _training_split(root: Path, predictions: Path, subject: str
                    ) -> tuple[Path | None, list[str], tuple[int, ...] | None]:
    """The model folder that predicted ``subject`` (None when unknown), the subjects it
    trained on (:func:`training_cases`) and the indices of the folds that predicted
    ``subject`` (None when the model trained on another dataset or is unknown)."""
    import yaml

    from lesionkit.bids import BIDSDataset
    from lesionkit.units import trained_on

    model = _sidecar(predictions, subject).get("ModelFolder")
    config = Path(model) / "config.yaml" if model else None
    others = [s for s in BIDSDataset(root).subjects() if s != subject]
    if config is None or not config.is_file():
        return None, others, None
    stored = yaml.safe_load(config.read_text())
    if not trained_on(stored, root):
        return Path(model), others, None
    from lesionkit.units import subjects_of

    folds = [subjects_of(f["train"]) for f in stored.get("folds", [])]
    held_out = [i for i, f in enumerate(folds) if subject not in f] or list(range(len(folds)))
    return Path(model), sorted({s for i in held_out for s in folds[i]} - {subject}), tuple(
        held_out)


def training_cases(root: Path, predictions: Path, subject: str) -> list[str]:
    """Subjects the model that predicted ``subject`` trained on (the folds that did not
    train on it, as prediction uses them); every other subject of the dataset (leave one
    out) when there is no model folder or when the model trained on another dataset (a
    shipped model: its subject labels name other subjects)."""
    return _training_split(root, predictions, subject)[1]


def _training_outputs(root: Path, predictions: Path, subject: str,
                      predict: Callable[..., Any] | None = None) -> dict[str, Path]:
    """T1c-pro of the training cases of ``subject`` (:func:`training_cases`), by the
    model that predicted ``subject``, for the reader stand-in of T1c-pro.

    When that model trained on this dataset (cross-validation), every training case is
    predicted by the very folds that predicted ``subject``, which trained on them and
    never saw ``subject``; the predictions are kept under
    ``PREDICTIONS/derivatives/reader-cases-folds-<indices>`` and redone when the model
    is newer. Otherwise the cases' T1c-pro in ``predictions`` are used, the missing ones
    predicted by the model into ``PREDICTIONS/derivatives/reader-cases``. Cases without
    a T1c-pro (no model folder known, or no ``predict``: the engine's
    :func:`lesionkit.infer.predict`, handed over by the evaluation) are left out.
    """
    import sys

    from lesionkit.io import InputError

    model, cases, folds = _training_split(root, predictions, subject)
    if folds is None:
        paths = {t: _output_path(predictions, t) for t in cases}
        cache = predictions / "derivatives" / "reader-cases"
    else:
        paths = dict.fromkeys(cases)
        cache = predictions / "derivatives" / f"reader-cases-folds-{'-'.join(map(str, folds))}"
    missing = [t for t, path in paths.items() if path is None]
    if missing and predict is not None and model is not None and (
            model / "config.yaml").is_file():
        built = (model / "config.yaml").stat().st_mtime
        stale = [t for t in missing if (found := _output_path(cache, t)) is None
                 or found.stat().st_mtime < built]
        if stale:
            try:
                predict(model, root, tta=_sidecar(predictions, subject).get("TestTimeFlips"),
                        subjects=stale, progress=False, out_dir=cache, folds=folds)
            except InputError as error:  # a case without the inputs: fewer cases
                print(f"warning: reader stand-in of T1c-pro: {error}", file=sys.stderr)
        paths.update({t: _output_path(cache, t) for t in missing})
    return {t: path for t, path in paths.items() if path is not None}


@functools.lru_cache(maxsize=64)
def reader(mask: ImageSpec | None, context: tuple[ImageSpec, ...], root: Path,
           cases: tuple[str, ...], images: tuple[str, ...] | None = None) -> Any:
    """The reader stand-in fitted on ``cases`` (training subjects) only: its candidate
    classifier and a threshold per operating point
    (:func:`lesionkit.metrics.detection.fit_reader`).

    Args:
        mask: The task's brain-mask spec.
        context: The subjects' other images the reader looks at.
        root: The dataset.
        cases: Training subjects.
        images: The image of each case read (paths; default: their standard-dose T1c).
    """
    from lesionkit.metrics.detection import fit_reader

    found = [c for c in (_case_candidates(mask, context, root, s, image) for s, image in
                         zip(cases, images or (None,) * len(cases), strict=True))
             if c is not None]
    return fit_reader(found, OPERATING_POINTS)


def readers(task: Task, root: Path, predictions: Path, subject: str,
            predict: Callable[..., Any] | None = None) -> dict[str, tuple[Any, str, int]]:
    """The reader stand-in of each image type for ``subject``: image -> (reader, the kind
    of image it was fitted on, training cases read).

    Each is fitted on the training cases' images of its own kind, as a reader is trained
    on the images read: the standard-dose T1c, the T1c-pro (:func:`_training_outputs`)
    and the quadruple dose. Where fewer than two training cases have an image of the
    kind, the T1c's reader reads it.
    """
    context = context_specs(task)
    cases = tuple(training_cases(root, predictions, subject))
    t1c = (reader(task.mask, context, root, cases), "T1c", len(cases))
    fitted = {"T1c": t1c}
    quadruple = {t: _quadruple_path(root, t) for t in cases}
    for method, paths in (("T1c-pro", _training_outputs(root, predictions, subject,
                                                          predict)),
                          ("quadruple-dose", {t: p for t, p in quadruple.items() if p})):
        fitted[method] = t1c if len(paths) < 2 else (
            reader(task.mask, context, root, tuple(paths), tuple(str(p) for p in
                                                                 paths.values())),
            method, len(paths))
    return fitted


# --- evaluation ---------------------------------------------------------------------------

def evaluate(task: Task, root: Path, predictions: Path, subjects: list[str],
             predict: Callable[..., Any] | None = None) -> list[dict]:
    """Rows per subject and image (``method`` T1c, T1c-pro, quadruple-dose) and one row
    per reference lesion (``method`` lesion) with its detection on each image.

    Case rows: CNR, LBR, CEP (%) in the enhancing lesion against NAWM; RMSE, SSIM and the
    lesion contrast over the quadruple dose's; detected lesions and false detections at
    each point of :data:`POINTS`: by the T1c's reader stand-in with its thresholds on
    every image (``found_f1``, ``false_f1``, ``found_fp05``, ...; ``training_cases``) and
    by the image's own (``found_own-f1``, ...; ``own_reader_fitted_on`` names the kind of
    image it learnt from, ``own_reader_cases`` how many cases; :func:`readers`).
    ``predict``: the engine's prediction function (handed over by
    :func:`lesionkit.evaluation.evaluate`), which makes the training cases' T1c-pro.
    """
    from lesionkit.io import load_volume
    from lesionkit.metrics import cep, cnr, lbr, match_detections, rmse, ssim

    rows: list[dict] = []
    for subject in subjects:
        pro_path = _output_path(predictions, subject)
        if pro_path is None:
            continue
        pro = load_volume(pro_path)
        t1c = _read(root, subject, T1C.suffix, like=pro, **_entities(T1C))
        pre = _read(root, subject, T1W.suffix, like=pro, **_entities(T1W))
        brain_path = _brain_path(task.mask, root, subject)
        context = context_specs(task)
        others = _context_paths(context, root, subject)
        if t1c is None or pre is None or brain_path is None or others is None:
            continue
        brain = load_volume(brain_path, kind="label").data > 0.5
        median, scale = _robust(t1c.data, brain)
        images = {"T1c": t1c.data, "T1c-pro": pro.data * scale + median}
        quad = _read(root, subject, "T1w", "phantom", like=pro,
                     **{k: v for k, v in QUADRUPLE.items() if k != "suffix"})
        if quad is not None:
            images["quadruple-dose"] = quad.data
        lesion = _read(root, subject, "mask", "phantom", like=pro, kind="label", label="lesion")
        enhancing = _read(root, subject, "probseg", "phantom", like=pro, label="enhancing")
        nawm = _read(root, subject, "probseg", "phantom", like=pro, label="NAWM")
        roi = None if lesion is None else lesion.data > 0.5
        if roi is not None and enhancing is not None and (roi & (enhancing.data >= 0.5)).any():
            roi = roi & (enhancing.data >= 0.5)
        normal = brain if nawm is None else (nawm.data >= 0.9)
        if roi is not None:
            normal = normal & ~roi
        table = _lesion_table(root, subject)
        centres, long_mm, short_mm = _reference(table, float(np.prod(pro.spacing)) ** (1 / 3))
        fitted = readers(task, root, predictions, subject, predict)
        paths = {"T1c": _image_path(root, subject, T1C), "T1c-pro": pro_path,
                 "quadruple-dose": _quadruple_path(root, subject)}
        detections, thresholds = {}, {}
        for method, image in images.items():
            detections[method], thresholds[method] = {}, {}
            for prefix, (method_reader, *_) in (("", fitted["T1c"]),
                                                ("own-", fitted[method])):
                found = _scored(method_reader, paths[method], brain_path, others, image,
                                brain, pro)
                for name, t in method_reader.thresholds.items():
                    thresholds[method][prefix + name] = t
                    detections[method][prefix + name] = match_detections(
                        found.above(t).centres_mm(pro.affine), centres, long_mm, short_mm)
            row: dict = {"participant_id": f"sub-{subject}", "method": method,
                         "lesions": len(centres), "training_cases": fitted["T1c"][2],
                         "own_reader_fitted_on": fitted[method][1],
                         "own_reader_cases": fitted[method][2]}
            has_roi = roi is not None and roi.any()
            row["cnr"] = cnr(image, roi, normal) if has_roi else None
            row["lbr"] = lbr(image, roi, normal) if has_roi else None
            row["cep"] = cep(image, pre.data, roi) if has_roi else None
            reference = images.get("quadruple-dose")
            scored = reference is not None and method != "quadruple-dose"
            z = (image - median) / scale
            zq = None if reference is None else (reference - median) / scale
            row["rmse_quadruple"] = rmse(z, zq, brain) if scored else None
            row["ssim_quadruple"] = ssim(z, zq, brain) if scored else None
            row["contrast_over_quadruple"] = (
                _contrast(image, roi, normal) / _contrast(reference, roi, normal)
                if scored and has_roi else None)
            for name, match in detections[method].items():
                row[f"found_{name}"] = int(match.found.sum())
                row[f"false_{name}"] = match.false_detections
                row[f"true_{name}"] = int(match.within.any(axis=1).sum())
                row[f"threshold_{name}"] = thresholds[method][name]
            rows.append(row)
        for j in range(len(centres)):
            lesion_row: dict = {"participant_id": f"sub-{subject}", "method": "lesion",
                                "lesion": int(table["label"].iloc[j]),
                                "long_axis_mm": float(long_mm[j]),
                                "short_axis_mm": float(short_mm[j])}
            for method, by_point in detections.items():
                for name, match in by_point.items():
                    lesion_row[f"{method}_{name}"] = int(match.found[j])
            rows.append(lesion_row)
    return rows


def _scored(fitted: Any, path: Path | None, brain_path: Path, context: tuple[str, ...],
            image: np.ndarray, brain: np.ndarray, like: Any) -> Any:
    """The reader's candidates on one image of a held-out case, scored by its classifier.

    From the file (cached) when it lies on the grid of ``like``; else from ``image``
    (already on that grid) with the context images resampled onto it.
    """
    from lesionkit.io import load_affine
    from lesionkit.metrics.detection import blob_candidates, candidate_features

    if path is not None and np.allclose(load_affine(path), like.affine, atol=1e-3):
        found, features = _file_candidates(path, brain_path, context)
    else:
        found = blob_candidates(image, brain, like.spacing)
        others = [_on_grid(other, like).data for other in context]
        features = candidate_features(found, image, brain, like.spacing, others)
    return fitted.score(found, features)


def _contrast(image: np.ndarray, roi: np.ndarray, normal: np.ndarray) -> float:
    return float(image[roi].mean() - image[normal].mean())


def _image_path(root: Path, subject: str, spec: ImageSpec) -> Path | None:
    from lesionkit.bids import BIDSDataset

    found = BIDSDataset(root).locate(subject, spec.suffix, **spec.query())
    return found[0].path if len(found) == 1 else None


def _quadruple_path(root: Path, subject: str) -> Path | None:
    from lesionkit.bids import BIDSDataset

    entities = {k: v for k, v in QUADRUPLE.items() if k != "suffix"}
    found = BIDSDataset(root).find(subject=subject, suffix=QUADRUPLE["suffix"],
                                   derivatives="phantom", **entities)
    return found[0].path if len(found) == 1 else None


def _output_path(predictions: Path, subject: str) -> Path | None:
    from lesionkit.bids import BIDSDataset

    if not Path(predictions).is_dir():
        return None
    found = BIDSDataset(predictions).find(subject=subject, suffix=AMPLIFIED.suffix,
                                          desc=AMPLIFIED.desc)
    return found[0].path if len(found) == 1 else None


# --- report -------------------------------------------------------------------------------

def _cases(rows: list[dict], method: str) -> list[dict]:
    return [r for r in rows if r.get("method") == method]


def _mean(values: list[Any]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _paired(rows: list[dict], column: str, a: str = "T1c-pro", b: str = "T1c"
            ) -> tuple[np.ndarray, np.ndarray]:
    first = {r["participant_id"]: r.get(column) for r in _cases(rows, a)}
    second = {r["participant_id"]: r.get(column) for r in _cases(rows, b)}
    shared = [k for k in first if first[k] is not None and second.get(k) is not None]
    return (np.array([first[k] for k in shared], float),
            np.array([second[k] for k in shared], float))


def detection_summary(rows: list[dict], point: str) -> list[dict]:
    """Sensitivity per size stratum (Clopper-Pearson 95 %), false detections per case,
    PPV and F1 for each image at one operating point; T1c-pro vs T1c: McNemar mid-p on
    the paired lesions and Wilcoxon signed-rank on the paired false detections."""
    from lesionkit.stats import (
        clopper_pearson,
        discordant_pairs,
        mcnemar_midp,
        wilcoxon_signed_rank,
    )

    lesions = _cases(rows, "lesion")
    out = []
    for method in METHODS:
        column = f"{method}_{point}"
        cases = _cases(rows, method)
        if not cases or not all(column in r for r in lesions):
            continue
        false = sum(r[f"false_{point}"] for r in cases)
        true = sum(r[f"true_{point}"] for r in cases)
        for low in STRATA_MM:
            chosen = [r for r in lesions if r["long_axis_mm"] >= low]
            k = sum(r[column] for r in chosen)
            interval = clopper_pearson(k, len(chosen))
            row = {"operating point": point, "image": method,
                   "lesions": f">= {low:g} mm" if low else "all", "n": len(chosen),
                   "sensitivity": interval.estimate, "ci low": interval.ci_low,
                   "ci high": interval.ci_high,
                   "false detections per case": false / len(cases),
                   "ppv": true / (true + false) if true + false else None}
            sens, ppv = row["sensitivity"], row["ppv"]
            row["f1"] = (2 * sens * ppv / (sens + ppv) if ppv and sens and not np.isnan(sens)
                         else 0.0)
            if method == "T1c-pro" and chosen:
                b, c = discordant_pairs([r[column] for r in chosen],
                                        [r[f"T1c_{point}"] for r in chosen])
                row["McNemar mid-p vs T1c"] = mcnemar_midp(b, c).p
                x, y = _paired(rows, f"false_{point}")
                row["Wilcoxon p (false detections) vs T1c"] = (
                    wilcoxon_signed_rank(x, y).p if len(x) else None)
            out.append(row)
    return out


def comparison_table(rows: list[dict]) -> list[dict]:
    """The paper's T1c -> T1c-pro figures beside the phantom's (means; paired t-tests)."""
    from lesionkit.stats import paired_t

    table = []
    for metric in ("cnr", "lbr", "cep"):
        x, y = _paired(rows, metric)
        test = paired_t(x, y) if len(x) > 1 else None
        table.append({"figure": metric.upper() + (" (%)" if metric == "cep" else ""),
                      "paper T1c": PAPER[metric][0], "paper T1c-pro": PAPER[metric][1],
                      "phantom T1c": _mean([r.get(metric) for r in _cases(rows, "T1c")]),
                      "phantom T1c-pro": _mean([r.get(metric) for r in _cases(rows, "T1c-pro")]),
                      "phantom quadruple dose": _mean([r.get(metric) for r in
                                                       _cases(rows, "quadruple-dose")]),
                      "cases": len(x), "paired t p": None if test is None else test.p})
    images = (("T1c", "T1c"), ("T1c-pro", "T1c-pro"), ("quadruple dose", "quadruple-dose"))
    for point in ("f1", "own-fp05"):
        summary = {(r["image"], r["lesions"]): r for r in detection_summary(rows, point)}
        for label, key, column in (
                ("sensitivity (all)", "all", "sensitivity"),
                ("sensitivity (>= 5 mm)", ">= 5 mm", "sensitivity"),
                ("sensitivity (>= 10 mm)", ">= 10 mm", "sensitivity"),
                ("false detections per case", "all", "false detections per case")):
            table.append({"figure": f"{label}, detector at {POINT_NAMES[point]}",
                          "paper T1c": PAPER[label][0], "paper T1c-pro": PAPER[label][1],
                          **{f"phantom {name}": summary.get((method, key), {}).get(column)
                             for name, method in images}})
    return table


def _sensitivity_figure(rows: list[dict]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.6 * len(OPERATING_POINTS), 3.4 * len(READINGS)),
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(READINGS), len(OPERATING_POINTS), squeeze=False)
    for ax, point in zip(axes.ravel(), POINTS, strict=True):
        summary = detection_summary(rows, point)
        for offset, method in enumerate(METHODS):
            chosen = [r for r in summary if r["image"] == method]
            if not chosen:
                continue
            x = np.arange(len(chosen)) + (offset - 1) * 0.27
            y = np.array([r["sensitivity"] for r in chosen])
            err = np.array([[r["sensitivity"] - r["ci low"], r["ci high"] - r["sensitivity"]]
                            for r in chosen]).T
            fp = chosen[0]["false detections per case"]
            ax.bar(x, y, 0.27, yerr=err, capsize=3, label=f"{method} ({fp:.2f} FD/case)")
        ax.set_xticks(range(len(STRATA_MM)),
                      [f">= {s:g} mm" if s else "all" for s in STRATA_MM])
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("sensitivity (95 % CI)")
        reading, _, at = POINT_NAMES[point].partition(", ")
        ax.set_title(f"{reading}\n{at}", fontsize=8)
        ax.legend(fontsize=7, loc="lower right")
    return figure


def _slice_figure(images: dict[str, np.ndarray], outline: np.ndarray, centre: np.ndarray,
                  detections: dict[str, np.ndarray]) -> Any:
    """Axial slices through ``centre`` (voxels) with lesion outlines (yellow) and the
    detections (red circles) within one slice of it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = int(np.rint(centre[2]))
    figure = Figure(figsize=(3.3 * len(images), 3.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = np.atleast_1d(figure.subplots(1, len(images)))
    for ax, (name, image) in zip(axes, images.items(), strict=True):
        plane = image[:, :, k].T
        low, high = np.percentile(plane[plane != 0] if (plane != 0).any() else plane, [1, 99.5])
        ax.imshow(plane, cmap="gray", vmin=low, vmax=high, origin="lower")
        ax.contour(outline[:, :, k].T, levels=[0.5], colors="yellow", linewidths=0.8)
        near = detections.get(name, np.zeros((0, 3)))
        near = near[np.abs(near[:, 2] - k) <= 1] if len(near) else near
        ax.scatter(near[:, 0], near[:, 1], s=90, facecolors="none", edgecolors="red",
                   linewidths=1.0)
        ax.set_title(f"{name} ({len(near)} detections here)")
        ax.set_axis_off()
    return figure


def report_sections(task: Task, root: Path, predictions: Path, subjects: list[str],
                    rows: list[dict]) -> list:
    """The paper's figures beside the phantom's, statistics, sensitivity by size, slices."""
    from lesionkit.io import load_volume
    from lesionkit.report import Section, caption

    root, predictions = Path(root), Path(predictions)
    figures: dict[str, Any] = {}
    method = (f"{task.name} network (T1c-pro) beside T1c and the true quadruple dose; "
              "reader stand-in: Laplacian-of-Gaussian blobs scored by a classifier")
    if _cases(rows, "lesion"):
        figures[caption("detector sensitivity by lesion long axis with Clopper-Pearson 95 % "
                        "intervals; FD: false detections", f"{len(_cases(rows, 'T1c'))} "
                        "held-out cases", method, "thresholds on each reader's score (lesion "
                        "probability; blobness where the training cases fit no classifier) "
                        "chosen on the training cases: best F1, at most 0.5 and at most "
                        "one false detection per case")] = _sensitivity_figure(rows)
    lesion_rows = sorted(_cases(rows, "lesion"), key=lambda r: r["long_axis_mm"])
    shown: list[str] = []
    for row in lesion_rows[::max(1, len(lesion_rows) // 3)]:
        subject = row["participant_id"].removeprefix("sub-")
        pro_path = _output_path(predictions, subject)
        brain_path = _brain_path(task.mask, root, subject)
        if subject in shown or pro_path is None or brain_path is None or len(shown) >= 3:
            continue
        pro = load_volume(pro_path)
        paths = {"T1c": _image_path(root, subject, T1C), "T1c-pro": pro_path,
                 "quadruple-dose": _quadruple_path(root, subject)}
        context = context_specs(task)
        fitted = reader(task.mask, context, root, tuple(training_cases(root, predictions,
                                                                       subject)))
        others = _context_paths(context, root, subject) or ()
        brain = load_volume(brain_path, kind="label").data > 0.5
        images, found = {}, {}
        for name, path in paths.items():
            if path is None:
                continue
            images[name] = load_volume(path).data
            found[name] = _scored(fitted, path, brain_path, others, images[name], brain,
                                  pro).above(fitted.thresholds["f1"]).centres
        lesion = _read(root, subject, "mask", "phantom", like=pro, kind="label",
                       label="lesion")
        table = _lesion_table(root, subject)
        label = table[table["label"] == row["lesion"]].iloc[0]
        centre = np.linalg.inv(pro.affine) @ np.array(
            [label["centre_x"], label["centre_y"], label["centre_z"], 1.0])
        figures[caption(f"lesion {row['lesion']} ({row['long_axis_mm']:.1f} mm), axial "
                        "slices of T1c, T1c-pro and the true quadruple dose; lesion outlines in "
                        "yellow, detections in red", row["participant_id"], method,
                        "the T1c's reader stand-in on every image at its best-F1 "
                        f"threshold {fitted.thresholds['f1']:.3g} "
                        f"({fitted.score_name})")] = _slice_figure(
            images, lesion.data > 0.5 if lesion is not None else np.zeros(pro.shape, bool),
            centre[:3], found)
        shown.append(subject)
    cases = _cases(rows, "T1c")
    text = (
        f"{task.name} on {len(cases)} held-out cases of {root.name} "
        f"({sum(r['lesions'] > 0 for r in cases)} with lesions, "
        f"{len(_cases(rows, 'lesion'))} lesions). CNR = (SI_lesion - SI_NAWM) / SD_NAWM, "
        "LBR = SI_lesion / SI_NAWM and CEP = 100 (SI_lesion - SI_pre) / SI_pre in the "
        "enhancing part of the lesions, T1c-pro in the input T1c's intensity scale; paired "
        "t-tests T1c-pro vs T1c. No reader took part: an automatic detector stands in for "
        "the study's readers, run alike on T1c, T1c-pro and the phantom's true "
        "quadruple-dose T1c: Laplacian-of-Gaussian blobs as candidates, scored by a "
        "gradient-boosting classifier of their blobness, size, depth below the brain "
        "surface and brightness at the centre and in the surround on the image read and on "
        "the pre-contrast T1w, FLAIR and ADC. Two readings: as the study's protocol sets "
        "it, the same detector with the same thresholds on every image (the stand-in "
        "fitted on the training cases' T1c only); and, as a reader learns the kind of image "
        "read, a stand-in for each kind fitted on the training cases' images of that kind "
        "only: their T1c, their quadruple dose, and their T1c-pro as the model that "
        "predicted the case makes it (in cross-validation the case's own fold, which "
        "trained on them and never saw the case). Each stand-in's thresholds are chosen on "
        "its training cases' out-of-fold scores: best F1, at most 0.5 and at most one "
        "false detection per training case; at the last two its images are compared at "
        "about the same rate of false detections. A detection matches a lesion when "
        "their centres are closer than half the mean of the lesion's long and short "
        "axes. Sensitivity with Clopper-Pearson 95 % intervals, McNemar mid-p on paired "
        "lesions, Wilcoxon signed-rank on paired false detections. "
        "Paper values: 79 test cases of the contrast-amplification study (seed 003).")
    tables = {"paper vs phantom": comparison_table(rows),
              **{f"detection ({POINT_NAMES[point]})": detection_summary(rows, point)
                 for point in POINTS},
              "per case": [r for r in rows if r.get("method") != "lesion"],
              "per lesion": _cases(rows, "lesion")}
    return [Section(f"{task.name}: contrast and detection", text, tables=tables, units=UNITS,
                    first=task.metrics),
            Section(f"{task.name}: images", figures=figures)]


#: Units of the report's table columns (CNR and LBR are ratios; T1c-pro differences in
#: the robust z-score of the input T1c: median and IQR / 1.349 inside the brain; the
#: thresholds on the reader's score: lesion probability, or blobness where the training
#: cases fit no classifier).
UNITS = {"cep": "%", "rmse_quadruple": "z",
         **{f"threshold_{point}": "reader score" for point in POINTS},
         "sensitivity": "0-1", "ci low": "0-1", "ci high": "0-1",
         "ppv": "0-1", "f1": "0-1",
         **{f"{what}_{point}": unit for point in POINTS
            for what, unit in (("found", "lesions"), ("false", "false detections"))}}

def _normalised(specs: tuple[ImageSpec, ...], normalisation: str) -> tuple[ImageSpec, ...]:
    return tuple(replace(s, normalisation=normalisation) for s in specs)


def _paper(inputs: tuple[ImageSpec, ...], predict_inputs: tuple[ImageSpec, ...]
           ) -> dict[str, Any]:
    """Arm fields of the study's preprocessing and sigmoid head."""
    return {"inputs": _normalised(inputs, PAPER_NORMALISATION),
            "predict_inputs": _normalised(predict_inputs, PAPER_NORMALISATION),
            "targets": _normalised((T1C_TARGET,), PAPER_NORMALISATION),
            "network_factory": amplifier}


INPUTS, PREDICT_INPUTS = (T1C_LOW, T1W, FLAIR, ADC), (T1C, T1W, FLAIR, ADC)


def _arms(inputs: tuple[ImageSpec, ...], predict_inputs: tuple[ImageSpec, ...]
          ) -> dict[str, dict[str, Any]]:
    """The arms: the task itself (its output added to the T1c, channel 0), the plain
    residual U-Net and the study's preprocessing with its sigmoid head."""
    return {"input-residual": {}, "unclipped": {"network": "residual-unet"},
            "paper": {**_paper(inputs, predict_inputs), "network": "residual-unet"}}


CONTRAST_AMPLIFY = Task(
    name="contrast-amplify",
    description="T1w, FLAIR, ADC and T1c -> amplified T1c (quadruple-dose-like T1c-pro)",
    inputs=INPUTS,
    predict_inputs=PREDICT_INPUTS,
    targets=(T1C_TARGET,),
    mask=BRAIN,
    outputs=(AMPLIFIED,),
    network="residual-unet-on-input",
    network_kwargs={"channels": (32, 64, 128, 256), "strides": (2, 2, 2), "num_res_units": 2,
                    "norm": "batch"},
    loss="mse",
    sampler=GridSampler(patch_size=(32, 32, 32), step=(16, 16, 16), max_background=0.5),
    inference=SlidingWindow(window=(96, 96, 96), overlap=0.125, flips=8),
    folds=5,
    learning_rate=1e-3,
    batch_size=4,
    max_epochs=300,
    patience=30,
    preprocess=(Transform("CropOrPad", {"target_shape": CROP_MM, "units": "mm",
                                        "mask_name": "mask", "only_crop": True}),),
    augment=(Transform("RandomFlip", {"axes": (0, 1, 2), "flip_probability": 0.5}),),
    metrics=("cnr", "lbr", "cep", "rmse_quadruple", "ssim_quadruple",
             "contrast_over_quadruple", "found_f1", "false_f1", "found_fp1", "false_fp1",
             "found_own-f1", "false_own-f1", "found_own-fp05", "false_own-fp05"),
    metric_units=UNITS,
    evaluate=evaluate,
    report_sections=report_sections,
    arms=_arms(INPUTS, PREDICT_INPUTS),
)

#: The variant for data without ADC (most public datasets).
CONTRAST_AMPLIFY_NOADC = replace(
    CONTRAST_AMPLIFY, name="contrast-amplify-noadc",
    description="T1w, FLAIR and T1c -> amplified T1c (no ADC)",
    inputs=INPUTS[:3], predict_inputs=PREDICT_INPUTS[:3],
    arms=_arms(INPUTS[:3], PREDICT_INPUTS[:3]))

#: Both variants by CLI name.
CONTRAST_AMPLIFY_TASKS: dict[str, Task] = {t.name: t for t in (CONTRAST_AMPLIFY,
                                                               CONTRAST_AMPLIFY_NOADC)}

#: The demo: a narrow residual U-Net (8-16-32) trained 2 folds x 10 epochs of 400 patches on
#: 6 subjects, 2 held-out subjects predicted by both folds with 2 flips (4 members); the
#: lesion line gives the detector's sensitivity on T1c and T1c-pro.
DEMO = DemoStep(
    task="contrast-amplify", cohort="contrast-amplify", subjects=8, held_out=2, epochs=10,
    examples_per_epoch=400, tta=2,
    overrides={"network_kwargs": {"channels": (8, 16, 32), "strides": (2, 2),
                                  "num_res_units": 1, "norm": "batch"}, "folds": 2},
    shown=("cnr", "lbr", "cep", "ssim_quadruple", "found_f1", "false_f1", "T1c_f1",
           "T1c-pro_f1"))

#: Shipped model (``make models``): the paper's 5-fold ensemble of the task's network
#: (output added to the input T1c; named in the recipe as it was built, before it became
#: the default), 4 levels of half the width, on 13 phantom subjects, 36 epochs each
#: (after 12 its validation loss was still falling), scored on 3 more; prediction
#: averages 5 folds x 8 flips = 40 predictions.
SHIPPED_MODELS = (
    replace(DEMO, subjects=16, held_out=3, epochs=36, examples_per_epoch=800, tta=8,
            overrides={"network": "residual-unet-on-input",
                       "network_kwargs": {"channels": (16, 32, 64, 128), "strides": (2, 2, 2),
                                          "num_res_units": 1, "norm": "batch"}},
            networks=5),
)
