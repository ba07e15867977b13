"""Training: model folder contents, per-fold normalisation, folds, resume, flags, hooks."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from conftest import tiny
from lesionkit.bids import BIDSDataset
from lesionkit.distributed import trainer_flags
from lesionkit.io import InputError
from lesionkit.losses import LOSSES
from lesionkit.model_folder import load_tensors, make_network
from lesionkit.store import SubjectStore
from lesionkit.tasks import get_task
from lesionkit.training import TaskModule, augmentation, train

TASK = tiny(get_task("enhance-r1"))


def _rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_model_folder_and_training_statistics(enhance_dataset: Path, tmp_path: Path) -> None:
    model = train(TASK, enhance_dataset, tmp_path / "model", epochs=2, progress=False,
                  device="cpu", patches_per_epoch=4)
    config = yaml.safe_load((model / "config.yaml").read_text())
    fold = config["folds"][0]
    assert not set(fold["train"]) & set(fold["validation"])
    assert sorted(fold["train"] + fold["validation"]) == config["data"]["subjects"]
    store = SubjectStore(enhance_dataset, TASK, tmp_path / "cache")
    store.prepare(BIDSDataset(enhance_dataset).subjects())
    expected = store.fit_normalisation(fold["train"])
    for key, stats in expected.items():
        assert fold["normalisation"][key] == pytest.approx(stats)
    everyone = store.fit_normalisation(BIDSDataset(enhance_dataset).subjects())
    assert fold["normalisation"]["r1_3t"]["shift"] != pytest.approx(everyone["r1_3t"]["shift"])
    rows = _rows(model / "fold-0" / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(float(r["val_loss"]) >= 0 for r in rows)
    summary = json.loads((model / "metrics.json").read_text())
    assert summary["fold-0"]["best_val_loss"] == pytest.approx(
        min(float(r["val_loss"]) for r in rows))


def test_folds_partition_the_subjects(enhance_dataset: Path, tmp_path: Path) -> None:
    model = train(TASK, enhance_dataset, tmp_path / "model", folds=2, epochs=1, max_steps=1,
                  progress=False, device="cpu")
    config = yaml.safe_load((model / "config.yaml").read_text())
    validated = sorted(s for fold in config["folds"] for s in fold["validation"])
    assert validated == ["01", "02", "03", "04"]
    assert {fold["fold"] for fold in config["folds"]} == {0, 1}
    assert all((model / f"fold-{k}" / "weights.safetensors").is_file() for k in (0, 1))


def test_resume_continues_from_last_checkpoint(enhance_dataset: Path, tmp_path: Path) -> None:
    kwargs = {"progress": False, "device": "cpu", "patches_per_epoch": 2}
    train(TASK, enhance_dataset, tmp_path / "model", epochs=1, **kwargs)
    train(TASK, enhance_dataset, tmp_path / "model", epochs=2, resume=True, **kwargs)
    rows = _rows(tmp_path / "model" / "fold-0" / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]


def test_interrupted_training_resumes_to_the_uninterrupted_result(
        enhance_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lesionkit import callbacks
    from lesionkit.model_folder import load_tensors

    task = replace(TASK, augment=get_task("enhance-r1").augment)  # random transforms too
    kwargs = {"progress": False, "device": "cpu", "patches_per_epoch": 4, "epochs": 3}
    whole = train(task, enhance_dataset, tmp_path / "whole", **kwargs)

    original = callbacks.EpochLog.on_train_epoch_end

    def stop_after_second_epoch(self, trainer, module) -> None:
        original(self, trainer, module)
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt  # Ctrl-C at the end of epoch 1, before its checkpoint

    monkeypatch.setattr(callbacks.EpochLog, "on_train_epoch_end", stop_after_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(task, enhance_dataset, tmp_path / "cut", **kwargs)
    monkeypatch.undo()
    cut = tmp_path / "cut"
    assert (cut / "fold-0" / "checkpoints" / "last.ckpt").is_file()
    assert yaml.safe_load((cut / "config.yaml").read_text())["training"]["complete"] is False
    assert len(_rows(cut / "fold-0" / "metrics.csv")) == 2  # epoch 1 logged, not checkpointed
    with pytest.raises(InputError, match="--resume"):
        train(task, enhance_dataset, cut, **kwargs)

    train(task, enhance_dataset, cut, resume=True, **kwargs)
    assert [int(r["epoch"]) for r in _rows(cut / "fold-0" / "metrics.csv")] == [0, 1, 2]
    for a, b in zip(_rows(whole / "fold-0" / "metrics.csv"),
                    _rows(cut / "fold-0" / "metrics.csv"), strict=True):
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-5)
        assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), rel=1e-5)
    expected = load_tensors(whole / "fold-0" / "weights.safetensors")
    resumed = load_tensors(cut / "fold-0" / "weights.safetensors")
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-5, atol=1e-6)


def test_failed_training_leaves_no_folder(enhance_dataset: Path, tmp_path: Path) -> None:
    big = replace(TASK, sampler=replace(TASK.sampler, patch_size=(64, 64, 64)))
    with pytest.raises(InputError, match="examples"):
        train(big, enhance_dataset, tmp_path / "model", epochs=1, progress=False, device="cpu")
    assert not (tmp_path / "model").exists()


def test_overwrite_replaces_only_a_model_folder(enhance_dataset: Path, tmp_path: Path) -> None:
    kwargs = {"progress": False, "device": "cpu", "epochs": 1, "max_steps": 1}
    model = train(TASK, enhance_dataset, tmp_path / "model", **kwargs)
    (model / "stale.txt").write_text("from the first run")
    train(TASK, enhance_dataset, model, overwrite=True, **kwargs)
    assert not (model / "stale.txt").exists()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("a user's file")
    with pytest.raises(InputError, match="other files"):
        train(TASK, enhance_dataset, other, overwrite=True, **kwargs)
    assert (other / "mine.txt").read_text() == "a user's file"


def test_module_has_task_loss_and_network() -> None:
    module = TaskModule(TASK, make_network(TASK, 1))
    assert isinstance(module.loss, LOSSES[TASK.loss])
    assert module.configure_optimizers()["optimizer"].param_groups[0]["lr"] == TASK.learning_rate


def test_loaded_tensors_train_at_the_pretrained_factor() -> None:
    network = make_network(TASK, 1)
    names = [n for n, _ in network.named_parameters()]
    loaded = names[: len(names) // 2]
    task = replace(TASK, pretrained_lr_factor=0.01)
    groups = TaskModule(task, network, loaded=loaded).configure_optimizers()[
        "optimizer"].param_groups
    assert [g["lr"] for g in groups] == pytest.approx([TASK.learning_rate,
                                                       TASK.learning_rate * 0.01])
    assert sum(len(g["params"]) for g in groups) == len(names)
    assert len(groups[1]["params"]) == len(loaded)
    # nothing loaded (training from scratch): one group at the task's rate
    (only,) = TaskModule(task, network).configure_optimizers()["optimizer"].param_groups
    assert only["lr"] == TASK.learning_rate


def test_learning_rate_halves_every_n_epochs() -> None:

    module = TaskModule(replace(TASK, lr_halving_epochs=2), make_network(TASK, 1))
    configured = module.configure_optimizers()
    optimiser, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert configured["lr_scheduler"]["interval"] == "epoch"
    rates = []
    for _ in range(5):
        rates.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        scheduler.step()
    base = TASK.learning_rate
    assert rates == pytest.approx([base, base, base / 2, base / 2, base / 4])


def test_time_cap_stops_each_fold_and_is_recorded(enhance_dataset: Path,
                                                 tmp_path: Path) -> None:
    assert trainer_flags("cpu", max_minutes=90)["max_time"].total_seconds() == 5400
    with pytest.raises(InputError, match="--max-minutes 0: expected a positive"):
        trainer_flags("cpu", max_minutes=0)
    model = train(TASK, enhance_dataset, tmp_path / "model", epochs=50, progress=False,
                  device="cpu", patches_per_epoch=2, max_minutes=1e-4)  # 6 ms: one step
    rows = _rows(model / "fold-0" / "metrics.csv")
    assert 1 <= len(rows) < 50
    assert (model / "fold-0" / "weights.safetensors").is_file()
    config = yaml.safe_load((model / "config.yaml").read_text())
    assert config["training"]["max_minutes"] == pytest.approx(1e-4)
    assert config["training"]["complete"]
    last = torch.load(model / "fold-0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert not [k for k in last.get("callbacks", {}) if "Timer" in k]  # per run, not summed
    done = len(rows)  # the next job of a time-limited cluster run continues the fold
    train(TASK, enhance_dataset, model, epochs=done + 1, progress=False, device="cpu",
          patches_per_epoch=2, resume=True)
    assert len(_rows(model / "fold-0" / "metrics.csv")) == done + 1


def test_mixed_precision_trains_on_the_cpu(enhance_dataset: Path, tmp_path: Path) -> None:
    model = train(TASK, enhance_dataset, tmp_path / "model", epochs=1, max_steps=2, amp=True,
                  progress=False, device="cpu")
    training = yaml.safe_load((model / "config.yaml").read_text())["training"]
    assert training["amp"] is True and training["compile"] is False
    assert (training["devices"], training["nodes"]) == (1, 1)
    weights = load_tensors(model / "fold-0" / "weights.safetensors")
    floats = [t for t in weights.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float32 and t.isfinite().all() for t in floats)


STEP_CALLS: list[int] = []


def oversampling_step(network, loss, batch):
    """A training-step hook: appends a mirrored copy of the batch (in-batch synthesis)."""
    STEP_CALLS.append(len(batch["input"]))
    x = torch.cat([batch["input"], batch["input"].flip(2)])
    y = torch.cat([batch["target"], batch["target"].flip(2)])
    return loss(network(x), y)


def mean_input_state(dataset) -> dict:
    """A fit_state hook: the mean input value over the fold's training examples."""
    return {"mean": torch.stack([dataset[i]["input"].mean() for i in range(len(dataset))]).mean()
            .reshape(1)}


def unet_with_state(in_channels: int, out_channels: int, state=None, **kwargs):
    """A network factory that keeps the fold state as a buffer."""
    network = make_network(replace(TASK, network_factory=None), in_channels)
    network.register_buffer("fold_mean", torch.as_tensor(state["mean"]).clone())
    return network


def test_training_step_hook_runs_in_training_only(enhance_dataset: Path, tmp_path: Path) -> None:
    STEP_CALLS.clear()
    task = replace(TASK, training_step=oversampling_step)
    model = train(task, enhance_dataset, tmp_path / "model", epochs=1, max_steps=3,
                  progress=False, device="cpu")
    assert len(STEP_CALLS) == 3 and all(n == TASK.batch_size for n in STEP_CALLS)
    config = yaml.safe_load((model / "config.yaml").read_text())
    assert config["task"]["training_step"] == {"function": f"{__name__}:oversampling_step"}


def test_fold_state_is_fitted_on_training_examples_saved_and_reloaded(
        enhance_dataset: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from lesionkit.io import InputError
    from lesionkit.model_folder import load_model

    task = replace(TASK, fit_state=mean_input_state, network_factory=unet_with_state)
    model = train(task, enhance_dataset, tmp_path / "model", epochs=1, max_steps=1,
                  progress=False, device="cpu")
    saved = load_file(str(model / "fold-0" / "state.safetensors"))
    fold = yaml.safe_load((model / "config.yaml").read_text())["folds"][0]
    store = SubjectStore(enhance_dataset, TASK, tmp_path / "cache")
    store.prepare(fold["train"] + fold["validation"])
    train_set = TASK.sampler.dataset(store, fold["train"], TASK, fold["normalisation"])
    assert saved["mean"].item() == pytest.approx(mean_input_state(train_set)["mean"].item(),
                                                 rel=1e-5)
    with pytest.raises(InputError, match="trusted"):
        load_model(model)  # hooks outside lesionkit are not resolved unless trusted
    loaded = load_model(model, trusted=(__name__,))
    assert loaded.folds[0].network.fold_mean.item() == pytest.approx(saved["mean"].item())


def test_workers_load_examples_in_other_processes(tmp_path: Path) -> None:
    """Also: the --bids-filter choice is recorded with the training settings."""
    from conftest import TOY_LESION_TASK, write_task_dataset
    from lesionkit.bids import bids_filters, parse_filter

    data = write_task_dataset(tmp_path / "bids", TOY_LESION_TASK, subjects=3)
    with bids_filters([parse_filter("acq=other")]):  # the toy files have no acq: all kept
        model = train(TOY_LESION_TASK, data, tmp_path / "model", epochs=1, workers=2,
                      progress=False, device="cpu")
    training = yaml.safe_load((model / "config.yaml").read_text())["training"]
    assert training["workers"] == 2
    assert training["bids_filter"] == ["acq=other"]  # the acquisitions chosen, recorded
    assert (model / "fold-0" / "weights.safetensors").is_file()


def test_compile_flag_compiles_the_network_and_is_recorded(
        enhance_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[str] = []
    monkeypatch.setattr(torch.nn.Module, "compile",
                        lambda self, *args, **kwargs: compiled.append(type(self).__name__))
    model = train(TASK, enhance_dataset, tmp_path / "model", epochs=1, max_steps=1,
                  compile_network=True, progress=False, device="cpu")
    assert compiled == [type(make_network(TASK, 1)).__name__]
    assert yaml.safe_load((model / "config.yaml").read_text())["training"]["compile"] is True


@pytest.mark.slow
def test_compiled_network_trains_on_the_cpu(enhance_dataset: Path, tmp_path: Path) -> None:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = train(TASK, enhance_dataset, tmp_path / "model", epochs=1, max_steps=2,
                  compile_network=True, amp=True, progress=False, device="cpu")
    assert counters["stats"]["unique_graphs"] >= 1  # the network ran compiled
    weights = load_tensors(model / "fold-0" / "weights.safetensors")
    assert set(weights) == set(make_network(TASK, 1).state_dict())  # plain names


@pytest.mark.parametrize("name", ["fcd-classify", "contrast-amplify", "rim-classify"])
def test_augmentation_in_place_draws_what_copying_transforms_draw(name: str) -> None:
    import torchio as tio

    task = get_task(name)
    assert task.augment

    def subject() -> tio.Subject:
        draw = torch.Generator().manual_seed(1)
        return tio.Subject(
            image=tio.ScalarImage(tensor=torch.rand((2, 24, 24, 24), generator=draw)),
            mask=tio.LabelMap(tensor=(torch.rand((1, 24, 24, 24), generator=draw) > 0.5)
                              .float()))

    copying = tio.Compose([t.build() for t in task.augment])
    for seed in range(3):
        torch.manual_seed(seed)
        expected = copying(subject())
        torch.manual_seed(seed)
        given = subject()
        found = augmentation(task)(given)
        assert found is given  # changed in place, not copied
        for key in ("image", "mask"):
            torch.testing.assert_close(found[key].data, expected[key].data, rtol=0, atol=0)
