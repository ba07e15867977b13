"""benchmarks/healthy_brain.py: a FLAIR as scanned is laid out alone, and components are
placed by how deep inside the brain mask they reach."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import load_script
from lesionkit.bids import BIDSDataset

BENCH = Path(__file__).parents[2] / "benchmarks" / "healthy_brain.py"


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH, "lesionkit_benchmarks_healthy")


def test_components_are_counted_by_the_depth_they_reach_inside_the_mask(bench) -> None:
    mask = np.zeros((40, 40, 40), bool)
    mask[5:35, 5:35, 5:35] = True  # 30 voxels across: the centre lies 15 voxels deep
    probability = np.zeros(mask.shape, np.float32)
    probability[5:7, 20, 20] = 0.9  # at the edge: reaches 2 voxels
    probability[18:22, 18:22, 18:22] = 0.5  # at the centre: reaches 15
    probability[10, 20, 20] = 0.2  # below 33 %: not a component
    counted = bench.by_depth(probability, mask, (2.0, 2.0, 2.0))
    assert counted == {"reaching 3 mm": {"components": 2, "volume_ml": 0.53},
                       "reaching 5 mm": {"components": 1, "volume_ml": 0.51},
                       "reaching 10 mm": {"components": 1, "volume_ml": 0.51}}


def test_a_flair_as_scanned_is_the_subjects_only_image(bench, tmp_path: Path) -> None:
    flair = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.diag([1.0, 1.2, 3.0, 1.0])),
             flair)
    root = bench.layout_native(tmp_path / "bids", flair)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.nii.gz"))
    assert files == ["sub-healthy/anat/sub-healthy_FLAIR.nii.gz"]
    assert BIDSDataset(root).subjects() == ["healthy"]
    assert json.loads((root / "dataset_description.json").read_text())["BIDSVersion"]
    written = nib.load(root / files[0])
    np.testing.assert_array_equal(written.affine, nib.load(flair).affine)


def test_the_lesions_predict_tabled_are_read_from_its_load_table(bench, tmp_path: Path) -> None:
    (tmp_path / "task-flair-only-lesion-dr_lesionload.tsv").write_text(
        "participant_id\tlesion_count\tlesion_volume_ml\tlesion_threshold\tmin_lesion_ml\t"
        "min_lesion_depth_mm\nsub-healthy\t6\t0.6912\t0.33\t0.0\t3.0\n")
    assert bench.predicted_lesions(tmp_path) == {"components": 6, "volume_ml": 0.69,
                                                 "threshold": 0.33, "min_depth_mm": 3.0}


def test_one_network_of_an_averaged_model_is_a_model_folder_of_its_own(bench,
                                                                        tmp_path: Path) -> None:
    from lesionkit.model_folder import CONFIG_KEYS, read_config, write_config

    model = tmp_path / "model"
    config = {key: None for key in CONFIG_KEYS}
    config["folds"] = [{"fold": k, "train": [f"0{k}"]} for k in range(3)]
    write_config(model, config)
    for k in range(3):
        (model / f"fold-{k}").mkdir()
        (model / f"fold-{k}" / "weights.safetensors").write_text(f"network {k}")
    single = bench.single_network(model, 1, tmp_path / "one")
    assert read_config(single)["folds"] == [{"fold": 1, "train": ["01"]}]
    assert sorted(p.name for p in single.iterdir()) == ["config.yaml", "fold-1"]
    assert (single / "fold-1" / "weights.safetensors").read_text() == "network 1"
    assert read_config(model)["folds"] == config["folds"]  # the model itself untouched
    with pytest.raises(SystemExit, match="expected a fold 5, found folds \\[0, 1, 2\\]"):
        bench.single_network(model, 5, tmp_path / "five")


def test_lesions_shared_between_networks_tell_systematic_from_idiosyncratic(bench) -> None:
    averaged = np.zeros((20, 20, 20), np.int32)
    averaged[2:4, 2:4, 2:4] = 1  # 8 voxels, marked by every network
    averaged[10, 10, 10] = 2  # 1 voxel, marked by network "1" only
    networks = {k: np.zeros_like(averaged) for k in ("0", "1", "2")}
    for labels in networks.values():
        labels[3, 3, 3] = 1
    networks["1"][10, 10, 10] = 2
    networks["1"][15, 15, 15] = 3  # its own, no other network has it
    networks["2"][15, 15, 16] = 1  # the next voxel: beside it, not the same lesion
    shared = bench.shared_lesions(averaged, networks, voxel_mm3=2.0)
    assert shared["averaged lesions"] == [[1, 16.0, ["0", "1", "2"]], [2, 2.0, ["1"]]]
    assert shared["own lesions"] == [["0", 1, 1, 1], ["1", 3, 1, 1], ["2", 2, 1, 1]]


def test_lesion_brightness_is_the_engines_z_score_inside_the_mask(bench, tmp_path: Path) -> None:
    values = np.full((10, 10, 10), 100.0, np.float32)
    values[:, :4] = 80.0  # the brain: 40 % at 80, the rest 100 -> median 100, IQR 20
    values[2, 2, 2] = 160.0  # a bright spot
    flair = tmp_path / "flair.nii.gz"
    nib.save(nib.Nifti1Image(values, np.diag([2.0, 2.0, 2.0, 1.0])), flair)
    brain = np.ones(values.shape, bool)
    labels = np.zeros(values.shape, np.int32)
    labels[2, 2, 2] = 1
    labels[7, 7, 7] = 2
    rows = bench.lesion_brightness(flair, brain, labels)
    scale = 20.0 / 1.349
    assert rows == [
        {"label": 1, "volume_mm3": 8.0, "median_z": round(60 / scale, 2),
         "largest_z": round(60 / scale, 2)},
        {"label": 2, "volume_mm3": 8.0, "median_z": 0.0, "largest_z": 0.0}]
