"""How far a location-blind voxel-wise detector sees the phantom's FCDs, with and without
registration to the MNI152 template.

For every subject of an ``fcd-classify`` phantom dataset the FLAIR, z-scored inside the
brain and smoothed (Gaussian, ``--sigma`` voxels), is compared voxel by voxel with the
controls (mean and standard deviation of every other control at that voxel); a subject's
score is the largest z inside the brain mask common to all subjects, eroded by one voxel.
The ROC AUC of that score (patients vs controls) says how visible the lesions are to a
comparison with normal brains, once on the subjects' own grids (resampled onto the first
subject's, so no registration) and once after registering each subject's T1w to the
MNI152 2009 T1w template of nilearn at 2 mm (dipy: centre of mass, translation, affine,
then SyN; mutual information) and moving its FLAIR alike. Registration takes 25-45 s per
subject on one core; the warped volumes are cached under ``--work``.

Usage::

    lesionkit simulate fcd-classify data/fcd120 --subjects 120 --seed 1 --resolution 2
    python benchmarks/fcd_voxelwise.py data/fcd120 --work out/fcd-voxelwise --subjects 60

Prints both AUCs and the mean z inside the lesion of each patient after registration;
writes ``WORK/voxelwise.json``. With ``--write-bids DIR`` it skips the scores and writes
the registered subjects as a BIDS dataset on the template's grid instead (FLAIR masked to
the brain, ``derivatives/phantom`` brain and lesion masks, ``participants.tsv``): the
input of ``lesionkit crossval fcd-classify DIR OUT --arms scratch,normative``::

    python benchmarks/fcd_voxelwise.py data/fcd120 --work out/fcd-voxelwise --subjects 120 \
        --write-bids data/fcd120-mni

With ``--model-dir MODEL`` (a model folder of any ``normative*`` arm, trained on that
registered dataset) it scores the registered subjects given as ``data``
out of fold instead: each subject's largest z-score inside its brain mask, the z-score
computed by the fold that did not train on it, from that fold's training controls (the
network's own normative maps, nothing learned): the comparison with normal brains of the
arm, on the arm's folds, without the network. Writes ``WORK/out-of-fold.json``::

    python benchmarks/fcd_voxelwise.py data/fcd120-mni --work out/fcd-voxelwise \
        --subjects 120 --model-dir out/fcd120-mni/arm-normative-peak/model
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage


def _paths(root: Path, subject: str) -> dict[str, Path]:
    anat, truth = root / subject / "anat", root / "derivatives" / "phantom" / subject / "anat"
    files = {"t1w": anat / f"{subject}_T1w.nii.gz", "flair": anat / f"{subject}_FLAIR.nii.gz",
             "brain": truth / f"{subject}_desc-brain_mask.nii.gz",
             "lesion": truth / f"{subject}_label-lesion_mask.nii.gz"}
    for name in ("t1w", "flair", "brain"):
        if not files[name].is_file():
            raise SystemExit(f"{files[name]}: expected the {name} image of an fcd-classify "
                             "phantom subject, found no such file")
    return files


def register(root: Path, subject: str, cache: Path) -> dict[str, np.ndarray]:
    """FLAIR, brain and lesion masks of ``subject`` on the MNI152 2 mm grid (cached)."""
    path = cache / f"{subject}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return dict(stored)
    from dipy.align import affine_registration, syn_registration
    from nilearn import datasets

    template = datasets.load_mni152_template(resolution=2)
    static = template.get_fdata() * (datasets.load_mni152_brain_mask(resolution=2).get_fdata()
                                     > 0)
    files = _paths(root, subject)
    t1w = nib.load(files["t1w"])
    brain = nib.load(files["brain"]).get_fdata() > 0.5
    moving = t1w.get_fdata() * brain
    _, prealign = affine_registration(
        moving, static, moving_affine=t1w.affine, static_affine=template.affine, nbins=32,
        pipeline=["center_of_mass", "translation", "affine"], level_iters=[100, 50, 10],
        sigmas=[3, 1, 0], factors=[4, 2, 1])
    _, mapping = syn_registration(moving, static, moving_affine=t1w.affine,
                                  static_affine=template.affine, prealign=prealign,
                                  level_iters=[10, 10, 5])
    lesion = (nib.load(files["lesion"]).get_fdata() if files["lesion"].is_file()
              else np.zeros(brain.shape))
    out = {"flair": mapping.transform(nib.load(files["flair"]).get_fdata() * brain
                                      ).astype(np.float32),
           "brain": mapping.transform(brain.astype(float)) > 0.5,
           "lesion": (mapping.transform(lesion, interpolation="nearest") > 0.5
                      if lesion.any() else np.zeros(static.shape, bool))}
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial.npz")
    np.savez_compressed(partial, **out)
    partial.replace(path)  # an interrupted run leaves no half-written cache entry
    return out


def native(root: Path, subject: str, reference: nib.Nifti1Image) -> dict[str, np.ndarray]:
    """FLAIR, brain and lesion masks of ``subject`` on the grid of ``reference``."""
    from nibabel.processing import resample_from_to

    files = _paths(root, subject)
    brain = nib.load(files["brain"])
    out = {"flair": resample_from_to(nib.load(files["flair"]), reference, order=1).get_fdata(),
           "brain": resample_from_to(brain, reference, order=0).get_fdata() > 0.5}
    out["lesion"] = (resample_from_to(nib.load(files["lesion"]), reference, order=0).get_fdata()
                     > 0.5 if files["lesion"].is_file() else np.zeros(out["brain"].shape, bool))
    return out


def scores(volumes: list[dict[str, np.ndarray]], patients: np.ndarray, sigma: float
           ) -> tuple[np.ndarray, list[float]]:
    """Largest voxel-wise z against the other controls per subject; mean z in each lesion."""
    common = ndimage.binary_erosion(np.all([v["brain"] for v in volumes], axis=0))
    smoothed = []
    for v in volumes:
        inside = v["brain"]
        x = (v["flair"] - np.median(v["flair"][inside])) / v["flair"][inside].std()
        weight = ndimage.gaussian_filter(inside.astype(float), sigma)
        smoothed.append(ndimage.gaussian_filter(np.where(inside, x, 0.0), sigma)
                        / np.maximum(weight, 1e-3))
    stack = np.stack(smoothed).astype(np.float32)
    controls = np.flatnonzero(~patients)
    best, in_lesion = np.zeros(len(volumes)), []
    for i, v in enumerate(volumes):
        others = controls[controls != i]
        z = (stack[i] - stack[others].mean(0)) / (stack[others].std(0) + 0.05)
        best[i] = z[common].max()
        if patients[i] and (v["lesion"] & common).any():
            in_lesion.append(float(z[v["lesion"] & common].mean()))
    return best, in_lesion


def out_of_fold_peaks(root: Path, subjects: list[str], model_dir: Path) -> list[float]:
    """Largest z-score inside each subject's brain mask, from the normative maps of the
    fold of ``model_dir`` that did not train on it."""
    import torch

    from lesionkit.bids import BIDSDataset
    from lesionkit.data import load_subject, prediction_specs
    from lesionkit.infer import folds_for, normalised_input
    from lesionkit.model_folder import load_model

    model = load_model(model_dir, "cpu")
    task, dataset = model.task, BIDSDataset(root)
    if not all(hasattr(f.network, "deviation") for f in model.folds):
        raise SystemExit(f"{model_dir}: expected the model folder of a normative arm "
                         f"(normative maps in every fold), found network {task.network}")
    peaks = []
    for subject in subjects:
        label = subject.removeprefix("sub-")
        loaded = load_subject(dataset, label, task, prediction_specs(task))
        inputs = {s.key: loaded[s.key].data.numpy() for s in task.prediction_inputs}
        brain = loaded["mask"].data[0].numpy() > 0.5
        held_out = folds_for(model, label)
        if len(held_out) != 1:
            raise SystemExit(f"{model_dir}: expected exactly one fold that did not train on "
                             f"sub-{label} (a cross-validation model of {root}), found "
                             f"{len(held_out)}")
        fold = held_out[0]
        with torch.inference_mode():
            z = fold.network.deviation(normalised_input(fold, inputs, task.prediction_inputs,
                                                        "cpu"))
        peaks.append(float(z[0, 0].numpy()[brain].max()))
    return peaks


def write_bids(root: Path, subjects: list[str], cache: Path, out: Path) -> None:
    """The registered subjects as a BIDS dataset on the MNI152 2 mm grid."""
    import shutil

    from nilearn import datasets

    affine = datasets.load_mni152_template(resolution=2).affine
    for subject in subjects:
        volumes = register(root, subject, cache)
        anat, truth = out / subject / "anat", out / "derivatives" / "phantom" / subject / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        truth.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(volumes["flair"].astype(np.float32), affine),
                 anat / f"{subject}_FLAIR.nii.gz")
        nib.save(nib.Nifti1Image(volumes["brain"].astype(np.uint8), affine),
                 truth / f"{subject}_desc-brain_mask.nii.gz")
        if volumes["lesion"].any():
            nib.save(nib.Nifti1Image(volumes["lesion"].astype(np.uint8), affine),
                     truth / f"{subject}_label-lesion_mask.nii.gz")
    description = json.loads((root / "dataset_description.json").read_text())
    description["Name"] = f"{description.get('Name', root.name)}, registered to MNI152 (2 mm)"
    (out / "dataset_description.json").write_text(json.dumps(description, indent=1))
    phantom = root / "derivatives" / "phantom" / "dataset_description.json"
    if phantom.is_file():
        shutil.copy(phantom, out / "derivatives" / "phantom" / "dataset_description.json")
    import pandas as pd

    table = pd.read_csv(root / "participants.tsv", sep="\t", dtype=str)
    table[table["participant_id"].isin(subjects)].to_csv(out / "participants.tsv", sep="\t",
                                                         index=False, na_rep="n/a")
    print(f"wrote {len(subjects)} registered subjects to {out}")


def main() -> None:
    """Register, score and print the AUCs."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="fcd-classify phantom dataset")
    parser.add_argument("--work", type=Path, required=True, help="cache and output folder")
    parser.add_argument("--subjects", type=int, default=60, help="first N subjects")
    parser.add_argument("--sigma", type=float, default=1.0, help="smoothing (voxels)")
    parser.add_argument("--write-bids", type=Path, help="write the registered subjects here "
                        "as a BIDS dataset instead of scoring")
    parser.add_argument("--model-dir", type=Path, help="score the (registered) subjects out "
                        "of fold with this normative arm's fitted maps instead")
    args = parser.parse_args()
    participants = args.data / "participants.tsv"
    if not participants.is_file():
        raise SystemExit(f"{participants}: expected the participants table of an "
                         "fcd-classify phantom dataset, found no such file")
    table = pd.read_csv(participants, sep="\t").iloc[:args.subjects]
    subjects = list(table["participant_id"])
    patients = (table["group"] == "patient").to_numpy()
    if args.write_bids:
        write_bids(args.data, subjects, args.work / "registered", args.write_bids)
        return
    if args.model_dir:
        peaks = out_of_fold_peaks(args.data, subjects, args.model_dir)
        result = {"subjects": len(subjects), "model": str(args.model_dir),
                  "auc": float(roc_auc_score(patients, peaks)),
                  "peak_z": dict(zip(subjects, peaks, strict=True))}
        print(f"out of fold, largest z of the fold's normative maps: AUC {result['auc']:.3f}; "
              f"largest z in controls {np.median(np.array(peaks)[~patients]):.1f} (median), "
              f"in patients {np.median(np.array(peaks)[patients]):.1f}")
        args.work.mkdir(parents=True, exist_ok=True)
        (args.work / "out-of-fold.json").write_text(json.dumps(result, indent=1))
        return
    reference = nib.load(_paths(args.data, subjects[0])["flair"])
    result = {"subjects": len(subjects), "patients": int(patients.sum()), "sigma": args.sigma}
    for name, load in (("native grid", lambda s: native(args.data, s, reference)),
                       ("registered to MNI152", lambda s: register(args.data, s,
                                                                   args.work / "registered"))):
        best, in_lesion = scores([load(s) for s in subjects], patients, args.sigma)
        result[name] = {"auc": float(roc_auc_score(patients, best)),
                        "control_max_z": [float(b) for b in best[~patients]],
                        "lesion_mean_z": in_lesion}
        print(f"{name}: AUC {result[name]['auc']:.3f}; largest z in controls "
              f"{np.median(best[~patients]):.1f} (median); mean z in the lesions "
              f"{np.median(in_lesion):.1f} (median)", flush=True)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "voxelwise.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
