"""Inference: flips, strategies, unit inversion, fold x flip uncertainty, evaluation summary."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from lesionkit.infer import RunningMoments, flips, predict_arrays
from lesionkit.model_folder import FoldModel, TrainedModel
from lesionkit.tasks import get_task
from lesionkit.tasks.strategies import PerLesion, SlidingWindow, WholeVolume

TASK = replace(get_task("enhance-r1"), inference=WholeVolume())


class Scale(nn.Module):
    """y = factor * x + a ramp along the first axis (not mirror-symmetric)."""

    def __init__(self, factor: float, ramp: float = 0.0) -> None:
        super().__init__()
        self.factor, self.ramp = factor, ramp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(0, self.ramp, x.shape[2]).view(1, 1, -1, 1, 1)
        return self.factor * x + ramp


def _model(*networks: nn.Module, task=TASK) -> TrainedModel:
    stats = {"r1_3t": {"shift": 1.0, "scale": 0.5}, "r1_7t": {"shift": 0.6, "scale": 0.2}}
    folds = tuple(FoldModel(network, stats) for network in networks)
    return TrainedModel(Path("."), task, {}, folds)


def test_flips() -> None:
    assert flips(1) == [()]
    every = flips(8)
    assert len(set(every)) == 8 and (2, 3, 4) in every
    with pytest.raises(ValueError, match="1 to 8"):
        flips(9)


def test_output_is_inverted_to_target_units() -> None:
    x = np.random.default_rng(0).uniform(0.5, 1.5, (6, 6, 6)).astype(np.float32)
    mean, std = predict_arrays(_model(Scale(1.0)), {"r1_3t": x[None]}, tta=8)
    np.testing.assert_allclose(mean[0], (x - 1.0) / 0.5 * 0.2 + 0.6, rtol=1e-5)
    np.testing.assert_allclose(std, 0.0, atol=1e-6)  # flip-equivariant network


def test_uncertainty_is_std_over_folds_and_flips() -> None:
    x = np.ones((6, 6, 6), np.float32) * 1.5  # normalised: 1
    mean, std = predict_arrays(_model(Scale(1.0), Scale(3.0)), {"r1_3t": x[None]}, tta=1)
    np.testing.assert_allclose(mean, 0.6 + 0.2 * 2.0, rtol=1e-5)
    np.testing.assert_allclose(std, 0.2 * 1.0, rtol=1e-5)
    _, std_flipped = predict_arrays(_model(Scale(1.0, ramp=1.0)), {"r1_3t": x[None]}, tta=2)
    assert std_flipped.max() > 0.05  # a flip-sensitive network disagrees with itself


def test_running_moments_match_the_stacked_ensemble() -> None:
    rng = np.random.default_rng(3)
    members = [rng.normal(1000.0, 5.0, (2, 4, 5, 3)).astype(np.float32) for _ in range(40)]
    moments = RunningMoments()
    for member in members:
        moments.add(member)
    stacked = np.stack(members).astype(np.float64)
    np.testing.assert_allclose(moments.mean, stacked.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(moments.std, stacked.std(axis=0), rtol=1e-4)
    one = RunningMoments()
    one.add(members[0])
    np.testing.assert_array_equal(one.std, 0.0)
    with pytest.raises(ValueError, match="no ensemble member"):
        _ = RunningMoments().mean


def test_sliding_window_blends_back_to_the_volume() -> None:
    x = torch.randn(1, 1, 13, 17, 11)
    strategy = SlidingWindow(window=(8, 8, 8), overlap=0.5)
    np.testing.assert_allclose(strategy.predict(Scale(2.0), x), 2 * x, atol=1e-5)


class MeanPerPatch(nn.Module):
    """One score per patch: the mean of its first channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1].flatten(1).mean(1, keepdim=True)


def test_per_lesion_scores_each_lesion_from_its_patch() -> None:
    labels = torch.zeros(12, 12, 12, dtype=torch.int64)
    labels[2:4, 2:4, 2:4], labels[8:10, 8:10, 8:10] = 3, 7
    x = torch.zeros(1, 1, 12, 12, 12)
    x[0, 0, 8:10, 8:10, 8:10] = 1.0  # only lesion 7 is bright
    scores = PerLesion(patch_size=(4, 4, 4)).predict(MeanPerPatch(), x, labels)
    assert scores.shape == (2, 1)
    assert scores[0, 0] == 0 and scores[1, 0] > 0  # increasing label order: 3, then 7


def test_lesion_probabilities_take_each_folds_prior_shift() -> None:
    task = replace(get_task("rim-classify"), inference=PerLesion(patch_size=(4, 4, 4)))
    labels = np.zeros((12, 12, 12), np.int64)
    labels[2:4, 2:4, 2:4], labels[8:10, 8:10, 8:10] = 3, 7
    qsm = np.zeros((1, 12, 12, 12), np.float32)
    qsm[0, 8:10, 8:10, 8:10] = 2.0
    inputs = {"qsm": qsm, "flair": np.zeros_like(qsm)}
    stats = {"qsm": {"shift": 0.0, "scale": 1.0}, "flair": {"shift": 0.0, "scale": 1.0}}
    logits = np.array([0.0, 2.0 * 8 / 64])  # the mean of each 4^3 patch's QSM
    plain, _ = predict_arrays(TrainedModel(Path("."), task, {}, (FoldModel(
        MeanPerPatch(), stats),)), inputs, tta=1, lesions=labels)
    np.testing.assert_allclose(plain[:, 0], 1 / (1 + np.exp(-logits)), rtol=1e-6)
    shifted = (FoldModel(MeanPerPatch(), stats, logit_offset=(-2.0,)),
               FoldModel(MeanPerPatch(), stats, logit_offset=(-1.0,)))
    mean, _ = predict_arrays(TrainedModel(Path("."), task, {}, shifted), inputs, tta=1,
                             lesions=labels)
    expected = (1 / (1 + np.exp(2.0 - logits)) + 1 / (1 + np.exp(1.0 - logits))) / 2
    np.testing.assert_allclose(mean[:, 0], expected, rtol=1e-6)


def test_predict_inputs_and_preprocessing_keep_the_input_grid(enhance_dataset: Path,
                                                              tmp_path: Path) -> None:
    import json

    from conftest import tiny
    from lesionkit.infer import predict
    from lesionkit.io import load_volume
    from lesionkit.tasks.task import ImageSpec, Transform
    from lesionkit.training import train

    base = tiny(get_task("enhance-r1"))
    # Train on 3T, predict from the 7T map; crop to 12^3 before the network sees it.
    task = replace(base, predict_inputs=(ImageSpec("r1_3t", "R1map", session="7T",
                                                   exclude=("acq",), unit="s^-1"),),
                   preprocess=(Transform("CropOrPad", {"target_shape": (12, 12, 12)}),))
    model = train(task, enhance_dataset, tmp_path / "model", epochs=1, max_steps=1,
                  progress=False, device="cpu")
    assert json.loads(json.dumps(yaml_task(model)["preprocess"]))[0]["name"] == "CropOrPad"
    written = predict(model, enhance_dataset, device="cpu", progress=False, subjects=["01"],
                      out_dir=tmp_path / "out")
    source = enhance_dataset / "sub-01" / "ses-7T" / "anat" / "sub-01_ses-7T_R1map.nii.gz"
    output = load_volume(written[0])
    reference = load_volume(source)
    assert output.shape == reference.shape == (16, 16, 16)
    np.testing.assert_allclose(output.affine, reference.affine, atol=1e-5)
    sidecar = json.loads(written[0].with_suffix("").with_suffix(".json").read_text())
    assert sidecar["Sources"] == [str(source.resolve())]
    # Voxels outside the 12^3 crop were never predicted: zero after the inverse padding.
    assert output.data[0].max() == 0 and output.data[8].max() > 0


def test_predict_with_chosen_folds_uses_them_for_every_subject(enhance_dataset: Path,
                                                               tmp_path: Path) -> None:
    """``folds`` replaces the held-out folds: a fold predicts its own training subjects
    (what a fold's downstream fit needs); an index out of range is one clear error."""
    import json

    from conftest import tiny
    from lesionkit.infer import predict
    from lesionkit.io import InputError, load_volume
    from lesionkit.training import train

    task = tiny(get_task("enhance-r1"))
    splits = [{"train": ["01", "02"], "validation": ["03"]},
              {"train": ["03", "04"], "validation": ["01"]}]
    model = train(task, enhance_dataset, tmp_path / "model", epochs=1, max_steps=1,
                  progress=False, device="cpu", splits=splits)
    held_out = predict(model, enhance_dataset, device="cpu", progress=False, tta=1,
                       subjects=["01"], out_dir=tmp_path / "held-out")
    own = predict(model, enhance_dataset, device="cpu", progress=False, tta=1,
                  subjects=["01"], out_dir=tmp_path / "own", folds=[0])
    sidecar = json.loads(own[0].with_suffix("").with_suffix(".json").read_text())
    assert sidecar["Folds"] == 1 and sidecar["FoldIndices"] == [0]
    assert "FoldIndices" not in json.loads(
        held_out[0].with_suffix("").with_suffix(".json").read_text())
    # Sub-01 is held out by fold 1 only: fold 0, which trained on it, predicts otherwise.
    assert not np.allclose(load_volume(own[0]).data, load_volume(held_out[0]).data)
    with pytest.raises(InputError, match="fold indices from 0 to 1, found \\[2\\]"):
        predict(model, enhance_dataset, device="cpu", progress=False, subjects=["01"],
                out_dir=tmp_path / "bad", folds=[2])
    assert not (tmp_path / "bad").exists()


def test_bids_filter_chooses_the_acquisition_predicted(enhance_dataset: Path,
                                                       tmp_path: Path, capsys) -> None:
    """A subject with the input reconstructed twice (rec-norm beside the plain one): one
    line that names the option without a choice, the chosen file with it."""
    import json
    import shutil

    from conftest import tiny
    from lesionkit.cli import run
    from lesionkit.training import train

    model = train(tiny(get_task("enhance-r1")), enhance_dataset, tmp_path / "model",
                  epochs=1, max_steps=1, progress=False, device="cpu")
    anat = enhance_dataset / "sub-01" / "ses-3T" / "anat"
    chosen = anat / "sub-01_ses-3T_rec-norm_R1map.nii.gz"
    shutil.copy(anat / "sub-01_ses-3T_R1map.nii.gz", chosen)
    common = ["predict", str(model), str(enhance_dataset), "--subjects", "01", "--device",
              "cpu", "--tta", "1"]
    capsys.readouterr()
    assert run([*common, "--out-dir", str(tmp_path / "none")]) == 1
    assert "choose one with --bids-filter (e.g. --bids-filter R1map:rec=norm)" in (
        capsys.readouterr().err)
    assert not (tmp_path / "none").exists()
    assert run([*common, "--out-dir", str(tmp_path / "out"), "--bids-filter",
                "R1map:rec=norm"]) == 0
    sidecar = next((tmp_path / "out").rglob("*_R1map.json"))
    assert json.loads(sidecar.read_text())["Sources"] == [str(chosen.resolve())]
    # The output keeps its source's rec, as BIDS derivatives do: the plain image's
    # prediction into the same folder takes its own name beside it.
    assert sidecar.name == "sub-01_ses-3T_rec-norm_desc-enhanced_R1map.json"
    assert run([*common, "--out-dir", str(tmp_path / "out"), "--bids-filter",
                "R1map:rec="]) == 0
    assert sorted(p.name for p in (tmp_path / "out").rglob("*_R1map.nii.gz")) == [
        "sub-01_ses-3T_desc-enhanced_R1map.nii.gz",
        "sub-01_ses-3T_rec-norm_desc-enhanced_R1map.nii.gz"]


def test_an_entity_that_chooses_the_input_is_not_carried_into_output_names() -> None:
    from lesionkit.writers import carried_entities

    source = {"sub": "01", "ses": "x", "acq": "standard", "ce": "gadolinium", "rec": "norm",
              "run": "2"}
    assert carried_entities(source, (("ce", "gadolinium"), ("acq", "standard"))) == {
        "rec": "norm"}
    assert carried_entities(source, ()) == {"acq": "standard", "ce": "gadolinium",
                                            "rec": "norm"}


def test_files_named_one_by_one_predict_as_the_dataset_does(enhance_dataset: Path,
                                                            tmp_path: Path, capsys) -> None:
    """``predict --image KEY=FILE``: a scan outside any BIDS layout gives the output its
    dataset gives, the sidecar names the user's file, and an error names it too."""
    import json
    import shutil

    from conftest import tiny
    from lesionkit.cli import run
    from lesionkit.io import load_volume, save_volume
    from lesionkit.training import train
    from lesionkit.volume import Volume

    model = train(tiny(get_task("enhance-r1")), enhance_dataset, tmp_path / "model",
                  epochs=1, max_steps=1, progress=False, device="cpu")
    scan = tmp_path / "scanner" / "R1 map 3T.nii.gz"
    scan.parent.mkdir()
    shutil.copy(enhance_dataset / "sub-01/ses-3T/anat/sub-01_ses-3T_R1map.nii.gz", scan)
    common = ["predict", str(model), "--device", "cpu", "--tta", "1"]
    assert run([*common, str(enhance_dataset), "--subjects", "01", "--out-dir",
                str(tmp_path / "pred-bids")]) == 0
    assert run([*common, "--image", f"r1_3t={scan}", "--subjects", "p7", "--out-dir",
                str(tmp_path / "files")]) == 0
    (written,) = (tmp_path / "files").rglob("sub-p7_*_R1map.nii.gz")
    (reference,) = (tmp_path / "pred-bids").rglob("sub-01_*_desc-enhanced_R1map.nii.gz")
    assert written.name == reference.name.replace("sub-01", "sub-p7")
    np.testing.assert_array_equal(load_volume(written).data, load_volume(reference).data)
    sidecar = json.loads(written.with_suffix("").with_suffix(".json").read_text())
    assert sidecar["Sources"] == [str(scan.resolve())]
    assert list(sidecar["InputVoxelSizes"]) == [str(scan.resolve())]  # not the link's name
    capsys.readouterr()
    flat = load_volume(scan)
    save_volume(Volume(np.ones(flat.shape, np.float32), flat.affine), scan)
    assert run([*common, "--image", f"r1_3t={scan}", "--out-dir", str(tmp_path / "x")]) == 1
    assert capsys.readouterr().err.startswith(f"error: {scan.resolve()}: expected an image, "
                                              "found a constant image")
    assert not (tmp_path / "x").exists()


def test_keep_going_predicts_the_others_and_names_the_refused(enhance_dataset: Path,
                                                              tmp_path: Path, capsys) -> None:
    from conftest import tiny
    from lesionkit.cli import run
    from lesionkit.io import load_volume, save_volume
    from lesionkit.training import train
    from lesionkit.volume import Volume

    model = train(tiny(get_task("enhance-r1")), enhance_dataset, tmp_path / "model",
                  epochs=1, max_steps=1, progress=False, device="cpu")
    broken = enhance_dataset / "sub-02/ses-3T/anat/sub-02_ses-3T_R1map.nii.gz"
    volume = load_volume(broken)
    save_volume(Volume(np.full(volume.shape, 0.7, np.float32), volume.affine), broken)
    common = ["predict", str(model), str(enhance_dataset), "--device", "cpu", "--tta", "1"]
    capsys.readouterr()
    assert run([*common, "--out-dir", str(tmp_path / "stop")]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "stop").glob("sub-*")) == ["sub-01"]
    assert run([*common, "--out-dir", str(tmp_path / "all"), "--keep-going"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 2 and "sub-02_ses-3T_R1map.nii.gz: expected an image, found a " \
        "constant image" in errors[0]
    assert "found 1 of 4 refused, each named above: sub-02; the other 3 are written" \
        in errors[1]
    assert sorted(p.name for p in (tmp_path / "all").glob("sub-*")) == ["sub-01", "sub-03",
                                                                        "sub-04"]


def test_a_subject_refused_while_written_leaves_nothing(enhance_dataset: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its maps are written, then its next output fails: none of its files (nor its
    folder, nor a temporary) stays; the other subjects are whole."""
    from conftest import tiny
    from lesionkit import infer, writers
    from lesionkit.io import InputError
    from lesionkit.training import train

    model = train(tiny(get_task("enhance-r1")), enhance_dataset, tmp_path / "model",
                  epochs=1, max_steps=1, progress=False, device="cpu")
    write_maps = writers.WRITERS["maps"]

    def failing(out, *args, **kwargs) -> None:
        write_maps(out, *args, **kwargs)
        if out.subject == "02":
            assert list(out.out_root.rglob("sub-02*.nii.gz")) == []  # not yet in place
            raise InputError("sub-02: a fault after its maps were written")

    monkeypatch.setitem(writers.WRITERS, "maps", failing)
    out = tmp_path / "out"
    with pytest.raises(InputError, match="found 1 of 4 refused"):
        infer.predict(model, enhance_dataset, tta=2, device="cpu", progress=False,
                      out_dir=out, keep_going=True)
    assert sorted(p.name for p in out.glob("sub-*")) == ["sub-01", "sub-03", "sub-04"]
    assert len(list(out.rglob("sub-03*_R1map.nii.gz"))) == 2  # map and uncertainty
    assert [p for p in out.rglob(".*")] == []  # no temporary left
    with pytest.raises(InputError, match="a fault after its maps"):  # without --keep-going
        infer.predict(model, enhance_dataset, tta=2, device="cpu", progress=False,
                      out_dir=tmp_path / "stop", subjects=["02"])
    assert not (tmp_path / "stop").exists()


def yaml_task(model: Path) -> dict:
    import yaml

    return yaml.safe_load((model / "config.yaml").read_text())["task"]


def test_a_subject_without_lesions_gets_an_empty_lesion_table(tmp_path: Path) -> None:
    import pandas as pd

    from conftest import TOY_LESION_TASK, tiny, write_task_dataset
    from lesionkit.bids import BIDSDataset
    from lesionkit.infer import predict
    from lesionkit.io import load_volume, save_volume
    from lesionkit.training import train

    task = tiny(TOY_LESION_TASK)
    data = write_task_dataset(tmp_path / "bids", task, subjects=3)
    model = train(task, data, tmp_path / "model", epochs=1, max_steps=1, progress=False,
                  device="cpu")
    lesions = BIDSDataset(data).get("03", "dseg", derivatives="manual", desc="lesions").path
    empty = load_volume(lesions, kind="label")
    save_volume(empty.with_data(np.zeros(empty.shape, np.float32)), lesions)
    predict(model, data, subjects=["03"], device="cpu", progress=False, out_dir=tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "sub-03" / "anat" / "sub-03_desc-bright_lesions.tsv",
                        sep="\t")
    assert table.empty and {"label", "probability", "uncertainty"} <= set(table.columns)


def test_subject_tables_are_merged_not_overwritten(tmp_path: Path) -> None:
    from lesionkit.io import write_tsv
    from lesionkit.writers import merged_rows

    table = tmp_path / "task-x_predictions.tsv"
    write_tsv([{"participant_id": "sub-01", "patient": 0.2},
               {"participant_id": "sub-02", "patient": 0.7}], table)
    rows = merged_rows(table, [{"participant_id": "sub-02", "patient": 0.9},
                               {"participant_id": "sub-03", "patient": 0.1}])
    assert [(r["participant_id"], float(r["patient"])) for r in rows] == [
        ("sub-01", 0.2), ("sub-02", 0.9), ("sub-03", 0.1)]
    # Another acquisition of a subject (its outputs keep acq) is a row of its own.
    rows = merged_rows(table, [{"participant_id": "sub-01", "acq": "3D", "patient": 0.5}])
    assert [(r["participant_id"], r.get("acq") or "", float(r["patient"])) for r in rows] == [
        ("sub-01", "", 0.2), ("sub-01", "3D", 0.5), ("sub-02", "", 0.7)]
    write_tsv(rows, table)  # the rows without acq hold "n/a" there now
    rows = merged_rows(table, [{"participant_id": "sub-01", "patient": 0.3}])
    assert [(r["participant_id"], r.get("acq"), float(r["patient"])) for r in rows] == [
        ("sub-01", None, 0.3), ("sub-01", "3D", 0.5), ("sub-02", "n/a", 0.7)]


def test_negative_quantitative_output_is_set_to_zero_and_flagged(enhance_dataset: Path,
                                                                 tmp_path: Path) -> None:
    import json

    from conftest import tiny
    from lesionkit.infer import predict
    from lesionkit.training import train

    task = tiny(get_task("enhance-r1"))
    model = train(task, enhance_dataset, tmp_path / "model", epochs=1, max_steps=1,
                  progress=False, device="cpu")
    weights = model / "fold-0" / "weights.safetensors"
    from lesionkit.model_folder import load_tensors, save_tensors

    tensors = load_tensors(weights)
    last_bias = [k for k in tensors if k.endswith("bias")][-1]
    tensors[last_bias] = tensors[last_bias] - 100.0  # every output far below zero
    save_tensors(tensors, weights)
    written = predict(model, enhance_dataset, device="cpu", progress=False,
                      out_dir=tmp_path / "out", subjects=["01"])
    enhanced = next(p for p in written if "desc-enhanced" in p.name)
    from lesionkit.io import load_volume

    assert load_volume(enhanced).data.min() >= 0
    sidecar = json.loads(enhanced.with_name(enhanced.name.replace(".nii.gz", ".json"))
                         .read_text())
    assert "below 0 s^-1" in sidecar["ValueRange"]


def test_voxels_outside_a_crop_get_the_background_of_an_intensity_map() -> None:
    from lesionkit.volume import Volume
    from lesionkit.writers import on_input_grid

    reference = Volume(np.zeros((12, 12, 12), np.float32), np.eye(4))
    crop = np.eye(4)
    crop[:3, 3] = 2.0  # an 8^3 crop starting at voxel 2 of the input
    data = np.full((8, 8, 8), -2.0, np.float32)  # a z-scored map: air below zero
    data[2:6, 2:6, 2:6] = 3.0  # the head
    data[3, 3, 3] = -5.0  # one dark voxel inside: the minimum, not the background
    out = on_input_grid(data, crop, reference, "intensity")
    assert out[6, 6, 6] == pytest.approx(3.0) and out[5, 5, 5] == pytest.approx(-5.0)
    # outside the crop: the map's own background, so that no frame shows where it ends
    assert out[0, 0, 0] == pytest.approx(-2.0) and out[11, 11, 11] == pytest.approx(-2.0)
    probability = on_input_grid(np.full((8, 8, 8), 0.7, np.float32), crop, reference,
                                 "probability")
    assert probability[0, 0, 0] == 0.0 and probability[5, 5, 5] == pytest.approx(0.7)


def test_channels_last_inference_keeps_the_values() -> None:
    from lesionkit.infer import channels_last
    from lesionkit.slicewise import SliceWise

    torch.manual_seed(0)
    x = torch.randn(1, 2, 9, 10, 11)
    for network in (nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 1, 1)),
                    SliceWise(nn.Conv2d(2, 1, 3, padding=1))):
        network.eval()
        with torch.inference_mode():
            before = network(x)
            converted = channels_last(network, x)
            after = network(converted)
        np.testing.assert_allclose(after, before, atol=1e-5)
        weight = next(p for p in network.parameters() if p.ndim >= 4)
        layout = torch.channels_last_3d if weight.ndim == 5 else torch.channels_last
        assert weight.is_contiguous(memory_format=layout)


def test_mixed_precision_prediction_is_close_and_float32() -> None:
    x = np.random.default_rng(0).uniform(0.5, 1.5, (1, 8, 8, 8)).astype(np.float32)
    network = nn.Conv3d(1, 1, 3, padding=1)
    exact, _ = predict_arrays(_model(network), {"r1_3t": x}, tta=1)
    mixed, _ = predict_arrays(_model(network), {"r1_3t": x}, tta=1, amp=True)
    assert mixed.dtype == np.float32
    np.testing.assert_allclose(mixed, exact, atol=0.02 * float(np.abs(exact).max()))


@dataclass(frozen=True)
class _OwnStrategy:
    """An inference strategy defined outside lesionkit (a user's own module)."""

    flips: int = 1

    def predict(self, network, x, lesions=None):
        return network(x)


def test_strategy_classes_of_trusted_modules_load() -> None:
    from lesionkit.io import InputError
    from lesionkit.model_folder import task_from_plain, task_to_plain

    plain = task_to_plain(replace(TASK, inference=_OwnStrategy(flips=2)))
    with pytest.raises(InputError, match="trusted"):
        task_from_plain(plain, Path("config.yaml"))
    assert task_from_plain(plain, Path("config.yaml"), (__name__,)).inference == _OwnStrategy(2)


def test_brain_box_grows_the_mask_box_within_the_volume() -> None:
    from lesionkit.infer import brain_box

    mask = np.zeros((20, 30, 10), bool)
    mask[5:8, 10:20, 2:4] = True
    assert brain_box(mask, 3, align=1) == (slice(2, 11), slice(7, 23), slice(0, 7))
    assert brain_box(mask, 3, align=4) == (slice(0, 11), slice(4, 23), slice(0, 7))
    assert brain_box(mask, 30) is None  # the whole volume
    assert brain_box(np.zeros((4, 4, 4)), 2) is None


def test_probabilities_are_cleared_beyond_the_margin_in_mm() -> None:
    """Distances are in mm on an anisotropic grid; only the named maps are cleared."""
    from lesionkit.infer import clear_outside_brain

    mask = np.zeros((20, 20, 10), bool)
    mask[8:12, 8:12, 4:6] = True
    maps = np.ones((2, 20, 20, 10), np.float32)
    cleared = clear_outside_brain(maps, mask, (1.0, 1.0, 3.0), 3.0, [1])
    assert (maps[0] == 1).all()  # a map not named keeps every voxel
    kept = maps[1] > 0
    assert kept[mask].all()
    assert kept[5, 10, 4] and not kept[4, 10, 4]  # 3 mm and 4 mm in-plane from the mask
    assert kept[10, 10, 3] and not kept[10, 10, 2]  # one slice (3 mm) below; two (6 mm)
    assert kept[6, 6, 4] and not kept[5, 6, 4]  # 2.8 mm and 3.6 mm diagonally
    assert cleared == int((~kept).sum())
    empty = np.ones((1, 4, 4, 4), np.float32)
    assert clear_outside_brain(empty, np.zeros((4, 4, 4)), (1, 1, 1), 3.0, [0]) == 0
    assert (empty == 1).all()  # no mask: nothing to measure from, nothing cleared


def test_maps_predicted_on_a_box_come_back_on_the_whole_grid() -> None:
    x = np.random.default_rng(1).uniform(0.5, 1.5, (1, 12, 10, 8)).astype(np.float32)
    box = (slice(2, 9), slice(1, 10), slice(0, 8))
    model = _model(Scale(1.0), Scale(2.0))
    whole, whole_std = predict_arrays(model, {"r1_3t": x}, tta=1)
    mean, std = predict_arrays(model, {"r1_3t": x}, tta=1, box=box)
    assert mean.shape == whole.shape == (1, 12, 10, 8)
    np.testing.assert_allclose(mean[(slice(None), *box)], whole[(slice(None), *box)], rtol=1e-5)
    np.testing.assert_allclose(std[(slice(None), *box)], whole_std[(slice(None), *box)],
                               rtol=1e-5)
    outside = np.ones(mean.shape, bool)
    outside[(slice(None), *box)] = False
    assert (mean[outside] == 0).all() and (std[outside] == 0).all()  # R1 >= 0: zero outside


def test_a_z_scored_map_predicted_on_a_box_is_surrounded_by_its_background() -> None:
    from lesionkit.infer import _uncropped
    from lesionkit.writers import surround_value

    values = np.full((1, 6, 6, 6), -4.0, np.float32)  # air of a z-scored map
    values[0, 2:4, 2:4, 2:4] = 1.0
    values[0, 0, 0, 0] = -9.0  # one dark corner voxel: the minimum, not the background
    assert surround_value(values[0]) == pytest.approx(-4.0)
    assert surround_value(np.abs(values[0])) == 0.0  # no negative values: 0
    box = (slice(3, 9), slice(0, 6), slice(2, 8))
    outputs = [SimpleNamespace(kind="intensity")]
    full = _uncropped(values, box, (12, 6, 10), outputs, std=False)
    assert full[0, 0, 0, 0] == pytest.approx(-4.0) and full[0, 11, 5, 9] == pytest.approx(-4.0)
    np.testing.assert_array_equal(full[(slice(None), *box)], values)
    assert (_uncropped(np.abs(values), box, (12, 6, 10), outputs, std=True)[0, 0] == 0).all()


def test_an_aligned_box_keeps_the_pooling_grid_of_the_whole_pass() -> None:
    """A network with stride-4 pooling is not shift-invariant: on a box starting at a
    multiple of 4 its maps are the whole pass's, on a box starting elsewhere they are not."""
    from lesionkit.infer import brain_box
    from lesionkit.slicewise import SliceWise

    pool = SliceWise(nn.Sequential(nn.AvgPool2d(4), nn.Upsample(scale_factor=4)), multiple=4)
    x = np.random.default_rng(2).uniform(0.5, 1.5, (1, 24, 24, 6)).astype(np.float32)
    mask = np.zeros(x.shape[1:], bool)
    mask[9:18, 9:18, :] = True
    model = _model(pool.eval())
    whole, _ = predict_arrays(model, {"r1_3t": x}, tta=1)
    for align, same in ((4, True), (1, False)):
        box = brain_box(mask, 2, align=align)
        assert box[0].start == (4 if align == 4 else 7)
        mean, _ = predict_arrays(model, {"r1_3t": x}, tta=1, box=box)
        inner = (slice(None), slice(8, 16), slice(8, 16), slice(None))
        assert np.allclose(mean[inner], whole[inner], rtol=1e-5) is same
