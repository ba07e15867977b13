"""Real lesion shapes: the shipped library, user folders, placement, rims, determinism."""

from __future__ import annotations

import csv
import gzip

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from lesionkit.cli import app
from lesionkit.io import InputError, load_volume
from lesionkit.simulate import simulate_cohort
from lesionkit.simulate.anatomy import draw_deformation, subject_anatomy
from lesionkit.simulate.lesion_library import (
    MIN_VOLUME_MM3,
    LibraryLesion,
    _rim_status,
    draw_library_lesions,
    draw_subject_ms_lesions,
    give_rims,
    load_lesion_library,
    ms_lesion_fractions,
    ms_table_rows,
    resolve_lesion_library,
    source_coordinates,
)
from lesionkit.simulate.lesions_ms import RIM_MIN_DIAMETER_MM, draw_ms_lesions, rim_crops

MNI_AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def library():
    return load_lesion_library()


@pytest.fixture(scope="module")
def subject():
    """A 2 mm subject: its deformation, anatomy and source coordinates."""
    deformation = draw_deformation(np.random.default_rng(3))
    anatomy = subject_anatomy(deformation, 2.0)
    return deformation, anatomy, source_coordinates(deformation, 2.0)


def _tsv(path):
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


#: Centres (MNI mm) of the two balls of :func:`_sphere_mask`.
_BALL_CENTRES = ((-26.0, -10.0, 28.0), (27.0, -20.0, 30.0))


def _sphere_mask(folder, name="synthetic_lesions.nii.gz"):
    """Two 12 mm balls in periventricular white matter on a 2 mm MNI grid."""
    shape = (91, 109, 91)
    ijk = np.indices(shape).reshape(3, -1).T
    xyz = ijk @ MNI_AFFINE[:3, :3].T + MNI_AFFINE[:3, 3]
    mask = np.zeros(len(xyz), np.uint8)
    for centre in _BALL_CENTRES:
        mask[np.linalg.norm(xyz - centre, axis=1) <= 6.0] = 1
    folder.mkdir(exist_ok=True)
    nib.save(nib.Nifti1Image(mask.reshape(shape), MNI_AFFINE), str(folder / name))
    return folder


def test_shipped_library_loads(library):
    assert library.source == "shipped" and len(library.masks) == 27
    for mask in library.masks:
        assert mask.name.startswith("patient") and mask.components
        for comp in mask.components:
            assert comp.mask.any() and comp.volume_mm3 >= MIN_VOLUME_MM3
            assert not comp.mask[[0, -1]].any() and not comp.mask[:, [0, -1]].any()
    loads = sorted(sum(c.volume_mm3 for c in m.components) / 1000 for m in library.masks)
    assert loads[0] < 1.0 and loads[-1] > 40.0  # from under 1 mL to tens of mL
    assert load_lesion_library() is library  # cached
    assert resolve_lesion_library("none") is None and resolve_lesion_library(None) is None
    assert resolve_lesion_library("shipped") is library


def test_source_coordinates_follow_the_deformation(subject):
    _, anatomy, coords = subject
    assert coords.shape == (3, *anatomy.shape)
    ijk = np.argwhere(anatomy.mask)
    world = ijk * np.diag(anatomy.affine)[:3] + anatomy.affine[:3, 3]
    shift = np.linalg.norm(world - coords[:, anatomy.mask].T, axis=1)
    assert 0.5 < shift.max() < 20.0  # a smooth deformation of a few mm


def test_library_lesions_in_white_matter_with_consistent_labels(library, subject):
    deformation, anatomy, _ = subject
    lesions = draw_subject_ms_lesions(np.random.default_rng(5), anatomy, (20, 20), library,
                                      deformation)
    lib = [les for les in lesions if isinstance(les, LibraryLesion)]
    assert lib and len(lib) < len(lesions)  # mixed with parametric lesions
    assert [les.label for les in lesions] == list(range(1, len(lesions) + 1))
    assert len({les.properties["source"] for les in lib}) == 1  # one patient's mask
    fractions, labels = ms_lesion_fractions(lesions, anatomy)
    assert set(np.unique(labels)) - {0} == {les.label for les in lesions}
    assert anatomy.mask[labels > 0].all() and (anatomy.wm[labels > 0] > 0).all()
    assert (fractions.total() <= anatomy.wm + 1e-6).all()
    edges = [f[(f > 0.02) & (f < 0.98)].size / max(np.count_nonzero(f), 1)
             for f in (fractions.crop(les.label)[1] for les in lib)]
    assert np.median(edges) > 0.2  # partial-volume edges, not a binary mask
    rows = ms_table_rows(lesions, fractions, anatomy.affine)
    types = [r["type"] for r in rows]
    assert types.count("library") == len(lib)
    assert set(types) - {"library"} <= {"periventricular", "juxtacortical", "deep"}
    assert all(r["volume_mm3"] >= MIN_VOLUME_MM3 - 1e-6 for r in rows if r["type"] == "library")


def test_rim_only_on_lesions_with_room_for_a_shell(library, subject):
    _, anatomy, coords = subject
    lesions = draw_library_lesions(np.random.default_rng(0), anatomy, library, coords, 10,
                                   rim_fraction=1.0, whole_mask=True)
    rims = [les for les in lesions if les.rim]
    assert rims and len(rims) < len(lesions)
    fractions, _ = ms_lesion_fractions(lesions, anatomy)
    shells = rim_crops(lesions, fractions, anatomy.affine)
    assert set(shells) == {les.label for les in rims}
    for les in rims:
        box, f = fractions.crop(les.label)
        shell = shells[les.label][1]
        assert shells[les.label][0] == box and (shell <= f + 1e-6).all()
        assert 0 < shell.sum() < f.sum()  # a shell around a core


def test_rim_draws_without_room_counted():
    status, unplaced = _rim_status(np.random.default_rng(0), [False, False, True], 1.0, 0.0)
    assert status == [(False, False), (False, False), (True, False)] and unplaced == 2
    status, unplaced = _rim_status(np.random.default_rng(0), [False, True, True], 0.0, 0.0)
    assert not any(rim for rim, _ in status) and unplaced == 0


def test_give_rims_only_to_rim_minus_lesions_with_room_for_a_shell(subject):
    _, anatomy, _ = subject
    lesions = draw_ms_lesions(np.random.default_rng(4), anatomy, n_range=(30, 30))
    room = [not les.rim and not les.uniform_paramagnetic
            and 2 * min(les.axes_mm) >= RIM_MIN_DIAMETER_MM for les in lesions]
    assert 2 < sum(room) < len(lesions)
    given = give_rims(np.random.default_rng(0), lesions, 2)
    changed = [k for k, (a, b) in enumerate(zip(lesions, given, strict=True)) if a != b]
    assert len(changed) == 2 and all(room[k] and given[k].rim for k in changed)
    for k in changed:
        assert {"rim_chi_ppb", "rim_thickness_mm"} <= set(given[k].properties)
        assert given[k].axes_mm == lesions[k].axes_mm and given[k].label == lesions[k].label
    everyone = give_rims(np.random.default_rng(0), lesions, 100)  # more than qualify
    assert sum(les.rim for les in everyone) == sum(les.rim for les in lesions) + sum(room)


def test_keep_rim_fraction_moves_lost_rims_and_nothing_else(library, subject):
    deformation, anatomy, _ = subject
    moved = 0
    for seed in range(3):
        kept, lost = (draw_subject_ms_lesions(
            np.random.default_rng(seed), anatomy, (20, 20), library, deformation,
            rim_fraction=0.3, keep_rim_fraction=keep) for keep in (True, False))
        assert [les.label for les in kept] == [les.label for les in lost]
        for a, b in zip(kept, lost, strict=True):  # the same lesions, some now rim+
            assert a.axes_mm == b.axes_mm and a.centre_mm == b.centre_mm
            assert a.rim >= b.rim and (a.rim == b.rim or not isinstance(a, LibraryLesion))
        moved += sum(a.rim and not b.rim for a, b in zip(kept, lost, strict=True))
    assert moved > 0


def test_same_seed_same_lesions_and_parametric_only_unchanged(library, subject):
    deformation, anatomy, _ = subject

    def draw(seed, lib):
        lesions = draw_subject_ms_lesions(np.random.default_rng(seed), anatomy, (5, 30), lib,
                                          deformation)
        return ms_lesion_fractions(lesions, anatomy)

    (f1, l1), (f2, l2) = draw(7, library), draw(7, library)
    assert np.array_equal(l1, l2) and np.array_equal(f1.total(), f2.total())
    assert not np.array_equal(l1, draw(8, library)[1])
    plain = draw_ms_lesions(np.random.default_rng(7), anatomy, n_range=(5, 30))
    assert np.array_equal(draw(7, None)[1], ms_lesion_fractions(plain, anatomy)[1])


def test_cohort_with_shipped_library(tmp_path):
    root = simulate_cohort("rim-classify", tmp_path / "ds", 1, 0, 2)
    anat = root / "derivatives/phantom/sub-01/anat"
    rows = _tsv(anat / "sub-01_lesions.tsv")
    assert "library" in {r["type"] for r in rows}
    labels = load_volume(next(anat.glob("*desc-lesions_dseg.nii.gz"))).data
    brain = load_volume(next(anat.glob("*desc-brain_mask.nii.gz"))).data > 0
    assert set(np.unique(labels)) - {0} == {int(r["label"]) for r in rows}
    assert brain[labels > 0].all()
    (participant,) = _tsv(root / "participants.tsv")
    assert participant["lesion_library"] == "shipped"
    assert participant["lesion_library_mask"].startswith("patient")


def test_user_folder_with_one_mask(tmp_path, subject):
    folder = _sphere_mask(tmp_path / "masks")
    (folder / "notes.txt").write_text("not a mask")
    user = load_lesion_library(folder)
    assert user.source == str(folder.resolve())
    assert [m.name for m in user.masks] == ["synthetic_lesions"]
    assert len(user.masks[0].components) == 2
    for comp in user.masks[0].components:  # each crop sits where its ball was drawn
        centre = np.argwhere(comp.mask).mean(0) @ comp.affine[:3, :3].T + comp.affine[:3, 3]
        assert min(np.linalg.norm(centre - c) for c in _BALL_CENTRES) < 1.0
        assert 4.0 <= comp.depth_mm <= 6.0  # a 6 mm radius, measured at 2 mm voxel centres
    _, anatomy, coords = subject
    lesions = draw_library_lesions(np.random.default_rng(0), anatomy, user, coords, 5)
    assert len(lesions) == 2
    assert all(les.properties["source"] == "synthetic_lesions" for les in lesions)
    for les in lesions:  # a 12 mm ball: about 900 mm^3 (less what falls outside WM)
        assert 300 < float(les.fraction.sum()) * 8.0 < 1200
    root = simulate_cohort("rim-classify", tmp_path / "ds", 1, 0, 2, lesion_library=folder)
    (participant,) = _tsv(root / "participants.tsv")
    assert participant["lesion_library"] == str(folder.resolve())
    assert participant["lesion_library_mask"] in ("synthetic_lesions", "n/a")


def test_bad_folders_raise_input_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"empty: expected a folder of binary lesion masks.*"
                                         r"found no \.nii or \.nii\.gz file"):
        load_lesion_library(empty)
    with pytest.raises(InputError, match="found no such folder"):
        load_lesion_library(tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.nii.gz").write_bytes(gzip.compress(b"not a nifti"))
    with pytest.raises(InputError, match=r"a\.nii\.gz: expected a readable NIfTI"):
        load_lesion_library(broken)
    four_d = tmp_path / "four_d"
    four_d.mkdir()
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 2), np.uint8), MNI_AFFINE), str(four_d / "m.nii"))
    with pytest.raises(InputError, match=r"m\.nii: expected a 3D image, found 4D"):
        load_lesion_library(four_d)
    blank = tmp_path / "blank"
    blank.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.uint8), MNI_AFFINE), str(blank / "m.nii"))
    with pytest.raises(InputError, match="without any"):
        load_lesion_library(blank)
    with pytest.raises(InputError, match="empty: expected a folder"):
        simulate_cohort("mrf-lesion", tmp_path / "ds", 1, 0, 2, lesion_library=empty)
    assert not (tmp_path / "ds").exists()


def test_cli_lesion_library_option(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["simulate", "rim-classify", str(tmp_path / "x"),
                                      "--subjects", "1", "--lesion-library", str(empty)])
    assert result.exit_code == 1
    assert "expected a folder of binary lesion masks" in result.stderr
    assert "--lesion-library" in CliRunner().invoke(app, ["simulate", "--help"]).stdout
