"""mrf-lesion: the five-output network, its variants, evaluation and report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import MRF_AFFINE as AFFINE
from conftest import MRF_SHAPE as SHAPE
from conftest import put_mrf as put
from conftest import write_mrf_dataset
from lesionkit.bids import BIDSDataset, write_dataset_description
from lesionkit.infer import predict
from lesionkit.io import load_volume
from lesionkit.tasks import get_task
from lesionkit.tasks.mrf_lesion import MRF_LESION, MRF_LESION_TASKS
from lesionkit.tasks.strategies import QueueSampler
from lesionkit.training import train


def tiny(task):
    return replace(task, network_kwargs={"channels": (4, 4, 8, 8, 16), "bridge_dropout": 0.5},
                   sampler=QueueSampler((8, 8, 1), 4, centre_on="mask", oversample="lesion",
                                        oversample_factor=5.0),
                   batch_size=2, learning_rate=1e-3)


def test_five_output_network_trains_two_steps_and_predicts(tmp_path: Path) -> None:
    data = write_mrf_dataset(tmp_path / "bids")
    model = train(tiny(MRF_LESION), data, tmp_path / "model", epochs=1, max_steps=2,
                  progress=False, device="cpu", subjects=["01", "02"])
    written = predict(model, data, device="cpu", progress=False, subjects=["03"])
    dataset = BIDSDataset(data)
    expected = {("T1map", None, "ms"), ("T2starmap", None, "ms"), ("probseg", "NAWM", "1"),
                ("probseg", "GM", "1"), ("probseg", "lesion", "1")}
    found = set()
    for suffix, label, unit in expected:
        entities = {"label": label} if label else {"label": None}
        hit = dataset.get("03", suffix, derivatives="lesionkit", desc="mrflesion", **entities)
        volume = load_volume(hit.path)
        assert volume.shape == SHAPE and np.isfinite(volume.data).all()
        np.testing.assert_allclose(volume.affine, AFFINE, atol=1e-5)
        sidecar = hit.sidecar.read_text()
        assert f'"Units": "{unit}"' in sidecar and '"Uncertainty": "not written' in sidecar
        found.add((suffix, label, unit))
    # five maps, and the lesion map's lesions (label map, table, load table); one fold
    # and one flip make no uncertainty map
    assert found == expected and len(written) == 8
    assert sorted(p.name for p in written if "probseg" not in p.name and "map" not in p.name
                  ) == ["sub-03_desc-mrflesion_dseg.nii.gz", "sub-03_desc-mrflesion_lesions.tsv",
                        "task-mrf-lesion_lesionload.tsv"]
    assert not dataset.find(subject="03", derivatives="lesionkit", desc="uncertainty")
    t1 = load_volume(dataset.get("03", "T1map", derivatives="lesionkit", desc="mrflesion").path)
    assert 100 < np.median(t1.data) < 5000  # inverted back to ms, not z-scores
    rows = MRF_LESION.evaluate(MRF_LESION, data, data / "derivatives/lesionkit", ["03"])
    assert rows[0]["method"] == "network" and 0 <= rows[0]["lesion_dice"] <= 1
    assert rows[0]["t1_deviation_matching"] is not None


def test_evaluate_on_hand_made_derivatives(tmp_path: Path) -> None:
    root = tmp_path / "bids"
    write_dataset_description(root, "hand-made")
    brain = np.zeros(SHAPE, bool)
    brain[1:-1, 1:-1, :] = True
    truth = np.zeros(SHAPE, bool)
    truth[2:4, 2:4, 0:2] = True  # lesion A, 8 voxels
    truth[8, 8, 2] = True  # lesion B, 1 voxel
    prob = np.zeros(SHAPE)
    prob[2:4, 2:4, 0:2] = 0.9  # A found
    prob[6:8, 2:4, 0:2] = 0.5  # 8 false-positive voxels
    prob[8, 8, 2] = 0.2  # B below 33 %
    t1_truth = np.where(brain, 1000.0, 0.0)
    nawm = np.zeros(SHAPE)
    nawm[1:6, 1:-1, :] = 0.9
    gm_truth = np.zeros(SHAPE)
    gm_truth[6:-1, 1:-1, :] = 0.95
    gm_pred = np.zeros(SHAPE)
    gm_pred[6:-1, 1:-1, :2] = 0.85  # half of the GM voxels
    put(root, "01", "mask", truth, "phantom", label="lesion")
    put(root, "01", "mask", brain, "phantom", desc="brain")
    put(root, "01", "probseg", nawm, "phantom", label="NAWM")
    put(root, "01", "probseg", gm_truth, "phantom", label="GM")
    put(root, "01", "T1map", t1_truth / 1000, "phantom")  # in s, as BIDS stores T1 maps
    (root / "derivatives/phantom/sub-01/anat/sub-01_T1map.json").write_text('{"Units": "s"}')
    put(root, "01", "T2starmap", t1_truth / 20, "phantom")
    put(root, "01", "T1map", t1_truth * 0.95, "lesionkit", desc="matched")
    put(root, "01", "T2starmap", t1_truth / 20, "lesionkit", desc="matched")
    put(root, "01", "probseg", prob, "lesionkit", label="lesion", desc="mrflesion")
    put(root, "01", "probseg", nawm, "lesionkit", label="NAWM", desc="mrflesion")
    put(root, "01", "probseg", gm_pred, "lesionkit", label="GM", desc="mrflesion")
    put(root, "01", "T1map", t1_truth * 0.95 * 1.1, "lesionkit", desc="mrflesion")
    put(root, "01", "T2starmap", t1_truth / 20 * 0.9, "lesionkit", desc="mrflesion")

    network, matching = MRF_LESION.evaluate(MRF_LESION, root, root / "derivatives/lesionkit",
                                            ["01"])
    assert network["n_lesions"] == 2
    assert network["lesion_dice"] == pytest.approx(2 * 8 / (16 + 9))
    assert network["detection_rate"] == pytest.approx(0.5)
    assert network["missed_lesions"] == 1  # B
    assert network["missed_median_voxels"] == 1 and network["detected_median_voxels"] == 8
    assert network["best_dice"] == pytest.approx(2 * 8 / (8 + 9))
    assert 0.5 < network["best_threshold"] <= 0.9
    assert network["nawm_dice"] == pytest.approx(1.0)
    assert network["gm_dice"] == pytest.approx(2 * 0.5 / 1.5)
    assert network["t1_deviation_matching"] == pytest.approx(10.0, rel=1e-4)
    assert network["t1_deviation_truth"] == pytest.approx(4.5, rel=1e-3)
    assert network["t2s_deviation_matching"] == pytest.approx(10.0, rel=1e-4)
    assert matching["method"] == "matching"
    assert matching["t1_deviation_truth"] == pytest.approx(5.0, rel=1e-4)
    assert matching["t2s_deviation_truth"] == pytest.approx(0.0, abs=1e-6)

    sections = MRF_LESION.report_sections(MRF_LESION, root, root / "derivatives/lesionkit", ["01"],
                                          [network, matching])
    assert [s.title for s in sections] == ["mrf-lesion: metrics",
                                           "mrf-lesion: lesion probability"]
    assert any("threshold" in caption for caption in sections[1].figures)


def test_variants_are_registered_by_value() -> None:
    assert set(MRF_LESION_TASKS) == {"mrf-lesion", "mrf-lesion-only", "mrf-lesion-dice",
                                     "mrf-relaxometry-lesion", "flair-lesion", "mrf-lesion-3d",
                                     "flair-lesion-dr", "flair-only-lesion-dr"}
    assert [o.target for o in get_task("mrf-lesion").outputs] == ["t1", "t2s", None, None, None]
    only = get_task("mrf-lesion-only")
    assert only.out_channels == 1 and only.loss == "mse" and only.inputs == MRF_LESION.inputs
    dice = get_task("mrf-lesion-dice")
    assert dice.loss == "dice" and dice.output_activation == "sigmoid"
    relaxometry = get_task("mrf-relaxometry-lesion")
    assert [s.suffix for s in relaxometry.inputs] == ["T1map", "T2starmap"]
    assert all(dict(s.entities)["desc"] == "matched" for s in relaxometry.inputs)
    assert [s.suffix for s in get_task("flair-lesion").inputs] == ["FLAIR", "T1w"]
    flair_only, with_t1w = get_task("flair-only-lesion-dr"), get_task("flair-lesion-dr")
    assert [s.suffix for s in flair_only.inputs] == ["FLAIR"]
    assert replace(flair_only, name=with_t1w.name, description=with_t1w.description,
                   inputs=with_t1w.inputs, outputs=with_t1w.outputs, sampler=with_t1w.sampler,
                   network_kwargs=with_t1w.network_kwargs, augment=with_t1w.augment,
                   batch_size=with_t1w.batch_size) == with_t1w
    # The FLAIR alone reads each slice with its neighbours, on patches that hold them.
    assert flair_only.network_kwargs == {**with_t1w.network_kwargs, "context_slices": 1}
    assert flair_only.sampler.patch_size == (64, 64, 5) and flair_only.batch_size == 12
    thick = [t.kwargs for t in flair_only.augment if t.name == "RandomAnisotropy"]
    assert thick == [{**next(t.kwargs for t in with_t1w.augment
                             if t.name == "RandomAnisotropy"),
                      "p": 0.4, "axes": (0, 1, 2, 2)}]
    assert [t.name for t in flair_only.augment] == [t.name for t in with_t1w.augment]
    assert get_task("mrf-lesion-3d").network == "unet"
    assert MRF_LESION.network == "unet2d" and MRF_LESION.sampler.patch_size == (64, 64, 1)
    assert all(t.sampler.oversample == "lesion" and t.sampler.oversample_factor == 5.0
               for t in MRF_LESION_TASKS.values())


@pytest.mark.parametrize("name", ["mrf-relaxometry-lesion", "flair-lesion", "flair-lesion-dr",
                                  "flair-only-lesion-dr"])
def test_single_output_variants_train_and_predict(name: str, tmp_path: Path) -> None:
    data = write_mrf_dataset(tmp_path / "bids")
    task = tiny(get_task(name))
    model = train(task, data, tmp_path / "model", epochs=1, max_steps=1, progress=False,
                  device="cpu", subjects=["01", "02"])
    written = predict(model, data, device="cpu", progress=False, subjects=["03"], tta=2)
    desc = name.replace("-", "")
    assert sorted(p.name for p in written) == [
        f"sub-03_desc-{desc}_dseg.nii.gz", f"sub-03_desc-{desc}_lesions.tsv",
        f"sub-03_label-lesion_desc-{desc}_probseg.nii.gz",
        "sub-03_label-lesion_desc-uncertainty_probseg.nii.gz", f"task-{name}_lesionload.tsv"]
    probability = load_volume(next(p for p in written if f"desc-{desc}_probseg" in p.name)).data
    assert probability.min() >= 0 and probability.max() <= 1
    rows = task.evaluate(task, data, data / "derivatives" / "lesionkit", ["03"])
    assert rows[0]["t1_deviation_matching"] is None and rows[0]["n_lesions"] == 1
    assert {"lesion_precision", "lesion_recall", "lesion_f1",
            "false_positive_components"} <= set(rows[0])


def test_cli_patch_size_keeps_2d_patches_one_slice_thick(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from lesionkit.cli import app

    data = write_mrf_dataset(tmp_path / "bids")
    result = CliRunner().invoke(app, [
        "train", "mrf-lesion", str(data), str(tmp_path / "model"), "--patch-size", "8",
        "--channels", "4,4,8,8,16", "--epochs", "1", "--patches-per-epoch", "2",
        "--batch-size", "2", "--device", "cpu", "--no-progress", "--subjects", "01,02"])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((tmp_path / "model" / "config.yaml").read_text())
    assert config["task"]["sampler"]["patch_size"] == [8, 8, 1]
    assert config["task"]["lr_halving_epochs"] == 20


def test_two_predictions_of_a_subject_are_refused_with_the_filter_that_chooses(
        tmp_path: Path) -> None:
    """Predictions of two acquisitions (their names keep acq) or of two sessions."""
    from lesionkit.bids import bids_path
    from lesionkit.io import InputError, save_volume
    from lesionkit.tasks.mrf_lesion import _find
    from lesionkit.volume import Volume

    volume = Volume(np.zeros((4, 4, 4), np.float32), np.eye(4), kind="probability", unit="1")
    for name, entities in (("acq", [{"acq": "3D"}, {}]),
                           ("ses", [{"session": "a"}, {"session": "b"}])):
        root = tmp_path / name
        for extra in entities:
            save_volume(volume, bids_path(root, "01", "probseg", label="lesion", desc="x",
                                          **extra))
        expected = ("choose one with --bids-filter \\(e.g. --bids-filter probseg:acq=3D\\)"
                    if name == "acq" else "evaluation takes one session per subject")
        with pytest.raises(InputError, match=f"found 2 .*; {expected}$"):
            _find(root, "01", "probseg", None, label="lesion", desc="x")
