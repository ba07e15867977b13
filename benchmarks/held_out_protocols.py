"""Helpers of the held-out-protocol experiment (docs/results.md, "Held-out protocols").

Four subcommands, each printing what the document quotes:

- ``mix OUT FIXED RANDOMISED [--count N --offset K]``: one BIDS dataset of sub-01..10 of
  FIXED and sub-01..10 of RANDOMISED as sub-21..30 (N subjects of each, the randomised
  ones renumbered from K + 1; symbolic links to the files, raw and ``derivatives/phantom``;
  the two ``participants.tsv`` merged), for ``lesionkit train ... --subjects``;
- ``contrast DATA MODEL [SUBJECTS]``: per subject, the median FLAIR of the lesion voxels
  in the robust z-score the model reads (images loaded as prediction loads them, at the
  model's voxel size);
- ``ghost SOURCE OUT SUBJECTS``: a copy of SOURCE holding SUBJECTS whose FLAIR gets
  TorchIO ``Ghosting`` (5 ghosts along the first axis, intensity 0.318, the draw of the
  randomised sub-10), for ``lesionkit predict`` / ``evaluate``;
- ``paired A B``: Wilcoxon signed-rank test between the lesion Dice of two
  ``*_metrics.tsv`` tables over their common subjects (method "network").

Run: ``python benchmarks/held_out_protocols.py contrast rand model-dr10``.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import numpy as np


def mix(out: Path, fixed: Path, randomised: Path, count: int = 10, offset: int = 20) -> None:
    """Link ``count`` subjects of each dataset into ``out`` (randomised ones renumbered)."""
    out.mkdir(parents=True)
    (out / "derivatives" / "phantom").mkdir(parents=True)
    shutil.copy(fixed / "dataset_description.json", out)
    shutil.copy(fixed / "derivatives" / "phantom" / "dataset_description.json",
                out / "derivatives" / "phantom")
    header, rows = None, []
    for source, shift in ((fixed, 0), (randomised, offset)):
        lines = (source / "participants.tsv").read_text().splitlines()
        header = header or lines[0]
        table = {line.split("\t")[0]: line for line in lines[1:]}
        for number in range(1, count + 1):
            old, new = f"sub-{number:02d}", f"sub-{number + shift:02d}"
            for base in (Path(), Path("derivatives") / "phantom"):
                for path in sorted((source / base / old).rglob("*")):
                    if path.is_file():
                        target = out / base / new / str(path.relative_to(source / base / old)
                                                        ).replace(old, new)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        os.symlink(path.resolve(), target)
            rows.append(new + table[old][len(old):])
    (out / "participants.tsv").write_text("\n".join([header, *rows]) + "\n")
    print(f"wrote {out}: {len(rows)} subjects")


def contrast(data: Path, model: Path, subjects: list[str] | None) -> None:
    """Median FLAIR z of the lesion voxels per subject, on the model's grid."""
    from lesionkit.bids import BIDSDataset
    from lesionkit.data import load_subject
    from lesionkit.model_folder import read_config, task_from_config

    task = task_from_config(read_config(model), model / "config.yaml")
    dataset = BIDSDataset(data)
    lesion = next(s for s in task.targets if s.key == "lesion")
    for name in subjects or dataset.subjects():
        subject = load_subject(dataset, name, task, (*task.inputs, task.mask, lesion))
        flair = subject["flair"].data[0].numpy()
        inside = subject["lesion"].data[0].numpy() > 0.5
        print(f"sub-{name}: {int(inside.sum())} lesion voxels, median FLAIR z "
              f"{np.median(flair[inside]):.2f}")


def ghost(source: Path, out: Path, subjects: list[str]) -> None:
    """Copy ``subjects`` of ``source`` to ``out`` with ghosting added to each FLAIR."""
    import nibabel as nib
    import torch
    import torchio as tio

    keep = {f"sub-{s}" for s in subjects}
    shutil.copytree(source, out, ignore=lambda folder, names: [
        n for n in names if n.startswith("sub-") and n not in keep and Path(folder) in (
            source, source / "derivatives" / "phantom")])
    for name in subjects:
        path = out / f"sub-{name}" / "anat" / f"sub-{name}_FLAIR.nii.gz"
        image = nib.load(path)
        data = torch.from_numpy(np.asarray(image.dataobj, dtype=np.float32)[None])
        ghosted = tio.Ghosting(5, 0, 0.318, None)(tio.ScalarImage(tensor=data,
                                                                  affine=image.affine))
        nib.save(nib.Nifti1Image(ghosted.data[0].numpy(), image.affine, image.header), path)
    print(f"wrote {out}: FLAIR of {', '.join(subjects)} with 5 ghosts of intensity 0.318")


def paired(first: Path, second: Path) -> None:
    """Wilcoxon signed-rank test of lesion Dice, ``first`` against ``second``."""
    import pandas as pd
    from scipy.stats import wilcoxon

    def dice(path: Path) -> pd.Series:
        table = pd.read_csv(path, sep="\t")
        return table[table["method"] == "network"].set_index("participant_id")["lesion_dice"]

    a, b = dice(first), dice(second)
    common = a.index.intersection(b.index)
    test = wilcoxon(a[common], b[common])
    print(f"{len(common)} subjects: mean Dice {a[common].mean():.3f} vs {b[common].mean():.3f}, "
          f"Wilcoxon p {test.pvalue:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("mix")
    for name in ("out", "fixed", "randomised"):
        one.add_argument(name, type=Path)
    one.add_argument("--count", type=int, default=10, help="subjects taken from each dataset")
    one.add_argument("--offset", type=int, default=20,
                     help="added to the randomised subjects' numbers")
    two = commands.add_parser("contrast")
    two.add_argument("data", type=Path)
    two.add_argument("model", type=Path)
    two.add_argument("subjects", nargs="?", help="comma-separated (default: all)")
    three = commands.add_parser("ghost")
    for name in ("source", "out"):
        three.add_argument(name, type=Path)
    three.add_argument("subjects", help="comma-separated")
    four = commands.add_parser("paired")
    four.add_argument("first", type=Path)
    four.add_argument("second", type=Path)
    args = parser.parse_args()
    if args.command == "mix":
        mix(args.out, args.fixed, args.randomised, args.count, args.offset)
    elif args.command == "contrast":
        contrast(args.data, args.model, args.subjects.split(",") if args.subjects else None)
    elif args.command == "ghost":
        ghost(args.source, args.out, args.subjects.split(","))
    else:
        paired(args.first, args.second)


if __name__ == "__main__":
    main()
