"""enhance-r1: losses aimed at sharper edges, trained and scored on one phantom split.

The table "Losses aimed at the edges" in docs/results.md (section "A sharpness score
that noise does not raise") comes from this script: the shipped recipe's cohort (seed
1000, 16 subjects at 2 mm), the small U-Net (16-32-64, interpolating decoder, Adam
1e-3), 8 epochs of 512 patches on the controls 01, 03, 04, 06, 07, 09, 10, 12 and 13,
held-out subjects 14-16 predicted with the task's flips and scored by the task's
``evaluate`` (RMSE, SSIM, sharpness, white-matter texture, ...). One thread; about 5-8
minutes per variant on a 2-core CPU.

Variants (``--variant``):

- ``gradient-l1``: the task's ``mse+gradient-l1``; ``gradient-l1-x3``: its gradient term
  three times as heavy;
- ``edge-weighted``: squared error weighted by 1 + 4 x the target's local gradient
  magnitude over its mean, plus the gradient term;
- ``smoothed-energy-W`` (W = 1, 5, 20): ``mse+gradient-l1`` plus W x the distance of the
  local edge energies (window 5) of the images smoothed over 3^3 voxels;
- ``edge-energy``: the engine's ``mse+edge-energy`` (window 3, no smoothing);
- ``adversarial-W`` (W = 0.01, 0.05, 0.2): ``mse+gradient-l1`` plus W x the GAN loss of a
  3D patch discriminator (MONAI's) trained alongside (``AdversarialLoss``).

Other training choices (docs/results.md, "Cleaner targets, the input passed through and an
adversarial term"): ``--target truth`` trains toward the phantom's noise-free 7T map,
``--on-input`` adds the network's output to its input map, ``--init NAME`` starts from a
model folder or a shipped model (``enhance-r1``), ``--last-epoch`` keeps the last epoch's
weights (no validation split).

The experimental losses live here, not in the engine's loss table: they were tried and
not kept.

Run: ``python benchmarks/enhance_r1_losses.py OUT --variant edge-energy`` (simulates the
cohort into ``OUT/er16`` once; writes ``OUT/VARIANT/rows.json`` and prints the means);
``--figure PNG`` draws the slices of docs/results-enhance-r1-edge-energy.png from the
``gradient-l1-x3`` and ``edge-energy`` runs (``--figure-runs`` for others).

Longer runs on a GPU (docs/results.md, "Longer training on more subjects"): ``--subjects
100`` simulates 100 subjects of the same seed (the first 16 are those above) and trains on
every control but the held-out three, ``--full`` uses the task's four-level U-Net,
``--patches``, ``--device cuda``, ``--workers`` (simulation and patch loading) and
``--max-minutes`` (a wall-time cap on training) size the run; ``--name`` its folder.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from lesionkit import losses, models, training

TRAIN = ["01", "03", "04", "06", "07", "09", "10", "12", "13"]
HELD_OUT = ["14", "15", "16"]
SMALL_UNET = {"channels": (16, 32, 64), "strides": (2, 2), "norm": "batch",
              "upsample": "nontrainable"}


class EdgeWeightedLoss(nn.Module):
    """Squared error weighted by 1 + ``alpha`` x the target's local gradient (sum of the
    absolute forward differences, 3^3 mean) over its mean, plus the gradient-L1 term."""

    def __init__(self, alpha: float = 4.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pad = nn.functional.pad
        local = sum(pad(target.diff(dim=axis).abs(), [0, 0] * (4 - axis) + [0, 1])
                    for axis in range(2, 5))
        local = nn.functional.avg_pool3d(local, 3, 1, 1)
        weight = 1 + self.alpha * local / local.mean().clamp_min(1e-6)
        error = prediction - target
        gradients = torch.stack([error.diff(dim=axis).abs().mean() for axis in range(2, 5)])
        return (weight * error.square()).mean() / weight.mean() + gradients.mean()


class SmoothedEdgeEnergyLoss(losses.EdgeEnergyLoss):
    """``mse+edge-energy`` with the energies taken of the images smoothed over 3^3
    voxels (box mean), over a window of 5."""

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        def smooth(x: torch.Tensor) -> torch.Tensor:
            return nn.functional.avg_pool3d(x, 3, 1, 1, count_include_pad=False)

        energy = (losses.edge_energy(smooth(prediction), self.window)
                  - losses.edge_energy(smooth(target), self.window)).abs().mean()
        base = losses.GradientL1Loss.forward(self, prediction, target)
        return base + self.energy_weight * energy


def unet_on_input(in_channels: int, out_channels: int, **kwargs) -> nn.Module:
    """The task's U-Net (``**kwargs`` its options) whose output is added to its input."""
    return models.InputResidual(models.unet(in_channels, out_channels, **kwargs))


class AdversarialLoss(losses.GradientL1Loss):
    """``mse+gradient-l1`` plus ``adversarial_weight`` x the non-saturating GAN loss of a
    3D patch discriminator (MONAI's ``PatchDiscriminator``: convolutions of 16, 32 and 64
    features, instance normalisation, LeakyReLU 0.2; ``PatchAdversarialLoss`` with binary
    cross-entropy), which this module trains itself (Adam 2e-4, betas 0.5 and 0.999) on
    every training call, on the target against the detached prediction; the network's
    optimiser never sees its weights. Validation calls score the voxel terms."""

    def __init__(self, adversarial_weight: float = 0.05) -> None:
        from monai.losses import PatchAdversarialLoss
        from monai.networks.nets import PatchDiscriminator

        super().__init__()
        self.adversarial_weight = adversarial_weight
        self.discriminator = PatchDiscriminator(spatial_dims=3, channels=16, in_channels=1,
                                                num_layers_d=2, norm="INSTANCE")
        self.adversarial = PatchAdversarialLoss(criterion="bce")
        self._optimiser: torch.optim.Optimizer | None = None

    def _judge(self, image: torch.Tensor) -> torch.Tensor:
        """The discriminator's patch logits (its last output) for ``image``."""
        return self.discriminator(image)[-1]

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        base = super().forward(prediction, target)
        if not (self.training and torch.is_grad_enabled()):
            return base
        if self._optimiser is None:
            self._optimiser = torch.optim.Adam(self.discriminator.parameters(), lr=2e-4,
                                               betas=(0.5, 0.999))
        d_loss = (self.adversarial(self._judge(target), True, for_discriminator=True)
                  + self.adversarial(self._judge(prediction.detach()), False,
                                     for_discriminator=True))
        self._optimiser.zero_grad()
        d_loss.backward()
        self._optimiser.step()
        g_loss = self.adversarial(self._judge(prediction), True, for_discriminator=False)
        return base + self.adversarial_weight * g_loss


VARIANTS = {
    "gradient-l1": losses.GradientL1Loss,
    "gradient-l1-x3": functools.partial(losses.GradientL1Loss, weight=3.0),
    "edge-weighted": EdgeWeightedLoss,
    **{f"smoothed-energy-{w}": functools.partial(SmoothedEdgeEnergyLoss, energy_weight=w,
                                                 window=5) for w in (1, 5, 20)},
    "edge-energy": losses.EdgeEnergyLoss,
    **{f"adversarial-{w}": functools.partial(AdversarialLoss, adversarial_weight=w)
       for w in (0.01, 0.05, 0.2)},
}


def training_subjects(data: Path) -> list[str]:
    """The controls of the cohort other than the held-out subjects (``TRAIN`` for the
    16-subject cohort: the first 16 subjects are the same whatever the cohort's size)."""
    import pandas as pd

    table = pd.read_csv(data / "participants.tsv", sep="\t", dtype=str)
    controls = table.loc[table["group"] == "control", "participant_id"].str[4:]
    return [name for name in controls if name not in HELD_OUT]


def run(out: Path, variant: str, epochs: int = 8, subjects: int = 16, full: bool = False,
        patches: int = 512, device: str = "cpu", workers: int = 0, name: str = "",
        max_minutes: float | None = None, target: str = "7T", on_input: bool = False,
        init: str | None = None, last_epoch: bool = False) -> dict:
    """Train, predict and score one variant; returns ``{"train_s", "means", "rows"}``.

    ``subjects`` > 16 simulates a larger cohort of the same seed and trains on all of its
    controls but the held-out three; ``full`` trains the task's own four-level U-Net in
    place of the small one; the run's folder is ``OUT/NAME`` (default: the variant);
    ``max_minutes`` caps the training time (``lesionkit train --max-minutes``);
    ``target="truth"`` trains toward the phantom's noise-free 7T map
    (``derivatives/phantom``) instead of the 7T map; scoring is the same either way;
    ``on_input`` adds the network's output to its (normalised) input map; ``init``
    starts from a model folder's (or shipped model's) weights; ``last_epoch`` trains on
    every training subject with no validation split and keeps the last epoch's weights.
    """
    import pandas as pd

    from lesionkit.infer import predict
    from lesionkit.simulate.cohorts import simulate_cohort
    from lesionkit.tasks import get_task
    from lesionkit.tasks.enhance_r1 import R1_7T, evaluate

    data = out / ("er16" if subjects == 16 else f"er{subjects}")
    if not data.is_dir():
        simulate_cohort("enhance-r1", data, subjects=subjects, seed=1000, resolution=2,
                        workers=workers)
    losses.LOSSES[f"bench:{variant}"] = VARIANTS[variant]
    task = get_task("enhance-r1")
    task = replace(task, learning_rate=1e-3, loss=f"bench:{variant}",
                   network_kwargs=task.network_kwargs if full else SMALL_UNET)
    if on_input:
        models.NETWORKS["bench:unet-on-input"] = unet_on_input
        task = replace(task, network="bench:unet-on-input")
    if target == "truth":
        task = replace(task, targets=(replace(R1_7T, derivatives="phantom"),))
    folder = out / (name or variant)
    start = time.perf_counter()
    names = training_subjects(data)
    splits = [{"train": names, "validation": []}] if last_epoch else None
    training.train(task, data, folder / "model", folds=1, epochs=epochs, seed=1000,
                   patches_per_epoch=patches, device=device, subjects=names, splits=splits,
                   overwrite=True, workers=workers, progress=False, max_minutes=max_minutes,
                   init=init)
    seconds = time.perf_counter() - start
    predict(folder / "model", data, out_dir=folder / "pred", subjects=HELD_OUT, device=device,
            progress=False)
    rows = evaluate(task, data, folder / "pred", HELD_OUT)
    columns = ["rmse", "ssim", "relative_edge_sharpness", "white_matter_texture",
               "nyquist_power_ratio", "contrast_preservation"]
    means = pd.DataFrame(rows).groupby("method")[columns].mean()
    result = {"train_s": seconds, "means": means.to_dict(), "rows": rows}
    (folder / "rows.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"{variant}: trained in {seconds:.0f} s")
    print(means.round(4).to_string())
    return result


def figure(out: Path, png: Path, subject: str = "14",
           variants: tuple[str, ...] = ("gradient-l1-x3", "edge-energy"),
           cohort: str = "er16") -> Path:
    """One axial slice (centre + 10) of the 3T map, each variant's output and the 7T map,
    each windowed to its own 1st-99th percentiles in a box around the ventricles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib
    import numpy as np

    root = out / cohort / f"sub-{subject}"
    images = {"3T (B-spline)": root / "ses-3T" / "anat" / f"sub-{subject}_ses-3T_R1map.nii.gz"}
    for variant in variants:
        images[variant] = next((out / variant / "pred").rglob(
            f"sub-{subject}_*desc-enhanced_R1map.nii.gz"))
    images["7T"] = root / "ses-7T" / "anat" / f"sub-{subject}_ses-7T_R1map.nii.gz"
    fig, axes = plt.subplots(1, len(images), figsize=(4 * len(images), 4.6))
    for ax, (name, path) in zip(axes, images.items(), strict=True):
        data = np.asarray(nib.load(str(path)).dataobj, np.float64)
        z = data.shape[2] // 2 + 10
        crop = data[40:120, 60:160, z]
        low, high = np.percentile(crop[crop > 0], [1, 99])
        ax.imshow(crop.T, origin="lower", cmap="gray", vmin=low, vmax=high)
        ax.set_title(f"{name} (sub-{subject}, z {z})", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(png, dpi=70)
    plt.close(fig)
    return png


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--variant", choices=sorted(VARIANTS))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--subjects", type=int, default=16, help="cohort size (seed 1000)")
    parser.add_argument("--full", action="store_true", help="the task's four-level U-Net")
    parser.add_argument("--patches", type=int, default=512, help="training patches per epoch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes simulating the cohort and loading patches")
    parser.add_argument("--name", default="", help="the run's folder under OUT")
    parser.add_argument("--max-minutes", type=float,
                        help="stop training after this wall time (Lightning's max_time; the "
                             "best validation epoch's weights are kept)")
    parser.add_argument("--target", choices=("7T", "truth"), default="7T",
                        help="train toward the 7T map or the phantom's noise-free 7T map")
    parser.add_argument("--on-input", action="store_true",
                        help="add the network's output to its input map")
    parser.add_argument("--init", help="start from this model folder or shipped model")
    parser.add_argument("--last-epoch", action="store_true",
                        help="no validation split; keep the last epoch's weights")
    parser.add_argument("--figure", type=Path, help="write the slice figure to this PNG")
    parser.add_argument("--figure-runs", nargs="+", default=["gradient-l1-x3", "edge-energy"],
                        help="the runs (folders under OUT) the figure shows")
    args = parser.parse_args()
    if not args.variant and not args.figure:
        parser.error("expected --variant or --figure, found neither")
    if args.device == "cpu":
        torch.set_num_threads(1)
    if args.variant:
        run(args.out, args.variant, args.epochs, args.subjects, args.full, args.patches,
            args.device, args.workers, args.name, args.max_minutes, args.target,
            args.on_input, args.init, args.last_epoch)
    if args.figure:
        cohort = "er16" if args.subjects == 16 else f"er{args.subjects}"
        print(figure(args.out, args.figure, variants=tuple(args.figure_runs), cohort=cohort))
