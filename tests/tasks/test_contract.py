"""Contract tests over the task registry (and a toy per-lesion task): train two steps,
save, reload the folder, predict, evaluate; grids, affines and units checked."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TOY_LESION_TASK, tiny, write_task_dataset
from lesionkit.bids import BIDSDataset
from lesionkit.evaluation import evaluate
from lesionkit.infer import predict
from lesionkit.io import InputError, load_volume
from lesionkit.model_folder import load_model, read_config, task_from_plain, task_to_plain
from lesionkit.tasks import TASKS, get_task
from lesionkit.training import train

CONTRACT_TASKS = {**TASKS, TOY_LESION_TASK.name: TOY_LESION_TASK}
#: Voxel size (mm) of the test datasets' affine.
AFFINE_SPACING = (1.0, 1.1, 0.9)


def _check_outputs(task, data: Path, predictions: Path, model_dir: Path) -> None:
    dataset, written = BIDSDataset(data), BIDSDataset(predictions)
    for subject in dataset.subjects():
        source = dataset.get(subject, task.inputs[0].suffix, **task.inputs[0].query())
        reference = load_volume(source.path, ndim=None)
        session = source.entities.get("ses")
        if task.output_kind == "subjects":
            table = pd.read_csv(predictions / f"task-{task.name}_predictions.tsv", sep="\t")
            assert f"sub-{subject}" in set(table["participant_id"])
            continue
        if task.output_kind == "lesions":
            found = written.get(subject, "lesions", extension=".tsv")
            table = pd.read_csv(found.path, sep="\t")
            assert list(table["label"]) == [1, 2, 3, 4]
            assert table["probability"].between(0, 1).all()
            assert (table["volume_mm3"] > 0).all()
        descs = (task.outputs[-1].desc,) if task.output_kind == "lesions" else None
        for spec in task.outputs[-1:] if descs else task.outputs:
            for desc in descs or (spec.desc, "uncertainty"):
                found = written.get(subject, spec.suffix, session=session, desc=desc,
                                    **dict(spec.entities))
                output = load_volume(found.path)
                assert output.shape == reference.shape[:3]
                np.testing.assert_allclose(output.affine, reference.affine, atol=1e-5)
                assert np.isfinite(output.data).all()
                sidecar = json.loads(found.sidecar.read_text())
                assert sidecar["Units"] == spec.unit
                assert sidecar["ModelFolder"] == str(model_dir.resolve())


@pytest.mark.parametrize("name", sorted(CONTRACT_TASKS))
def test_train_save_reload_predict_evaluate(name: str, tmp_path: Path) -> None:
    task = tiny(CONTRACT_TASKS[name])
    data = write_task_dataset(tmp_path / "bids", task, subjects=3)
    model_dir = train(task, data, tmp_path / "model", epochs=1, max_steps=2, progress=False,
                      device="cpu")
    config = read_config(model_dir)
    assert config["task"]["name"] == name
    assert config["lesionkit_version"]
    assert (model_dir / "fold-0" / "weights.safetensors").is_file()
    assert not (model_dir / ".cache").exists()
    loaded = load_model(model_dir).task
    assert loaded == replace(task, spacing=loaded.spacing)
    counts = config["folds"][0].get("class_counts")
    if task.output_kind == "maps":
        assert counts is None
    else:  # a classifier records the classes of its training examples and of its loss
        per_subject = 4 if task.output_kind == "lesions" else 1  # write_task_dataset's
        assert sum(counts["training"]) == per_subject * len(config["folds"][0]["train"])
        assert len(counts["loss"]) == len(counts["training"]) and sum(counts["loss"]) > 0
    assert loaded.spacing == pytest.approx(AFFINE_SPACING)  # measured and stored

    predictions = tmp_path / "predictions"
    predict(model_dir, data, tta=2, device="cpu", progress=False, out_dir=predictions)
    _check_outputs(task, data, predictions, model_dir)
    if name == TOY_LESION_TASK.name:
        tsv, _ = evaluate(task, data, predictions=predictions)
        rows = pd.read_csv(tsv, sep="\t")
        assert len(rows) == 12 and set(rows["label"]) <= {0, 1}


@pytest.mark.parametrize("name", sorted(CONTRACT_TASKS))
def test_task_round_trips_through_config(name: str) -> None:
    task = CONTRACT_TASKS[name]
    assert task_from_plain(task_to_plain(task), Path("config.yaml")) == task


def test_unregistered_variant_predicts_from_its_folder(tmp_path: Path) -> None:
    base = tiny(get_task("enhance-r1"))
    variant = replace(base, name="enhance-r1-unregistered", loss="l1",
                      network_kwargs={"channels": (2, 4), "strides": (2,)})
    assert variant.name not in TASKS
    data = write_task_dataset(tmp_path / "bids", variant, subjects=3)
    model_dir = train(variant, data, tmp_path / "model", epochs=1, max_steps=1, progress=False,
                      device="cpu")
    loaded = load_model(model_dir)
    assert loaded.task == replace(variant, spacing=AFFINE_SPACING)
    written = predict(model_dir, data, device="cpu", progress=False)
    assert written and all(p.is_file() for p in written)


def test_config_with_unknown_key_names_the_file(tmp_path: Path) -> None:
    plain = task_to_plain(get_task("enhance-r1"))
    plain["no_such_field"] = 1
    with pytest.raises(InputError, match=r"config\.yaml.*no_such_field"):
        task_from_plain(plain, tmp_path / "config.yaml")


def test_config_refers_only_to_lesionkit(tmp_path: Path) -> None:
    plain = task_to_plain(get_task("enhance-r1"))
    plain["evaluate"] = {"function": "os:system"}
    with pytest.raises(InputError, match="lesionkit"):
        task_from_plain(plain, tmp_path / "config.yaml")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_is_complete(name: str) -> None:
    task = get_task(name)
    assert task.name == name
    assert task.inputs and task.outputs
    assert len({spec.key for spec in task.image_specs}) == len(task.image_specs)
    for spec in task.outputs:
        assert spec.target is None or spec.target in {t.key for t in task.dense_targets}


def test_unknown_task_lists_known_names() -> None:
    with pytest.raises(KeyError, match="enhance-r1"):
        get_task("no-such-task")


def test_model_folder_with_unknown_or_missing_keys_is_one_clear_error(tmp_path: Path) -> None:
    import yaml

    config = {"lesionkit_version": "0", "task": task_to_plain(get_task("enhance-r1")),
              "in_channels": 1, "seed": 0, "data": {}, "training": {}, "folds": []}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**config, "extra": 1}))
    with pytest.raises(InputError, match=r"config\.yaml: expected the keys .*'extra'"):
        load_model(tmp_path)
    del config["folds"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(InputError, match=r"missing keys \['folds'\]"):
        load_model(tmp_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**config, "folds": []}))
    with pytest.raises(InputError, match="at least one trained fold"):
        load_model(tmp_path)
