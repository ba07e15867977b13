"""Real-scan check of per-lesion tables: a lesion label map on another grid than the images
gets its lesion centres on the model's grid, where patches and inference look for them.

For one patient of a folder laid out as ``../shared/realdata`` (``patientNN/study2_FLAIR``
and ``patientNN/gt.nii.gz``, the lesion-change mask on the patient's common-space grid),
writes a one-subject BIDS dataset under ``--work``: the FLAIR, and the mask's connected
components as the lesion label map with a lesion table. It prepares rim-classify's subject
store with FLAIR as the only input (there is no real QSM) and prints how many lesion
centres fall inside their own lesion on the model grid, and how many would have with
centres taken in voxels of the label file::

    python scripts/check_lesion_grid.py ../shared/realdata/patient01 --work /tmp/grid
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from lesionkit.lesions import lesion_centres
from lesionkit.store import SubjectStore
from lesionkit.tasks import get_task
from lesionkit.tasks.rim_classify import TASK_INPUTS


def _description(folder: Path, **extra: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset_description.json").write_text(
        json.dumps({"Name": "lesion grid check", "BIDSVersion": "1.8.0", **extra}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patient", type=Path, help="patientNN folder (study2_FLAIR, gt)")
    parser.add_argument("--work", type=Path, required=True, help="folder to write into")
    args = parser.parse_args()
    root = args.work / args.patient.name
    shutil.rmtree(root, ignore_errors=True)
    _description(root)
    anat = root / "sub-01" / "anat"
    anat.mkdir(parents=True)
    shutil.copy(args.patient / "study2_FLAIR.nii.gz", anat / "sub-01_FLAIR.nii.gz")
    mask = nib.load(args.patient / "gt.nii.gz")
    labels, count = ndimage.label(np.asarray(mask.dataobj) > 0)
    derivatives = root / "derivatives" / "phantom"
    _description(derivatives, DatasetType="derivative",
                 GeneratedBy=[{"Name": "check_lesion_grid"}])
    lesions = derivatives / "sub-01" / "anat" / "sub-01_desc-lesions_dseg.nii.gz"
    lesions.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(labels.astype(np.int16), mask.affine), lesions)
    lesions.with_name("sub-01_desc-lesions_dseg.tsv").write_text(
        "label\trim\n" + "".join(f"{i}\t0\n" for i in range(1, count + 1)))

    task = replace(get_task("rim-classify"), inputs=TASK_INPUTS[1:], lesion_features=None)
    store = SubjectStore(root, task, root / "cache")
    store.prepare(["01"])
    grid = np.asarray(store.lesion_map("01"))
    table = store.lesions("01")
    old = lesion_centres(labels)

    def inside(centre: tuple[int, ...], label: int) -> bool:
        return (all(0 <= c < s for c, s in zip(centre, grid.shape, strict=True))
                and grid[tuple(centre)] == label)

    now = sum(inside(tuple(le["centre"]), le["label"]) for le in table)
    before = sum(inside(old[le["label"]], le["label"]) for le in table)
    print(f"{args.patient.name}: {count} lesions in the label file, {len(table)} on the model "
          f"grid {grid.shape}; centres inside their own lesion: {now}/{len(table)} "
          f"(in voxels of the label file: {before}/{len(table)})")


if __name__ == "__main__":
    main()
