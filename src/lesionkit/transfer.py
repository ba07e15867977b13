"""Transfer-learning arms for subject classifiers: scratch, segmentation, MedicalNet.

The FCD paper (seed 002) initialises its 3D ResNets three ways. lesionkit keeps the
three arms, by name:

- ``"scratch"``: MONAI's default initialisation.
- ``"segmentation"``: the encoder of a lesion-segmentation network trained by
  lesionkit on another phantom cohort (the "cross-modality" source: MS lesions of the
  ``mrf-lesion`` cohort on FLAIR by default). :func:`pretrain_encoder` trains the same
  MONAI ResNet, with a small feature-pyramid decoder (:class:`ResNetSegmenter`), on
  lesion-centred patches, and saves the encoder (classification head dropped) as
  safetensors (``lesionkit.pretrained.save_encoder``); :func:`initialise` loads it with
  ``lesionkit.pretrained.load_encoder``.
- ``"medicalnet"``: a MedicalNet (Med3D) checkpoint a user holds, loaded with
  ``lesionkit.pretrained.load_medicalnet`` (nothing is downloaded).

Choices of ours: decoder = 1x1 lateral convolutions of the four residual stages to 32
features, top-down trilinear upsampling with addition, a 3x3x3 head and trilinear
upsampling to the patch; loss = soft Dice + binary cross-entropy; Adam 1e-3; patches
of 48^3 voxels, 70 % centred on a lesion voxel (TorchIO ``LabelSampler``); each FLAIR
z-scored inside its brain mask.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L  # noqa: N812
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

ARMS = ("scratch", "segmentation", "medicalnet")
STAGES = ("layer1", "layer2", "layer3", "layer4")


def _stage_width(stage: nn.Module) -> int:
    """Output channels of a residual stage (its last convolution)."""
    return [m for m in stage.modules() if isinstance(m, nn.Conv3d)][-1].out_channels


class ResNetSegmenter(nn.Module):
    """A MONAI ResNet encoder with a feature-pyramid decoder giving voxel logits.

    Args:
        encoder: A ``monai.networks.nets.ResNet`` (its ``avgpool``/``fc`` are unused).
        out_channels: Output channels (1: lesion logit).
        features: Decoder width.
    """

    def __init__(self, encoder: nn.Module, out_channels: int = 1, features: int = 32) -> None:
        super().__init__()
        self.encoder = encoder
        self.lateral = nn.ModuleList(nn.Conv3d(_stage_width(getattr(encoder, s)), features, 1)
                                     for s in STAGES)
        self.head = nn.Conv3d(features, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.encoder
        h = e.act(e.bn1(e.conv1(x)))
        h = h if e.no_max_pool else e.maxpool(h)
        stages = []
        for name in STAGES:
            h = getattr(e, name)(h)
            stages.append(h)
        top = self.lateral[-1](stages[-1])
        for lateral, skip in zip(self.lateral[-2::-1], stages[-2::-1], strict=True):
            top = F.interpolate(top, size=skip.shape[2:], mode="trilinear") + lateral(skip)
        return F.interpolate(self.head(top), size=x.shape[2:], mode="trilinear")


class _SegmentationModule(L.LightningModule):
    def __init__(self, segmenter: ResNetSegmenter, learning_rate: float) -> None:
        super().__init__()
        from monai.losses import DiceLoss

        self.segmenter, self.learning_rate = segmenter, learning_rate
        self.dice, self.bce = DiceLoss(sigmoid=True), nn.BCEWithLogitsLoss()

    def training_step(self, batch: dict[str, Any], _: int) -> torch.Tensor:
        x, y = batch["image"].float(), batch["lesion"].float()
        logits = self.segmenter(x)
        loss = self.dice(logits, y) + self.bce(logits, y)
        self.log("train_loss", loss, on_epoch=True, on_step=False, batch_size=len(x))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)


class _Patches(torch.utils.data.Dataset):
    """Plain tensors from a TorchIO queue (Lightning cannot move TorchIO images)."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def __len__(self) -> int:
        return len(self.queue)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        patch = self.queue[i]
        return {"image": patch["image"].data, "lesion": patch["lesion"].data}


def _segmentation_subjects(data_dir: Path, suffix: str, subjects: Sequence[str] | None
                           ) -> list[Any]:
    import torchio as tio

    from lesionkit.bids import BIDSDataset
    from lesionkit.io import InputError, load_volume

    dataset = BIDSDataset(data_dir)
    loaded = []
    for subject in subjects or dataset.subjects():
        image = dataset.find(subject=subject, suffix=suffix)
        lesion = dataset.find(subject=subject, suffix="mask", derivatives="phantom",
                              label="lesion")
        brain = dataset.find(subject=subject, suffix="mask", derivatives="phantom", desc="brain")
        if not (image and lesion and brain):
            continue
        volume = load_volume(image[0].path)
        inside = load_volume(brain[0].path, kind="label").data > 0.5
        values = volume.data[inside]
        data = np.where(inside, (volume.data - values.mean()) / (values.std() or 1.0), 0.0)
        mask = (load_volume(lesion[0].path, kind="label").data > 0.5).astype(np.uint8)
        if not mask.any():
            continue
        loaded.append(tio.Subject(
            image=tio.ScalarImage(tensor=torch.from_numpy(data[None].astype(np.float32)),
                                  affine=volume.affine),
            lesion=tio.LabelMap(tensor=torch.from_numpy(mask[None]), affine=volume.affine)))
    if not loaded:
        raise InputError(f"{data_dir}: expected subjects with {suffix} images, a brain mask and "
                         "a non-empty derivatives/phantom label-lesion_mask, found none")
    return loaded


def pretrain_encoder(
    data_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    network: str = "resnet18",
    network_kwargs: Mapping[str, Any] | None = None,
    suffix: str = "FLAIR",
    epochs: int = 4,
    patch_size: int = 48,
    patches_per_subject: int = 8,
    batch_size: int = 2,
    learning_rate: float = 1e-3,
    subjects: Sequence[str] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Train a ResNet encoder on lesion segmentation; save it (no head) as safetensors.

    Args:
        data_dir: BIDS dataset with ``suffix`` images and lesion masks under
            ``derivatives/phantom`` (``label-lesion_mask``) and brain masks.
        out_path: The ``.safetensors`` file to write; a JSON sidecar is written beside it.
        network: Registry name of the ResNet (``resnet10`` ... ``resnet50``).
        network_kwargs: Its factory arguments (must match the classifier's).
        suffix: BIDS suffix of the input (``FLAIR``, ``T1w``).
        epochs: Passes over the patch queue.
        patch_size: Cubic patch edge in voxels.
        patches_per_subject: Patches per subject and epoch.
        batch_size: Patches per step.
        learning_rate: Adam learning rate.
        subjects: Subjects to use (default: all with a lesion).
        seed: Seed of sampling and initialisation.
        progress: Show the progress bar.

    Returns:
        The safetensors path.
    """
    import torchio as tio
    from torch.utils.data import DataLoader

    from lesionkit.io import write_json
    from lesionkit.models import build_network
    from lesionkit.pretrained import save_encoder

    L.seed_everything(seed, verbose=False)
    loaded = _segmentation_subjects(Path(data_dir), suffix, subjects)
    encoder = build_network(network, 1, 2, **dict(network_kwargs or {}))
    module = _SegmentationModule(ResNetSegmenter(encoder), learning_rate)
    sampler = tio.LabelSampler(patch_size, label_name="lesion",
                               label_probabilities={0: 0.3, 1: 0.7})
    queue = tio.Queue(tio.SubjectsDataset(loaded), max_length=4 * patches_per_subject,
                      samples_per_volume=patches_per_subject, sampler=sampler, num_workers=0)
    start = time.time()
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=progress,
                        enable_model_summary=False)
    trainer.fit(module, DataLoader(_Patches(queue), batch_size=batch_size, num_workers=0))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_encoder(encoder, out_path)
    loss = trainer.callback_metrics.get("train_loss")
    write_json({"Source": str(Path(data_dir).resolve()), "Suffix": suffix,
                "Task": "lesion segmentation (label-lesion_mask)", "Network": network,
                "NetworkKwargs": dict(network_kwargs or {}), "Subjects": len(loaded),
                "Epochs": epochs, "PatchSize": patch_size, "PatchesPerSubject": patches_per_subject,
                "FinalTrainLoss": None if loss is None else float(loss),
                "Seconds": round(time.time() - start, 1), "Loss": "soft Dice + BCE"},
               out_path.with_suffix(".json"))
    return out_path


def initialise(network: nn.Module, arm: str, weights: str | os.PathLike[str] | None = None
               ) -> Any:
    """Initialise a classifier for a transfer arm.

    Args:
        network: A freshly built MONAI ResNet classifier.
        arm: ``"scratch"``, ``"segmentation"`` (lesionkit encoder safetensors) or
            ``"medicalnet"`` (a MedicalNet ``.pth`` checkpoint).
        weights: The weights file (ignored for ``"scratch"``).

    Returns:
        The loader's ``lesionkit.pretrained.LoadReport`` of what loaded and what did not
        (None for scratch).

    Raises:
        ValueError: unknown arm, or no weights file for a pretrained arm.
        lesionkit.io.InputError: a weights file that matches no tensor of the network.
    """
    if arm not in ARMS:
        raise ValueError(f"unknown transfer arm {arm!r}; known: {', '.join(ARMS)}")
    if arm == "scratch":
        return None
    if weights is None:
        raise ValueError(f"the {arm!r} arm needs a weights file")
    from lesionkit import pretrained

    if arm == "segmentation":
        return pretrained.load_encoder(network, weights)
    return pretrained.load_medicalnet(network, weights)


def fit_classifier(task: Any, train: list, folder: Path, arm: str,
                   weights: str | os.PathLike[str] | None, seed: int, epochs: int,
                   device: str = "cpu", progress: bool = True) -> tuple[nn.Module, dict, dict]:
    """Train one cross-validation fold of a classification task from a transfer arm.

    A fixed number of epochs and the last weights: no model selection on held-out
    subjects. Writes ``folder/weights.safetensors`` and ``folder/metrics.csv``.

    Args:
        task: The classification task (``lesionkit.tasks``).
        train: Loaded training subjects (``lesionkit.data.load_subject``).
        folder: The fold's folder.
        arm: Transfer arm (see :data:`ARMS`).
        weights: The arm's weights file (None for scratch).
        seed: Seed of initialisation and data order.
        epochs: Epochs.
        device: "cpu", "cuda" or "auto".
        progress: Show the progress bar.

    Returns:
        (network in eval mode, normalisation statistics, {"seconds", "steps", "init"}).
    """
    from torch.utils.data import DataLoader

    from lesionkit.data import fit_normalisation, normalise, training_dataset
    from lesionkit.model_folder import save_weights
    from lesionkit.training import EpochLog, TaskModule, trainer_flags

    L.seed_everything(seed, verbose=False)
    stats = fit_normalisation(train, task)
    dataset = training_dataset([normalise(s, stats) for s in train], task, augment=True)
    module = TaskModule(task, in_channels=int(dataset[0]["input"].shape[0]))
    loaded = initialise(module.network, arm, weights)
    folder.mkdir(parents=True, exist_ok=True)
    trainer = L.Trainer(max_epochs=epochs, callbacks=[EpochLog(folder)], logger=False,
                        enable_checkpointing=False, enable_progress_bar=progress,
                        enable_model_summary=False, **trainer_flags(device))
    loader = DataLoader(dataset, batch_size=task.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    start = time.time()
    trainer.fit(module, loader)
    save_weights(module.network, folder / "weights.safetensors")
    info = {"seconds": round(time.time() - start, 1), "steps": trainer.global_step,
            "init": None if loaded is None else loaded.summary()}
    return module.network.eval(), stats, info
