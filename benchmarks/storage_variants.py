"""One real session stored as different scanners and converters write it: same lesion map?

A lesion model must not depend on how a scan is stored, only on what it shows. This
script takes one subject's images (a BIDS ``anat`` folder, e.g. one laid out by
``benchmarks/real_patients.py layout``), writes them again as variants that leave the
image in world space unchanged (voxel axes reordered or flipped, integers with a scale
factor, a trailing 4th axis of length 1, the qform alone, the whole head turned by 20
degrees in world space, a T1w of a smaller field of view) and variants that change its
intensities (a constant offset to negative values, values a thousand times larger, 8-bit
quantisation), predicts every variant with one model (``lesionkit.infer.predict``) and
compares each lesion probability map with the original's in world space (linear
resampling onto the original's grid; the turned head is compared by volume only, as its
lesions have moved). A variant with NaN in its darkest 30 % of voxels (the background, as
SPM's or FSL's masking writes "no data") reads them as background, and a defaced variant
has its face set to 0, as public datasets are shared.

Run: ``python benchmarks/storage_variants.py ANAT_DIR OUT [--model flair-lesion-dr]``;
prints a table (lesion volume in mL at the model's 0.33 threshold, components, Dice with
the original) and writes it to ``OUT/variants.tsv``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

THRESHOLD = 0.33
TURN_DEGREES = 20.0
#: The defaced region: in front of the head's centre of mass by more than this (mm) ...
FACE_FRONT_MM = 65.0
#: ... and below this height (mm) above it (the eyes and nose, below the frontal lobes).
FACE_TOP_MM = -15.0


def _turn() -> np.ndarray:
    """A rotation by ``TURN_DEGREES`` about the world's x axis (4 x 4)."""
    from scipy.spatial.transform import Rotation

    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_euler("x", TURN_DEGREES, degrees=True).as_matrix()
    return turn


def _data(img: nib.Nifti1Image) -> np.ndarray:
    return np.asarray(img.dataobj)


def _scaled(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """int16 with scl_slope 0.5 and scl_inter 10: the same values once scaled."""
    stored = np.round((_data(img).astype(np.float64) - 10) / 0.5).astype(np.int16)
    out = nib.Nifti1Image(stored, img.affine, img.header)
    out.header.set_data_dtype(np.int16)
    out.header.set_slope_inter(0.5, 10)
    return out


def _qform_only(img: nib.Nifti1Image) -> nib.Nifti1Image:
    out = nib.Nifti1Image(_data(img), None, img.header)
    out.set_qform(img.affine, code=1)
    out.set_sform(np.eye(4), code=0)
    return out


def _axes_reversed(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """The voxel axes in reverse order (e.g. a sagittal-first storage of an axial scan)."""
    return img.as_reoriented(np.array([[2, 1], [1, 1], [0, 1]]))


def _float(values: Callable[[np.ndarray], np.ndarray]
           ) -> Callable[[nib.Nifti1Image], nib.Nifti1Image]:
    return lambda img: nib.Nifti1Image(values(_data(img).astype(np.float32)), img.affine)


def _uint8(img: nib.Nifti1Image) -> nib.Nifti1Image:
    data = _data(img).astype(np.float32)
    top = float(np.percentile(data, 99.9))
    return nib.Nifti1Image(np.clip(data / top * 255, 0, 255).astype(np.uint8), img.affine)


def _nan_background(img: nib.Nifti1Image) -> nib.Nifti1Image:
    data = _data(img).astype(np.float32)
    data[data <= np.percentile(data, 30)] = np.nan
    return nib.Nifti1Image(data, img.affine)


def _defaced(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """The face set to 0 as defacing tools do (pydeface, mri_deface: public datasets are
    shared so): every voxel more than ``FACE_FRONT_MM`` in front of the head's centre of
    mass and below ``FACE_TOP_MM`` above it, in world space (RAS: y anterior, z superior)."""
    data = _data(img).astype(np.float32)
    head = data > 0.1 * np.percentile(data, 99)
    world = nib.affines.apply_affine(img.affine, np.indices(data.shape).reshape(3, -1).T)
    centre = world[head.ravel()].mean(axis=0)
    face = ((world[:, 1] > centre[1] + FACE_FRONT_MM)
            & (world[:, 2] < centre[2] + FACE_TOP_MM)).reshape(data.shape)
    return nib.Nifti1Image(np.where(face, 0.0, data).astype(np.float32), img.affine)


#: Variant -> (what it does to every image, same image in world space).
VARIANTS: dict[str, tuple[Callable[[nib.Nifti1Image, str], nib.Nifti1Image], bool]] = {
    "original": (lambda img, _: img, True),
    "canonical": (lambda img, _: nib.as_closest_canonical(img), True),
    "axes-reversed": (lambda img, _: _axes_reversed(img), True),
    "int16-scaled": (lambda img, _: _scaled(img), True),
    "4d": (lambda img, _: nib.Nifti1Image(_data(img)[..., None], img.affine, img.header), True),
    "qform-only": (lambda img, _: _qform_only(img), True),
    "t1w-cropped": (lambda img, m: img.slicer[20:-20, 30:-10, 4:-4] if m == "T1w" else img,
                    True),
    "turned": (lambda img, _: nib.Nifti1Image(_data(img), _turn() @ img.affine, img.header),
               False),
    "offset-negative": (lambda img, _: _float(lambda d: d - 200)(img), False),
    "x1000": (lambda img, _: _float(lambda d: d * 1000)(img), False),
    "uint8": (lambda img, _: _uint8(img), False),
    "nan-background": (lambda img, _: _nan_background(img), False),
    "defaced": (lambda img, _: _defaced(img), False),
}


def write_variants(anat: Path, out: Path, variants: dict = VARIANTS) -> dict[str, Path]:
    """A BIDS dataset under ``out`` with one subject per variant; returns variant -> root."""
    images = {}
    for path in sorted(anat.glob("*.nii*")):
        modality = path.name.split("_")[-1].split(".")[0]
        images[modality] = nib.load(path)
    roots = {}
    for name, (change, _) in variants.items():
        root = out / "variants"
        folder = root / f"sub-{name.replace('-', '')}" / "anat"
        folder.mkdir(parents=True, exist_ok=True)
        for modality, img in images.items():
            label = name.replace("-", "")
            nib.save(change(img, modality), folder / f"sub-{label}_{modality}.nii.gz")
        roots[name] = root
    for root in set(roots.values()):
        (root / "dataset_description.json").write_text(json.dumps(
            {"Name": "storage variants", "BIDSVersion": "1.9.0"}))
        subjects = sorted(p.name for p in root.glob("sub-*"))
        (root / "participants.tsv").write_text("participant_id\n" + "\n".join(subjects) + "\n")
    return roots


def compare(predictions: Path, variants: dict = VARIANTS) -> list[dict]:
    """Lesion volume (mL), components and Dice with the original per variant."""
    from nibabel.processing import resample_from_to
    from scipy import ndimage

    def load(name: str) -> nib.Nifti1Image:
        label = name.replace("-", "")
        return nib.load(next((predictions / f"sub-{label}").rglob("*probseg.nii.gz")))

    original = load("original")
    reference = np.asarray(original.dataobj) >= THRESHOLD
    rows = []
    for name, (_, same_world) in variants.items():
        img = load(name)
        prob = np.asarray(img.dataobj, np.float32)
        lesion = prob >= THRESHOLD
        row = {"variant": name, "volume_ml": float(lesion.sum()) * float(
                   np.prod(img.header.get_zooms()[:3])) / 1000,
               "components": int(ndimage.label(lesion)[1]), "dice": np.nan}
        if name != "turned":  # its lesions moved with the head
            back = np.asarray(resample_from_to(nib.Nifti1Image(prob, img.affine), original,
                                               order=1).dataobj) >= THRESHOLD
            row["dice"] = 2 * float((back & reference).sum()) / max(
                float(back.sum() + reference.sum()), 1.0)
        row["same_image"] = same_world
        rows.append(row)
    return rows


def main() -> None:
    import pandas as pd

    from lesionkit.infer import predict
    from lesionkit.shipped import resolve_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("anat", type=Path, help="one subject's anat folder (FLAIR, T1w, ...)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default="flair-lesion-dr",
                        help="model folder or shipped model name")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    roots = write_variants(args.anat, args.out)
    model = resolve_model(args.model)
    predict(model, roots["original"], out_dir=args.out / "predictions", device="cpu")
    table = pd.DataFrame(compare(args.out / "predictions"))
    table.to_csv(args.out / "variants.tsv", sep="\t", index=False, float_format="%.3f")
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
