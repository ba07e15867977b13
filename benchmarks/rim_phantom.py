"""What a rim-classify phantom holds (its lesions, rim+ and veins, its QSM values), and how
a cross-validation on it scored those lesions.

``lesions`` counts from every subject's lesion table (``derivatives/phantom``): lesions,
rim+ lesions (overall, per subject and among the real lesion shapes of the library),
lesions with a vein beside them. ``qsm`` gives the measured QSM (``sub-XX_Chimap``, ppb)
per region, median and 5th-95th percentile over the voxels of the chosen subjects:
NAWM and GM (probability > 0.9), CSF (> 0.97), rim- lesions with and without a vein,
the outer voxel layer of rim+ lesions and their core (2 voxels in), vein voxels (true
chi > 200 ppb) and the 1st-99th percentile of the first subject's whole brain.

Usage::

    lesionkit simulate rim-classify data/rim40 --subjects 40 --seed 0 --resolution 1
    python benchmarks/rim_phantom.py lesions data/rim40   # --subjects 01,02,...: some
    python benchmarks/rim_phantom.py qsm data/rim40 --subjects 01,05,10,13,14,15,38,40
    python benchmarks/rim_phantom.py scores data/rim80 --crossval out/rim80

``scores`` reads the out-of-fold lesion tables of every arm of a ``lesionkit crossval``
run on the phantom (``arm-*/predictions/sub-XX/anat/*_lesions.tsv``) and gives, for rim+
and rim- lesions with and without a vein beside them and for each lesion type, how many
there are, how many of them (and what share) scored 0.5 or more, and the median
probability.

``prior`` scores the same out-of-fold lesions twice: as predicted (probabilities moved to
the training lesions' rim+ fraction by the prior shift each fold recorded,
``lesionkit.calibration``) and with that shift taken back out (the probabilities at the
training batches' rim+ fraction, as predicted before the shift existed; exact for
predictions without flips, as crossval's), with the task's own summary (AUCs, Brier
score, counts) and the sum of all probabilities against the true rim+ total::

    python benchmarks/rim_phantom.py prior data/rim80 --crossval out/rim80

Each prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import ndimage

FULL = np.ones((3, 3, 3), bool)
#: Columns of a rim-classify phantom's lesion table that the counts read.
COLUMNS = {"label", "rim", "vein", "type", "volume_mm3"}


def _tables(data: Path) -> pd.DataFrame:
    """Every subject's lesion table, with a ``subject`` column."""
    paths = sorted((data / "derivatives/phantom").glob("sub-*/anat/sub-*_lesions.tsv"))
    if not paths:
        raise SystemExit(f"{data}: expected lesion tables under derivatives/phantom, found none")
    tables = []
    for path in paths:
        table = pd.read_csv(path, sep="\t")
        missing = sorted(COLUMNS - set(table.columns))
        if missing:
            raise SystemExit(f"{path}: expected a rim-classify lesion table with columns "
                             f"{sorted(COLUMNS)}, found none named {missing}")
        tables.append(table.assign(subject=path.name.split("_")[0][4:]))
    return pd.concat(tables, ignore_index=True)


def lesion_summary(data: Path, subjects: list[str] | None = None) -> dict:
    """Lesion, rim+ and vein counts of a rim-classify phantom (of ``subjects``)."""
    table = _tables(data)
    if subjects is not None:
        table = table[table["subject"].isin(subjects)]
    subjects = table["subject"].nunique()
    per_subject = table.groupby("subject")["rim"].sum()
    library = table["type"] == "library"
    rim = table["rim"] == 1
    return {
        "subjects": subjects, "lesions": len(table), "rim_positive": int(rim.sum()),
        "rim_positive_percent": round(100 * float(rim.mean()), 2),
        "with_vein": int(table["vein"].sum()),
        "library_lesions": int(library.sum()), "rim_positive_library": int((rim & library).sum()),
        "subjects_by_rim_positive_count": {
            int(k): int(v) for k, v in per_subject.value_counts().sort_index().items()},
        "rim_positive_volume_mm3_median": round(float(table.loc[rim, "volume_mm3"].median()), 1),
    }


def _load(path: Path) -> np.ndarray:
    import nibabel as nib

    if not path.is_file():
        raise SystemExit(f"{path}: expected an image of the rim-classify phantom, found no "
                         "such file")
    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)


def _regions(data: Path, subject: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A subject's QSM (ppb) and its region masks."""
    truth = data / "derivatives/phantom" / f"sub-{subject}" / "anat"
    name = f"sub-{subject}"
    qsm = _load(data / name / "anat" / f"{name}_Chimap.nii.gz")
    labels = _load(truth / f"{name}_desc-lesions_dseg.nii.gz").astype(int)
    table = pd.read_csv(truth / f"{name}_lesions.tsv", sep="\t")
    brain = _load(truth / f"{name}_desc-brain_mask.nii.gz") > 0
    prob = {t: _load(truth / f"{name}_label-{t}_probseg.nii.gz") for t in ("NAWM", "GM", "CSF")}
    plus = table.loc[table["rim"] == 1, "label"].to_numpy()
    minus_vein = table.loc[(table["rim"] == 0) & (table["vein"] == 1), "label"].to_numpy()
    minus = table.loc[(table["rim"] == 0) & (table["vein"] == 0), "label"].to_numpy()
    outer, core = np.zeros(qsm.shape, bool), np.zeros(qsm.shape, bool)
    for label in plus:
        lesion = labels == label
        outer |= lesion & ~ndimage.binary_erosion(lesion, FULL)
        core |= ndimage.binary_erosion(lesion, FULL, iterations=2)
    true_chi = _load(truth / f"{name}_Chimap.nii.gz")
    return qsm, {
        "NAWM": prob["NAWM"] > 0.9, "GM": prob["GM"] > 0.9, "CSF": prob["CSF"] > 0.97,
        "rim- lesions without a vein": np.isin(labels, minus),
        "rim- lesions with a vein beside them": np.isin(labels, minus_vein),
        "rim+ lesions, outer voxel layer": outer, "rim+ lesions, core (2 voxels in)": core,
        "vein voxels (true chi > 200 ppb)": brain & (true_chi > 200), "brain": brain}


def qsm_values(data: Path, subjects: list[str]) -> dict:
    """Median (5th-95th percentile) QSM per region over ``subjects``, in ppb."""
    pooled: dict[str, list[np.ndarray]] = {}
    whole = None
    for subject in subjects:
        qsm, regions = _regions(data, subject)
        if whole is None:
            whole = [round(float(v), 1) for v in np.percentile(qsm[regions["brain"]], (1, 99))]
        for name, mask in regions.items():
            if name != "brain":
                pooled.setdefault(name, []).append(qsm[mask])
    out: dict = {"subjects": subjects}
    for name, parts in pooled.items():
        values = np.concatenate(parts)
        out[name] = ({"median": round(float(np.median(values)), 1),
                      "p5_p95": [round(float(v), 1) for v in np.percentile(values, (5, 95))],
                      "voxels": int(values.size)} if values.size else None)
    out[f"whole brain sub-{subjects[0]}, p1_p99"] = whole
    return out


def _scores(arm: Path) -> pd.DataFrame:
    """An arm's out-of-fold lesion tables (``subject``, ``label``, ``probability``)."""
    paths = sorted((arm / "predictions").glob("sub-*/anat/sub-*_lesions.tsv"))
    if not paths:
        raise SystemExit(f"{arm}: expected lesion tables under predictions/sub-*/anat, "
                         "found none")
    tables = []
    for path in paths:
        table = pd.read_csv(path, sep="\t")
        if not {"label", "probability"} <= set(table.columns):
            raise SystemExit(f"{path}: expected a predicted lesion table with columns label "
                             f"and probability, found {', '.join(table.columns)}")
        tables.append(table[["label", "probability"]].assign(
            subject=path.name.split("_")[0][4:]))
    return pd.concat(tables, ignore_index=True)


def _arms(crossval: Path) -> list[Path]:
    """The arm folders of a crossval run (``arm-*``)."""
    arms = sorted(p for p in crossval.glob("arm-*") if p.is_dir())
    if not arms:
        raise SystemExit(f"{crossval}: expected the arm-* folders of a crossval run, "
                         "found none")
    return arms


def score_strata(data: Path, crossval: Path) -> dict:
    """Out-of-fold scores of each arm by rim class and vein, and by lesion type."""
    truth = _tables(data)[["subject", "label", "rim", "vein", "type"]]
    out: dict = {}
    for arm in _arms(crossval):
        scores = _scores(arm)
        table = scores.merge(truth, on=["subject", "label"], how="inner")
        if len(table) < len(scores):
            raise SystemExit(f"{arm}: expected the lesions of {data}'s lesion tables, found "
                             f"{len(scores) - len(table)} of {len(scores)} predicted lesions "
                             "without a namesake there (predictions of other data?)")
        groups = {f"rim{'+' if rim else '-'}, {'with' if vein else 'without'} a vein":
                  (table["rim"] == rim) & (table["vein"] == vein)
                  for rim in (1, 0) for vein in (1, 0)}
        groups.update({f"rim{'+' if rim else '-'}, {kind}":
                       (table["rim"] == rim) & (table["type"] == kind)
                       for rim in (1, 0) for kind in sorted(table["type"].unique())})
        out[arm.name.removeprefix("arm-")] = {
            name: {"lesions": int(mask.sum()),
                   "lesions_at_least_0.5": int((table.loc[mask, "probability"] >= 0.5).sum()),
                   "at_least_0.5": round(float((table.loc[mask, "probability"] >= 0.5).mean()),
                                         3) if mask.any() else None,
                   "median_probability": round(float(table.loc[mask, "probability"].median()),
                                               3) if mask.any() else None}
            for name, mask in groups.items()}
    return out


def _held_out_shift(arm: Path) -> dict[str, float]:
    """Subject label -> the logit shift of the fold that held it out (a crossval fold
    holds out every subject it did not train on), from the arm's model folder
    (``arm-*/model/config.yaml``)."""
    from lesionkit.calibration import prior_shift
    from lesionkit.units import subjects_of

    config = arm / "model" / "config.yaml"
    if not config.is_file():
        raise SystemExit(f"{arm}: expected a crossval arm with model/config.yaml, found none")
    shift = {}
    for entry in yaml.safe_load(config.read_text()).get("folds", []):
        counts = entry.get("class_counts") or {}
        offset = prior_shift(counts.get("training"), counts.get("loss"), "sigmoid")
        if offset is None:
            raise SystemExit(f"{config}: expected class counts of data and loss in fold "
                             f"{entry.get('fold')}, found {counts or 'none'} (trained "
                             "before lesionkit recorded them?)")
        train = subjects_of([str(s) for s in entry.get("train", [])])
        shift.update({s: float(offset[0]) for s in _all_subjects(arm) if s not in set(train)})
    return shift


def _all_subjects(arm: Path) -> list[str]:
    """Subject labels of an arm's out-of-fold lesion tables."""
    return sorted({p.name.split("_")[0][4:] for p in
                   (arm / "predictions").glob("sub-*/anat/sub-*_lesions.tsv")})


def prior_comparison(data: Path, crossval: Path, n_resamples: int = 1000) -> dict:
    """Each arm's figures with the recorded prior shift (as predicted) and without it
    (``n_resamples``: of the subject bootstrap behind the task's summary)."""
    from lesionkit.tasks.rim_classify import lesion_summary as summary_of

    truth = _tables(data)[["subject", "label", "rim"]]
    out: dict = {}
    for arm in _arms(crossval):
        table = _scores(arm).merge(truth, on=["subject", "label"], how="inner")
        shift = _held_out_shift(arm)
        p = table["probability"].to_numpy(float).clip(1e-6, 1 - 1e-6)
        offset = table["subject"].map(shift).to_numpy(float)
        unshifted = 1 / (1 + np.exp(-(np.log(p / (1 - p)) - offset)))
        figures = {}
        for name, probability in (("as predicted", table["probability"].to_numpy(float)),
                                  ("shift taken out", unshifted)):
            rows = [{"participant_id": f"sub-{s}", "label": int(r), "probability": float(q)}
                    for s, r, q in zip(table["subject"], table["rim"], probability,
                                       strict=True)]
            summary = summary_of(rows, n_resamples=n_resamples)
            figures[name] = {
                **{k: round(summary[k]["estimate"], 4)
                   for k in ("roc_auc", "pr_auc", "pauc_mcclish", "brier")},
                **{f"{k}_{m}": round(summary[k][m], 3) for k in ("count_sum",
                                                                 "count_above_half")
                   for m in ("mse", "r") if m in summary[k]},
                "sum_of_probabilities": round(float(probability.sum()), 2),
                "rim_positive": int(table["rim"].sum())}
        out[arm.name.removeprefix("arm-")] = {
            **figures, "shift_per_fold": sorted({round(v, 3) for v in shift.values()})}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("lesions", "qsm", "scores", "prior"))
    parser.add_argument("data", type=Path, help="a rim-classify phantom (lesionkit simulate)")
    parser.add_argument("--subjects", help="comma-separated labels (default: all)")
    parser.add_argument("--crossval", type=Path,
                        help="scores, prior: a lesionkit crossval folder")
    args = parser.parse_args()
    subjects = args.subjects.split(",") if args.subjects else None
    if args.what == "lesions":
        result = lesion_summary(args.data, subjects)
    elif args.what in ("scores", "prior"):
        if args.crossval is None:
            parser.error(f"{args.what} needs --crossval")
        result = (score_strata if args.what == "scores" else prior_comparison)(
            args.data, args.crossval)
    else:
        result = qsm_values(args.data, subjects or sorted(_tables(args.data)["subject"].unique()))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
