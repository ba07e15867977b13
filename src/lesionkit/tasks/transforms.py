"""Training transforms that TorchIO lacks, as TorchIO transforms (named in ``Transform``).

:class:`lesionkit.tasks.task.Transform` looks a name up in ``torchio`` first, then here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torchio as tio
from torchio.transforms.augmentation.random_transform import RandomTransform
from torchio.transforms.spatial_transform import SpatialTransform


class RandomRot90(RandomTransform, SpatialTransform):
    """Rotate every image of a subject by the same random multiple of 90 degrees in a plane.

    A rotation by a multiple of 90 degrees moves voxels onto voxels (no interpolation), so
    structures one or two voxels thick (a lesion's rim) stay as sharp as acquired. The
    rotation itself is MONAI's ``Rotate90``. As TorchIO's flips, the affine is kept: the
    augmented patch is a new example, not the same head seen from elsewhere.

    Args:
        axes: The two spatial axes of the plane (of the canonical RAS+ grid: ``(0, 1)``
            is the axial plane, rotation about the superior-inferior axis, the main field
            B0 of an axial acquisition).
        probability: Probability of a rotation (by 90, 180 or 270 degrees, equally likely).
            The plane must be square (equal sizes on both axes, as cubic patches), so that
            a rotated image keeps its shape.
        **kwargs: See TorchIO's ``Transform``.
    """

    def __init__(self, axes: Sequence[int] = (0, 1), probability: float = 0.75,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if len(axes) != 2 or len(set(axes)) != 2 or not set(axes) <= {0, 1, 2}:
            raise ValueError(f"expected two different spatial axes of (0, 1, 2), found {axes}")
        self.axes = tuple(int(a) for a in axes)
        self.probability = self.parse_probability(probability)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        """Rotate all images of ``subject`` alike (or none)."""
        from monai.transforms import Rotate90

        if float(torch.rand(1)) >= self.probability:
            return subject
        for image in subject.get_images(intensity_only=False):
            sizes = [image.spatial_shape[a] for a in self.axes]
            if sizes[0] != sizes[1]:
                raise ValueError(f"RandomRot90 in the plane of axes {self.axes} needs equal "
                                 f"sizes on them, found shape {image.spatial_shape}")
        rotate = Rotate90(k=int(torch.randint(1, 4, (1,))), spatial_axes=self.axes)
        for image in subject.get_images(intensity_only=False):
            image.set_data(torch.as_tensor(rotate(image.data)).contiguous())
        return subject
