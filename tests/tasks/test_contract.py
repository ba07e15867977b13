"""Contract tests over the task registry: train two steps, save, reload, predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import tiny, write_task_dataset
from lesionkit.bids import BIDSDataset
from lesionkit.infer import predict
from lesionkit.io import load_volume
from lesionkit.model_folder import load_model
from lesionkit.tasks import TASKS, get_task
from lesionkit.training import train


@pytest.mark.parametrize("name", sorted(TASKS))
def test_train_save_reload_predict(name: str, tmp_path: Path) -> None:
    task = tiny(get_task(name))
    data = write_task_dataset(tmp_path / "bids", task, subjects=3)
    model_dir = train(task, data, tmp_path / "model", epochs=1, max_steps=2, progress=False,
                      device="cpu")
    config = yaml.safe_load((model_dir / "config.yaml").read_text())
    assert config["task"] == name
    assert config["lesionkit_version"]
    assert (model_dir / "fold-0" / "weights.safetensors").is_file()
    assert load_model(model_dir).task.network_kwargs == task.network_kwargs

    written = predict(model_dir, data, tta=2, device="cpu", progress=False)
    dataset = BIDSDataset(data)
    if not task.dense_targets:
        assert written and written[0].suffix == ".tsv"
        return
    for subject in dataset.subjects():
        source = dataset.get(subject, task.inputs[0].suffix, **task.inputs[0].query())
        reference = load_volume(source.path, ndim=None)
        session = source.entities.get("ses")
        for spec in task.outputs:
            for desc in (spec.desc, "uncertainty"):
                found = dataset.get(subject, spec.suffix, session=session, desc=desc,
                                    derivatives="lesionkit", **dict(spec.entities))
                output = load_volume(found.path)
                assert output.shape == reference.shape[:3]
                np.testing.assert_allclose(output.affine, reference.affine, atol=1e-5)
                assert np.isfinite(output.data).all()
                sidecar = json.loads(found.sidecar.read_text())
                assert sidecar["Units"] == spec.unit
                assert sidecar["ModelFolder"] == str(model_dir.resolve())


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
