"""The end-to-end demonstration behind ``make demo`` / ``lesionkit demo``.

On small 2 mm phantom cohorts it simulates every cohort with a preview montage per
subject, then runs the demo step each task module declares (``DEMO`` in its module,
collected in :data:`lesionkit.tasks.DEMO_STEPS`): demo-sized training on the first
subjects and scoring of the held-out ones, or a cross-validation of the task's arms.
Each writes its HTML report. Demo training is minutes on a CPU, so its figures show that
the pipeline runs, not what the methods reach (README and docs give those runs). Every
figure it prints comes from the phantom.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from lesionkit.tasks.task import DemoStep

ProgressFactory = Callable[[str, int], contextlib.AbstractContextManager[Callable[[int], None]]]

#: Subjects of a cohort that no demo step trains on (simulated for its preview).
PREVIEW_SUBJECTS = 2


@contextlib.contextmanager
def _no_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n=1: None


def run_demo(
    out_dir: str | Path,
    seed: int = 0,
    progress: ProgressFactory = _no_progress,
    steps: Sequence[DemoStep] | None = None,
    cohorts: dict[str, int] | None = None,
) -> str:
    """Run the demonstration; return a short text summary.

    Args:
        out_dir: Folder for the phantom datasets, model folders and reports.
        seed: Seed of the phantom cohorts and of training.
        progress: Factory of progress bars ``(description, total) -> advance``.
        steps: Demo steps to run (default: every task module's).
        cohorts: Cohort -> subjects to simulate (default: each step's cohort at its
            size, every other phantom cohort at :data:`PREVIEW_SUBJECTS`).

    Returns:
        Lines naming what was written and the held-out phantom metrics.
    """
    from lesionkit.simulate import COHORTS, simulate_cohort
    from lesionkit.tasks import DEMO_STEPS

    out = Path(out_dir)
    steps = DEMO_STEPS if steps is None else steps
    if cohorts is None:
        cohorts = dict.fromkeys(COHORTS, PREVIEW_SUBJECTS)
        cohorts.update({s.cohort: s.subjects for s in steps})
    lines = []
    for cohort, n in cohorts.items():
        start = time.perf_counter()
        with progress(f"simulate {cohort}", n) as advance:
            root = simulate_cohort(cohort, out / "phantom" / cohort, subjects=n, seed=seed,
                                   resolution=2, preview=True, progress=advance)
        lines.append(f"phantom {cohort}: {n} subjects in {time.perf_counter() - start:.0f} s"
                     f" -> {root}")
    for step in steps:
        if step.cohort in cohorts:
            lines += run_step(step, out, seed, cohorts)
    return "\n".join(lines)


def run_step(step: DemoStep, out: Path, seed: int, cohorts: dict[str, int]) -> list[str]:
    """Run one task's demo step on its simulated cohort; return its summary lines."""
    from lesionkit.tasks import get_task

    task = replace(get_task(step.task), **dict(step.overrides))
    data = out / "phantom" / step.cohort
    lines = [step.prepare(data)] if step.prepare is not None else []
    if step.crossval_arms:
        return lines + _crossval(step, task, data, out, seed, cohorts)
    from lesionkit.bids import BIDSDataset
    from lesionkit.data import training_subjects
    from lesionkit.evaluation import evaluate, report
    from lesionkit.infer import predict
    from lesionkit.training import train

    subjects = sorted(p.name[4:] for p in data.glob("sub-*"))
    held_out = subjects[-step.held_out:]
    # the others, as far as the task trains on them (its train_on rule)
    training = [s for s in training_subjects(BIDSDataset(data), task) if s not in held_out]
    model_dir = out / "models" / task.name
    start = time.perf_counter()
    train(task, data, model_dir, epochs=step.epochs, seed=seed,
          patches_per_epoch=step.examples_per_epoch, subjects=training, device="auto",
          overwrite=True)
    lines.append(f"trained {task.name} on {len(training)} subjects in "
                 f"{time.perf_counter() - start:.0f} s -> {model_dir}")
    predict(model_dir, data, tta=step.tta, subjects=held_out, progress=False)
    _, metrics_json = evaluate(task, data, subjects=held_out)
    summary = json.loads(Path(metrics_json).read_text())["summary"]
    lines.append(f"{task.name}, held-out phantom subjects {', '.join(held_out)} (mean over "
                 "subjects):")
    for method, values in summary.items():
        text = ", ".join(f"{k} {v['mean']:.4g}" for k, v in values.items()
                         if k in step.shown and v["mean"] is not None)
        lines.append(f"  {method}: {text}")
    return [*lines, f"report: {report(task, data, subjects=held_out)}"]


def _crossval(step: DemoStep, task: object, data: Path, out: Path, seed: int,
              cohorts: dict[str, int]) -> list[str]:
    """Cross-validate the step's arms (those needing pretraining only with its source)."""
    from lesionkit.crossval import crossval

    ready = step.source_cohorts and all(c in cohorts for c in step.source_cohorts)
    source = [out / "phantom" / c for c in step.source_cohorts] if ready else None
    arms = [a for a in step.crossval_arms
            if source is not None or "pretraining" not in task.arms[a]]
    result = out / "models" / task.name
    start = time.perf_counter()
    comparison = json.loads(crossval(
        task, data, result, folds=step.folds, arms=arms, epochs=step.epochs, seed=seed,
        source_dir=source, progress=False).read_text())
    lines = [f"{task.name}: {' vs '.join(arms)}, {comparison['subjects']} phantom subjects, "
             f"{step.folds}-fold cross-validation in {time.perf_counter() - start:.0f} s -> "
             f"{result}"]
    for arm, entry in comparison["arms"].items():
        rows = [*entry["classification"], *entry["metrics"]]
        text = ", ".join(f"{r['metric']} {_number(r['estimate'])} (95 % CI "
                         f"{_number(r['ci_low'])}-{_number(r['ci_high'])})"
                         for r in rows if r["metric"] in ("accuracy", "roc_auc", "heat_score"))
        lines.append(f"  {arm}: {text}")
    return [*lines, f"report: {(result / 'report.html').resolve()}"]


def _number(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3g}"
