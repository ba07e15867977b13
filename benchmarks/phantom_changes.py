"""``lesionkit changes`` on phantom subjects with a second visit, against the change truth.

A phantom cohort with ``--follow-up`` (:mod:`lesionkit.simulate.followup`: lesions that
stay, grow, shrink, resolve or appear, the head moved between visits) is predicted with a
lesion model, read with ``lesionkit changes`` and scored per kind of change: a true
change (a 26-connected component of one code of ``label-change_dseg``) is found when a
call of the same direction (new or enlarging for new and enlarging; shrinking or
resolved for shrinking and resolved) touches it; a call touching no true change of its
direction is a false call. Every figure is a **phantom** figure.

Run::

    python benchmarks/phantom_changes.py --work phantom-changes --subjects 8 \\
        --model flair-lesion-dr
    python benchmarks/phantom_changes.py --work phantom-changes-05 \\
        --data phantom-changes/data --min-change-ml 0.05
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from lesionkit.changes import CHANGE_CODES, INCREASES, KINDS, score_changes


def _lesionkit() -> str:
    beside = Path(sys.executable).parent / "lesionkit"
    return str(beside) if beside.exists() else "lesionkit"


def score_subject(truth_path: Path, calls_path: Path) -> dict[str, Any]:
    """Per kind: true changes and those found; calls by direction, true and false
    (:func:`lesionkit.changes.score_changes`, as ``lesionkit changes --truth`` scores
    them); and the false calls' sizes and z."""
    truth = np.asarray(nib.load(truth_path).dataobj).astype(np.int64)
    calls = np.asarray(nib.load(calls_path).dataobj).astype(np.int64)
    table = calls_path.with_name(calls_path.name.removesuffix(".nii.gz") + ".tsv")
    with table.open(newline="") as handle:
        listed = list(csv.DictReader(handle, delimiter="\t"))
    kinds = {int(r["label"]): r["change"] for r in listed}
    scores = score_changes(calls, kinds, truth, coded=True)
    row: dict[str, Any] = {k: v for k, v in scores.items()
                           if k.endswith(("_true", "_found", "_calls", "_false"))
                           and k != "false_calls"}
    row["false_calls"] = [
        {"volume_mm3": float(r["volume_mm3"]), "voxels": int((calls == int(r["label"])).sum()),
         "mean_z": float(r["mean_z"])}
        for r in listed
        if not np.isin(truth[calls == int(r["label"])],
                       [c for k, c in CHANGE_CODES.items()
                        if (k in INCREASES) == (r["change"] in INCREASES)]).any()]
    return row


def registration_error(truth_path: Path, calls_path: Path) -> float:
    """Mean distance (mm) over the follow-up's field of view between where the estimated rigid
    transform (``BaselineToFollowUp`` of the calls' sidecar) and the true head motion
    (``HeadMotion`` of the truth's sidecar) take a first-visit point."""
    def sidecar(path: Path) -> dict[str, Any]:
        return json.loads(path.with_name(path.name.removesuffix(".nii.gz") + ".json")
                          .read_text())

    true = np.asarray(sidecar(truth_path)["HeadMotion"])
    estimated = np.asarray(sidecar(calls_path)["BaselineToFollowUp"])
    image = nib.load(truth_path)
    points = np.argwhere(np.ones(image.shape[:3], bool))[::97]
    world = np.c_[points, np.ones(len(points))] @ image.affine.T
    return round(float(np.linalg.norm((world @ (estimated - true).T)[:, :3], axis=1).mean()),
                 3)


def run(work: Path, subjects: int, seed: int, model: str, lesionkit: str,
        min_change_ml: float | None = None, data: Path | None = None) -> dict[str, Any]:
    """Simulate (unless ``data`` or ``work/data`` exists), predict, read the changes
    (``lesionkit changes``, its default smallest change unless ``min_change_ml``) and score
    them; ``work/scores.json``."""
    data, predictions = data or work / "data", work / "predictions"
    if not data.exists():
        subprocess.run([lesionkit, "simulate", "mrf-lesion", str(data), "--subjects",
                        str(subjects), "--seed", str(seed), "--resolution", "2",
                        "--follow-up"], check=True)
    subprocess.run([lesionkit, "predict", model, str(data), "--out-dir", str(predictions)],
                   check=True)
    subprocess.run([lesionkit, "changes", str(predictions), *(
        ["--min-change-ml", f"{min_change_ml:g}"] if min_change_ml is not None else [])],
        check=True)
    rows = []
    for subject in sorted(p.name for p in data.glob("sub-*")):
        truth = next((data / "derivatives" / "phantom" / subject / "ses-2").rglob(
            "*_label-change_dseg.nii.gz"))
        calls = next((predictions / subject / "ses-2").rglob("*change_dseg.nii.gz"))
        rows.append({"subject": subject, **score_subject(truth, calls),
                     "registration_error_mm": registration_error(truth, calls)})
    total = {key: sum(r[key] for r in rows) for key in rows[0]
             if key not in ("subject", "registration_error_mm", "false_calls")}
    result = {"model": model, "subjects": subjects, "seed": seed, "data": str(data),
              "min_change_ml": min_change_ml, "rows": rows, "total": total}
    (work / "scores.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--seed", type=int, default=40)
    parser.add_argument("--model", default="flair-lesion-dr")
    parser.add_argument("--lesionkit", default=_lesionkit())
    parser.add_argument("--min-change-ml", type=float, default=None,
                        help="lesionkit changes --min-change-ml (default: its own)")
    parser.add_argument("--data", type=Path, default=None,
                        help="An existing phantom with --follow-up (default: WORK/data)")
    args = parser.parse_args()
    result = run(args.work, args.subjects, args.seed, args.model, args.lesionkit,
                 args.min_change_ml, args.data)
    total = result["total"]
    for kind in KINDS:
        print(f"{kind}: {total[f'{kind}_found']} of {total[f'{kind}_true']} found")
    for name in ("increase", "decrease"):
        print(f"{name} calls: {total[f'{name}_calls']}, false {total[f'{name}_false']}")
    errors = [r["registration_error_mm"] for r in result["rows"]]
    print(f"registration error: {min(errors):.2f}-{max(errors):.2f} mm")
    false = [c for r in result["rows"] for c in r["false_calls"]]
    if false:
        voxels = np.array([c["voxels"] for c in false])
        print(f"false calls: {len(false)}, {np.mean(voxels <= 4):.0%} of at most 4 voxels, "
              f"median {np.median([c['volume_mm3'] for c in false]):g} mm^3, median |z| "
              f"{np.median([abs(c['mean_z']) for c in false]):.1f}")


if __name__ == "__main__":
    main()
