"""The end-to-end demonstration behind ``make demo`` / ``lesionkit demo``.

On small 2 mm phantom cohorts it simulates every task's cohort with a preview montage
per subject, then runs three methods end to end with demo-sized training:

- enhance-r1: a small 3D U-Net trained for a few epochs; held-out subjects predicted
  with mirror test-time augmentation and scored against the 7T truth with the baseline.
- mrf-lesion: the reference maps by dictionary matching, a narrow 2D U-Net trained on
  them (35 frames -> T1, T2*, NAWM, GM, lesion probability), held-out subjects scored.
- fcd-classify: scratch against segmentation-pretrained 3D ResNets on the same
  stratified folds, with Grad-CAM and Heat-Score of the held-out patients.

Each writes its HTML report. Demo training is minutes on a CPU, so its figures show
that the pipeline runs, not what the methods reach (README and docs give those runs).
Every figure it prints comes from the phantom.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

ProgressFactory = Callable[[str, int], contextlib.AbstractContextManager[Callable[[int], None]]]

#: Phantom cohorts of the demo: task -> number of subjects (2 mm).
COHORT_SIZES: dict[str, int] = {
    "enhance-r1": 10,
    "mrf-lesion": 6,
    "fcd-classify": 8,
    "contrast-amplify": 2,
    "rim-classify": 2,
}


@dataclass(frozen=True)
class DemoSettings:
    """Sizes that keep the demo to a few minutes on a 2-core CPU.

    Attributes:
        held_out: enhance-r1 subjects kept out of training (the last ones, which
            include an FCD subject).
        epochs: enhance-r1 training epochs.
        patches_per_epoch: enhance-r1 training patches drawn per epoch.
        channels: enhance-r1 U-Net features per level (the task default is wider and deeper).
        learning_rate: Adam learning rate of the demo networks (10x the papers' 1e-4 for
            these short schedules).
        tta: Mirror flips at prediction.
        mrf_held_out: mrf-lesion subjects kept out of training (the last ones).
        mrf_epochs: mrf-lesion training epochs (the learning rate halves every 20).
        mrf_patches_per_epoch: Cap on mrf-lesion 64x64 training patches per epoch (None:
            all the queue holds, 128 per training subject).
        mrf_learning_rate: mrf-lesion Adam learning rate (20x the paper's, for a narrow
            network trained for two minutes).
        mrf_channels: mrf-lesion 2D U-Net features of its five stages (task: 32 ... 512).
        mrf_patch: In-plane edge (voxels) of the mrf-lesion training patches (task: 64).
        mrf_denoise: MP-PCA before matching (the reference pipeline's default; about a
            minute per 2 mm subject on 2 cores, so the demo matches without it).
        fcd_folds: Stratified folds of the fcd-classify comparison.
        fcd_epochs: fcd-classify epochs per fold.
        fcd_network: fcd-classify ResNet and its width factor.
        fcd_pretrain_epochs: Epochs of the encoder's segmentation pretraining.
        fcd_pretrain_patch: Cubic patch edge (voxels) of that pretraining.
    """

    held_out: int = 3
    epochs: int = 5
    patches_per_epoch: int = 512
    channels: tuple[int, ...] = (16, 32, 64)
    learning_rate: float = 1e-3
    tta: int = 8
    mrf_held_out: int = 2
    mrf_epochs: int = 40
    mrf_patches_per_epoch: int | None = None
    mrf_learning_rate: float = 2e-3
    mrf_channels: tuple[int, ...] = (8, 16, 32, 64, 128)
    mrf_patch: int = 64
    mrf_denoise: bool = False
    fcd_folds: int = 2
    fcd_epochs: int = 3
    fcd_network: tuple[str, float] = ("resnet10", 0.5)
    fcd_pretrain_epochs: int = 2
    fcd_pretrain_patch: int = 48


@contextlib.contextmanager
def _no_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n=1: None


def run_demo(
    out_dir: str | Path,
    seed: int = 0,
    settings: DemoSettings = DemoSettings(),
    progress: ProgressFactory = _no_progress,
    cohorts: dict[str, int] | None = None,
) -> str:
    """Run the demonstration; return a short text summary.

    Args:
        out_dir: Folder for the phantom datasets, model folders and reports.
        seed: Seed of the phantom cohorts and of training.
        settings: Training and prediction sizes.
        progress: Factory of progress bars ``(description, total) -> advance``.
        cohorts: Task -> subject count to simulate (default :data:`COHORT_SIZES`); the
            methods run for the tasks simulated here.

    Returns:
        Lines naming what was written and the held-out phantom metrics.
    """
    from lesionkit.simulate import simulate_cohort

    out = Path(out_dir)
    sizes = COHORT_SIZES if cohorts is None else cohorts
    lines = []
    for task_name, n in sizes.items():
        start = time.perf_counter()
        with progress(f"simulate {task_name}", n) as advance:
            root = simulate_cohort(task_name, out / "phantom" / task_name, subjects=n, seed=seed,
                                   resolution=2, preview=True, progress=advance)
        lines.append(f"phantom {task_name}: {n} subjects in {time.perf_counter() - start:.0f} s"
                     f" -> {root}")
    if "enhance-r1" in sizes:
        lines += _enhance_r1(out, seed, settings)
    if "mrf-lesion" in sizes:
        lines += _mrf_lesion(out, seed, settings, progress)
    if "fcd-classify" in sizes:
        lines += _fcd_classify(out, seed, settings, "mrf-lesion" in sizes)
    return "\n".join(lines)


def _split(data: Path, held_out: int) -> tuple[list[str], list[str]]:
    subjects = sorted(p.name[4:] for p in data.glob("sub-*"))
    return subjects[:-held_out], subjects[-held_out:]


def _summary_lines(task_name: str, held_out: list[str], metrics_json: Path,
                   shown: tuple[str, ...]) -> list[str]:
    summary = json.loads(Path(metrics_json).read_text())["summary"]
    lines = [f"{task_name}, held-out phantom subjects {', '.join(held_out)} (mean over "
             "subjects):"]
    for method, values in summary.items():
        text = ", ".join(f"{k} {v['mean']:.4g}" for k, v in values.items()
                         if k in shown and v["mean"] is not None)
        lines.append(f"  {method}: {text}")
    return lines


def _enhance_r1(out: Path, seed: int, settings: DemoSettings) -> list[str]:
    """Train a small enhance-r1 U-Net, predict and score the held-out subjects."""
    from lesionkit.infer import evaluate, predict, report
    from lesionkit.tasks import get_task
    from lesionkit.training import train

    data = out / "phantom" / "enhance-r1"
    training, held_out = _split(data, settings.held_out)
    task = get_task("enhance-r1")
    small = replace(task, network_kwargs={**task.network_kwargs,
                                          "channels": settings.channels,
                                          "strides": (2,) * (len(settings.channels) - 1)},
                    learning_rate=settings.learning_rate)
    model_dir = out / "models" / "enhance-r1"
    start = time.perf_counter()
    train(small, data, model_dir, epochs=settings.epochs, seed=seed,
          patches_per_epoch=settings.patches_per_epoch, subjects=training, device="auto")
    lines = [f"trained enhance-r1 on {len(training)} subjects in "
             f"{time.perf_counter() - start:.0f} s -> {model_dir}"]
    predict(model_dir, data, tta=settings.tta, subjects=held_out)
    _, metrics_json = evaluate(task, data, subjects=held_out)
    lines += _summary_lines("enhance-r1", held_out, metrics_json,
                            ("rmse", "psnr", "ssim", "relative_edge_sharpness"))
    return [*lines, f"report: {report(task, data, subjects=held_out)}"]


def _mrf_lesion(out: Path, seed: int, settings: DemoSettings,
                progress: ProgressFactory) -> list[str]:
    """Match the reference maps, train a narrow mrf-lesion U-Net, score held-out subjects."""
    from lesionkit.infer import evaluate, predict, report
    from lesionkit.mrf_reference import match_dataset
    from lesionkit.tasks import get_task
    from lesionkit.training import train

    data = out / "phantom" / "mrf-lesion"
    training, held_out = _split(data, settings.mrf_held_out)
    start = time.perf_counter()
    with progress("mrf-match", len(training) + len(held_out)) as advance:
        match_dataset(data, denoise=settings.mrf_denoise, progress=advance)
    lines = [f"mrf-lesion reference maps (dictionary matching, MP-PCA "
             f"{'on' if settings.mrf_denoise else 'off'}) in "
             f"{time.perf_counter() - start:.0f} s"]
    task = get_task("mrf-lesion")
    small = replace(task, network_kwargs={**task.network_kwargs,
                                          "channels": settings.mrf_channels},
                    sampler=replace(task.sampler, patch_size=(settings.mrf_patch,) * 2 + (1,)),
                    learning_rate=settings.mrf_learning_rate, batch_size=16)
    model_dir = out / "models" / "mrf-lesion"
    start = time.perf_counter()
    train(small, data, model_dir, epochs=settings.mrf_epochs, seed=seed,
          patches_per_epoch=settings.mrf_patches_per_epoch, subjects=training, device="auto")
    lines.append(f"trained mrf-lesion on {len(training)} subjects in "
                 f"{time.perf_counter() - start:.0f} s -> {model_dir}")
    predict(model_dir, data, subjects=held_out)
    _, metrics_json = evaluate(task, data, subjects=held_out)
    lines += _summary_lines("mrf-lesion", held_out, metrics_json,
                            ("lesion_dice", "detection_rate", "nawm_dice", "gm_dice",
                             "t1_deviation_matching", "t2s_deviation_matching",
                             "t1_deviation_truth", "t2s_deviation_truth"))
    return [*lines, f"report: {report(task, data, subjects=held_out)}"]


def _fcd_classify(out: Path, seed: int, settings: DemoSettings, pretrain: bool) -> list[str]:
    """Scratch against segmentation-pretrained ResNets by cross-validation, with Grad-CAM."""
    from lesionkit.crossval import compare_arms
    from lesionkit.tasks import get_task
    from lesionkit.tasks.fcd_classify import comparison_report

    network, widen = settings.fcd_network
    task = replace(get_task("fcd-classify"), network=network,
                   network_kwargs={"widen_factor": widen}, learning_rate=settings.learning_rate)
    data, result = out / "phantom" / "fcd-classify", out / "models" / "fcd-classify"
    arms = ("scratch", "segmentation") if pretrain else ("scratch",)
    start = time.perf_counter()
    comparison = compare_arms(data, result, arms=arms, folds=settings.fcd_folds,
                              epochs=settings.fcd_epochs, task=task,
                              source_dir=out / "phantom" / "mrf-lesion" if pretrain else None,
                              pretrain={"epochs": settings.fcd_pretrain_epochs,
                                        "patch_size": settings.fcd_pretrain_patch},
                              seed=seed, progress=False)
    summary = json.loads(comparison.read_text())
    lines = [f"fcd-classify: {' vs '.join(arms)}, {summary['subjects']} subjects, "
             f"{settings.fcd_folds}-fold cross-validation in "
             f"{time.perf_counter() - start:.0f} s -> {result}"]
    for arm, entry in summary["arms"].items():
        accuracy = next(row for row in entry["metrics"] if row["metric"] == "accuracy")
        heat = entry["heat_score"]
        lines.append(f"  {arm}: accuracy {_number(accuracy['estimate'])} (95 % CI "
                     f"{_number(accuracy['ci_low'])}-{_number(accuracy['ci_high'])}), "
                     f"Heat-Score {_number(heat['heat_score_mean'])} over {heat['n']} "
                     "correctly classified patients")
    return [*lines, f"report: {comparison_report(result, data)}"]


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"
