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
from torchio.transforms.intensity_transform import IntensityTransform
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


def _uniform(low: float, high: float) -> float:
    """One uniform draw in [low, high) from torch's generator (seeded per worker)."""
    return low + (high - low) * float(torch.rand(1))


class RandomUnsuppressedCSF(RandomTransform, IntensityTransform):
    """Patches of cerebrospinal fluid left bright on a FLAIR, as inflow artefacts leave it.

    FLAIR nulls CSF with an inversion pulse; CSF that flows into the slice (2D) or the slab
    (3D) between inversion and readout was not inverted and comes out bright: in the
    ventricles (the fourth and the third most often), the basal cisterns and at the lower
    edge of a 3D slab (Lisanti et al. 2007, AJR 188:716, on CSF flow phenomena;
    Ogbole et al. 2016, Niger Med J 57:59: intraventricular pulsation artefacts on the
    FLAIR of 16 % of 202 consecutive patients at 0.3 T). A network that has only seen
    fully nulled CSF reads such a patch as a lesion. Here the named (per-image z-scored)
    images get one to ``blobs`` smooth patches, each a Gaussian of a drawn width centred on
    a drawn CSF voxel, inside which CSF is lifted toward a drawn brightness between grey
    matter and lesion level. Only dark voxels inside the brain mask change (CSF: z at or below
    ``csf_below``; a ramp up to ``csf_below / 2`` for partial volume); voxels of the
    ``protect`` label maps (the lesions) and every label map stay as they are: an artefact
    does not change the truth.

    Args:
        blobs: Largest number of patches (1 to ``blobs``, uniform).
        sigma_mm: Range of each patch's Gaussian standard deviation (mm), uniform.
        brightness: Range of the brightness (robust z of the brain) CSF is lifted toward,
            uniform per patch: about grey matter (0.5) to a lesion (3).
        csf_below: z at or below which a voxel counts as nulled CSF (the brain median is
            0, white and grey matter lie within about +-1.5, nulled CSF below -2).
        mask_key: Label map of the brain; voxels outside it are left alone.
        protect: Label maps whose voxels (non-zero) are left alone.
        **kwargs: See TorchIO's ``Transform`` (``include``, ``p``, ...).
    """

    def __init__(self, blobs: int = 3, sigma_mm: tuple[float, float] = (4.0, 15.0),
                 brightness: tuple[float, float] = (0.5, 3.0), csf_below: float = -2.0,
                 mask_key: str = "mask", protect: Sequence[str] = ("lesion",),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if blobs < 1:
            raise ValueError(f"expected at least one patch, found blobs={blobs}")
        if not 0 < sigma_mm[0] <= sigma_mm[1]:
            raise ValueError(f"expected a width range 0 < low <= high (mm), found {sigma_mm}")
        if csf_below >= 0:
            raise ValueError(f"expected a CSF level below the brain median 0, found "
                             f"{csf_below}")
        self.blobs, self.sigma_mm = int(blobs), (float(sigma_mm[0]), float(sigma_mm[1]))
        self.brightness = (float(brightness[0]), float(brightness[1]))
        self.csf_below, self.mask_key, self.protect = float(csf_below), mask_key, tuple(protect)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        """Lift CSF inside drawn patches of every included image (one draw per image)."""
        if self.mask_key not in subject:
            raise ValueError(f"RandomUnsuppressedCSF needs the brain mask {self.mask_key!r} "
                             f"in the example, found keys {sorted(subject.keys())}")
        inside = subject[self.mask_key].data[0] > 0
        for key in self.protect:
            if key in subject:
                inside &= subject[key].data.amax(0) == 0
        spacing = torch.tensor([float(s) for s in subject.spacing])
        grid = torch.stack(torch.meshgrid(*(torch.arange(n, dtype=torch.float32)
                                            for n in inside.shape), indexing="ij"))
        for image in self.get_images(subject):
            data = image.data.float().clone()
            z = data[0]
            dark = inside & (z <= self.csf_below)
            centres = torch.nonzero(dark)
            if not len(centres):
                continue
            weight = ((self.csf_below / 2 - z) / (-self.csf_below / 2)).clamp(0, 1) * inside
            lifted = torch.zeros_like(z)
            target = torch.zeros_like(z)
            for _ in range(int(torch.randint(1, self.blobs + 1, (1,)))):
                centre = centres[int(torch.randint(len(centres), (1,)))].float()
                sigma = _uniform(*self.sigma_mm)
                distance = (((grid - centre[:, None, None, None])
                             * spacing[:, None, None, None]) ** 2).sum(0)
                blob = torch.exp(-distance / (2 * sigma ** 2))
                closer = blob > lifted
                target = torch.where(closer, _uniform(*self.brightness), target)
                lifted = torch.maximum(lifted, blob)
            change = weight * lifted
            data[0] = z + change * (target - z)
            image.set_data(data.to(image.data.dtype))
        return subject


class RandomExtracerebral(RandomTransform, IntensityTransform):
    """Non-brain tissue in a shell outside the brain mask, as a loose computed mask leaves it.

    A brain mask computed on a real scan (BET) follows the brain only roughly: it takes in
    dura, the skull base's marrow and fat (bright on FLAIR and T1w), muscle and bone (dark)
    in places, most at the skull base and the vertex, so a network reads them beside the
    brain. A phantom's mask is exact and everything outside it is background. Here a shell
    outside the mask, of a width that varies smoothly over the brain's surface up to a
    drawn maximum, is filled with a smooth random texture between two drawn brightnesses
    (robust z of the brain; the named images must be z-scored per image), a dark and a
    bright one, its values spread evenly between them (ranks of smoothed noise). Label maps
    are left alone: nothing in the shell is a lesion.

    Args:
        width_mm: Range of the shell's largest width (mm), uniform; the width at a point of
            the surface runs from 0 to it (trilinear interpolation of a 4 x 4 x 4 grid of
            uniform draws).
        dark: Range of the texture's darkest value (robust z of the brain): bone, air and
            nulled fluid (-4) to about white matter (0).
        bright: Range of its brightest value: about white matter (0) to marrow and fat
            (3).
        texture_mm: Range of the texture's Gaussian smoothing (standard deviation, mm).
        mask_key: Label map of the brain.
        **kwargs: See TorchIO's ``Transform`` (``include``, ``p``, ...).
    """

    def __init__(self, width_mm: tuple[float, float] = (2.0, 8.0),
                 dark: tuple[float, float] = (-4.0, 0.0), bright: tuple[float, float] = (0.0, 3.0),
                 texture_mm: tuple[float, float] = (1.0, 4.0), mask_key: str = "mask",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, (low, high) in (("width_mm", width_mm), ("texture_mm", texture_mm)):
            if not 0 < low <= high:
                raise ValueError(f"expected {name} as a range 0 < low <= high, found "
                                 f"{(low, high)}")
        self.width_mm = (float(width_mm[0]), float(width_mm[1]))
        self.texture_mm = (float(texture_mm[0]), float(texture_mm[1]))
        self.dark = (float(dark[0]), float(dark[1]))
        self.bright = (float(bright[0]), float(bright[1]))
        self.mask_key = mask_key

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        """Fill a drawn shell outside the mask of every included image (one draw each)."""
        import numpy as np
        from scipy import ndimage
        from scipy.stats import rankdata

        if self.mask_key not in subject:
            raise ValueError(f"RandomExtracerebral needs the brain mask {self.mask_key!r} in "
                             f"the example, found keys {sorted(subject.keys())}")
        inside = subject[self.mask_key].data[0].numpy() > 0
        if not inside.any() or inside.all():
            return subject
        spacing = tuple(float(s) for s in subject.spacing)
        outside_mm = ndimage.distance_transform_edt(~inside, sampling=spacing)
        for image in self.get_images(subject):
            coarse = torch.rand(1, 1, 4, 4, 4)
            width = torch.nn.functional.interpolate(coarse, size=inside.shape, mode="trilinear",
                                                    align_corners=True)[0, 0].numpy()
            shell = ~inside & (outside_mm <= width * _uniform(*self.width_mm))
            if not shell.any():
                continue
            rng = np.random.default_rng(int(torch.randint(2 ** 31, (1,))))
            sigma = [_uniform(*self.texture_mm) / s for s in spacing]
            texture = ndimage.gaussian_filter(rng.random(inside.shape, dtype=np.float32),
                                              sigma)
            low, high = _uniform(*self.dark), _uniform(*self.bright)
            ranks = (rankdata(texture[shell]) - 1) / max(int(shell.sum()) - 1, 1)
            data = image.data.clone()
            data[0][torch.from_numpy(shell)] = torch.from_numpy(
                (low + (high - low) * ranks).astype(np.float32)).to(data.dtype)
            image.set_data(data)
        return subject
