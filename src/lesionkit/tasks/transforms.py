"""Training transforms that TorchIO lacks, as TorchIO transforms (named in ``Transform``).

:class:`lesionkit.tasks.task.Transform` looks a name up in ``torchio`` first, then here.
"""

from __future__ import annotations

import math
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


#: Gaussian standard deviation per unit of full width at half maximum.
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


class RandomThickSlices(RandomTransform):
    """Thick slices with a slice profile, as a 2D clinical scan acquires them.

    TorchIO's ``RandomAnisotropy`` samples every k-th plane (nearest neighbour) and
    interpolates between them: a thin-slice scan with gaps, in which a lesion smaller than
    the gap keeps its full contrast or vanishes. A 2D scan integrates its signal over the
    slice thickness instead, so a small lesion comes out fainter (partial volume), as
    ``lesionkit simulate --randomise`` acquires it. Here the named images are blurred
    along a drawn axis by a Gaussian slice profile whose full width at half maximum is the
    drawn slice thickness (TorchIO's ``Blur``), resampled onto slices that thick and back
    (TorchIO's ``Resample``, linear). Label maps are left alone: a thick-slice scan does
    not change the truth. A thickness at or below the image's own voxel size on that axis
    changes nothing.

    Args:
        axes: Axes that may become the slice axis (one is drawn).
        thickness: Range of the slice thickness (mm), uniform.
        image_interpolation: Interpolation back onto the image's grid.
        **kwargs: See TorchIO's ``Transform`` (``include``, ``p``, ...).
    """

    def __init__(self, axes: Sequence[int] = (0, 1, 2),
                 thickness: tuple[float, float] = (3.0, 6.0),
                 image_interpolation: str = "linear", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not axes or not set(axes) <= {0, 1, 2}:
            raise ValueError(f"expected axes among (0, 1, 2), found {axes}")
        low, high = (float(t) for t in thickness)
        if not 0 < low <= high:
            raise ValueError(f"expected a thickness range 0 < low <= high (mm), found "
                             f"{thickness}")
        self.axes = tuple(int(a) for a in axes)
        self.thickness = (low, high)
        self.image_interpolation = image_interpolation

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        """Blur along a drawn axis, then resample to thick slices and back."""
        axis = self.axes[int(torch.randint(len(self.axes), (1,)))]
        low, high = self.thickness
        thickness = low + (high - low) * float(torch.rand(1))
        spacing = [float(s) for s in subject.spacing]
        if thickness <= spacing[axis]:
            return subject
        image = subject.get_first_image()
        shape, affine = image.spatial_shape, image.affine.copy()
        std = [0.0, 0.0, 0.0]
        std[axis] = thickness * FWHM_TO_SIGMA
        thick = list(spacing)
        thick[axis] = thickness
        args = {"copy": self.copy, "include": self.include, "exclude": self.exclude,
                "keep": self.keep, "parse_input": self.parse_input,
                "label_keys": self.label_keys}
        subject = tio.Blur(tuple(std), **args)(subject)
        subject = tio.Resample(tuple(thick), image_interpolation="linear",
                               scalars_only=True, **args)(subject)
        return tio.Resample((shape, affine), image_interpolation=self.image_interpolation,
                            scalars_only=True, **args)(subject)
