"""Subjects and their files, loading as real scans arrive, the contrast check, samplers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torchio as tio

from lesionkit.bids import BIDSDataset
from lesionkit.data import (
    available_subjects,
    bright_csf_ratio,
    contrast_warning,
    load_subject,
    missing_images,
    prediction_units,
    training_subjects,
)
from lesionkit.io import InputError
from lesionkit.tasks import get_task
from lesionkit.tasks.strategies import GridSampler, QueueSampler
from lesionkit.tasks.task import ImageSpec, OutputSpec, Task

SUBJECTS = [f"{i:02d}" for i in range(1, 11)]


class MemoryStore:
    """The store protocol over arrays in memory (for sampler tests)."""

    workers = 0

    def __init__(self, images: dict[str, dict[str, np.ndarray]]) -> None:
        self.images = images

    def mask(self, name: str) -> np.ndarray:
        return self.images[name]["mask"][0] > 0

    def labels(self, name: str) -> dict:
        return {}

    def affine(self, name: str) -> np.ndarray:
        return np.eye(4)

    def read(self, name, stats, start=None, size=None) -> dict:
        from lesionkit.lesions import crop

        return {k: torch.from_numpy(v.astype(np.float32) if start is None else crop(v, start, size))
                for k, v in self.images[name].items()}

    def subject(self, name: str, stats) -> tio.Subject:
        return tio.Subject(**{k: (tio.LabelMap if k == "mask" else tio.ScalarImage)(tensor=v)
                              for k, v in self.read(name, stats).items()})


def test_grid_patches_drop_background() -> None:
    task = replace(get_task("enhance-r1"), sampler=GridSampler((4, 4, 4), (4, 4, 4)))
    mask = np.zeros((1, 8, 8, 8), np.float32)
    mask[0, :4, :4, :] = 1  # 2 of the 8 patches inside
    store = MemoryStore({"01": {"r1_3t": np.random.rand(1, 8, 8, 8), "mask": mask,
                                "r1_7t": np.random.rand(1, 8, 8, 8)}})
    assert len(task.sampler.dataset(store, ["01"], task, {})) == 2
    patches = replace(task.sampler, max_background=1.0).dataset(store, ["01"], task, {})
    assert len(patches) == 8
    item = patches[0]
    assert item["input"].shape == item["target"].shape == (1, 4, 4, 4)


def test_load_subject_keeps_grid_and_mask(enhance_dataset: Path, affine: np.ndarray) -> None:
    task = get_task("enhance-r1")
    dataset = BIDSDataset(enhance_dataset)
    assert available_subjects(dataset, task) == ["01", "02", "03", "04"]
    subject = load_subject(dataset, "02", task, task.image_specs)
    assert set(subject.get_images_dict(intensity_only=False)) == {"r1_3t", "r1_7t", "mask"}
    np.testing.assert_allclose(subject["r1_3t"].affine, affine, atol=1e-6)
    assert subject["mask"].data.sum() > 0
    assert subject["subject_id"] == "02"


def test_a_sidecar_in_other_units_is_converted_to_the_task_unit(enhance_dataset: Path
                                                                ) -> None:
    task = get_task("enhance-r1")
    dataset = BIDSDataset(enhance_dataset)
    spec = task.inputs[0]
    found = dataset.get_run("02", spec.suffix, None, **spec.query(None))
    before = load_subject(dataset, "02", task, task.image_specs)[spec.key].data
    found.sidecar.write_text(json.dumps({"Units": "1/s"}))  # BIDS's spelling of s^-1
    same = load_subject(dataset, "02", task, task.image_specs)
    assert torch.equal(same[spec.key].data, before) and "UnitConversions" not in same["notes"]
    # a task reading the map in ms, the sidecar saying s (BIDS stores T1 and T2* in s)
    in_ms = replace(spec, unit="ms")
    ms_task = replace(task, inputs=(in_ms,), targets=(), outputs=(replace(
        task.outputs[0], target=None),), mask=task.mask)
    found.sidecar.write_text(json.dumps({"Units": "s"}))
    converted = load_subject(dataset, "02", ms_task, [in_ms])
    torch.testing.assert_close(converted[spec.key].data, before * 1000)
    assert converted["notes"]["UnitConversions"] == {
        found.path.name: "s (its sidecar) -> ms: x 1000"}
    found.sidecar.write_text(json.dumps({"Units": "ms"}))  # cannot become s^-1
    with pytest.raises(InputError, match=r"expected values in s\^-1, found Units 'ms'"):
        load_subject(dataset, "02", task, task.image_specs)


def test_training_subjects_follow_train_on(enhance_dataset: Path) -> None:
    table = (enhance_dataset / "participants.tsv").read_text()
    (enhance_dataset / "participants.tsv").write_text(table.replace("sub-03\tcontrol",
                                                                    "sub-03\tfcd"))
    dataset = BIDSDataset(enhance_dataset)
    task = get_task("enhance-r1")
    assert training_subjects(dataset, task) == ["01", "02", "04"]
    assert training_subjects(dataset, replace(task, train_on={})) == ["01", "02", "03", "04"]
    with pytest.raises(InputError, match="'site' column"):
        training_subjects(dataset, replace(task, train_on={"site": ("a",)}))


def test_missing_images_say_which_filter_links_or_names_hid_them(enhance_dataset: Path
                                                                  ) -> None:
    from lesionkit.bids import bids_filters, parse_filter

    dataset, task = BIDSDataset(enhance_dataset), get_task("enhance-r1")
    with bids_filters([parse_filter("R1map:rec=norm")]):
        assert missing_images(dataset, task).endswith(
            "missing in 4 of 4 subjects (read with --bids-filter R1map:rec=norm)")
    for path in enhance_dataset.glob("sub-0[12]/ses-3T/anat/*_R1map.nii.gz"):
        path.unlink()
        path.symlink_to("../../../.git/annex/objects/Xk/Q2/SHA256E-s1--0.nii.gz")
    found = missing_images(dataset, task)
    assert "missing in 2 of 4 subjects; in 2 of them a link to content that is not here " \
           "(sub-01_ses-3T_R1map.nii.gz, ...; a DataLad or git-annex dataset" in found
    (enhance_dataset / "sub-03/ses-3T/anat/sub-03_ses-3T_R1map.nii.gz").rename(
        enhance_dataset / "sub-03/ses-3T/anat/sub-03_ses-3T_rec-n_orm_R1map.nii.gz")
    assert ("missing in 3 of 4 subjects; 1 file(s) named like it are not BIDS names and are "
            "not read, e.g. sub-03/ses-3T/anat/sub-03_ses-3T_rec-n_orm_R1map.nii.gz"
            ) in missing_images(dataset, task)
    converted = enhance_dataset / "sub-04/ses-3T/anat/sub-04_ses-3T_R1map"
    Path(f"{converted}.nii.gz").rename(f"{converted}.mgz")  # FreeSurfer's format
    found = missing_images(dataset, task)
    assert "missing in 4 of 4 subjects; 1 file(s) named like it are not BIDS names" in found
    assert ("; 1 file(s) of it in another format are not read, e.g. sub-04/ses-3T/anat/"
            "sub-04_ses-3T_R1map.mgz, a FreeSurfer MGH image (convert it: nib-convert FILE "
            "OUT.nii.gz") in found
    with pytest.raises(InputError, match=r"the subject has .*sub-04_ses-3T_R1map\.mgz.*; "
                       r"sub-04_ses-3T_R1map\.mgz is a FreeSurfer MGH image \(convert it"):
        dataset.get("04", "R1map", session="3T", acq=None)


def test_a_t2w_read_as_flair_is_named_in_a_warning() -> None:
    """Bright CSF in 10 % of the brain, 3 times the tissue (a T2w): warned; the same brain
    with dark CSF and bright lesions in 2 % of it (a FLAIR): not."""
    rng = np.random.default_rng(0)
    tissue = rng.normal(100.0, 8.0, (1, 20, 20, 25)).astype(np.float32)
    mask = torch.ones((20, 20, 25), dtype=torch.bool)
    csf = np.zeros(tissue.shape, bool)
    csf[:, :, :, :3] = True  # 12 % of the voxels
    lesion = np.zeros(tissue.shape, bool)
    lesion[:, :10, :, 10:11] = True  # 2 %
    t2w = torch.from_numpy(np.where(csf, 300.0, tissue))
    flair = torch.from_numpy(np.where(csf, 20.0, np.where(lesion, 160.0, tissue)))
    t2w_ratio, flair_ratio = bright_csf_ratio(t2w, mask), bright_csf_ratio(flair, mask)
    assert t2w_ratio == pytest.approx(3.0, rel=0.05) and flair_ratio < 1.7
    warning = contrast_warning(t2w_ratio, "FLAIR", "sub-01_FLAIR.nii.gz")
    assert warning is not None and warning.startswith(
        "sub-01_FLAIR.nii.gz: expected a FLAIR (dark CSF") and "is it a T2w" in warning
    assert contrast_warning(flair_ratio, "FLAIR", "sub-01_FLAIR.nii.gz") is None


def test_the_contrast_statistic_ignores_an_offset_that_makes_the_background_negative() -> None:
    """A FLAIR stored with 200 subtracted (background at -200) reads as the same FLAIR; a
    real FLAIR so stored (patient01, storage_variants.py) was warned of as a T2w (2.29)."""
    rng = np.random.default_rng(1)
    head = np.zeros((1, 30, 30, 30), np.float32)  # air at 0 around a brain
    head[:, 5:25, 5:25, 5:25] = rng.normal(100.0, 8.0, (1, 20, 20, 20))
    head[:, 5:25, 5:25, 5:8] = 20.0  # dark CSF
    mask = torch.zeros((30, 30, 30), dtype=torch.bool)
    mask[5:25, 5:25, 5:25] = True
    ratio = bright_csf_ratio(torch.from_numpy(head), mask)
    assert bright_csf_ratio(torch.from_numpy(head - 200.0), mask) == pytest.approx(ratio)
    assert bright_csf_ratio(torch.from_numpy(head * 3.0), mask) == pytest.approx(ratio)


def test_oversampled_patches_hold_the_label_more_often() -> None:
    lesion = np.zeros((1, 24, 24, 8), np.float32)
    lesion[0, 2:4, 2:4, 1] = 1.0
    store = MemoryStore({"01": {"x": np.random.rand(1, 24, 24, 8), "lesion": lesion,
                                "mask": np.ones((1, 24, 24, 8), np.float32)}})
    task = Task("t", "t", (ImageSpec("x", "x"),), (ImageSpec("lesion", "mask"),),
                (OutputSpec("mask", "p", "1"),), "unet")
    rates = []
    for factor in (1.0, 5.0):
        torch.manual_seed(0)
        sampler = QueueSampler((8, 8, 1), 400, centre_on="mask", oversample="lesion",
                               oversample_factor=factor)
        patches = sampler.dataset(store, ["01"], task, {})
        rates.append(np.mean([patches[i]["target"].max().item() > 0.5 for i in range(400)]))
    assert rates[0] < 0.03 and 0.025 < rates[1] < 0.09, rates


def test_prediction_units_are_sessions_and_runs_of_the_first_input(tmp_path: Path) -> None:
    from lesionkit.bids import bids_path, write_dataset_description
    from lesionkit.io import save_volume
    from lesionkit.volume import Volume

    write_dataset_description(tmp_path, "runs")
    image = Volume(np.ones((2, 2, 2), np.float32), np.eye(4))
    names = {"01": [("FLAIR", None, {"run": "1"}), ("FLAIR", None, {"run": "10"}),
                     ("FLAIR", None, {"run": "2"}), ("T1w", None, {})],
             "02": [("FLAIR", "A", {}), ("T1w", "A", {}),
                    ("FLAIR", "B", {"run": "1"}), ("FLAIR", "B", {"run": "2"}),
                    ("T1w", "B", {"run": "1"}), ("T1w", "B", {"run": "2"})],
             "03": [("FLAIR", None, {"acq": "axial"}), ("FLAIR", None, {"acq": "sagittal"}),
                    ("T1w", None, {})]}
    for subject, files in names.items():
        for suffix, session, entities in files:
            save_volume(image, bids_path(tmp_path, subject, suffix, session=session, **entities))
    units = prediction_units(BIDSDataset(tmp_path), get_task("flair-lesion"))
    assert units == [("01", None, "1"), ("01", None, "2"), ("01", None, "10"),
                     ("02", "A", None), ("02", "B", "1"), ("02", "B", "2"),
                     ("03", None, None)]  # two acquisitions, not runs: get() names both


def _ellipsoid_head(spacing: tuple[float, float, float]) -> tuple[tio.ScalarImage, float]:
    """An ellipsoid brain (about 1200 mL) in dark CSF and a bright skull shell, on a grid
    of ``spacing`` mm; returns the image and the brain's volume (mL)."""
    semi = np.array([65.0, 80.0, 55.0])
    shape = tuple(round(200 / s) for s in spacing)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -np.array(spacing) * (np.array(shape) - 1) / 2
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    radius = np.sqrt((((ijk * spacing + affine[:3, 3]) / semi) ** 2).sum(-1))
    rng = np.random.default_rng(0)
    image = rng.uniform(0.5, 4.0, shape)
    image[radius <= 1.0] = 100 + rng.normal(0, 5, (radius <= 1.0).sum())
    csf = (radius > 1.0) & (radius <= 1.0 + 4 / 55)
    shell = (radius > 1.0 + 4 / 55) & (radius <= 1.0 + 11 / 55)
    image[csf], image[shell] = 10.0, 160.0
    volume = 4 / 3 * np.pi * semi.prod() / 1000
    return tio.ScalarImage(tensor=torch.from_numpy(image[None].astype(np.float32)),
                           affine=affine), volume


@pytest.mark.parametrize(("spacing", "grid"), [((1.25, 1.25, 1.25), "image's own grid"),
                                               ((1.0, 1.0, 4.0), "model's grid")])
def test_a_computed_mask_reads_a_fine_scan_on_its_own_grid(spacing, grid, monkeypatch
                                                           ) -> None:
    """BET fits a scan of voxels up to its working grid (1.5 mm) on the scan's own grid and
    the mask is moved onto the model's; thick slices are read on the model's grid."""
    import functools

    from lesionkit import brainmask
    from lesionkit.data import _computed_mask
    from lesionkit.geometry import at_voxel_size

    monkeypatch.setattr(brainmask, "brain_mask",  # fewer surface steps: a smooth head
                        functools.partial(brainmask.brain_mask, iterations=300))

    native, volume = _ellipsoid_head(spacing)
    reference = at_voxel_size(native, (2.0, 2.0, 2.0))
    mask, how = _computed_mask(native, reference, "head.nii.gz")
    assert how.startswith("computed: brainextractor") and f"fitted on the {grid}" in how
    assert mask.shape == reference.data.shape and mask.dtype == torch.bool
    assert abs(float(mask.sum()) * 8 / 1000 - volume) < 0.12 * volume
