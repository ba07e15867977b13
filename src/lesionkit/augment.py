"""Training augmentation: TorchIO random transforms named by tasks.

A task lists names in ``SamplerSpec.augment``; the training samplers apply them to
training examples only (``lesionkit.data.training_dataset(..., augment=True)``), after
normalisation, never to validation or held-out subjects.
"""

from __future__ import annotations

from collections.abc import Callable

import torchio as tio

from lesionkit.tasks.task import Task

#: Training augmentations by name: factories of TorchIO transforms given the task.
#: Spatial ones move every image of a subject together (label maps by nearest
#: neighbour; "flip" mirrors left-right in world space); intensity ones touch inputs only.
AUGMENTATIONS: dict[str, Callable[[Task], tio.Transform]] = {
    "flip": lambda task: tio.RandomFlip(axes=("LR",), flip_probability=0.5),
    "affine": lambda task: tio.RandomAffine(scales=0.05, degrees=5, translation=4),
    "bias": lambda task: tio.RandomBiasField(coefficients=0.2,
                                             include=[s.key for s in task.inputs]),
    "noise": lambda task: tio.RandomNoise(std=(0.0, 0.05), include=[s.key for s in task.inputs]),
}


def augmentation(task: Task) -> tio.Transform | None:
    """The task's training augmentation as one TorchIO transform (None: none)."""
    unknown = [n for n in task.sampler.augment if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"expected augmentations from {sorted(AUGMENTATIONS)}, found {unknown}")
    if not task.sampler.augment:
        return None
    return tio.Compose([AUGMENTATIONS[n](task) for n in task.sampler.augment])
