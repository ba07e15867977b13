"""rim-classify: radiomics features, the two-branch network, in-batch oversampling (training
only), the per-fold feature scaler, partial AUC both ways and the count figures."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import auc, roc_auc_score, roc_curve

from conftest import tiny, write_task_dataset
from lesionkit.bids import BIDSDataset
from lesionkit.infer import predict
from lesionkit.lesion_edge import EDGE_FEATURES, edge_features
from lesionkit.lesion_features import crop_margin, subject_features
from lesionkit.lesions import radiomics_features
from lesionkit.metrics.classification import partial_auc
from lesionkit.model_folder import load_model, load_tensors
from lesionkit.tasks import get_task
from lesionkit.tasks import rim_classify as rim
from lesionkit.tasks.task import LesionFeatures
from lesionkit.training import train


def cheap_features(images: dict[str, np.ndarray], mask: np.ndarray, spacing: tuple
                   ) -> dict[str, float]:
    """Mean, maximum and voxel count of the QSM inside the lesion (instead of PyRadiomics)."""
    inside = images["qsm"][0][mask]
    return {"mean": float(inside.mean()), "max": float(inside.max()),
            "voxels": float(mask.sum())}


def cheap_version() -> str:
    return "test"


def _rim_lesion(size: int, radius_mm: float, rim_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """A ball lesion with a +45 ppb rim (outer ``rim_mm``) and a +5 ppb core, in noise of
    3 ppb, centred in a cube of ``size`` 1 mm voxels: (QSM, mask)."""
    grid = np.indices((size, size, size)) - (size // 2)
    radius = np.sqrt((grid ** 2).sum(0))
    mask = radius <= radius_mm
    qsm = np.where(radius > radius_mm - rim_mm, 45.0, 5.0) * mask + (
        np.random.default_rng(0).normal(0, 3, mask.shape))
    return qsm, mask


def test_pyradiomics_gives_the_papers_527_features_on_one_small_lesion() -> None:
    qsm, mask = _rim_lesion(11, 3.5, 1.3)
    settings = dict(rim.RADIOMICS.settings)
    features = radiomics_features({"qsm": qsm[None]}, mask, (1.0, 1.0, 1.0), **settings)
    assert len(features) == 527
    assert not any("MCC" in name for name in features)
    assert features["original_firstorder_Mean"] == pytest.approx(qsm[mask].mean(), rel=1e-6)
    assert np.isfinite(list(features.values())).all()
    every = radiomics_features({"qsm": qsm[None]}, mask, (1.0, 1.0, 1.0),
                               **{**settings, "excluded": ()})
    assert len(every) == 536  # PyRadiomics 3.1 also has the 9 glcm_MCC values
    single = np.zeros_like(mask)
    single[5, 5, 5] = True
    refused = radiomics_features({"qsm": qsm[None]}, single, (1.0, 1.0, 1.0), **settings)
    assert list(refused) == list(features) and np.isnan(list(refused.values())).all()


def test_the_edge_arms_read_the_527_features_then_six_of_rim_coverage() -> None:
    qsm, mask = _rim_lesion(15, 4.5, 1.3)
    edge = rim.RADIOMICS_EDGE
    features = edge.function({"qsm": qsm[None]}, mask, (1.0, 1.0, 1.0), **edge.settings)
    assert len(features) == 533 and list(features)[527:] == list(EDGE_FEATURES)
    assert features["edge_coverage"] == 1.0  # the rim runs all the way around
    for arm in ("fused-edge", "radiomics-edge"):
        assert get_task("rim-classify").arm(arm).lesion_features is edge


def test_the_edge_crop_holds_the_surround_on_fine_voxels() -> None:
    """On 0.5 mm voxels the engine's crop gives the edge features of the whole volume; a
    crop of 5 voxels (2.5 mm) would leave out most of the tissue 2-4 mm around."""
    spacing = (0.5, 0.5, 0.5)
    grid = (np.indices((41, 41, 41)) - 20) * 0.5
    radius = np.sqrt((grid ** 2).sum(0))
    mask = radius <= 4.0
    qsm = (np.where(radius > 3.0, 40.0, 5.0) * mask + 8.0 * (radius > 6.6)
           + np.random.default_rng(1).normal(0, 3, mask.shape))  # brighter beyond 2.6 mm out
    edge = {k: v for k, v in rim.EDGE_SETTINGS.items() if k != "image"}
    whole = edge_features(qsm, mask, spacing, **edge)

    def cropped(margin: tuple[int, ...]) -> dict[str, float]:
        found = np.argwhere(mask)
        box = tuple(slice(max(lo - m, 0), hi + 1 + m)
                    for lo, hi, m in zip(found.min(0), found.max(0), margin, strict=True))
        return edge_features(qsm[box], mask[box], spacing, **edge)

    margin = crop_margin(rim.RADIOMICS_EDGE, spacing)
    assert margin == (10, 10, 10)
    assert cropped(margin) == pytest.approx(whole)
    assert cropped((5, 5, 5))["edge_over_surround_q33"] != pytest.approx(
        whole["edge_over_surround_q33"], abs=0.5)


def test_the_network_reads_as_many_features_as_its_scaler_holds() -> None:
    state = {"feature_mean": np.zeros(533, np.float32),
             "feature_scale": np.ones(533, np.float32)}
    network = rim.radiomics_network(3, 1, state=state).eval()
    assert network.radiomics[0].in_features == 533
    assert network(torch.zeros(2, 3, 32, 32, 32), torch.zeros(2, 533)).shape == (2, 1)
    assert rim.radiomics_network(3, 1).radiomics[0].in_features == 527  # no scaler yet


def test_synthetic_minority_pairs_rim_positive_neighbours_only() -> None:
    torch.manual_seed(0)
    embedding = torch.cat([torch.randn(4, 6) + 10.0, torch.randn(5, 6) - 10.0])
    target = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0, 0])
    extra = rim.synthetic_minority(embedding, target)
    assert extra.shape == (4 * 3, 6)
    low, high = embedding[:4].min(0).values, embedding[:4].max(0).values
    assert ((extra >= low - 1e-5) & (extra <= high + 1e-5)).all()  # between rim+ features
    assert rim.synthetic_minority(embedding[2:], target[2:]) is None  # 2 rim+: none


def _task() -> object:
    task = tiny(get_task("rim-classify"))
    return replace(task, batch_size=6,
                   sampler=replace(task.sampler, positives_per_batch=3),
                   lesion_features=LesionFeatures("cheap", cheap_features, cheap_version,
                                                  inputs=("qsm",)),
                   network_kwargs={**task.network_kwargs, "features": 3})


def test_oversampling_only_in_training_and_scaler_from_training_lesions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = _task()
    data = write_task_dataset(tmp_path / "bids", task, subjects=4, seed=3)
    oversampled: list[tuple[int, int]] = []
    scored: list[tuple[bool, int]] = []
    original = rim.synthetic_minority

    def spy(embedding: torch.Tensor, target: torch.Tensor, k: int = 3) -> torch.Tensor:
        extra = original(embedding, target, k)
        oversampled.append((len(embedding), 0 if extra is None else len(extra)))
        return extra

    net_class = rim._network_class()
    classify = net_class.classify

    def counted(self: torch.nn.Module, embedding: torch.Tensor) -> torch.Tensor:
        scored.append((self.training, len(embedding)))
        return classify(self, embedding)

    monkeypatch.setattr(rim, "synthetic_minority", spy)
    monkeypatch.setattr(net_class, "classify", counted)
    model_dir = train(task, data, tmp_path / "model", epochs=2, progress=False, device="cpu",
                      splits=[{"train": ["01", "02", "03"], "validation": ["04"]}])
    # 12 training lesions, batches of 6 with 3 rim+ each: 3 x 2 synthetic rim+ per batch
    assert [n for n, _ in oversampled] == [6, 6, 6, 6]
    assert all(extra == 6 for _, extra in oversampled)
    assert [n for training, n in scored if training] == [12] * 4
    assert [n for training, n in scored if not training] == [4, 4]  # validation: 4 lesions
    state = load_tensors(model_dir / "fold-0" / "state.safetensors")
    assert int(state["lesions"][0]) == 12
    # the loss saw 4 batches of 3 rim- and 3 + 6 rim+ (synthetic included); the data, 12
    # lesions of which the rim+ ones are those of the training subjects' tables
    rim_positive = sum(row["bright"] == "1" for s in ("01", "02", "03") for table in
                       sorted(Path(data).rglob(f"sub-{s}_*_dseg.tsv"))
                       for row in csv.DictReader(table.open(), delimiter="\t"))
    entry = yaml.safe_load((model_dir / "config.yaml").read_text())["folds"][0]
    assert entry["class_counts"] == {"training": [12 - rim_positive, rim_positive],
                                     "loss": [12.0, 36.0]}
    offset = load_model(model_dir, trusted=(__name__,)).folds[0].logit_offset
    assert offset == pytest.approx((np.log(rim_positive / (12 - rim_positive)) - np.log(3),))
    dataset = BIDSDataset(data)
    train_rows = np.concatenate([np.stack(list(subject_features(dataset, s, task).values()))
                                 for s in ("01", "02", "03")])
    every_row = np.concatenate([train_rows, np.stack(list(
        subject_features(dataset, "04", task).values()))])
    np.testing.assert_allclose(state["feature_mean"].numpy(), train_rows.mean(0), rtol=1e-5)
    assert not np.allclose(state["feature_mean"].numpy(), every_row.mean(0), rtol=1e-5)

    oversampled.clear()
    scored.clear()
    predict(model_dir, data, tta=1, device="cpu", progress=False, out_dir=tmp_path / "pred",
            trusted=(__name__,))
    assert not oversampled  # off at prediction
    assert sum(n for _, n in scored) == 16 and not any(training for training, _ in scored)


def test_partial_auc_both_ways_against_scikit_learn() -> None:
    y = np.array([0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0])
    score = np.array([.1, .4, .35, .8, .7, .9, .2, .3, .65, .15, .05, .5, .45, .6, .25, .95,
                      .12, .33, .22, .18])
    result = partial_auc(y, score, 0.1)
    assert result.standardized == pytest.approx(roc_auc_score(y, score, max_fpr=0.1))
    fpr, tpr, _ = roc_curve(y, score)
    stop = np.searchsorted(fpr, 0.1, "right")
    x = np.r_[fpr[:stop], 0.1]
    raw = auc(x, np.r_[tpr[:stop], np.interp(0.1, fpr, tpr)])
    assert result.raw == pytest.approx(raw)
    assert 0 < result.raw <= 0.1


def _rows(subject: str, labels: list[int], probabilities: list[float]) -> list[dict]:
    return [{"participant_id": subject, "label": y, "probability": p}
            for y, p in zip(labels, probabilities, strict=True)]


def test_counts_are_read_without_fitting_a_threshold() -> None:
    # a threshold fitted to these counts would be 0.8 for 01/02 or 0.4 for 03; the count
    # takes the calibrated decision (probability >= 0.5, 0.5 itself included) for everyone
    rows = (_rows("sub-01", [1, 0, 0], [0.8, 0.7, 0.2]) + _rows("sub-02", [1, 0], [0.9, 0.72])
            + _rows("sub-03", [1, 1, 0], [0.4, 0.35, 0.5]))
    summary = rim.lesion_summary(rows, n_resamples=50)
    counts = {r["participant_id"]: (r["true"], r["above_half"]) for r in summary["per_subject"]}
    assert counts == {"sub-01": (1, 2), "sub-02": (1, 2), "sub-03": (2, 1)}
    assert summary["count_above_half"]["mse"] == pytest.approx((1 + 1 + 1) / 3)
    assert "thresholds" not in summary
    sums = np.array([1.7, 1.62, 1.25])
    assert summary["count_sum"]["mse"] == pytest.approx(np.mean((sums - [1, 1, 2]) ** 2))
    assert summary["pauc_mcclish"]["estimate"] == pytest.approx(
        roc_auc_score([r["label"] for r in rows], [r["probability"] for r in rows],
                      max_fpr=0.1))
    labels, probabilities = ([r[k] for r in rows] for k in ("label", "probability"))
    assert summary["brier"]["estimate"] == pytest.approx(
        np.mean((np.array(probabilities) - labels) ** 2))


def test_reliability_curve_counts_the_lesions_of_each_bin() -> None:
    rows = _rows("sub-01", [0, 0, 0, 1, 1], [0.05, 0.1, 0.5, 0.55, 0.95])
    reliability = rim.curves_figure(rows, "test").axes[2]
    x, fraction = reliability.lines[1].get_data()
    np.testing.assert_allclose(x, [0.075, 0.525, 0.95])  # mean probability, non-empty bins
    np.testing.assert_allclose(fraction, [0, 0.5, 1])
    assert [t.get_text() for t in reliability.texts] == ["2", "2", "1"]


def test_each_arm_is_named_by_its_branches_and_oversampling() -> None:
    task = get_task("rim-classify")
    names = {arm: rim.branches(replace(task, **overrides))
             for arm, overrides in task.arms.items()}
    assert names == {"fused-oversampling": "resnet18 + radiomics, oversampling",
                     "fused": "resnet18 + radiomics",
                     "radiomics": "radiomics MLP, oversampling",
                     "cnn": "resnet18 (image branch only)",
                     "fused-edge": "resnet18 + radiomics and rim coverage",
                     "radiomics-edge": "radiomics and rim coverage MLP, oversampling"}
