"""Reference MRF pipeline over a BIDS dataset: masks, matching, derivatives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lesionkit import mrf
from lesionkit.bids import BIDSDataset, bids_path, write_dataset_description
from lesionkit.io import InputError, load_volume, save_volume, write_json
from lesionkit.mrf_reference import brain_mask, match_dataset
from lesionkit.volume import Volume

SHAPE = (8, 8, 6)
T1_VALUES = (400.0, 900.0, 1600.0)
T2S_VALUES = (20.0, 55.0, 120.0)
AFFINE = np.array([[0.0, -2.0, 0.0, 30.0], [2.2, 0.0, 0.0, -12.0], [0.0, 0.0, 1.8, 4.0],
                   [0.0, 0.0, 0.0, 1.0]])


def coarse_dictionary() -> mrf.Dictionary:
    """10 % grids over the tested range, three B1 values: a few hundred atoms."""
    return mrf.build_dictionary((300.0, 2500.0), (10.0, 300.0), step=0.1,
                                b1_values=(0.8, 1.0, 1.2))


def write_mrf_subject(root: Path, subject: str, dictionary: mrf.Dictionary,
                      rng: np.random.Generator, noise: float = 0.0) -> dict[str, np.ndarray]:
    """An MRF series whose voxels are dictionary atoms (known T1, T2*, B1), brain-masked."""
    mask = np.zeros(SHAPE, bool)
    mask[1:-1, 1:-1, 1:-1] = True
    index = rng.integers(0, len(dictionary), SHAPE)
    series = dictionary.atoms[index] * dictionary.norms[index][..., None] * 1000.0
    series = series + noise * rng.standard_normal(series.shape)
    series[~mask] = 0.0
    path = bids_path(root, subject, "MRF")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_volume(Volume(series.astype(np.float32), AFFINE, "intensity", "a.u."), path)
    write_json(dictionary.schedule.to_sidecar(), path.with_name(f"sub-{subject}_MRF.json"))
    write_phantom_mask(root, subject, mask)
    return {"t1": dictionary.t1_ms[index], "t2s": dictionary.t2s_ms[index],
            "b1": dictionary.b1[index], "mask": mask}


def write_phantom_mask(root: Path, subject: str, mask: np.ndarray) -> None:
    path = bids_path(root, subject, "mask", derivatives="phantom", desc="brain")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_volume(Volume(mask.astype(np.uint8), AFFINE, "label", "1"), path)


@pytest.fixture
def mrf_dataset(tmp_path: Path) -> tuple[Path, dict, mrf.Dictionary]:
    root = tmp_path / "bids"
    write_dataset_description(root, "tiny MRF")
    dictionary = coarse_dictionary()
    rng = np.random.default_rng(3)
    truth = {s: write_mrf_subject(root, s, dictionary, rng) for s in ("01", "02")}
    return root, truth, dictionary


def test_match_dataset_recovers_atoms_and_writes_derivatives(mrf_dataset) -> None:
    root, truth, dictionary = mrf_dataset
    written = match_dataset(root, subjects=["02"], denoise=False, dictionary=dictionary)
    names = sorted(p.name for p in written)
    assert names == ["sub-02_desc-brain_mask.nii.gz", "sub-02_desc-matched_PDmap.nii.gz",
                     "sub-02_desc-matched_T1map.nii.gz", "sub-02_desc-matched_T2starmap.nii.gz",
                     "sub-02_desc-matched_TB1map.nii.gz"]
    dataset = BIDSDataset(root)
    mask = truth["02"]["mask"]
    for suffix, key, unit in (("T1map", "t1", "ms"), ("T2starmap", "t2s", "ms"),
                              ("TB1map", "b1", "1")):
        found = dataset.get("02", suffix, derivatives="lesionkit", desc="matched")
        volume = load_volume(found.path)
        np.testing.assert_allclose(volume.affine, AFFINE, atol=1e-5)
        np.testing.assert_allclose(volume.data[mask], truth["02"][key][mask], rtol=1e-4)
        assert np.all(volume.data[~mask] == 0)
        sidecar = json.loads(found.sidecar.read_text())
        assert sidecar["Units"] == unit
        assert sidecar["DictionaryAtoms"] == len(dictionary)
        assert sidecar["Denoising"] == "none"
    assert not dataset.find(subject="01", derivatives="lesionkit")


def test_denoised_noisy_series_stays_within_one_grid_step(mrf_dataset, tmp_path: Path) -> None:
    _, _, dictionary = mrf_dataset
    root = tmp_path / "noisy"
    write_dataset_description(root, "noisy MRF")
    truth = write_mrf_subject(root, "01", dictionary, np.random.default_rng(5), noise=0.5)
    match_dataset(root, denoise=True, dictionary=dictionary)
    dataset = BIDSDataset(root)
    t1 = load_volume(dataset.get("01", "T1map", derivatives="lesionkit", desc="matched").path)
    ratio = t1.data[truth["mask"]] / truth["t1"][truth["mask"]]
    assert np.mean(np.abs(np.log(ratio)) <= np.log(1.1) + 1e-6) > 0.9
    sidecar = json.loads(dataset.get("01", "T1map", derivatives="lesionkit",
                                     desc="matched").sidecar.read_text())
    assert sidecar["Denoising"].startswith("MP-PCA")


def test_the_phantom_mask_limits_matching(mrf_dataset) -> None:
    root, _, dictionary = mrf_dataset
    mask = np.zeros(SHAPE, np.uint8)
    mask[3:5, 3:5, 2:4] = 1
    write_phantom_mask(root, "01", mask)
    match_dataset(root, subjects=["01"], denoise=False, dictionary=dictionary)
    t1 = load_volume(BIDSDataset(root).get("01", "T1map", derivatives="lesionkit",
                                            desc="matched").path).data
    assert np.count_nonzero(t1) == mask.sum()


def test_brain_mask_keeps_the_largest_bright_component() -> None:
    series = np.zeros((20, 20, 20, 4), np.float32)
    series[4:14, 4:14, 4:14] = 100.0
    series[8, 8, 8] = 0.0  # a hole
    series[17, 17, 17] = 100.0  # a separate speck
    mask = brain_mask(series)
    assert mask[8, 8, 8] and not mask[17, 17, 17]
    assert mask.sum() == 10**3


def test_missing_schedule_and_wrong_frames_are_user_errors(mrf_dataset) -> None:
    root, _, dictionary = mrf_dataset
    sidecar = root / "sub-01" / "anat" / "sub-01_MRF.json"
    sidecar.unlink()
    with pytest.raises(InputError, match=r"sub-01_MRF\.json: expected the MRF schedule"):
        match_dataset(root, subjects=["01"], dictionary=dictionary)
    write_json({k: v[:5] if isinstance(v, list) else v
                for k, v in dictionary.schedule.to_sidecar().items()}, sidecar)
    with pytest.raises(InputError, match="expected 5 frames"):
        match_dataset(root, subjects=["01"], dictionary=dictionary)


def test_dataset_without_mrf_is_a_user_error(tmp_path: Path) -> None:
    write_dataset_description(tmp_path, "empty")
    with pytest.raises(InputError, match="expected subjects with an MRF series"):
        match_dataset(tmp_path)
