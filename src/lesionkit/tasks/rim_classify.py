"""rim-classify: the probability that each MS lesion has a paramagnetic rim (METHODS.md 5).

QSMRim-Net: per lesion, a 32^3 patch at 1 mm centred on the lesion with QSM (ppb) and
FLAIR as channels (and the lesion's own mask as a third, see below), and the lesion's
PyRadiomics features of the QSM inside it.

- Image branch: MONAI 3D ResNet-18 (three input channels, global average pool -> 512).
- Radiomics branch: PyRadiomics of the QSM inside the lesion, Original + Wavelet images,
  shape, first order, GLCM and GLRLM, bin width 25 ppb: 527 features (PyRadiomics 3.1
  gives 536; the 9 ``glcm_MCC`` values, maximal correlation coefficient, are left out to
  match the paper's 527 = 14 shape + 9 images x (18 first order + 23 GLCM + 16 GLRLM)).
  They are computed once per lesion by the engine and cached under the dataset's
  derivatives (``derivatives/lesionkit-features``, keyed by settings, PyRadiomics version
  and source files). Each fold standardises them with a scaler fitted on its training
  lesions only (:func:`fit_feature_scaler`, ``fold-K/state.safetensors``), then an MLP
  527 -> 1024 -> 512 (BatchNorm, Swish, dropout 0.3).
- Fusion: element-wise sum of the two 512-vectors, feature transform 2 x [Linear 512 ->
  512, BatchNorm, Swish]; classifier Linear 512 -> 128, Swish, dropout 0.5, Linear 128
  -> 1; binary cross-entropy.
- Synthetic minority oversampling (training only, :func:`oversampling_step`): in a batch
  with more than 2 rim+ lesions, each rim+ fused feature and each of its k = 3 nearest
  rim+ neighbours give lerp(f_i, f_j, u), u ~ U(0, 1), appended as rim+ samples.
  Validation and prediction call the network directly and never oversample.
- Batches: 32 lesions with 8 rim+ each (``LesionSampler(positives_per_batch=8)``), so
  that the oversampling has rim+ lesions to pair; patches are augmented by mirror flips
  on every axis and quarter turns about the superior-inferior axis (training only).

Arms (``lesionkit crossval rim-classify DATA OUT --arms ...``): ``fused-oversampling``
(the paper), ``fused`` (no oversampling), ``radiomics`` (radiomics branch only, with the
oversampling of its features) and ``cnn`` (image branch only, no oversampling); every arm
has the same feature transform and head. Beyond the paper: ``fused-edge`` (as ``fused``)
and ``radiomics-edge`` (as ``radiomics``) append six rim coverage features of the QSM
(:mod:`lesionkit.lesion_edge`: how far around the lesion's edge a paramagnetic band
runs) to the 527, so that a rim all around can be told from a vein's crescent on one
side.

The network works at the training data's voxel size (the median of the training
subjects): train on 1 mm data (``lesionkit simulate rim-classify ... --resolution 1``),
since rims are 1-2 voxels thick at 1 mm.

Choices where the paper is silent: QSM z-scored with training-subject statistics, FLAIR
z-scored per image inside the brain mask; the lesion's own mask (1 in its voxels, 0
elsewhere, neighbouring lesions included) as a third patch channel, so that the image
branch knows where the lesion's edge is, which a rim is defined by, and does not take a
neighbour's rim or a vein beside it for the centred lesion's; the ResNet's first
convolution is 3^3 (stride 1, then max-pooling) because 32^3 patches are small; a
ResNet narrower than 512 features (``--widen-factor``) gets a linear projection to 512
before the fusion; standardised features are clipped to +-10; missing feature values
(NaN) take the training mean. A quarter of each batch is rim+ (more with the synthetic
samples) against 3-4 % of real lesions, so the network learns probabilities at the
batches' prior; prediction moves them to the training lesions' (the engine's prior
shift, :mod:`lesionkit.calibration`), so that a probability means what it says and the
sum over a subject's lesions estimates its rim+ count.

Evaluation (lesion level, out of fold): partial ROC AUC for FPR < 0.1, raw (0-0.1) and
McClish-standardised (0.5-1), PR AUC (average precision), Brier score and a reliability
curve, with 95 % intervals from resampling subjects; subject level: predicted rim+ count
(sum of probabilities, and lesions at probability >= 0.5) against the true count, MSE and
Pearson r with its interval. Neither count is fitted: a threshold chosen on other subjects'
out-of-fold probabilities would learn from models that had trained on the subject it is
applied to.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.lesion_edge import radiomics_and_edge
from lesionkit.lesions import evaluate_lesion_tables, radiomics_features, radiomics_version
from lesionkit.tasks.strategies import LesionSampler, PerLesion, network_inputs
from lesionkit.tasks.task import (
    DemoStep,
    ImageSpec,
    LesionFeatures,
    LesionLabelSpec,
    OutputSpec,
    Task,
    Transform,
)

#: Paper numbers (QSMRim-Net, 172 patients, 177 rim+ / 3986 rim- lesions).
PAPER = {"pauc": 0.760, "pr_auc": 0.704, "count_mse": 0.98, "count_r": 0.89}
FPR_LIMIT = 0.1
#: A lesion counts as rim+ at this probability or above (the subject-level count).
COUNT_PROBABILITY = 0.5
NEIGHBOURS = 3
#: Equal-width probability bins of the report's reliability curve.
RELIABILITY_BINS = 5
EMBEDDING = 512

BRAIN = ImageSpec("brain", "mask", derivatives="phantom", entities=(("desc", "brain"),),
                  kind="label", unit="1", normalisation="none", other_pipelines=True)
LESIONS = ImageSpec("lesions", "dseg", derivatives="phantom", entities=(("desc", "lesions"),),
                    kind="label", unit="1", normalisation="none", other_pipelines=True)
RIM = LesionLabelSpec("rim", "rim", ("0", "1"))

#: PyRadiomics settings of the paper (527 features; see the module docstring).
RADIOMICS = LesionFeatures(
    name="radiomics",
    function=radiomics_features,
    version=radiomics_version,
    settings={"image": "qsm", "image_types": ("Original", "Wavelet"),
              "feature_classes": ("shape", "firstorder", "glcm", "glrlm"),
              "bin_width": 25.0, "excluded": ("glcm_MCC",)},
    inputs=("qsm",),
    margin=2,
)

#: The radiomics features followed by the rim coverage features of the QSM
#: (:mod:`lesionkit.lesion_edge`: how far around the lesion's edge a paramagnetic band
#: runs, which tells a rim from a vein's crescent on one side); 533 features, for the
#: ``-edge`` arms. The crop reaches 5 mm around the lesion's bounding box (at least 2
#: voxels), for the tissue 2-4 mm around it on any voxel size; PyRadiomics still reads 2
#: voxels, so its 527 values are those of ``RADIOMICS``.
EDGE_SETTINGS = {"image": "qsm", "inside_mm": 2.0, "outside_mm": 1.0,
                 "surround_mm": (2.0, 4.0), "sectors": 26, "min_sectors": 8}
RADIOMICS_EDGE = LesionFeatures(
    name="radiomics-edge",
    function=radiomics_and_edge,
    version=radiomics_version,
    settings={**RADIOMICS.settings, "radiomics_margin": RADIOMICS.margin,
              "edge": EDGE_SETTINGS},
    inputs=("qsm",),
    margin=RADIOMICS.margin,
    margin_mm=EDGE_SETTINGS["surround_mm"][1] + 1.0,
)


@functools.cache
def _network_class() -> type:
    """The two-branch network class (built on first use: torch stays a lazy import)."""
    import torch
    from monai.networks.nets import resnet18
    from torch import nn

    class RimNet(nn.Module):
        """Image branch (3D ResNet-18) + radiomics MLP, summed, transformed, classified."""

        def __init__(self, in_channels: int, out_channels: int, features: int,
                     branches: Sequence[str], widen_factor: float, conv1_size: int,
                     state: dict[str, Any] | None) -> None:
            super().__init__()
            self.branches = tuple(branches)
            if "image" in self.branches:
                self.image = resnet18(spatial_dims=3, n_input_channels=in_channels,
                                      feed_forward=False, widen_factor=widen_factor,
                                      shortcut_type="A", conv1_t_size=conv1_size)
                width = int(512 * widen_factor)
                self.project = nn.Linear(width, EMBEDDING) if width != EMBEDDING else (
                    nn.Identity())
            if "radiomics" in self.branches:
                self.radiomics = nn.Sequential(
                    nn.Linear(features, 1024), nn.BatchNorm1d(1024), nn.SiLU(), nn.Dropout(0.3),
                    nn.Linear(1024, EMBEDDING), nn.BatchNorm1d(EMBEDDING), nn.SiLU(),
                    nn.Dropout(0.3))
            mean = torch.zeros(features) if state is None else torch.as_tensor(
                state["feature_mean"]).float()
            scale = torch.ones(features) if state is None else torch.as_tensor(
                state["feature_scale"]).float()
            self.register_buffer("feature_mean", mean)
            self.register_buffer("feature_scale", scale)
            self.transform = nn.Sequential(
                nn.Linear(EMBEDDING, EMBEDDING), nn.BatchNorm1d(EMBEDDING), nn.SiLU(),
                nn.Linear(EMBEDDING, EMBEDDING), nn.BatchNorm1d(EMBEDDING), nn.SiLU())
            self.head = nn.Sequential(nn.Linear(EMBEDDING, 128), nn.SiLU(), nn.Dropout(0.5),
                                      nn.Linear(128, out_channels))

        def standardised(self, features: torch.Tensor) -> torch.Tensor:
            """Features scaled by the fold's training statistics (NaN -> training mean)."""
            features = torch.where(torch.isfinite(features), features, self.feature_mean)
            return ((features - self.feature_mean) / self.feature_scale).clamp(-10.0, 10.0)

        def embed(self, x: torch.Tensor, features: torch.Tensor | None = None
                  ) -> torch.Tensor:
            """(B, 512) fused and transformed features of (B, C, 32, 32, 32) patches."""
            fused = 0.0
            if "image" in self.branches:
                fused = self.project(self.image(x))
            if "radiomics" in self.branches:
                if features is None:
                    raise ValueError("the radiomics branch needs the lesion features")
                fused = fused + self.radiomics(self.standardised(features))
            return self.transform(fused)

        def classify(self, embedding: torch.Tensor) -> torch.Tensor:
            """(B, 1) rim+ logits of fused features."""
            return self.head(embedding)

        def forward(self, x: torch.Tensor, features: torch.Tensor | None = None
                    ) -> torch.Tensor:
            return self.classify(self.embed(x, features))

    return RimNet


def rim_network(in_channels: int, out_channels: int, features: int | None = None,
                branches: Sequence[str] = ("image", "radiomics"), widen_factor: float = 1.0,
                conv1_size: int = 3, state: dict[str, Any] | None = None) -> Any:
    """The QSMRim-Net network (a ``network_factory``).

    Args:
        in_channels: Patch channels (QSM, FLAIR and the lesion mask).
        out_channels: Logits (1).
        features: Features per lesion (default: as many as the fold's scaler holds,
            else 527).
        branches: ``("image", "radiomics")``, or one of them (single-branch arms).
        widen_factor: ResNet width (1: 64-512 channels, pooled to 512).
        conv1_size: Kernel of the ResNet's first convolution.
        state: The fold's feature scaler (``feature_mean``, ``feature_scale``).
    """
    if features is None:
        features = len(state["feature_mean"]) if state is not None else 527
    return _network_class()(in_channels, out_channels, features, branches, widen_factor,
                            conv1_size, state)


def radiomics_network(in_channels: int, out_channels: int, **kwargs: Any) -> Any:
    """The network with the radiomics branch only (the ``radiomics`` arm)."""
    return rim_network(in_channels, out_channels, **{**kwargs, "branches": ("radiomics",)})


def image_network(in_channels: int, out_channels: int, **kwargs: Any) -> Any:
    """The network with the image branch only (the ``cnn`` arm)."""
    return rim_network(in_channels, out_channels, **{**kwargs, "branches": ("image",)})


def fit_feature_scaler(dataset: Any) -> dict[str, np.ndarray]:
    """Standardisation of the radiomics features fitted on a fold's training lesions
    (scikit-learn ``StandardScaler``; NaN values are left out of the fit)."""
    from sklearn.preprocessing import StandardScaler

    values = np.asarray(dataset.lesion_features(), np.float64)
    values = np.where(np.isfinite(values), values, np.nan)
    scaler = StandardScaler().fit(values)
    mean = np.nan_to_num(scaler.mean_, nan=0.0)
    scale = np.nan_to_num(scaler.scale_, nan=1.0)
    return {"feature_mean": mean.astype(np.float32),
            "feature_scale": np.where(scale > 0, scale, 1.0).astype(np.float32),
            "lesions": np.array([len(values)], np.int64)}


def synthetic_minority(embedding: Any, target: Any, k: int = NEIGHBOURS) -> Any:
    """New rim+ samples lerp(f_i, f_j, u), u ~ U(0, 1), for each rim+ f_i and each of its
    k nearest rim+ neighbours f_j (Euclidean, in the fused feature space); None when the
    batch holds 2 rim+ lesions or fewer.

    Args:
        embedding: (B, D) fused features of the batch.
        target: (B,) 0/1 labels.
        k: Neighbours per rim+ lesion.
    """
    import torch

    positive = embedding[target.reshape(-1) > 0.5]
    if len(positive) <= 2:
        return None
    k = min(k, len(positive) - 1)
    distance = torch.cdist(positive.detach(), positive.detach())
    distance.fill_diagonal_(float("inf"))
    neighbours = distance.topk(k, largest=False).indices
    u = torch.rand(len(positive), k, 1, device=embedding.device, dtype=embedding.dtype)
    return torch.lerp(positive[:, None, :], positive[neighbours], u).reshape(-1,
                                                                            embedding.shape[1])


def oversampling_step(network: Any, loss: Any, batch: dict[str, Any]) -> Any:
    """Training step with synthetic minority oversampling of the fused features."""
    import torch

    embedding = network.embed(*network_inputs(batch))
    target = batch["target"].float().reshape(-1)
    extra = synthetic_minority(embedding, target)
    if extra is not None:
        embedding = torch.cat([embedding, extra])
        target = torch.cat([target, torch.ones(len(extra), device=target.device)])
    return loss(network.classify(embedding), target)


def evaluate(task: Task, root: Path, predictions: Path, subjects: list[str]) -> list[dict]:
    """One row per lesion: true rim class (``label``), predicted ``probability``, its
    uncertainty and volume."""
    return evaluate_lesion_tables(task, root, predictions, subjects)


def lesion_summary(rows: Sequence[dict], seed: int = 0,
                   n_resamples: int = 1000) -> dict[str, Any]:
    """Lesion- and subject-level figures of out-of-fold lesion rows.

    A subject's rim+ count is read two ways, neither fitted on any subject: the sum of
    its lesions' probabilities, and the number of lesions at probability >= 0.5
    (``COUNT_PROBABILITY``, the decision of a calibrated probability).

    Args:
        rows: ``participant_id``, ``label`` (0/1) and ``probability`` per lesion.
        seed: Seed of the subject bootstrap.
        n_resamples: Bootstrap resamples.
    """
    from sklearn.metrics import brier_score_loss

    from lesionkit.metrics.classification import (
        count_mse,
        partial_auc,
        pr_auc,
        roc_auc,
        subject_bootstrap,
    )
    from lesionkit.stats import pearson_ci

    rows = [r for r in rows if r.get("label") is not None]
    y = np.array([int(r["label"]) for r in rows])
    p = np.array([float(r["probability"]) for r in rows])
    ids = np.array([r["participant_id"] for r in rows])
    out: dict[str, Any] = {"lesions": len(rows), "rim_positive": int(y.sum()),
                           "subjects": len(set(ids.tolist()))}
    if len(np.unique(y)) < 2:
        return out
    metrics = {
        "pauc_mcclish": lambda t, s: partial_auc(t, s, FPR_LIMIT).standardized,
        "pauc_raw": lambda t, s: partial_auc(t, s, FPR_LIMIT).raw,
        "pr_auc": pr_auc, "roc_auc": roc_auc, "brier": brier_score_loss}
    for name, metric in metrics.items():
        estimate, low, high = subject_bootstrap(metric, y, p, ids, n_resamples, seed)
        out[name] = {"estimate": estimate, "ci_low": low, "ci_high": high}
    subjects = sorted(set(ids.tolist()))
    true = np.array([y[ids == s].sum() for s in subjects], float)
    summed = np.array([p[ids == s].sum() for s in subjects])
    above = np.array([(p[ids == s] >= COUNT_PROBABILITY).sum() for s in subjects], float)
    for name, predicted in (("count_sum", summed), ("count_above_half", above)):
        entry: dict[str, Any] = {"mse": count_mse(predicted, true)}
        if len(subjects) >= 4 and np.std(predicted) > 0 and np.std(true) > 0:
            r = pearson_ci(predicted, true)
            entry.update(r=r.estimate, r_low=r.ci_low, r_high=r.ci_high)
        out[name] = entry
    out["per_subject"] = [{"participant_id": s, "true": int(t), "sum": round(float(a), 3),
                           "above_half": int(b)}
                          for s, t, a, b in zip(subjects, true, summed, above, strict=True)]
    return out


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def curves_figure(rows: Sequence[dict], title: str) -> Any:
    """ROC (with the FPR 0.1 limit), precision-recall and reliability curves of lesion rows."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    y = np.array([int(r["label"]) for r in rows])
    p = np.array([float(r["probability"]) for r in rows])
    figure = _figure(11.5, 3.6)
    roc, pr, reliability = figure.subplots(1, 3)
    fpr, tpr, _ = roc_curve(y, p)
    roc.plot(fpr, tpr, color="C0")
    roc.plot([0, 1], [0, 1], color="0.6", linestyle=":")
    roc.axvline(FPR_LIMIT, color="C3", linestyle="--", linewidth=1, label="FPR 0.1")
    roc.set(xlabel="false-positive rate", ylabel="true-positive rate", title=f"ROC {title}")
    roc.legend(frameon=False)
    precision, recall, _ = precision_recall_curve(y, p)
    pr.plot(recall, precision, color="C1", drawstyle="steps-post")
    pr.axhline(y.mean(), color="0.6", linestyle=":", label=f"prevalence {y.mean():.3f}")
    pr.set(xlabel="recall", ylabel="precision", title=f"PR {title}", ylim=(0, 1.02))
    pr.legend(frameon=False)
    observed, predicted = calibration_curve(y, p, n_bins=RELIABILITY_BINS)
    edges = np.linspace(0, 1, RELIABILITY_BINS + 1)  # calibration_curve's, empty ones too
    counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=RELIABILITY_BINS)
    reliability.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="calibrated")
    reliability.plot(predicted, observed, "o-", color="C2", label="lesions (n per bin)")
    for x, fraction, n in zip(predicted, observed, counts[counts > 0], strict=True):
        reliability.annotate(f"{n}", (x, fraction), textcoords="offset points", fontsize=7,
                             xytext=(-18, -12) if x > 0.8 else (5, 4))
    reliability.set(xlabel=f"predicted probability ({RELIABILITY_BINS} bins)",
                    ylabel="fraction rim+", title=f"reliability {title}", xlim=(0, 1),
                    ylim=(0, 1.02))
    reliability.legend(frameon=False)
    return figure


def count_figure(summary: dict[str, Any], title: str) -> Any:
    """Predicted against true rim+ counts per subject."""
    figure = _figure(4.2, 3.8)
    ax = figure.subplots()
    rows = summary["per_subject"]
    true = [r["true"] for r in rows]
    ax.scatter(true, [r["sum"] for r in rows], label="sum of probabilities", s=18)
    ax.scatter(true, [r["above_half"] for r in rows], marker="x", s=22,
               label="lesions at probability >= 0.5")
    top = max(max(true), *[r["sum"] for r in rows], *[r["above_half"] for r in rows], 1)
    ax.plot([0, top], [0, top], color="0.6", linestyle=":")
    ax.set(xlabel="true rim+ lesions", ylabel="predicted rim+ lesions", title=title)
    ax.legend(frameon=False, fontsize=8)
    return figure


def _patch(volume: np.ndarray, centre: Sequence[int], half: int = 16) -> np.ndarray:
    """An axial (x, y) slice of ``2 half`` voxels around ``centre``, zero outside."""
    out = np.zeros((2 * half, 2 * half), np.float32)
    i, j, k = (int(c) for c in centre)
    k = min(max(k, 0), volume.shape[2] - 1)
    lo = (max(i - half, 0), max(j - half, 0))
    hi = (min(i + half, volume.shape[0]), min(j + half, volume.shape[1]))
    out[lo[0] - (i - half):hi[0] - (i - half), lo[1] - (j - half):hi[1] - (j - half)] = (
        volume[lo[0]:hi[0], lo[1]:hi[1], k])
    return out


def patches_figure(root: Path, rows: Sequence[dict], title: str) -> Any:
    """QSM and FLAIR through the centre of each lesion (axial, 32 mm), lesion outlined."""
    from lesionkit.bids import BIDSDataset

    dataset = BIDSDataset(root)
    figure = _figure(1.6 * max(len(rows), 1), 3.6)
    axes = figure.subplots(2, max(len(rows), 1), squeeze=False)
    cache: dict[str, dict[str, np.ndarray]] = {}
    for column, row in enumerate(rows):
        subject = row["participant_id"].removeprefix("sub-")
        if subject not in cache:
            cache = {subject: {s.key: dataset.get(subject, s.suffix, **s.query())
                               .load_in(s.unit, s.kind).data for s in (*TASK_INPUTS, LESIONS)}}
        images = cache[subject]
        centre = (row["centre_i"], row["centre_j"], row["centre_k"])
        outline = _patch(np.rint(images["lesions"]) == row["lesion"], centre)
        for line, (key, window) in enumerate((("qsm", (-60, 120)), ("flair", None))):
            ax = axes[line, column]
            shown = _patch(images[key], centre)
            limits = window or (np.percentile(shown, 1), np.percentile(shown, 99.5))
            ax.imshow(shown.T, origin="lower", cmap="gray", vmin=limits[0], vmax=limits[1])
            ax.contour(outline.T, levels=[0.5], colors="yellow", linewidths=0.6)
            ax.set_axis_off()
            if line == 0:
                ax.set_title(f"{row['participant_id']} L{row['lesion']}\n"
                             f"rim {row['label']} p={row['probability']:.2f}", fontsize=7)
    axes[0, 0].text(-0.15, 0.5, "QSM", transform=axes[0, 0].transAxes, rotation=90,
                    va="center", fontsize=8)
    axes[1, 0].text(-0.15, 0.5, "FLAIR", transform=axes[1, 0].transAxes, rotation=90,
                    va="center", fontsize=8)
    figure.suptitle(title, fontsize=9)
    return figure


def _with_centres(predictions: Path, rows: Sequence[dict], desc: str) -> list[dict]:
    """Lesion rows joined with their centres (voxels) from the task's ``_lesions.tsv``
    tables (``desc``: its output's; of the session of the enclosing
    :func:`lesionkit.units.unit_scope`)."""
    import pandas as pd

    from lesionkit.bids import BIDSDataset

    out = []
    tables: dict[str, Any] = {}
    for row in rows:
        subject = row["participant_id"]
        if subject not in tables:
            found = BIDSDataset(predictions).find(subject=subject.removeprefix("sub-"),
                                                  suffix="lesions", extension=".tsv",
                                                  desc=desc)
            tables[subject] = (pd.read_csv(found[0].path, sep="\t").set_index("label")
                               if found else None)
        table = tables[subject]
        if table is not None and row["lesion"] in table.index:
            centre = table.loc[row["lesion"], ["centre_i", "centre_j", "centre_k"]]
            out.append({**row, **{k: int(v) for k, v in centre.items()}})
    return out


def branches(task: Task) -> str:
    """What a (variant of the) task classifies with, for captions: its branches and
    whether it oversamples, e.g. ``"resnet18 + radiomics, oversampling"``."""
    oversampling = ", oversampling" if task.training_step is not None else ""
    features = "radiomics" + (" and rim coverage" if task.lesion_features is RADIOMICS_EDGE
                               else "")
    if task.network_factory is radiomics_network:
        return f"{features} MLP{oversampling}"
    if task.network_factory is image_network:
        return f"{task.network} (image branch only){oversampling}"
    return f"{task.network} + {features}{oversampling}"


def report_sections(task: Task, root: Path, predictions: Path, subjects: list[str],
                    rows: list[dict]) -> list:
    """Lesion- and subject-level figures, curves, count scatter and lesion patches.

    Also writes ``rim_summary.json`` beside the predictions.
    """
    from lesionkit.io import write_json
    from lesionkit.report import Section, caption

    labelled = [r for r in rows if r.get("label") is not None]
    summary = lesion_summary(labelled)
    write_json(summary, Path(predictions) / "rim_summary.json")
    if "pr_auc" not in summary:
        return [Section("rim-classify", f"{summary['lesions']} lesions, "
                        f"{summary['rim_positive']} rim+: both classes are needed for the "
                        "figures.")]
    table = [{"metric": name, **{k: round(v, 4) for k, v in summary[name].items()}}
             for name in ("pauc_mcclish", "pauc_raw", "pr_auc", "roc_auc", "brier")]
    counts = [{"count": name, **{k: round(v, 4) for k, v in summary[name].items()}}
              for name in ("count_sum", "count_above_half")]
    text = (f"{summary['lesions']} lesions ({summary['rim_positive']} rim+) of "
            f"{summary['subjects']} subjects, out of fold. Partial ROC AUC for FPR < 0.1: "
            "raw area (0-0.1, chance 0.005) and McClish-standardised (0.5 chance, 1 "
            "perfect); PR AUC = average precision; Brier score = mean squared error of "
            "the probabilities (0 perfect; calling every lesion rim- scores the rim+ "
            "fraction); 95 % intervals from 1000 resamples of subjects. Probabilities are "
            "at the training lesions' rim+ fraction, not the batches', where the model "
            "folder records both (lesionkit.calibration). Counts: sum of probabilities, "
            "and lesions at probability >= 0.5 (neither fitted on any subject); Pearson r "
            "with its Fisher-z interval. Paper (172 patients): "
            "pAUC 0.760, PR AUC 0.704, count MSE 0.98, r 0.89 (0.86-0.92).")
    ranked = sorted(_with_centres(predictions, labelled, task.outputs[-1].desc),
                    key=lambda r: -r["probability"])
    positives = [r for r in ranked if r["label"] == 1]
    negatives = [r for r in ranked if r["label"] == 0]
    method = f"{task.name} {branches(task)} (rim probability per lesion, out of fold)"
    everyone = f"{summary['lesions']} lesions of {summary['subjects']} subjects"
    figures = {
        caption("ROC, PR and reliability curves (fraction rim+ against the mean "
                "probability of each probability bin)", everyone, method,
                "swept; partial AUC up to FPR 0.1"):
            curves_figure(labelled, task.name),
        caption("predicted against true rim+ count per subject", f"{summary['subjects']} "
                "subjects", method, "lesions at probability >= 0.5, and the sum of "
                "probabilities"): count_figure(summary, "subjects")}
    for what, chosen in (("most confident rim+", positives[:6]),
                         ("hardest negatives (rim- with the highest probability)",
                          negatives[:6]),
                         ("misses (rim+ with the lowest probability)", positives[::-1][:6])):
        if chosen:
            shown = ", ".join(dict.fromkeys(r["participant_id"] for r in chosen))
            figures[caption(f"lesion patches, {what}: axial QSM and FLAIR through each "
                            "lesion centre, lesion outlined in yellow, probability p above "
                            "each", shown, method)] = patches_figure(root, chosen, what)
    return [Section("rim-classify: lesions and counts", text,
                    tables={"lesion level": table, "subject counts": counts},
                    figures=figures)]


TASK_INPUTS = (ImageSpec("qsm", "Chimap", unit="ppb", normalisation="zscore"),
               ImageSpec("flair", "FLAIR", unit="a.u.", normalisation="image-zscore",
                         prefer_without=("ce",)))

#: Training augmentation of the lesion patches (TorchIO): mirror flips on every axis and
#: quarter turns in the axial plane, 16 views of each patch, so that a few dozen rim+
#: patches are not simply memorised by the image branch. Both keep the dipole pattern of
#: QSM (symmetric under flips and under rotations about B0, the superior-inferior axis of
#: an axial acquisition) and move voxels onto voxels; rotations by other angles and
#: scaling would interpolate, blurring rims 1-2 voxels thick.
AUGMENT = (Transform("RandomFlip", {"axes": (0, 1, 2), "flip_probability": 0.5}),
           Transform("RandomRot90", {"axes": (0, 1), "probability": 0.75}))

#: Arms compared by ``lesionkit crossval``.
ARMS = {
    "fused-oversampling": {},
    "fused": {"training_step": None},
    "radiomics": {"network_factory": radiomics_network},
    "cnn": {"network_factory": image_network, "training_step": None},
    "fused-edge": {"training_step": None, "lesion_features": RADIOMICS_EDGE},
    "radiomics-edge": {"network_factory": radiomics_network,
                       "lesion_features": RADIOMICS_EDGE},
}

RIM_CLASSIFY = Task(
    name="rim-classify",
    description="QSM + FLAIR + lesion labels -> probability of a paramagnetic rim per lesion "
                "(ResNet-18 + radiomics MLP + minority oversampling)",
    inputs=TASK_INPUTS,
    targets=(RIM,),
    mask=BRAIN,
    lesions=LESIONS,
    outputs=(OutputSpec("probseg", "rim", "1", "probability", entities=(("label", "rim"),)),),
    network="resnet18",
    network_factory=rim_network,
    loss="binary-cross-entropy",
    sampler=LesionSampler(patch_size=(32, 32, 32), positives_per_batch=8, mask_channel=True),
    augment=AUGMENT,
    inference=PerLesion(patch_size=(32, 32, 32), flips=1, batch_size=32, mask_channel=True),
    output_kind="lesions",
    output_activation="sigmoid",
    learning_rate=1e-3,
    batch_size=32,
    max_epochs=30,
    patience=10,
    metrics=("pauc_mcclish", "pauc_raw", "pr_auc", "count_mse", "count_r"),
    evaluate=evaluate,
    report_sections=report_sections,
    training_step=oversampling_step,
    fit_state=fit_feature_scaler,
    lesion_features=RADIOMICS,
    arms=ARMS,
)

#: The demo at 1 mm: the shipped model scores 3 new subjects; without one, the fused
#: network with oversampling against the radiomics-only arm on 2 folds of 6 subjects
#: (quarter-width ResNet).
DEMO = DemoStep(
    task="rim-classify", cohort="rim-classify", subjects=6, held_out=3, epochs=2,
    resolution=1, overrides={"network_kwargs": {"widen_factor": 0.25}, "batch_size": 16},
    crossval_arms=("fused-oversampling", "radiomics"), folds=2,
    shown=("rim_positive",))  # the pooled lesion-level figures are added; not lesion volumes

#: Shipped model (``make models``): the fused arm with oversampling at 1 mm, a
#: quarter-width ResNet-18 branch, trained on 18 phantom subjects and scored on 6 more
#: (a 1 mm rim-classify subject takes about 40 s to simulate on one core), for the 12
#: epochs of 512 lesions of the 80-subject cross-validation in docs/results.md (at 4 the
#: image branch had not started to learn).
SHIPPED_MODELS = (
    DemoStep(task="rim-classify", cohort="rim-classify", subjects=24, held_out=6, epochs=12,
             examples_per_epoch=512, resolution=1,
             overrides={"network_kwargs": {"widen_factor": 0.25}, "batch_size": 32},
             shown=("rim_positive",)),  # the pooled lesion-level figures are added
)
