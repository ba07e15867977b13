"""Training-time domain randomisation of weighted images (FLAIR, T1w, T2w, T1c).

The same families as ``lesionkit simulate --randomise`` (:mod:`lesionkit.simulate.randomise`),
as TorchIO transforms a task lists in ``augment`` (applied to training examples only).

The engine z-scores weighted images per image (median 0, robust SD 1 inside the brain;
background at the darkest tissue, about -3 to -6) before augmentation, so the intensity
transforms that model the scanner (bias field, gamma, ghosting, motion) would act on
negative values around the brain median. They are therefore wrapped between two fixed
linear maps, z -> (z + 8) / 32 and back: the first puts the image on a positive
signal-like scale (z = -8, below any tissue, as zero signal; the brightest lesions,
z up to about 20, stay below 1), the second is its exact inverse, so the augmented
image keeps the engine's scale. Nothing is clipped. After a bias field the brain median
is no longer exactly 0, as if the image had not been re-normalised: the network learns
not to rely on the absolute level.

Intensity transforms name the images they act on (``include``): target maps stored as
scalar images (probabilities, T1 maps) are left alone. The spatial ``RandomAffine`` moves
every image and label map together (labels by nearest neighbour, so they stay binary);
``RandomAnisotropy`` (thick slices) acts on the named images only, as a thick-slice scan
does not change the truth.

Parameters (probability p each; ranges uniform):
- RandomAffine p 0.5: scale 0.9-1.1, rotation +-10 degrees, translation +-5 mm (head
  position and size between subjects).
- RandomAnisotropy p 0.25: one axis downsampled 1.5-4 x (slices up to 4 mm at the 1 mm
  model grid, as 2D clinical scans of 3-6 mm with a 1-1.5 mm in-plane resolution); in
  :data:`AXIAL_CONTEXT_RANDOMISATION`, for 2.5D networks, p 0.4 and the axial axis drawn
  half the time. It keeps every k-th plane, so a lesion smaller than the slices keeps its
  contrast or vanishes; lesionkit's ``RandomThickSlices`` (a slice profile, as a 2D
  scan) fades it instead. That one was tried in its place and not adopted: its gain on
  drawn phantom protocols did not survive a second seed (docs/results.md, "Held-out
  protocols").
- RandomBiasField p 0.5: order 3, coefficients +-0.3 (receive fields of +-20-40 % at 3T).
- RandomGamma p 0.5: log gamma +-0.3 (contrast changes between sequences and vendors).
- RandomGhosting p 0.2: 2-8 ghosts, intensity 0.1-0.5 (moderate phase-encode ghosts).
- RandomMotion p 0.2: 2 movements of +-3 degrees and +-3 mm (a patient who moves a little).
- RandomNoise p 0.5: SD 0-0.1 robust SDs of the brain (an SNR of 10 or more remains).

Two more families, off unless asked for (``extracerebral``, ``unsuppressed_csf``), put
into the training examples what a real scan has beside the brain and the phantom has
not, acting on the z-scored images right after the spatial transform (lesionkit's
transforms, :mod:`lesionkit.tasks.transforms`). Tried on the FLAIR-only recipe, they
did not lower its false positives on a healthy real FLAIR (docs/real-data.md), so no
recipe uses them:
- RandomExtracerebral: non-brain tissue (dark bone and fluid to bright marrow and fat) in
  a shell of 0 to 2-8 mm outside the brain mask, as a computed mask takes in at the skull
  base and the vertex.
- RandomUnsuppressedCSF (FLAIR only): one to three patches of 4-15 mm in which nulled CSF
  is lifted toward grey-matter to lesion brightness, as CSF inflow leaves it.
"""

from __future__ import annotations

from collections.abc import Sequence

from lesionkit.tasks.task import Transform

#: Keys of weighted images in the tasks (``ImageSpec.key``).
WEIGHTED_KEYS = ("flair", "t1w", "t2w", "t1c")
#: z-score mapped to 0 and 1 on the signal-like scale (see module docstring).
Z_RANGE = (-8.0, 24.0)


def weighted_image_randomisation(keys: Sequence[str] = WEIGHTED_KEYS,
                                 thick_slices: float = 0.25,
                                 thick_slice_axes: Sequence[int] = (0, 1, 2),
                                 extracerebral: float = 0.0,
                                 unsuppressed_csf: float = 0.0,
                                 ) -> tuple[Transform, ...]:
    """Augmentation of the weighted images ``keys`` (z-scored) and the spatial transform.

    Args:
        keys: Keys of the weighted (arbitrary-unit, per-image z-scored) images to alter;
            keys absent from an example are skipped.
        thick_slices: Probability of the thick-slice transform (``RandomAnisotropy``).
        thick_slice_axes: Axes of the model grid (RAS: 0 sagittal, 1 coronal, 2 axial
            slices) it draws from, uniformly over the entries, so a repeated axis is
            drawn more often: ``(0, 1, 2, 2)`` gives axial thick slices half the time,
            as in clinical 2D protocols, whose FLAIRs are mostly axial.
        extracerebral: Probability of non-brain tissue in a shell outside the brain mask
            (lesionkit's ``RandomExtracerebral``: a loose computed mask), per image.
        unsuppressed_csf: Probability of bright CSF patches on the FLAIR (lesionkit's
            ``RandomUnsuppressedCSF``: inflow artefacts), FLAIR only.

    Returns:
        The transforms, in order, for ``Task.augment``.
    """
    only = {"include": tuple(keys)}
    to_signal = {"out_min_max": (0.0, 1.0), "in_min_max": Z_RANGE}
    to_z = {"out_min_max": Z_RANGE, "in_min_max": (0.0, 1.0)}
    flair = {"include": tuple(k for k in keys if k == "flair")}
    beside_brain = (
        *((Transform("RandomExtracerebral", {"p": extracerebral, **only}),)
          if extracerebral else ()),
        *((Transform("RandomUnsuppressedCSF", {"p": unsuppressed_csf, **flair}),)
          if unsuppressed_csf and flair["include"] else ()),
    )
    return (
        Transform("RandomAffine", {"scales": 0.1, "degrees": 10, "translation": 5, "p": 0.5}),
        *beside_brain,
        Transform("RandomAnisotropy", {"axes": tuple(thick_slice_axes),
                                       "downsampling": (1.5, 4.0), "p": thick_slices,
                                       **only}),
        Transform("RescaleIntensity", {**to_signal, **only}),
        Transform("RandomBiasField", {"coefficients": 0.3, "order": 3, "p": 0.5, **only}),
        Transform("RandomGamma", {"log_gamma": (-0.3, 0.3), "p": 0.5, **only}),
        Transform("RandomGhosting", {"num_ghosts": (2, 8), "intensity": (0.1, 0.5),
                                     "axes": (0, 1, 2), "p": 0.2, **only}),
        Transform("RandomMotion", {"degrees": 3, "translation": 3, "num_transforms": 2,
                                   "p": 0.2, **only}),
        Transform("RescaleIntensity", {**to_z, **only}),
        Transform("RandomNoise", {"std": (0.0, 0.1), "p": 0.5, **only}),
    )


#: The default: every weighted-image key of the tasks (flair, t1w, t2w, t1c).
WEIGHTED_IMAGE_RANDOMISATION = weighted_image_randomisation()
#: For networks that read axial slices with their neighbours (2.5D): thick slices in 40 %
#: of the examples, axial in half of those (docs/real-data.md, "Slices read with their
#: neighbours"). Non-brain tissue beside the brain and bright CSF on the FLAIR were tried
#: on top (``extracerebral=0.5, unsuppressed_csf=0.3``) and not adopted (docs/real-data.md,
#: "What a real scan has beside the brain").
AXIAL_CONTEXT_RANDOMISATION = weighted_image_randomisation(thick_slices=0.4,
                                                           thick_slice_axes=(0, 1, 2, 2))
