"""The end-to-end demonstration behind ``make demo`` / ``lesionkit demo``.

On small phantom cohorts it simulates every cohort with a preview montage per subject,
then runs the demo step each task module declares (``DEMO`` in its module, collected in
:data:`lesionkit.tasks.DEMO_STEPS`). A task with a shipped model (:mod:`lesionkit.shipped`)
is predicted with it on the step's held-out subjects, scored and reported; the step may
then fine-tune the shipped model briefly on its other subjects and score again. A task
without one gets demo-sized training on the first subjects (or a cross-validation of its
arms), which shows that the pipeline runs, not what the method reaches. The demo's
cohorts use another phantom seed than the shipped models' training cohorts, so every
subject it scores is new to the model. It ends with one index page linking every
report. Every figure it prints comes from the phantom.
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
    workers: int = 0,
) -> str:
    """Run the demonstration; return a short text summary.

    Args:
        out_dir: Folder for the phantom datasets, model folders and reports.
        seed: Seed of the phantom cohorts and of training.
        progress: Factory of progress bars ``(description, total) -> advance``.
        steps: Demo steps to run (default: every task module's).
        cohorts: Cohort -> subjects to simulate (default: each step's cohort at
            :func:`needed_subjects`, at least :data:`PREVIEW_SUBJECTS`; every other
            phantom cohort at :data:`PREVIEW_SUBJECTS`).
        workers: Processes simulating each cohort's subjects in parallel (0: this one);
            the cohorts do not depend on it.

    Returns:
        Lines naming what was written and the held-out phantom metrics.
    """
    from lesionkit.simulate import COHORTS, simulate_cohort
    from lesionkit.tasks import DEMO_STEPS

    out = Path(out_dir)
    steps = DEMO_STEPS if steps is None else steps
    if cohorts is None:
        cohorts = dict.fromkeys(COHORTS, PREVIEW_SUBJECTS)
        for step in steps:
            cohorts[step.cohort] = max(cohorts.get(step.cohort, 0), needed_subjects(step))
    resolution = {s.cohort: s.resolution for s in reversed(steps)}  # the first step's wins
    lines = []
    for cohort, n in cohorts.items():
        start = time.perf_counter()
        mm = resolution.get(cohort, 2)
        with progress(f"simulate {cohort}", n) as advance:
            root = simulate_cohort(cohort, out / "phantom" / cohort, subjects=n, seed=seed,
                                   resolution=mm, preview=True, progress=advance,
                                   workers=min(workers, n))
        lines.append(f"phantom {cohort}: {n} subjects at {mm} mm in "
                     f"{time.perf_counter() - start:.0f} s -> {root}")
    entries = []
    for step in steps:
        if step.cohort in cohorts:
            with progress(step.task, 1) as advance:
                step_lines = run_step(step, out, seed, cohorts)
                advance(1)
            lines += step_lines
            entries += _index_entries(step.task, step_lines)
    from lesionkit.report import PHANTOM_NOTE, write_index

    index = write_index(out / "index.html", "lesionkit demo", entries, data_note=PHANTOM_NOTE,
                        text="Each row links one task's report; its subjects were simulated "
                             "for the demo and are new to the model that read them.")
    lines.append(f"index of the reports: {index.resolve()}")
    return "\n".join(lines)


def needed_subjects(step: DemoStep) -> int:
    """Subjects a step's cohort needs: its held-out ones when a shipped model is only
    applied, all of ``step.subjects`` when the step trains or fine-tunes."""
    from lesionkit.shipped import shipped_names

    applied = step.task in shipped_names() and not step.fine_tune_epochs
    return step.held_out if applied else step.subjects


def _index_entries(task: str, lines: list[str]) -> list[dict]:
    """One index entry per ``report:`` line of a step: the header line before it names
    the model and subjects, the indented lines give the figures."""
    entries, header, figures = [], task, []
    for line in lines:
        if line.startswith("report: "):
            # "TASK (shipped model), held-out ... (predicted in ...):" -> "shipped model, ..."
            dataset = header.split(" (predicted in")[0].removeprefix(f"{task} ").rstrip(":")
            if dataset.startswith("("):
                dataset = dataset[1:].replace(")", "", 1)
            entries.append({"path": line.removeprefix("report: "), "task": task,
                            "dataset": dataset, "summary": "; ".join(figures)})
            figures = []
        elif line.startswith("  "):
            figures.append(line.strip())
        else:
            header, figures = line, []
    return entries


def run_step(step: DemoStep, out: Path, seed: int, cohorts: dict[str, int],
             model: Path | None = None, use_shipped: bool = True) -> list[str]:
    """Run one task's demo step on its simulated cohort; return its summary lines.

    Args:
        step: The step.
        out: The demo folder (cohorts under ``phantom/``, models under ``models/``).
        seed: Seed of training (demo-sized training and fine-tuning).
        cohorts: Cohorts simulated (those a cross-validation may pretrain on).
        model: Model folder to predict with (default: the task's shipped model, when
            there is one and ``use_shipped``; otherwise the step trains its own).
        use_shipped: Whether a shipped model of the task is used when ``model`` is None.
    """
    from lesionkit.bids import BIDSDataset
    from lesionkit.build_models import held_out_split
    from lesionkit.data import training_subjects
    from lesionkit.shipped import SHIPPED_DIR, shipped_names
    from lesionkit.tasks import get_task
    from lesionkit.training import train

    if model is None and use_shipped and step.task in shipped_names():
        model = SHIPPED_DIR / step.task
    task = replace(get_task(step.task), **dict(step.overrides))
    data = out / "phantom" / step.cohort
    lines = [step.prepare(data)] if step.prepare is not None else []
    if step.crossval_arms and model is None:
        return lines + _crossval(step, task, data, out, seed, cohorts)
    others, held_out = held_out_split([p.name[4:] for p in data.glob("sub-*")], step.held_out)
    # the others, as far as the task trains on them (its train_on rule)
    training = [s for s in training_subjects(BIDSDataset(data), task) if s in others]
    if model is not None:
        lines += _scored(step, model, data, held_out, "shipped", out)
        if not step.fine_tune_epochs:
            return lines
        # Fine-tuning keeps the shipped model's own task, at a tenth of its learning rate.
        stored = _stored_task(model)
        task = replace(stored, learning_rate=stored.learning_rate / 10)
    model_dir = out / "models" / step.task
    start = time.perf_counter()
    train(task, data, model_dir, folds=1 if model else None,
          epochs=step.fine_tune_epochs if model else step.epochs, seed=seed,
          patches_per_epoch=step.examples_per_epoch, subjects=training, device="auto",
          overwrite=True, init=model, progress=False)
    what = (f"fine-tuned shipped model {model.name} (learning rate {task.learning_rate:g})"
            if model else f"trained {step.task}")
    lines.append(f"{what} on {len(training)} subjects in {time.perf_counter() - start:.0f} s "
                 f"-> {model_dir}")
    return lines + _scored(step, model_dir, data, held_out,
                           "fine-tuned" if model else "demo-trained", out)


def _stored_task(model: Path):  # -> lesionkit.tasks.task.Task
    from lesionkit.model_folder import read_config, task_from_config

    return task_from_config(read_config(model), model / "config.yaml")


def _scored(step: DemoStep, model: Path, data: Path, held_out: list[str], label: str,
            out: Path) -> list[str]:
    """Predict the held-out subjects with ``model`` into ``out/predictions/TASK-LABEL``,
    score and report them."""
    from lesionkit.build_models import scored_summary
    from lesionkit.evaluation import report
    from lesionkit.infer import predict
    from lesionkit.shipped import metric_label

    task = _stored_task(model)
    predictions = out / "predictions" / f"{task.name}-{label}"
    start = time.perf_counter()
    predict(model, data, tta=step.tta, subjects=held_out, progress=False, out_dir=predictions)
    lines = [f"{task.name} ({label} model), held-out phantom subjects {', '.join(held_out)} "
             f"(predicted in {time.perf_counter() - start:.0f} s; mean over subjects):"]
    summary = scored_summary(task, data, held_out, step.shown, predictions)
    for method, values in summary.items():
        text = ", ".join(f"{metric_label(task, k)} {_number(v)}" for k, v in values.items()
                         if v is not None)
        lines.append(f"  {method}: {text}")
    page = report(task, data, subjects=held_out, predictions=predictions)
    return [*lines, f"report: {page.resolve()}"]


def _crossval(step: DemoStep, task: object, data: Path, out: Path, seed: int,
              cohorts: dict[str, int]) -> list[str]:
    """Cross-validate the step's arms (those needing pretraining only with its source)."""
    from lesionkit.crossval import crossval
    from lesionkit.shipped import metric_label

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
        text = ", ".join(f"{metric_label(task, r['metric'])} {_number(r['estimate'])} (95 % CI "
                         f"{_number(r['ci_low'])}-{_number(r['ci_high'])})"
                         for r in rows if r["metric"] in ("accuracy", "roc_auc", "heat_score"))
        lines.append(f"  {arm}: {text}")
    return [*lines, f"report: {(result / 'report.html').resolve()}"]


def _number(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3g}"
