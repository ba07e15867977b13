"""Tests of NIfTI loading, validation and atomic writing."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lesionkit.io import (
    InputError,
    atomic_path,
    check_same_grid,
    check_values,
    is_dicom,
    load_affine,
    load_volume,
    read_sidecar,
    save_volume,
    sidecar_unit_factor,
    write_json,
    write_tsv,
)
from lesionkit.volume import Volume, resample_to


def oblique_affine(spacing: tuple[float, float, float] = (1.2, 0.9, 2.0)) -> np.ndarray:
    """A non-identity affine: rotated about two axes, anisotropic, shifted."""
    a, b = np.deg2rad(17.0), np.deg2rad(-8.0)
    rot_z = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rot_x = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rot_z @ rot_x @ np.diag(spacing)
    affine[:3, 3] = [-91.5, 12.25, 40.0]
    return affine


def write_raw(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def test_round_trip_keeps_oblique_affine_dtype_and_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(-500, 3000, size=(7, 6, 5)).astype(np.int16)
    affine = oblique_affine()
    path = save_volume(Volume(data, affine, kind="intensity", unit="a.u."), tmp_path / "a.nii.gz")
    loaded = load_volume(path)
    assert loaded.data.dtype == np.int16
    np.testing.assert_array_equal(loaded.data, data)
    np.testing.assert_allclose(loaded.affine, affine, atol=1e-5)
    np.testing.assert_allclose(loaded.spacing, (1.2, 0.9, 2.0), atol=1e-5)
    # A second round trip through the header keeps everything too.
    again = load_volume(save_volume(loaded, tmp_path / "b.nii"))
    np.testing.assert_array_equal(again.data, data)
    np.testing.assert_allclose(again.affine, affine, atol=1e-5)


def test_float_data_on_an_integer_header_is_written_as_float(tmp_path: Path) -> None:
    volume = Volume(np.zeros((3, 3, 3), np.int16), oblique_affine())
    loaded = load_volume(save_volume(volume, tmp_path / "int.nii.gz"))
    values = np.full((3, 3, 3), 1.5, np.float32)
    out = load_volume(save_volume(loaded.with_data(values), tmp_path / "float.nii.gz"))
    assert out.data.dtype == np.float32
    np.testing.assert_array_equal(out.data, values)


def _header(path: Path, data: np.ndarray, affine: np.ndarray, qform: int, sform: int,
            unit: str = "mm") -> Path:
    image = nib.Nifti1Image(data, None)
    image.set_sform(affine, code=sform)
    image.set_qform(affine, code=qform)
    image.header.set_xyzt_units(xyz=unit)
    nib.save(image, str(path))
    return path


@pytest.mark.parametrize("qform, sform", [(1, 0), (0, 2), (1, 1)])
def test_either_orientation_code_places_the_image(tmp_path: Path, qform: int,
                                                  sform: int) -> None:
    affine = oblique_affine()
    path = _header(tmp_path / "a.nii", np.ones((4, 4, 4), np.float32), affine, qform, sform)
    np.testing.assert_allclose(load_volume(path).affine, affine, atol=1e-5)
    np.testing.assert_allclose(load_affine(path), affine, atol=1e-5)


def test_header_without_orientation_is_refused(tmp_path: Path) -> None:
    path = _header(tmp_path / "sub-01_FLAIR.nii", np.ones((4, 4, 4), np.float32),
                   oblique_affine(), 0, 0)
    for load in (load_volume, load_affine):
        with pytest.raises(InputError, match=r"sub-01_FLAIR\.nii: expected a header that "
                                             r"places .* found both 0"):
            load(path)


def test_singular_or_non_finite_affine_is_refused(tmp_path: Path) -> None:
    affine = oblique_affine()
    affine[:3, 2] = 2 * affine[:3, 0]  # the third voxel axis along the first
    path = _header(tmp_path / "a.nii", np.ones((4, 4, 4), np.float32), affine, 0, 2)
    with pytest.raises(InputError, match=r"expected an invertible .* found a singular one"):
        load_volume(path)
    affine = oblique_affine()
    affine[0, 3] = np.nan
    path = _header(tmp_path / "b.nii", np.ones((4, 4, 4), np.float32), affine, 0, 2)
    with pytest.raises(InputError, match="expected a finite voxel-to-world affine"):
        load_volume(path)


def test_voxel_sizes_that_cannot_be_mm_of_a_head_are_refused(tmp_path: Path) -> None:
    data = np.ones((320, 320, 4), np.int16)
    # A clinical 2D FLAIR's grid (0.72 mm, 4 mm slices) is kept; read in cm it is metres.
    _header(tmp_path / "mm.nii", data, np.diag([0.72, 0.72, 4.0, 1.0]), 1, 1)
    assert load_volume(tmp_path / "mm.nii").data.shape == (320, 320, 4)
    path = _header(tmp_path / "cm.nii", data, np.diag([7.2, 7.2, 40.0, 1.0]), 1, 1, "meter")
    with pytest.raises(InputError, match=r"cm\.nii: expected voxel sizes in mm .* found 7\.2 x "
                                         r"7\.2 x 40 mm voxels and a field of view of 2\.3e\+03"
                                         r" x 2\.3e\+03 x 160 mm; its header gives the spatial "
                                         r"unit as meter"):
        load_volume(path)
    # A single slice's thickness is not a field of view.
    path = _header(tmp_path / "one.nii", np.ones((8, 8, 1), np.int16),
                   np.diag([1.0, 1.0, 30.0, 1.0]), 1, 1)
    assert load_volume(path).data.shape == (8, 8, 1)


def test_dicom_is_recognised_by_its_magic_or_its_name(tmp_path: Path) -> None:
    series = tmp_path / "study" / "SE2"
    series.mkdir(parents=True)
    (series / "IM0001").write_bytes(bytes(128) + b"DICM" + bytes(10))
    (tmp_path / "scan.IMA").write_bytes(b"x")
    nifti = write_raw(tmp_path / "a.nii", np.ones((4, 4, 4), np.float32))
    assert is_dicom(series / "IM0001") and is_dicom(series) and is_dicom(tmp_path / "study")
    assert is_dicom(tmp_path / "scan.IMA")
    assert not is_dicom(nifti) and not is_dicom(tmp_path / "absent")
    (tmp_path / "scan.IMA").unlink()
    (series / "IM0001").unlink()
    assert not is_dicom(tmp_path)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sub-01_T1w.nii.gz"
    with pytest.raises(InputError, match=r"sub-01_T1w\.nii\.gz.*expected.*found no such file"):
        load_volume(path)


def test_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "sub-01_FLAIR.nii.gz", np.ones((20, 20, 20), np.float32))
    payload = path.read_bytes()
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(InputError, match=r"sub-01_FLAIR\.nii\.gz.*expected a readable"):
        load_volume(path)


def test_garbage_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sub-01_T2w.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti header at all"))
    with pytest.raises(InputError, match=r"sub-01_T2w\.nii\.gz.*unreadable"):
        load_volume(path)


def test_a_compressed_file_named_nii_or_the_reverse_says_so(tmp_path: Path) -> None:
    image = write_raw(tmp_path / "sub-01_T1w.nii.gz", np.ones((4, 4, 4), np.float32))
    named_nii = tmp_path / "sub-02_T1w.nii"
    named_nii.write_bytes(image.read_bytes())
    with pytest.raises(InputError, match=r"sub-02_T1w\.nii: .*a gzip-compressed NIfTI named "
                                         r"\.nii: rename it \.nii\.gz"):
        load_volume(named_nii)
    named_gz = tmp_path / "sub-03_T1w.nii.gz"
    named_gz.write_bytes(gzip.decompress(image.read_bytes()))
    with pytest.raises(InputError, match=r"an uncompressed NIfTI named \.nii\.gz: rename it "
                                         r"\.nii\)"):
        load_volume(named_gz)


def test_4d_where_3d_expected(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "sub-01_R1map.nii.gz", np.ones((4, 4, 4, 3), np.float32))
    with pytest.raises(InputError, match=r"sub-01_R1map\.nii\.gz: expected a 3D image, found 4D"):
        load_volume(path, ndim=3)


def test_trailing_axes_of_length_one_are_dropped(tmp_path: Path) -> None:
    data = np.arange(64, dtype=np.float32).reshape(4, 4, 4)
    for shape in [(4, 4, 4, 1), (4, 4, 4, 1, 1)]:
        path = write_raw(tmp_path / f"{len(shape)}d.nii", data.reshape(shape))
        np.testing.assert_array_equal(load_volume(path).data, data)
    series = write_raw(tmp_path / "series.nii", np.ones((4, 4, 4, 3, 1), np.float32))
    assert load_volume(series, ndim=4).data.shape == (4, 4, 4, 3)
    with pytest.raises(InputError, match="expected a 3D image, found 4D"):
        load_volume(series, ndim=3)


def test_2d_where_3d_expected(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "sub-01_FLAIR.nii.gz", np.ones((16, 16), np.float32))
    with pytest.raises(InputError, match=r"sub-01_FLAIR\.nii\.gz: expected a 3D image, found 2D"):
        load_volume(path)


def test_3d_where_4d_expected(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "sub-01_MRF.nii.gz", np.ones((4, 4, 4), np.float32))
    with pytest.raises(InputError, match=r"sub-01_MRF\.nii\.gz: expected a 4D image, found 3D"):
        load_volume(path, ndim=4)


@pytest.mark.parametrize(("dtype", "found"), [
    (np.complex64, "complex data"),
    (np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")]), "RGB or other multi-component data")])
def test_complex_or_rgb_voxels_are_refused(tmp_path: Path, dtype: np.dtype, found: str
                                           ) -> None:
    data = np.zeros((4, 4, 4), dtype)  # a complex reconstruction or a screenshot-like RGB
    path = write_raw(tmp_path / "sub-01_FLAIR.nii.gz", data)
    with pytest.raises(InputError, match=rf"sub-01_FLAIR\.nii\.gz: expected one real number "
                                         rf"per voxel, found {found}"):
        load_volume(path)


@pytest.mark.parametrize(("units", "unit", "factor"), [
    ("ppm", "ppb", 1000.0), ("ppb", "ppb", 1.0), ("s", "ms", 1000.0), ("1/s", "s^-1", 1.0),
    ("Hz", "s^-1", 1.0), ("1/ms", "s^-1", 1000.0), ("mm^2/s", "1e-3 mm^2/s", 1000.0),
    ("um^2/s", "1e-3 mm^2/s", 0.001), (None, "ms", 1.0), ("a.u.", "a.u.", 1.0),
    ("ms", "1", 1.0)])
def test_sidecar_units_convert_to_the_task_unit(tmp_path: Path, units: str | None, unit: str,
                                                factor: float) -> None:
    image, sidecar = tmp_path / "sub-01_T1map.nii.gz", tmp_path / "sub-01_T1map.json"
    sidecar.write_text(json.dumps({} if units is None else {"Units": units}))
    assert sidecar_unit_factor(image, sidecar, unit)[0] == factor


def test_sidecar_units_that_do_not_convert_are_refused(tmp_path: Path) -> None:
    sidecar = tmp_path / "sub-01_Chimap.json"
    sidecar.write_text(json.dumps({"Units": "rad"}))
    with pytest.raises(InputError, match=r"sub-01_Chimap\.nii\.gz: expected values in ppb, "
                                         r"found Units 'rad' in sub-01_Chimap\.json"):
        sidecar_unit_factor(tmp_path / "sub-01_Chimap.nii.gz", sidecar, "ppb")
    assert sidecar_unit_factor(tmp_path / "x.nii.gz", tmp_path / "none.json", "ppb") == (1.0,
                                                                                        None)


@pytest.mark.parametrize("content", [b'{"Units": "s",', b'{"Name": "\xff\xfe"}'])
def test_an_unreadable_sidecar_is_named_in_a_warning(tmp_path: Path, capsys,
                                                     content: bytes) -> None:
    """Broken JSON and bytes that are not UTF-8: the values read as the task's unit, and
    the user is told which file was not read."""
    sidecar = tmp_path / "sub-01_T1map.json"
    sidecar.write_bytes(content)
    assert sidecar_unit_factor(tmp_path / "sub-01_T1map.nii.gz", sidecar, "ms") == (1.0, None)
    warning = capsys.readouterr().err
    assert warning.startswith(f"warning: {sidecar}: expected a JSON sidecar, found an "
                              "unreadable file (")
    assert warning.rstrip().endswith("values read as ms")
    assert read_sidecar(tmp_path / "absent.json", "unused") == {}
    assert capsys.readouterr().err == ""


def test_susceptibility_in_ppm_is_caught_by_its_spread() -> None:
    rng = np.random.default_rng(0)
    ppb = rng.normal(0.0, 40.0, (20, 20, 20)).astype(np.float32)  # tissue and veins, ppb
    check_values(Path("sub-01_Chimap.nii.gz"), ppb, "ppb")
    with pytest.raises(InputError, match=r"sub-01_Chimap\.nii\.gz: expected values in ppb .*"
                                         r"is the map in another unit \(ppm\)"):
        check_values(Path("sub-01_Chimap.nii.gz"), ppb / 1000, "ppb")


def test_negative_label_is_refused(tmp_path: Path) -> None:
    labels = np.zeros((4, 4, 4), np.int16)
    labels[1, 1, 1] = -1  # a lesion drawn as -1: it would count as background
    path = write_raw(tmp_path / "sub-01_label-lesion_mask.nii.gz", labels)
    with pytest.raises(InputError, match=r"lesion_mask\.nii\.gz: expected a mask or label map "
                                         r"of 0 \(background\) and positive labels, found "
                                         r"values down to -1"):
        load_volume(path, kind="label")
    assert load_volume(path).data.min() == -1  # an intensity image may be negative


def test_two_valued_image_is_refused_where_grey_values_are_expected() -> None:
    mask = np.zeros((4, 4, 4), np.float32)
    mask[1:3] = 1.0
    with pytest.raises(InputError, match=r"sub-01_FLAIR\.nii\.gz: expected an image of grey "
                                         r"values, found only two values \(0 and 1\)"):
        check_values(Path("sub-01_FLAIR.nii.gz"), mask, "a.u.")
    check_values(Path("sub-01_lesions.nii.gz"), mask, "", kind="label")  # labels may be
    mask[0, 0, 0] = 0.5
    check_values(Path("sub-01_FLAIR.nii.gz"), mask, "a.u.")


@pytest.mark.parametrize(("bad", "kind"), [(np.inf, "intensity"), (np.nan, "label"),
                                           (np.nan, "probability")])
def test_non_finite_values(tmp_path: Path, bad: float, kind: str) -> None:
    data = np.ones((4, 4, 4), np.float32)
    data[1, 2, 3] = bad
    path = write_raw(tmp_path / "sub-01_T1map.nii.gz", data)
    with pytest.raises(InputError, match=r"sub-01_T1map\.nii\.gz: expected finite values"):
        load_volume(path, kind=kind)


@pytest.mark.parametrize(("values", "background"), [((5.0, 9.0), 5.0), ((-3.0, 4.0), 0.0),
                                                    ((-9.0, -2.0), -2.0)])
def test_nan_marks_voxels_without_data(tmp_path: Path, values: tuple, background: float
                                       ) -> None:
    data = np.full((4, 4, 4), values[1], np.float32)
    data[0] = values[0]
    data[3, :2] = np.nan  # SPM and FSL store "no data" as NaN
    volume = load_volume(write_raw(tmp_path / "sub-01_FLAIR.nii.gz", data))
    assert volume.missing.sum() == 8 and volume.missing[3, :2].all()
    assert np.isfinite(volume.data).all() and volume.data.dtype == np.float32
    np.testing.assert_array_equal(volume.data[3, :2], background)
    np.testing.assert_array_equal(volume.data[~volume.missing], data[~volume.missing])
    assert load_volume(write_raw(tmp_path / "sub-01_T1w.nii.gz", data[:3])).missing is None
    with pytest.raises(InputError, match=r"found 64 NaN and 0 Inf voxels of 64"):
        load_volume(write_raw(tmp_path / "sub-02_FLAIR.nii.gz", data * np.nan))


def test_shape_mismatch_names_the_file() -> None:
    a = Volume(np.zeros((4, 4, 4)), np.eye(4))
    b = Volume(np.zeros((4, 4, 5)), np.eye(4))
    with pytest.raises(InputError, match=r"sub-01_FLAIR.*expected the grid of sub-01_T1w.*shape"):
        check_same_grid({"sub-01_T1w.nii.gz": a, "sub-01_FLAIR.nii.gz": b})


def test_affine_mismatch_beyond_tolerance_names_the_file() -> None:
    shifted = np.eye(4)
    shifted[0, 3] = 0.5
    a = Volume(np.zeros((4, 4, 4)), np.eye(4))
    b = Volume(np.zeros((4, 4, 4)), shifted)
    with pytest.raises(InputError, match=r"sub-01_FLAIR.*within 0\.01 mm.*0\.5 mm"):
        check_same_grid({"sub-01_T1w": a, "sub-01_FLAIR": b}, atol_mm=0.01)
    nudged = np.eye(4)
    nudged[0, 3] = 0.001
    check_same_grid({"a": a, "b": Volume(np.zeros((4, 4, 4)), nudged)}, atol_mm=0.01)


def test_interrupted_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out" / "sub-01_desc-enhanced_R1map.nii.gz"

    def crash(image: nib.Nifti1Image, filename: str) -> None:
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(nib, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_volume(Volume(np.zeros((3, 3, 3), np.float32), np.eye(4)), target)
    assert list(target.parent.iterdir()) == []


def test_atomic_path_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "table.tsv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("new but broken")
        raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.tsv"]


def test_all_or_nothing_lands_a_set_of_files_together_or_none(tmp_path: Path) -> None:
    from lesionkit.io import all_or_nothing

    kept = tmp_path / "old.json"
    write_json({"a": 1}, kept)
    with pytest.raises(RuntimeError), all_or_nothing():
        write_json({"a": 2}, kept)
        write_json({"b": 1}, tmp_path / "sub-01" / "anat" / "new.json")
        assert not (tmp_path / "sub-01" / "anat" / "new.json").exists()  # not before the end
        raise RuntimeError("the third output failed")
    assert json.loads(kept.read_text()) == {"a": 1}  # the earlier file untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]  # no folder, no temp
    with all_or_nothing():
        write_json({"a": 2}, kept)
        with all_or_nothing():  # an inner block hands its files to the outer one
            write_json({"b": 1}, tmp_path / "sub-01" / "anat" / "new.json")
        assert not (tmp_path / "sub-01" / "anat" / "new.json").exists()
    assert json.loads(kept.read_text()) == {"a": 2}
    assert json.loads((tmp_path / "sub-01" / "anat" / "new.json").read_text()) == {"b": 1}
    assert not [p for p in tmp_path.rglob(".*")]


def test_outputs_get_the_usual_permissions(tmp_path: Path) -> None:
    import os

    umask = os.umask(0o022)
    try:
        path = write_json({}, tmp_path / "a.json")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_json_is_strict_with_nan_as_null(tmp_path: Path) -> None:
    import json

    write_json({"auc": float("nan"), "rows": [np.float64("inf"), 1.0]}, tmp_path / "a.json")
    text = (tmp_path / "a.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {
        "auc": None, "rows": [None, 1.0]}


def test_json_and_tsv_writers(tmp_path: Path) -> None:
    write_json({"Units": "s^-1", "value": np.float32(1.5)}, tmp_path / "a.json")
    assert '"value": 1.5' in (tmp_path / "a.json").read_text()
    write_tsv([{"a": 1, "b": 2}, {"a": 3, "c": 4}], tmp_path / "t.tsv")
    assert (tmp_path / "t.tsv").read_text().splitlines() == ["a\tb\tc", "1\t2\tn/a", "3\tn/a\t4"]


def test_resample_picks_interpolation_from_kind() -> None:
    labels = np.zeros((8, 8, 8), np.int16)
    labels[2:6, 2:6, 2:6] = 3
    volume = Volume(labels, oblique_affine((2.0, 2.0, 2.0)), kind="label")
    fine = oblique_affine((1.0, 1.0, 1.0))
    out = resample_to(volume, (16, 16, 16), fine)
    assert set(np.unique(out.data)) <= {0, 3}
    assert out.data.dtype == np.int16
    np.testing.assert_allclose(out.affine, fine)


def test_temporaries_of_killed_writers_are_removed(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from lesionkit.io import remove_stale_temporaries

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / "sub-01" / f".sub-01_T1w.nii.gz.{dead}.a1b2c3d4.tmp.nii.gz"
    live = tmp_path / f".table.tsv.{os.getpid()}.tmpq8x_z1.tmp.tsv"
    stale.parent.mkdir()
    stale.write_bytes(b"half")
    live.write_text("being written")
    (tmp_path / "sub-01_T1w.nii.gz").write_bytes(b"done")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert live.is_file() and (tmp_path / "sub-01_T1w.nii.gz").is_file()
    with atomic_path(tmp_path / "x.tsv") as tmp:
        assert f".{os.getpid()}." in tmp.name  # the writer's id is in the name
    partial = tmp_path / f".cohort.{dead}.partial-x1y2"
    (partial / "sub-01").mkdir(parents=True)
    assert remove_stale_temporaries(tmp_path, recursive=False) == [partial]
