"""Shipped models: found by name, described, built from a recipe, and each one predicts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import tiny, write_mrf_dataset, write_task_dataset
from lesionkit import build_models, shipped
from lesionkit.cli import run
from lesionkit.io import InputError
from lesionkit.model_folder import read_config, task_from_config
from lesionkit.tasks import SHIPPED_RECIPES, TASKS, get_task
from lesionkit.tasks.task import DemoStep

SHIPPED = shipped.shipped_names()


def test_every_recipe_names_a_task_once_and_holds_out_subjects() -> None:
    names = [r.task for r in SHIPPED_RECIPES]
    assert len(names) == len(set(names)) and set(names) <= set(TASKS)
    for recipe in SHIPPED_RECIPES:
        assert 0 < recipe.held_out < recipe.subjects - 1


def test_every_task_of_the_five_methods_ships_a_model() -> None:
    assert {"enhance-r1", "mrf-lesion", "fcd-classify", "contrast-amplify",
            "rim-classify"} <= set(SHIPPED)


def test_shipped_models_stay_small() -> None:
    sizes = {name: sum(p.stat().st_size for p in (shipped.SHIPPED_DIR / name).rglob("*"))
             for name in SHIPPED}
    assert all(size < 16 * 2**20 for size in sizes.values()), sizes
    assert sum(sizes.values()) < 50 * 2**20


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_records_its_provenance_and_held_out_figures(name: str) -> None:
    record = shipped.provenance(name)
    assert record["name"] == name and record["command"].startswith("python scripts/train")
    assert not set(record["training"]["subjects"]) & set(record["held_out"]["subjects"])
    assert record["held_out"]["summary"], "no held-out figures"
    folder = shipped.SHIPPED_DIR / name
    assert not (folder / "checkpoints").exists() and not list(folder.glob("fold-*/checkpoints"))
    config = read_config(folder)
    assert config["training"]["complete"] and config["seed"] == record["seed"]
    assert sorted(config["data"]["subjects"]) == sorted(record["training"]["subjects"])


@pytest.mark.parametrize("recipe", SHIPPED_RECIPES, ids=lambda r: r.task)
def test_shipped_model_was_built_from_its_recipe_as_declared(recipe: DemoStep) -> None:
    """A recipe changed in a task module without ``make models`` would ship stale weights."""
    built = {"networks": 1,  # recorded since recipes could ask for more than one
             **shipped.provenance(recipe.task)["recipe"]}
    declared = {"subjects": recipe.subjects, "held_out": recipe.held_out,
                "epochs": recipe.epochs, "examples_per_epoch": recipe.examples_per_epoch,
                "tta": recipe.tta, "networks": recipe.networks,
                "overrides": json.loads(json.dumps(dict(recipe.overrides), default=str))}
    assert built == declared


def _tiny_subject(root: Path, task) -> Path:
    """One tiny subject with every input of the task (the MRF grid for MRF inputs)."""
    if any(spec.suffix == "MRF" for spec in task.inputs):
        return write_mrf_dataset(root, subjects=1)
    return write_task_dataset(root, task, subjects=1)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_loads_and_predicts_by_name(tmp_path: Path, name: str) -> None:
    folder = shipped.SHIPPED_DIR / name
    task = task_from_config(read_config(folder), folder / "config.yaml")
    data = _tiny_subject(tmp_path / "bids", task)
    out = tmp_path / "out"
    assert run(["predict", name, str(data), "--out-dir", str(out), "--no-amp", "--tta", "1",
                "--threads", "1"]) == 0
    written = [p for p in out.rglob("sub-01*") if p.suffix in (".gz", ".tsv")] + list(
        out.glob("*.tsv"))
    assert written, f"{name} wrote no prediction"
    sidecars = [json.loads(p.read_text()) for p in out.rglob("sub-01*.json")]
    assert sidecars, f"{name} wrote no sidecar"
    assert {s.get("ModelFolder") for s in sidecars} == {str(folder.resolve())}


def test_the_flair_only_model_predicts_a_real_flair_without_a_t1w(tmp_path: Path) -> None:
    """A clinical FLAIR alone (the real sample's, skull on) through the FLAIR-only model:
    its one source, on the FLAIR's grid, a probability."""
    import nibabel as nib
    import numpy as np

    flair = next((Path(__file__).parent / "data" / "realpatient").rglob("*_FLAIR.nii.gz"))
    out = tmp_path / "out"
    assert run(["predict", "flair-only-lesion-dr", "--image", f"flair={flair}", "--subjects",
                "p01", "--out-dir", str(out), "--tta", "1", "--threads", "1"]) == 0
    [written] = out.rglob("sub-p01_*_desc-flaironlylesiondr_probseg.nii.gz")
    # four networks averaged: their spread is written beside the map even without flips
    assert len(list(out.rglob("sub-p01_*_desc-uncertainty_probseg.nii.gz"))) == 1
    image, source = nib.load(written), nib.load(flair)
    assert image.shape == source.shape
    np.testing.assert_allclose(image.affine, source.affine, atol=1e-4)
    values = np.asarray(image.dataobj)
    assert values.min() >= 0 and values.max() <= 1
    sidecar = json.loads(written.with_name(written.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["Sources"] == [str(flair.resolve())]
    # Its lesions at 33 %: the label map marks the components of the map that reach 3 mm
    # inside the brain mask written beside it, the load table counts them.
    from scipy import ndimage

    from lesionkit.lesions import depth_inside

    [dseg] = out.rglob("sub-p01_*_dseg.nii.gz")
    labels = np.asarray(nib.load(dseg).dataobj)
    assert (values[labels > 0] >= 0.33).all()
    [mask] = out.rglob("sub-p01_*label-brain_*_mask.nii.gz")
    depth = depth_inside(np.asarray(nib.load(mask).dataobj) > 0, image.header.get_zooms()[:3])
    every, count = ndimage.label(values >= 0.33, np.ones((3, 3, 3)))
    deepest = np.asarray(ndimage.maximum(depth, every, np.arange(1, count + 1)))
    assert count >= labels.max() == int((deepest >= 3.0 - 0.01).sum())
    load = (out / "task-flair-only-lesion-dr_lesionload.tsv").read_text().splitlines()
    count = int(dict(zip(*(line.split("\t") for line in load), strict=True))["lesion_count"])
    assert count == labels.max() >= 3  # the slab holds several of patient01's lesions


def test_a_dataset_without_an_input_is_pointed_to_a_shipped_model_that_reads_what_it_has(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real sample without its T1w: the FLAIR + T1w lesion model names the FLAIR-only
    one (same lesion map), not the FCD classifier that also reads a FLAIR."""
    import shutil

    from lesionkit.bids import BIDSDataset
    from lesionkit.bids_app import run as bids_app

    data = tmp_path / "flair-only"
    shutil.copytree(Path(__file__).parent / "data" / "realpatient", data)
    for t1w in data.rglob("*_T1w.*"):
        t1w.unlink()
    assert shipped.alternatives(BIDSDataset(data), get_task("flair-lesion-dr")) == [
        "flair-only-lesion-dr"]
    assert shipped.alternatives(BIDSDataset(data), get_task("enhance-r1")) == []
    assert run(["predict", "flair-lesion-dr", str(data), "--out-dir", str(tmp_path / "o")]) == 1
    assert bids_app([str(data), str(tmp_path / "b"), "participant", "--task",
                     "flair-lesion-dr"]) == 1
    predict_line, app_line = capsys.readouterr().err.strip().splitlines()[-2:]
    assert predict_line.endswith("T1w.nii[.gz] missing in 1 of 1 subjects; shipped models "
                                 "that write the same from the images there: "
                                 "flair-only-lesion-dr")
    assert app_line.endswith("from the images there (--task): flair-only-lesion-dr")
    assert not (tmp_path / "o").exists() and not (tmp_path / "b").exists()


def test_a_path_wins_over_a_shipped_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "enhance-r1").mkdir()
    assert shipped.resolve_model("enhance-r1") == Path("enhance-r1")


def test_an_unknown_model_lists_the_shipped_names(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="expected a model folder or the name of a shipped"):
        shipped.resolve_model("no-such-model")


def _fake_cohort(cohort: str, out_dir: Path, subjects: int, seed: int, resolution: int,
                 workers: int = 0) -> Path:
    assert workers == 0  # build_model's default: simulated in its own process
    return write_task_dataset(Path(out_dir), get_task("enhance-r1"), subjects=subjects,
                              seed=seed)


def test_build_model_trains_scores_held_out_subjects_and_writes_provenance(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lesionkit.simulate

    monkeypatch.setattr(lesionkit.simulate, "simulate_cohort", _fake_cohort)
    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path / "shipped")
    tiny_task = tiny(get_task("enhance-r1"))
    recipe = DemoStep(task="enhance-r1", cohort="enhance-r1", subjects=5, held_out=1, epochs=1,
                      examples_per_epoch=4, tta=1,
                      overrides={"network_kwargs": tiny_task.network_kwargs,
                                 "sampler": tiny_task.sampler,
                                 "inference": tiny_task.inference, "batch_size": 2},
                      shown=("rmse",))
    folder = build_models.build_model(recipe, tmp_path / "shipped", tmp_path / "work", seed=3,
                                 command="python scripts/train_models.py --only enhance-r1")
    assert folder == tmp_path / "shipped" / "enhance-r1"
    assert shipped.shipped_names() == ["enhance-r1"]
    record = shipped.provenance("enhance-r1")
    assert record["held_out"]["subjects"] == ["05"]
    assert "05" not in record["training"]["subjects"] and record["seed"] == 3
    assert record["training"]["workers"] == 0
    assert set(record["held_out"]["summary"]["enhanced"]) == {"rmse"}
    assert not list(folder.rglob("checkpoints")) and not list(folder.rglob(".cache"))
    assert record["weights_dtype"] == "float16" and record["recipe"]["networks"] == 1
    lines = shipped.describe("enhance-r1")
    assert "held-out phantom subjects 05:" in "\n".join(lines)
    assert "MB (float16)" in "\n".join(lines)

    # Scored again without training: same subjects and weights, the former figures kept.
    weights = (folder / "fold-0" / "weights.safetensors").read_bytes()
    build_models.rescore_model(recipe, tmp_path / "shipped", tmp_path / "work", seed=3,
                               command="python scripts/train_models.py --rescore")
    again = shipped.provenance("enhance-r1")
    assert again["rescored"]["before"]["held_out"] == record["held_out"]
    assert again["held_out"] == record["held_out"] and again["training"] == record["training"]
    assert (folder / "fold-0" / "weights.safetensors").read_bytes() == weights
    assert "(scored again " in "\n".join(shipped.describe("enhance-r1"))
    with pytest.raises(ValueError, match="expected the held-out subjects"):
        build_models.rescore_model(replace(recipe, held_out=2), tmp_path / "shipped",
                                   tmp_path / "work", seed=3)

    def broken() -> dict:
        raise OSError("disk full")

    # A rebuild that fails while writing keeps the earlier model and leaves no staging copy.
    monkeypatch.setattr(build_models, "_machine", broken)
    with pytest.raises(OSError, match="disk full"):
        build_models.build_model(recipe, tmp_path / "shipped", tmp_path / "work", seed=4)
    assert sorted(p.name for p in (tmp_path / "shipped").iterdir()) == ["enhance-r1"]
    assert shipped.provenance("enhance-r1")["seed"] == 3


def test_models_command_lists_every_shipped_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["models"]) == 0
    printed = capsys.readouterr().out
    for name in SHIPPED:
        assert f"\n{name}: " in f"\n{printed}"
    assert "phantom" in printed
    assert "inputs (predict --image KEY=FILE): flair (FLAIR), t1w (T1w), brain " \
           "(desc-brain_mask, optional)" in printed  # flair-lesion-dr: the keys to name files


def test_fine_tuning_starts_from_the_shipped_weights(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from lesionkit.model_folder import load_tensors
    from lesionkit.training import train

    task = replace(tiny(get_task("enhance-r1")), max_epochs=1)
    data = write_task_dataset(tmp_path / "bids", task, subjects=3)
    first = train(task, data, tmp_path / "first", folds=1, epochs=1, patches_per_epoch=4,
                  progress=False)
    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path)
    # zero steps of fine-tuning keeps the starting weights exactly
    tuned = train(task, data, tmp_path / "tuned", folds=1, epochs=1, patches_per_epoch=4,
                  max_steps=0, progress=False, init="first", seed=5)
    before = load_tensors(first / "fold-0" / "weights.safetensors")
    after = load_tensors(tuned / "fold-0" / "weights.safetensors")
    assert all((before[k] == after[k]).all() for k in before if "running" not in k)
    assert read_config(tuned)["training"]["init"] == str(tmp_path / "first")


def test_init_refuses_a_model_of_another_task(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    task = tiny(get_task("enhance-r1"))
    data = write_task_dataset(tmp_path / "bids", task, subjects=3)
    from lesionkit.training import train

    model = train(task, data, tmp_path / "m", folds=1, epochs=1, patches_per_epoch=4,
                  progress=False)
    assert run(["train", "contrast-amplify", str(data), str(tmp_path / "x"), "--init",
                str(model)]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "expected a model of task contrast-amplify" in error[0]
    assert not (tmp_path / "x").exists()
