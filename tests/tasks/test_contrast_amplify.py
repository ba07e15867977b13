"""contrast-amplify: statistics from training subjects, the 40-member ensemble, the no-ADC
variant, missing inputs, and the evaluation on a hand-made case."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import brain_mask, oblique_affine, tiny, write_task_dataset
from lesionkit.bids import BIDSDataset, bids_path, write_dataset_description
from lesionkit.infer import predict
from lesionkit.io import InputError, load_volume, save_volume, write_tsv
from lesionkit.store import SubjectStore
from lesionkit.tasks import contrast_amplify as ca
from lesionkit.tasks import get_task
from lesionkit.training import train
from lesionkit.volume import Volume


def _tiny(name: str = "contrast-amplify"):
    return replace(tiny(get_task(name)), inference=replace(tiny(get_task(name)).inference,
                                                           flips=8))


@pytest.fixture(scope="module")
def five_fold(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Six tiny subjects, a 5-fold model of the ``paper`` arm (one step per fold)."""
    root = tmp_path_factory.mktemp("ca")
    data = write_task_dataset(root / "bids", _tiny(), subjects=6)
    model = train(_tiny().arm("paper"), data, root / "model", folds=5, epochs=1, max_steps=1,
                  progress=False, device="cpu")
    return data, model


def test_statistics_are_fitted_on_each_folds_training_subjects(five_fold, tmp_path: Path
                                                                ) -> None:
    data, model = five_fold
    config = yaml.safe_load((model / "config.yaml").read_text())
    store = SubjectStore(data, _tiny().arm("paper"), tmp_path / "cache")
    store.prepare(BIDSDataset(data).subjects())
    entries = []
    for fold in config["folds"]:
        entry = fold["normalisation"]["t1c"]
        assert entry == pytest.approx(store.fit_normalisation(fold["train"])["t1c"], rel=1e-4)
        assert {"clip_low", "clip_high"} <= set(entry)
        assert set(fold["train"]).isdisjoint(fold["validation"])
        entries.append(entry["shift"])
    assert len(set(np.round(entries, 6))) > 1  # each fold its own training subjects


def test_new_subject_gets_five_folds_times_eight_flips(five_fold, tmp_path: Path) -> None:
    _, model = five_fold
    new = write_task_dataset(tmp_path / "new", _tiny(), subjects=7, seed=1)  # sub-07: unseen
    written = predict(model, new, device="cpu", progress=False, subjects=["07"],
                      out_dir=tmp_path / "pred")
    uncertainty = next(p for p in written if "desc-uncertainty" in p.name)
    sidecar = json.loads(uncertainty.with_name(uncertainty.name.replace(".nii.gz", ".json"))
                         .read_text())
    assert sidecar["Folds"] == 5 and sidecar["TestTimeFlips"] == 8
    assert "40 ensemble members" in sidecar["Description"]
    amplified = next(p for p in written if "desc-amplified" in p.name)
    reference = load_volume(next((new / "sub-07" / "anat").glob("*acq-standard*T1w.nii.gz")))
    output = load_volume(amplified)
    assert output.shape == reference.shape
    np.testing.assert_allclose(output.affine, reference.affine, atol=1e-5)


def test_variant_without_adc_trains_and_predicts(tmp_path: Path) -> None:
    task = _tiny("contrast-amplify-noadc")
    assert "adc" not in {s.key for s in task.inputs + task.prediction_inputs}
    data = write_task_dataset(tmp_path / "bids", task, subjects=3)
    assert not list(data.rglob("*_ADC.nii.gz"))
    model = train(task, data, tmp_path / "model", epochs=1, max_steps=1, progress=False,
                  device="cpu")
    written = predict(model, data, tta=2, device="cpu", progress=False, out_dir=tmp_path / "p")
    assert sum("desc-amplified" in p.name and p.name.endswith(".nii.gz") for p in written) == 3


def test_task_adds_its_output_to_the_t1c_and_other_arms_are_plain(tmp_path: Path) -> None:
    for name in ("contrast-amplify", "contrast-amplify-noadc"):
        task = get_task(name)
        assert task.arm("input-residual") == task  # the default is the arm
        assert (task.inputs[0], task.predict_inputs[0]) == (ca.T1C_LOW, ca.T1C)  # channel 0
        assert task.network == "residual-unet-on-input"
        assert task.arm("unclipped").network == "residual-unet"
        assert task.arm("unclipped").network_factory is None
        paper = task.arm("paper")
        assert (paper.network, paper.network_factory) == ("residual-unet", ca.amplifier)
    task = _tiny()
    data = write_task_dataset(tmp_path / "bids", task, subjects=3)
    model = train(task, data, tmp_path / "model", epochs=1, max_steps=1, progress=False,
                  device="cpu")
    assert yaml.safe_load((model / "config.yaml").read_text())["task"]["network"] == (
        "residual-unet-on-input")
    written = predict(model, data, tta=2, device="cpu", progress=False, out_dir=tmp_path / "p")
    assert sum("desc-amplified" in p.name and p.name.endswith(".nii.gz") for p in written) == 3
    plain = train(_tiny().arm("unclipped"), data, tmp_path / "plain", epochs=1, max_steps=1,
                  progress=False, device="cpu")
    assert yaml.safe_load((plain / "config.yaml").read_text())["task"]["network"] == (
        "residual-unet")


def test_missing_input_is_one_line_naming_subject_and_image(tmp_path: Path) -> None:
    task = _tiny()
    data = write_task_dataset(tmp_path / "bids", task, subjects=3)
    model = train(task, data, tmp_path / "model", epochs=1, max_steps=1, progress=False,
                  device="cpu")
    (data / "sub-02" / "anat" / "sub-02_FLAIR.nii.gz").unlink()
    with pytest.raises(InputError) as error:
        predict(model, data, tta=1, device="cpu", progress=False, subjects=["02"],
                out_dir=tmp_path / "p")
    message = str(error.value)
    assert "sub-02" in message and "FLAIR" in message and "\n" not in message


# --- evaluation on a hand-made case -------------------------------------------------------

SHAPE = (24, 24, 24)


def _put(root: Path, subject: str, suffix: str, data: np.ndarray, derivatives: str | None = None,
         **entities: str) -> Path:
    path = bids_path(root, subject, suffix, derivatives=derivatives, **entities)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_volume(Volume(np.asarray(data, np.float32), oblique_affine(2.0), "intensity", "a.u."),
                path)
    return path


def _case(root: Path, subject: str, rng: np.random.Generator, lesion_gain: float) -> None:
    """A brain of 100 (noise 3), a 3-voxel-radius lesion enhancing to 100 + gain on T1c,
    bright on FLAIR, with ADC (the reader stand-in's context images)."""
    brain = brain_mask(SHAPE)
    grid = np.indices(SHAPE)
    lesion = ((grid - 12) ** 2).sum(0) <= 9
    pre = np.where(brain, 100.0 + rng.normal(0, 3, SHAPE), 0.0)
    pre[lesion] = 90.0
    t1c = pre.copy()
    t1c[lesion] = 100.0 + lesion_gain
    quadruple = pre.copy()
    quadruple[lesion] = 100.0 + 3 * lesion_gain
    _put(root, subject, "T1w", pre)
    flair = np.where(brain, 100.0 + rng.normal(0, 3, SHAPE), 0.0)
    flair[((grid - 12) ** 2).sum(0) <= 25] += 30.0
    _put(root, subject, "FLAIR", flair)
    _put(root, subject, "ADC", np.where(brain, 0.8 + rng.normal(0, 0.02, SHAPE), 0.0))
    _put(root, subject, "T1w", t1c, ce="gadolinium", acq="standard")
    low = pre.copy()
    low[lesion] = 100.0 + lesion_gain / 4
    _put(root, subject, "T1w", low, ce="gadolinium", acq="low")
    _put(root, subject, "T1w", quadruple, "phantom", ce="gadolinium", acq="quadruple")
    _put(root, subject, "mask", brain, "phantom", desc="brain")
    _put(root, subject, "mask", lesion, "phantom", label="lesion")
    _put(root, subject, "probseg", lesion, "phantom", label="enhancing")
    _put(root, subject, "probseg", brain & ~lesion, "phantom", label="NAWM")
    centre = oblique_affine(2.0) @ np.array([12.0, 12.0, 12.0, 1.0])
    write_tsv([{"label": 1, "type": "metastasis", "centre_x": centre[0], "centre_y": centre[1],
                "centre_z": centre[2], "long_axis_mm": 12.0, "short_axis_mm": 12.0}],
              bids_path(root, subject, "lesions", derivatives="phantom", extension=".tsv"))


def test_evaluate_scores_a_hand_made_case(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "bids"
    write_dataset_description(root, "hand-made")
    for number, gain in (("01", 60.0), ("02", 60.0), ("03", 40.0)):
        _case(root, number, rng, gain)
    predictions = tmp_path / "pred"
    t1c = load_volume(next((root / "sub-03" / "anat").glob("*acq-standard*_T1w.nii.gz")))
    brain = brain_mask(SHAPE)
    median, scale = ca._robust(t1c.data, brain)
    amplified = (t1c.data - median) / scale * 2.0  # contrast doubled, in z units
    path = bids_path(predictions, "03", "T1w", desc="amplified", ce="gadolinium")
    path.parent.mkdir(parents=True)
    save_volume(Volume(amplified, t1c.affine, "intensity", "z"), path)
    rows = ca.evaluate(get_task("contrast-amplify"), root, predictions, ["03"])
    by_method = {r["method"]: r for r in rows}
    lesion = ((np.indices(SHAPE) - 12) ** 2).sum(0) <= 9
    normal = brain & ~lesion
    expected_cnr = (140.0 - t1c.data[normal].mean()) / t1c.data[normal].std()
    assert by_method["T1c"]["cnr"] == pytest.approx(expected_cnr, rel=1e-4)
    assert by_method["T1c"]["lbr"] == pytest.approx(140.0 / t1c.data[normal].mean(), rel=1e-4)
    assert by_method["T1c"]["cep"] == pytest.approx(100.0 * (140.0 - 90.0) / 90.0, rel=1e-4)
    # T1c-pro is mapped back to the T1c's scale: twice the lesion contrast.
    assert by_method["T1c-pro"]["lbr"] > by_method["T1c"]["lbr"]
    assert by_method["T1c-pro"]["contrast_over_quadruple"] == pytest.approx(
        2 * by_method["T1c"]["contrast_over_quadruple"], rel=0.05)
    assert by_method["quadruple-dose"]["rmse_quadruple"] is None
    # Threshold from the two other (training) subjects only; the lesion is found.
    assert by_method["T1c"]["training_cases"] == 2
    assert by_method["T1c"]["found_f1"] == 1
    lesion_row = by_method["lesion"]
    assert lesion_row["T1c_f1"] == 1 and lesion_row["T1c-pro_f1"] == 1
    sections = ca.report_sections(get_task("contrast-amplify"), root, predictions, ["03"], rows)
    assert sections[0].tables["paper vs phantom"][0]["paper T1c"] == 9.1


def test_each_image_is_read_by_a_reader_fitted_on_its_own_kind(tmp_path: Path) -> None:
    """T1c-pro's reader stand-in learns from T1c-pro of the training cases, predicted by
    the fold that predicted the case (which trained on them); the quadruple dose's from
    theirs; the predictions are kept and reused."""
    rng = np.random.default_rng(1)
    root = tmp_path / "bids"
    write_dataset_description(root, "hand-made")
    for number, gain in (("01", 60.0), ("02", 50.0), ("03", 60.0), ("04", 40.0)):
        _case(root, number, rng, gain)
    splits = [{"train": ["01", "02", "03"], "validation": []}]
    model = train(_tiny(), root, tmp_path / "model", epochs=1, max_steps=1, progress=False,
                  device="cpu", splits=splits)
    predictions = tmp_path / "pred"
    predict(model, root, tta=1, device="cpu", progress=False, subjects=["04"],
            out_dir=predictions)
    rows = ca.evaluate(get_task("contrast-amplify"), root, predictions, ["04"],
                       predict=predict)
    by_method = {r["method"]: r for r in rows}
    for method, fitted_on in (("T1c", "T1c"), ("T1c-pro", "T1c-pro"),
                              ("quadruple-dose", "quadruple-dose")):
        assert by_method[method]["own_reader_fitted_on"] == fitted_on
        assert by_method[method]["own_reader_cases"] == by_method[method]["training_cases"] == 3
        assert {"found_f1", "found_own-f1", "found_own-fp05"} <= set(by_method[method])
    # The T1c is read by the same stand-in either way; the study's reading keeps one
    # threshold for every image.
    assert by_method["T1c"]["threshold_f1"] == by_method["T1c"]["threshold_own-f1"]
    assert by_method["T1c-pro"]["threshold_f1"] == by_method["T1c"]["threshold_f1"]
    cache = predictions / "derivatives" / "reader-cases-folds-0"
    written = sorted(cache.glob("sub-*/anat/*desc-amplified*.nii.gz"))
    assert [p.name[:6] for p in written] == ["sub-01", "sub-02", "sub-03"]
    sidecar = json.loads(written[0].with_name(written[0].name.replace(".nii.gz", ".json"))
                         .read_text())
    assert sidecar["FoldIndices"] == [0] and sidecar["TestTimeFlips"] == 1
    assert ca._output_path(predictions, "01") is None  # the case's own folder untouched
    before = [p.stat().st_mtime for p in written]
    ca.evaluate(get_task("contrast-amplify"), root, predictions, ["04"], predict=predict)
    assert [p.stat().st_mtime for p in written] == before  # reused, not predicted again


def test_training_cases_of_a_model_trained_on_another_dataset(tmp_path: Path) -> None:
    """A model folder's fold subjects count only when it trained on this dataset; a
    shipped model's labels name other subjects, so every other subject is used."""
    import json

    import yaml

    root = tmp_path / "bids"
    write_dataset_description(root, "hand-made")
    for number in ("01", "02", "03"):
        (root / f"sub-{number}" / "anat").mkdir(parents=True)
    predictions = tmp_path / "pred"
    path = bids_path(predictions, "03", "T1w", desc="amplified", ce="gadolinium")
    path.parent.mkdir(parents=True)
    path.touch()
    model = tmp_path / "model"
    model.mkdir()
    path.with_name(path.name.replace(".nii.gz", ".json")).write_text(
        json.dumps({"ModelFolder": str(model)}))
    folds = [{"train": ["01", "04", "05"], "validation": []}]
    for trained_on, expected in ((root, ["01", "04", "05"]), (tmp_path / "other", ["01", "02"])):
        (model / "config.yaml").write_text(yaml.safe_dump(
            {"data": {"root": str(trained_on)}, "folds": folds}))
        assert ca.training_cases(root, predictions, "03") == expected
