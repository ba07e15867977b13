"""Shared fixtures: tiny seeded BIDS datasets written as real NIfTI, oblique affines."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from scipy import ndimage

from lesionkit.bids import bids_path, write_dataset_description, write_participants
from lesionkit.io import save_volume, write_tsv
from lesionkit.lesions import evaluate_lesion_tables, table_path
from lesionkit.mrf import MRF_EPI
from lesionkit.tasks.strategies import LesionSampler, PerLesion
from lesionkit.tasks.task import ImageSpec, LabelSpec, LesionLabelSpec, OutputSpec, Task
from lesionkit.volume import Volume

SHAPE = (16, 16, 16)


#: The environment variables that set OpenMP's and the BLAS libraries' thread counts.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pytest_configure(config: pytest.Config) -> None:
    """Each worker of ``pytest -n N`` (pyproject's addopts) computes on one thread.

    The N workers share the machine's cores; torch's default of one thread per core in
    each would oversubscribe them (on 2 cores the suite took 416 s so, 258-301 s with one
    thread per worker). Commands that choose their own count still do.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        from lesionkit.threads import use_threads

        os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))
        use_threads(1)


@pytest.fixture(autouse=True)
def _keep_thread_counts():
    """Commands run in-process set torch's and BLAS's threads: put them back afterwards."""
    import torch

    before = torch.get_num_threads()
    environment = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    yield
    if torch.get_num_threads() != before:
        from lesionkit.threads import use_threads

        use_threads(before)
    for key, value in environment.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

#: Smallest settings of each registered network, for fast contract tests.
TINY_NETWORKS = {
    "unet": {"channels": (4, 8), "strides": (2,)},
    "residual-unet": {"channels": (4, 8), "strides": (2,), "num_res_units": 1},
    "unet2d": {"channels": (4, 4, 8, 8, 16)},
    "resnet18": {"widen_factor": 0.25},
    "resnet34": {"widen_factor": 0.25},
    "resnet10": {"widen_factor": 0.25},
    "resnet50": {"widen_factor": 0.125},
}


def load_script(path: Path, name: str) -> ModuleType:
    """A script of benchmarks/ or scripts/ imported as module ``name``; its folder is on
    ``sys.path`` while it loads, for the helpers beside it (``common.py``)."""
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def oblique_affine(spacing: float = 1.0) -> np.ndarray:
    """A rotated, shifted, anisotropically scaled voxel-to-mm affine."""
    angle = np.deg2rad(12.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0],
                         [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([spacing, spacing * 1.1, spacing * 0.9])
    affine[:3, 3] = [-8.0, 5.5, 3.25]
    return affine


def brain_mask(shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """A centred ellipsoid covering about half of the grid."""
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1) / 2
    radius = np.array(shape) * 0.42
    return (((grid - centre[:, None, None, None]) / radius[:, None, None, None]) ** 2).sum(0) < 1


def smooth_field(rng: np.random.Generator, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """A smooth random field in [0, 1] (the 'tissue' pattern of a tiny subject)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    return (field - field.min()) / (np.ptp(field) + 1e-9)


def write_image(root: Path, subject: str, spec: ImageSpec, data: np.ndarray) -> Path:
    """Write one image of a spec (BIDS path from its suffix, session and entities).

    A 4D spec gets three frames: the data scaled by 1, 0.8 and 0.6.
    """
    if spec.ndim == 4:
        data = np.stack([data, 0.8 * data, 0.6 * data], axis=-1)
    path = bids_path(root, subject, spec.suffix, session=spec.session,
                     derivatives=spec.derivatives, **dict(spec.entities))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_volume(Volume(data.astype(np.float32), oblique_affine(), kind="intensity",
                       unit=spec.unit), path)
    return path


#: Values of about 1 become plausible ones in these units (relaxation times: about 1 s).
UNIT_SCALE = {"ms": 1000.0}


def write_task_dataset(root: Path, task: Task, subjects: int = 4, seed: int = 0) -> Path:
    """A tiny BIDS dataset holding every image and label the task reads.

    Targets are a smooth monotone function of the first input (so a network can learn
    them); masks are a fixed ellipsoid; labels alternate over the task's classes.
    """
    rng = np.random.default_rng(seed)
    mask = brain_mask()
    write_dataset_description(root, "tiny test dataset")
    rows = []
    for number in range(1, subjects + 1):
        subject = f"{number:02d}"
        base = smooth_field(rng) * mask
        row = {"participant_id": f"sub-{subject}", "group": "control"}
        image = (0.6 + 0.8 * base) * mask
        if task.lesions is not None:
            labels, rows_of_lesions = lesion_spheres(rng)
            bright = {r["label"]: r["bright"] == "1" for r in rows_of_lesions}
            for label, is_bright in bright.items():
                image = np.where(labels == label, 2.0 if is_bright else 0.1, image)
            path = write_image(root, subject, task.lesions, labels.astype(np.float32))
            for spec in task.targets:  # every per-lesion target column holds ``bright``
                if isinstance(spec, LesionLabelSpec):
                    rows_of_lesions = [{**r, spec.column: r["bright"]} for r in rows_of_lesions]
            write_tsv(rows_of_lesions, table_path(path))
        for spec in task.inputs:
            write_image(root, subject, spec, image * UNIT_SCALE.get(spec.unit, 1.0))
        for spec in task.dense_targets:
            write_image(root, subject, spec, (0.4 + 0.5 * base ** 1.2) * mask
                        * UNIT_SCALE.get(spec.unit, 1.0))
        if task.mask is not None:
            write_image(root, subject, task.mask, mask.astype(np.float32))
        for spec in task.targets:
            if isinstance(spec, LabelSpec):
                row[spec.column] = spec.classes[number % len(spec.classes)]
        rows.append(row)
    write_participants(root, rows)
    return root


def lesion_spheres(rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """A label map with four small spheres (labels 1-4) and their table (``bright`` 0/1)."""
    grid = np.indices(SHAPE).astype(float)
    labels = np.zeros(SHAPE, np.int16)
    centres = [(5, 5, 5), (5, 10, 10), (10, 5, 10), (10, 10, 5)]
    rows = []
    for label, centre in enumerate(centres, start=1):
        inside = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= 2.0 ** 2
        labels[inside] = label
        rows.append({"label": label, "bright": str(int(rng.random() < 0.5 if label > 2
                                                       else label == 1))})
    return labels, rows


#: A toy per-lesion task: is each sphere bright or dark on the image?
TOY_LESION_TASK = Task(
    name="toy-lesions",
    description="image + lesion labels -> probability that each lesion is bright",
    inputs=(ImageSpec("image", "T2w"),),
    targets=(LesionLabelSpec("bright", "bright"),),
    lesions=ImageSpec("lesions", "dseg", derivatives="manual", entities=(("desc", "lesions"),),
                      kind="label", unit="1", normalisation="none"),
    outputs=(OutputSpec("probseg", "bright", "1", "probability", entities=(("label", "lesion"),)),),
    network="resnet10",
    network_kwargs={"widen_factor": 0.25},
    loss="binary-cross-entropy",
    sampler=LesionSampler(patch_size=(8, 8, 8)),
    inference=PerLesion(patch_size=(8, 8, 8), flips=2),
    output_kind="lesions",
    output_activation="sigmoid",
    batch_size=4,
    learning_rate=1e-3,
    max_epochs=2,
    evaluate=evaluate_lesion_tables,
)


def tiny(task: Task) -> Task:
    """The task with a tiny network, patches of at most 8^3 and a small batch."""
    sampler, inference = task.sampler, task.inference
    if hasattr(sampler, "patch_size"):
        patch = tuple(min(p, 8) for p in sampler.patch_size)
        changes = {"patch_size": patch}
        if hasattr(sampler, "step"):
            changes["step"] = tuple(max(p // 2, 1) for p in patch)
        if hasattr(sampler, "samples_per_volume"):
            changes["samples_per_volume"] = 2
        sampler = replace(sampler, **changes)
    if hasattr(inference, "window"):
        inference = replace(inference, window=tuple(min(p, 8) for p in inference.window))
    if hasattr(inference, "patch_size"):
        inference = replace(inference, patch_size=sampler.patch_size)
    network_kwargs = {**task.network_kwargs, **TINY_NETWORKS.get(task.network, {})}
    return replace(task, network_kwargs=network_kwargs, sampler=sampler, inference=inference,
                   folds=1, batch_size=2, learning_rate=1e-3)


@pytest.fixture
def affine() -> np.ndarray:
    """The oblique affine of every fixture image."""
    return oblique_affine()


@pytest.fixture
def enhance_dataset(tmp_path: Path) -> Path:
    """Four tiny enhance-r1 subjects (3T and 7T R1 maps, brain masks)."""
    from lesionkit.tasks import get_task

    return write_task_dataset(tmp_path / "bids", get_task("enhance-r1"))


MRF_SHAPE = (12, 12, 4)
MRF_AFFINE = np.array([[0.0, 2.0, 0.0, -20.0], [-2.1, 0.0, 0.0, 14.0], [0.0, 0.0, 1.9, -3.0],
                   [0.0, 0.0, 0.0, 1.0]])


def put_mrf(root: Path, subject: str, suffix: str, data: np.ndarray,
            derivatives: str | None = None, **entities: str) -> None:
    """Write one image of the tiny MRF grid."""
    path = bids_path(root, subject, suffix, derivatives=derivatives, **entities)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_volume(Volume(np.asarray(data, np.float32), MRF_AFFINE, "intensity", ""), path)


def write_mrf_dataset(root: Path, subjects: int = 3) -> Path:
    """Tiny MRF subjects with every file the five-output task reads (and the truth)."""
    rng = np.random.default_rng(0)
    write_dataset_description(root, "tiny mrf-lesion")
    brain = np.zeros(MRF_SHAPE, bool)
    brain[1:-1, 1:-1, :] = True
    for number in range(1, subjects + 1):
        s = f"{number:02d}"
        wm = rng.uniform(0, 1, MRF_SHAPE) * brain
        lesion = np.zeros(MRF_SHAPE, bool)
        lesion[4:6, 4:6, 1:3] = True
        t1 = np.where(brain, 800 + 600 * (1 - wm) + 500 * lesion, 0)
        frames = np.linspace(0.5, 1.5, 35)
        put_mrf(root, s, "MRF", (1000 - 0.2 * t1)[..., None] * frames * brain[..., None])
        sidecar = bids_path(root, s, "MRF").with_name(f"sub-{s}_MRF.json")
        sidecar.write_text(json.dumps(MRF_EPI.to_sidecar()))
        for pipeline, scale in (("lesionkit", 1.02), ("phantom", 1.0)):
            entities = {"desc": "matched"} if pipeline == "lesionkit" else {}
            put_mrf(root, s, "T1map", t1 * scale, pipeline, **entities)
            put_mrf(root, s, "T2starmap", np.where(brain, 50 + 20 * lesion, 0) * scale, pipeline,
                **entities)
            put_mrf(root, s, "mask", brain, pipeline, desc="brain")
        put_mrf(root, s, "probseg", wm * ~lesion, "phantom", label="NAWM")
        put_mrf(root, s, "probseg", (1 - wm) * brain, "phantom", label="GM")
        put_mrf(root, s, "mask", lesion, "phantom", label="lesion")
        put_mrf(root, s, "FLAIR", t1 / 10)
        put_mrf(root, s, "T1w", 2000 - t1)
    write_participants(root, [{"participant_id": f"sub-{n:02d}", "group": "patient"}
                              for n in range(1, subjects + 1)])
    return root


def write_pretraining_source(root: Path, stage: int, subjects: int = 4) -> Path:
    """A source cohort of fcd-classify's pretraining ``stage``: the tiny fcd dataset with
    its FLAIR also written as the stage's image (T1w, or gadolinium T1w for tumours)."""
    from lesionkit.io import load_volume
    from lesionkit.tasks.fcd_classify import PRETRAINING_STAGES

    write_fcd_dataset(root, subjects)
    for number in range(1, subjects + 1):
        subject = f"{number:02d}"
        flair = load_volume(root / f"sub-{subject}" / "anat" / f"sub-{subject}_FLAIR.nii.gz")
        write_image(root, subject, PRETRAINING_STAGES[stage][2], flair.data)
    return root


def write_fcd_dataset(root: Path, subjects: int = 8) -> Path:
    """Tiny fcd-classify dataset; patients carry a bright blob and its lesion mask."""
    from lesionkit.io import load_volume
    from lesionkit.tasks import get_task
    from lesionkit.tasks.task import ImageSpec

    task = get_task("fcd-classify")
    write_task_dataset(root, task, subjects=subjects)
    lesion_spec = ImageSpec("lesion", "mask", derivatives="phantom",
                            entities=(("label", "lesion"),), kind="label")
    blob = np.zeros(brain_mask().shape, bool)
    blob[9:12, 5:8, 7:10] = True
    for number in range(1, subjects + 1):
        subject = f"{number:02d}"
        patient = number % 2 == 1
        if patient:
            path = root / f"sub-{subject}" / "anat" / f"sub-{subject}_FLAIR.nii.gz"
            image = load_volume(path).data
            write_image(root, subject, task.inputs[0], np.where(blob, 3.0, image))
        write_image(root, subject, lesion_spec, (blob & patient).astype(np.float32))
    return root
