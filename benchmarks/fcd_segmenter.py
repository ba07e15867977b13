"""Does an FCD segmenter trained on voxel masks tell held-out patients from controls?

The segmentation arm's stage network of fcd-classify (the classifier's ResNet as encoder,
a feature-pyramid decoder, ``batch-dice-bce``, 48^3 patches, 70 % centred on a lesion
voxel; ``lesionkit.tasks.fcd_classify.pretraining_task``) trained on the FLAIR of an
fcd-classify phantom with its FCD masks, then run on held-out subjects. Per held-out
subject: the lesion Dice at 0.33 and the highest probability inside the lesion (patients),
the volume marked outside the lesion and how much of it lies in grey matter (the
phantom's tissue maps), and subject scores a classifier could read from the map (mean of
the 20 highest probabilities in the brain, volume at 0.33, volume at 0.9), each with its
ROC AUC of patients against controls.

The held-out subjects are the last ``--held-out`` in the order of their labels as text
(on a 300-subject cohort: sub-40 to sub-99); of the others, ``--validation`` drawn with
seed 0 choose the epoch (early stopping), the rest train. Training stops after
``--minutes`` at the end of an epoch; a model folder that exists is only scored::

    lesionkit simulate fcd-classify data/fcd300 --subjects 300 --seed 8 --resolution 2
    OMP_NUM_THREADS=1 python benchmarks/fcd_segmenter.py data/fcd300 --model out/fcd-seg \\
        --minutes 60

Prints a JSON summary and writes ``MODEL-scores.tsv`` beside the model folder.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

#: Probability at which the map is read as lesion (``predict``'s default threshold).
THRESHOLD = 0.33
TOP = 20


def score_subject(probability: np.ndarray, brain: np.ndarray, grey: np.ndarray,
                  lesion: np.ndarray | None) -> dict[str, float | None]:
    """Scores of one subject's lesion probability map.

    Args:
        probability: (X, Y, Z) lesion probability.
        brain: (X, Y, Z) brain mask.
        grey: (X, Y, Z) grey-matter probability (0-1).
        lesion: (X, Y, Z) true lesion mask, or None for a control.
    """
    brain = brain > 0.5
    lesion = np.zeros_like(brain) if lesion is None else lesion > 0.5
    marked = (probability >= THRESHOLD) & brain
    outside = marked & ~lesion
    row: dict[str, float | None] = {
        "top20": float(np.sort(probability[brain])[::-1][:TOP].mean()),
        "volume_033": int(marked.sum()), "volume_09": int(((probability >= 0.9) & brain).sum()),
        "outside_lesion": int(outside.sum()),
        "outside_grey": float(grey[outside].mean()) if outside.any() else None,
        "dice": None, "lesion_peak": None}
    if lesion.any():
        from lesionkit.metrics.segmentation import dice

        row["dice"] = float(dice(marked, lesion))
        row["lesion_peak"] = float(probability[lesion].max())
    return row


def summary(rows: list[dict]) -> dict[str, object]:
    """ROC AUC of each subject score (patients against controls) and the lesion figures."""
    from sklearn.metrics import roc_auc_score

    patient = np.array([r["patient"] for r in rows])
    out: dict[str, object] = {"subjects": len(rows), "patients": int(patient.sum())}
    for key in ("top20", "volume_033", "volume_09"):
        out[f"auc_{key}"] = round(float(roc_auc_score(patient, [r[key] for r in rows])), 3)
    patients = [r for r in rows if r["patient"]]
    controls = [r for r in rows if not r["patient"]]
    out["dice_median"] = round(float(np.median([r["dice"] for r in patients])), 3)
    out["dice_mean"] = round(float(np.mean([r["dice"] for r in patients])), 3)
    out["lesion_peak_over_05"] = sum(r["lesion_peak"] >= 0.5 for r in patients)
    out["controls_marked_median_voxels"] = float(np.median([r["volume_033"] for r in controls]))
    grey = [r["outside_grey"] for r in rows if r["outside_grey"] is not None]
    out["outside_lesion_grey_probability_median"] = (
        round(float(np.median(grey)), 2) if grey else None)  # None: nothing marked
    return out


def phantom_files(data: Path, labels: list[str]) -> dict[str, dict[str, object]]:
    """Per held-out label: its group and the phantom's brain mask, grey-matter map and
    (patients) FCD mask; one line naming the first missing file or column otherwise."""
    import pandas as pd

    table = data / "participants.tsv"
    if not table.is_file():
        raise SystemExit(f"{table}: expected the participants.tsv of an fcd-classify "
                         "phantom, found no such file")
    participants = pd.read_csv(table, sep="\t", dtype=str)
    if not {"participant_id", "group"} <= set(participants.columns):
        raise SystemExit(f"{table}: expected columns participant_id and group, found "
                         f"{', '.join(participants.columns)}")
    groups = participants.set_index("participant_id")["group"]
    files: dict[str, dict[str, object]] = {}
    for label in labels:
        phantom = data / "derivatives" / "phantom" / f"sub-{label}" / "anat"
        group = groups.get(f"sub-{label}")
        if group not in ("patient", "control"):
            raise SystemExit(f"{table}: expected group patient or control for "
                             f"sub-{label}, found {group!r}")
        entry: dict[str, object] = {
            "patient": group == "patient",
            "brain": phantom / f"sub-{label}_desc-brain_mask.nii.gz",
            "grey": phantom / f"sub-{label}_label-GM_probseg.nii.gz",
            "lesion": phantom / f"sub-{label}_label-lesion_mask.nii.gz"}
        needed = ["brain", "grey"] + (["lesion"] if entry["patient"] else [])
        for key in needed:
            if not Path(entry[key]).is_file():
                raise SystemExit(f"{entry[key]}: expected the phantom's {key} map of a "
                                 "held-out subject (lesionkit simulate fcd-classify), "
                                 "found no such file")
        files[label] = entry
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="an fcd-classify phantom (lesionkit simulate)")
    parser.add_argument("--model", type=Path, required=True, help="model folder (new or trained)")
    parser.add_argument("--held-out", type=int, default=60)
    parser.add_argument("--validation", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()

    import nibabel as nib

    from lesionkit.infer import predict
    from lesionkit.io import write_tsv
    from lesionkit.tasks import get_task
    from lesionkit.tasks.fcd_classify import pretraining_task
    from lesionkit.training import train

    labels = sorted(p.name[4:] for p in args.data.glob("sub-*") if p.is_dir())
    if len(labels) <= args.held_out + args.validation:
        raise SystemExit(f"{args.data}: expected more than {args.held_out + args.validation} "
                         f"subjects (--held-out + --validation), found {len(labels)}")
    train_labels, held = labels[:-args.held_out], labels[-args.held_out:]
    files = phantom_files(args.data, held)
    fcd = replace(get_task("fcd-classify"), network="resnet10",
                  network_kwargs={"widen_factor": 0.5})
    stage = pretraining_task(fcd, 0, epochs=args.epochs)
    task = replace(stage, inputs=(fcd.inputs[0],), name="fcd-segmentation",
                   description="FCD II on FLAIR (benchmarks/fcd_segmenter.py)", patience=6,
                   initialise=None)
    validation = sorted(np.random.default_rng(0).choice(train_labels, args.validation,
                                                        replace=False).tolist())
    split = {"train": [s for s in train_labels if s not in validation],
             "validation": validation}
    if not (args.model / "config.yaml").exists():
        train(task, args.data, args.model, splits=[split], epochs=args.epochs, seed=0,
              device="cpu", max_minutes=args.minutes, progress=False)
    out = args.model.parent / f"{args.model.name}-predictions"
    predict(args.model, args.data, subjects=held, out_dir=out, device="cpu", progress=False,
            tta=1)
    rows = []
    for label in held:
        entry = files[label]
        patient = bool(entry["patient"])
        row = score_subject(
            nib.load(next(out.glob(f"sub-{label}/anat/*label-lesion*probseg.nii.gz"))).get_fdata(),
            nib.load(entry["brain"]).get_fdata(), nib.load(entry["grey"]).get_fdata(),
            nib.load(entry["lesion"]).get_fdata() if patient else None)
        rows.append({"participant_id": f"sub-{label}", "patient": int(patient), **row})
    write_tsv(rows, args.model.parent / f"{args.model.name}-scores.tsv")
    metrics = json.loads((args.model / "metrics.json").read_text())
    print(json.dumps({"training": metrics, **summary(rows)}, indent=1))


if __name__ == "__main__":
    main()
