"""Rebuild the phantom-trained models shipped inside the package (``make models``).

Each task module's ``SHIPPED_MODELS`` recipe is trained on a phantom cohort simulated
with seed 1000 and scored on its held-out subjects; the model folder (without resume
state) and its ``provenance.json`` replace ``src/lesionkit/shipped_models/NAME``::

    python scripts/train_models.py                       # every recipe
    python scripts/train_models.py --only enhance-r1     # one of them
    python scripts/train_models.py --work /tmp/models    # keep the cohorts elsewhere
    python scripts/train_models.py --workers 8           # 8 processes simulate and load
    python scripts/train_models.py --rescore             # score the shipped folders again

Weights are stored at half precision (float16). ``--rescore`` trains nothing: it stores a
shipped folder's weights at half precision where they are not yet, scores its held-out
subjects again and updates its provenance. Cohorts already simulated under ``--work``
are reused, so recipes of one cohort share it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Build the shipped models; print one summary block per model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="Names (tasks) of the models to rebuild.")
    parser.add_argument("--work", type=Path, default=ROOT / "models-work",
                        help="Scratch folder for the cohorts and full model folders.")
    parser.add_argument("--out", type=Path, default=ROOT / "src" / "lesionkit" / "shipped_models",
                        help="Folder receiving the shipped model folders.")
    parser.add_argument("--threads", type=int, default=None, help="Torch threads.")
    parser.add_argument("--workers", type=int, default=0,
                        help="Processes that simulate the cohorts and load training data.")
    parser.add_argument("--rescore", action="store_true",
                        help="Score the built folders again (weights at half precision) "
                             "instead of training.")
    args = parser.parse_args(argv)
    if args.workers < 0:
        print(f"error: --workers: expected 0 or more, found {args.workers}", file=sys.stderr)
        return 2

    from lesionkit.build_models import build_model, rescore_model
    from lesionkit.shipped import describe
    from lesionkit.tasks import SHIPPED_RECIPES
    from lesionkit.threads import use_threads

    use_threads(args.threads, args.workers)
    import torch

    known = [r.task for r in SHIPPED_RECIPES]
    unknown = sorted(set(args.only or ()) - set(known))
    if unknown:
        print(f"error: --only: expected some of {', '.join(known)}, found {', '.join(unknown)}",
              file=sys.stderr)
        return 2
    command = " ".join(["python scripts/train_models.py", *(argv or sys.argv[1:])])
    for recipe in SHIPPED_RECIPES:
        if args.only and recipe.task not in args.only:
            continue
        start = time.perf_counter()
        if args.rescore:
            try:
                rescore_model(recipe, args.out, args.work, command=command,
                              workers=args.workers)
            except ValueError as error:  # no built folder, or another cohort
                print(f"error: --rescore: {error}", file=sys.stderr)
                return 1
        else:
            build_model(recipe, args.out, args.work, threads=torch.get_num_threads(),
                        command=command, workers=args.workers)
        print(f"{recipe.task}: {time.perf_counter() - start:.0f} s in all", flush=True)
        print("\n".join(describe(recipe.task, args.out)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
