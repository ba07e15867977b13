"""End-to-end phantom cohorts at 2 mm: layout, units, affines, determinism, lesion contrast."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from lesionkit.bids import BIDSDataset
from lesionkit.io import InputError, load_volume
from lesionkit.simulate import simulate_cohort
from lesionkit.simulate.signal import reslice


# Small cohorts (2 mm), simulated once per session. They live here rather than in a
# conftest.py: test modules elsewhere import helpers with ``from conftest import ...``,
# which a second conftest module would shadow.
@pytest.fixture(scope="session")
def fcd_cohort(tmp_path_factory):
    """fcd-classify, a patient (sub-01) and a control (sub-02), with previews."""
    return simulate_cohort("fcd-classify", tmp_path_factory.mktemp("fcd") / "ds", 2, 0, 2,
                           preview=True)


@pytest.fixture(scope="session")
def enhance_cohort(tmp_path_factory):
    """enhance-r1: a control (sub-01) and an FCD subject (sub-02); 3T 2 mm, 7T 1 mm."""
    return simulate_cohort("enhance-r1", tmp_path_factory.mktemp("er1") / "ds", 2, 0, 2)


@pytest.fixture(scope="session")
def mrf_cohort(tmp_path_factory):
    """mrf-lesion, one MS patient."""
    return simulate_cohort("mrf-lesion", tmp_path_factory.mktemp("mrf") / "ds", 1, 0, 2)


@pytest.fixture(scope="session")
def rim_cohort(tmp_path_factory):
    """rim-classify, one MS patient (seed 0)."""
    return simulate_cohort("rim-classify", tmp_path_factory.mktemp("rim") / "ds", 1, 0, 2)


@pytest.fixture(scope="session")
def contrast_cohort(tmp_path_factory):
    """contrast-amplify, one tumour patient (seed 0: one metastasis)."""
    return simulate_cohort("contrast-amplify", tmp_path_factory.mktemp("ca") / "ds", 1, 0, 2)


def _load(root: Path, pattern: str) -> np.ndarray:
    (path,) = sorted(root.glob(pattern))
    return load_volume(path).data


def _nawm_core(root: Path, sub: str = "01") -> np.ndarray:
    nawm = _load(root, f"derivatives/phantom/sub-{sub}/anat/*label-NAWM_probseg.nii.gz")
    lesion = _load(root, f"derivatives/phantom/sub-{sub}/anat/*label-lesion_mask.nii.gz") > 0
    return (nawm > 0.95) & ~ndimage.binary_dilation(lesion, iterations=2)


def test_unknown_task_and_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"unknown task .*enhance-r1.*rim-classify"):
        simulate_cohort("segment-all", tmp_path / "x", 1, 0, 2)
    with pytest.raises(ValueError, match="resolution"):
        simulate_cohort("rim-classify", tmp_path / "x", 1, 0, 3)


def test_refuses_a_non_empty_other_folder_and_replaces_its_own(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="empty folder"):
        simulate_cohort("rim-classify", other, 1, 0, 2)
    assert (other / "notes.txt").read_text() == "keep me"
    own = tmp_path / "own"
    (own / "sub-09").mkdir(parents=True)
    (own / "dataset_description.json").write_text(json.dumps({"Name": "lesionkit phantom "
                                                                      "rim-classify"}))
    calls = []
    simulate_cohort("rim-classify", own, 1, 0, 2, progress=calls.append)
    assert calls == [1]
    assert not (own / "sub-09").exists()
    assert BIDSDataset(own).subjects() == ["01"]


def test_interrupted_simulation_leaves_nothing_and_keeps_the_earlier_cohort(tmp_path):
    out = tmp_path / "rim"
    simulate_cohort("rim-classify", out, 1, 0, 2)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def interrupt(n: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate_cohort("rim-classify", out, 2, 1, 2, progress=interrupt)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["rim"]
    with pytest.raises(KeyboardInterrupt):
        simulate_cohort("rim-classify", tmp_path / "new", 1, 0, 2, progress=interrupt)
    assert [p.name for p in tmp_path.iterdir()] == ["rim"]


def test_every_output_has_units_and_one_affine_per_grid(fcd_cohort, enhance_cohort, mrf_cohort,
                                                        rim_cohort, contrast_cohort):
    for root in (fcd_cohort, enhance_cohort, mrf_cohort, rim_cohort, contrast_cohort):
        grids = defaultdict(list)
        for path in root.rglob("*.nii.gz"):
            sidecar = json.loads(path.with_name(path.name[:-7] + ".json").read_text())
            assert sidecar["Units"] and sidecar["Phantom"] is True, path
            assert sidecar["PhantomSeed"] == 0
            vol = load_volume(path, ndim=4 if path.name.endswith("_MRF.nii.gz") else 3)
            assert np.isfinite(vol.data).all(), path
            sub = next(p for p in path.parts if p.startswith("sub-"))
            grids[(sub, vol.shape[:3])].append(vol.affine)
        for affines in grids.values():
            for a in affines:
                np.testing.assert_allclose(a, affines[0], atol=1e-6)
    raw = json.loads(next(mrf_cohort.rglob("sub-01_MRF.json")).read_text())
    assert len(raw["FlipAngle"]) == len(raw["EchoTime"]) == 35
    flair = json.loads(next(fcd_cohort.rglob("sub-01_FLAIR.json")).read_text())
    assert flair["RepetitionTime"] == 9.0 and flair["InversionTime"] == 2.5
    assert flair["MagneticFieldStrength"] == 3.0 and flair["Units"] == "a.u."
    chi = json.loads(next(rim_cohort.rglob("sub-01_Chimap.json")).read_text())
    assert chi["Units"] == "ppb"


def test_enhance_r1_grids_fields_and_fcd(enhance_cohort):
    ds = BIDSDataset(enhance_cohort)
    assert ds.participants()["group"].tolist() == ["control", "fcd"]
    raw = enhance_cohort / "sub-01"
    r3 = load_volume(raw / "ses-3T/anat/sub-01_ses-3T_R1map.nii.gz")
    native = load_volume(raw / "ses-3T/anat/sub-01_ses-3T_acq-native_R1map.nii.gz")
    r7 = load_volume(raw / "ses-7T/anat/sub-01_ses-7T_R1map.nii.gz")
    assert r3.spacing == r7.spacing == (1.0, 1.0, 1.0) and native.spacing == (2.0, 2.0, 2.0)
    np.testing.assert_allclose(r3.affine, r7.affine)

    truth = enhance_cohort / "derivatives/phantom/sub-01/ses-7T/anat"
    wm = _load(truth, "*label-WM_probseg.nii.gz") > 0.95
    assert np.median(r3.data[wm]) > 1.05 * np.median(r7.data[wm])  # R1 falls with field
    # the 3T map is noisier (SNR 12 against 20) and blurrier: further from its truth
    r1_true7 = _load(truth, "*_R1map.nii.gz")
    err7 = np.sqrt(np.mean((r7.data - r1_true7)[wm] ** 2)) / np.median(r1_true7[wm])
    scale = np.median(r3.data[wm]) / np.median(r1_true7[wm])
    err3 = np.sqrt(np.mean((r3.data / scale - r1_true7)[wm] ** 2)) / np.median(r1_true7[wm])
    assert err3 > err7
    # the ses-3T map is the native map resliced onto the 7T grid with an order-4 B-spline
    brain = _load(truth, "*desc-brain_mask.nii.gz") > 0
    again = reslice(native.data, native.affine, r7.shape, r7.affine, order=4)
    np.testing.assert_allclose(r3.data[brain], again[brain], atol=1e-4)
    assert (r3.data[~brain] == 0).all()
    les1 = _load(truth, "*label-lesion_mask.nii.gz")
    les2 = _load(enhance_cohort / "derivatives/phantom/sub-02/ses-7T/anat",
                 "*label-lesion_mask.nii.gz")
    assert les1.sum() == 0 and les2.sum() > 0


def test_fcd_classify_groups_and_images(fcd_cohort):
    ds = BIDSDataset(fcd_cohort)
    table = ds.participants()
    assert table["group"].tolist() == ["patient", "control"]
    assert _load(fcd_cohort, "derivatives/phantom/sub-01/anat/*lesion_mask.nii.gz").sum() > 0
    assert _load(fcd_cohort, "derivatives/phantom/sub-02/anat/*lesion_mask.nii.gz").sum() == 0
    t1w = _load(fcd_cohort, "sub-01/anat/sub-01_T1w.nii.gz")
    gm = _load(fcd_cohort, "derivatives/phantom/sub-01/anat/*GM_probseg.nii.gz") > 0.9
    csf = _load(fcd_cohort, "derivatives/phantom/sub-01/anat/*CSF_probseg.nii.gz") > 0.9
    core = _nawm_core(fcd_cohort)
    assert np.median(t1w[core]) > np.median(t1w[gm]) > np.median(t1w[csf])  # MPRAGE order
    assert (fcd_cohort / "derivatives/phantom/sub-01/figures/sub-01_preview.png").is_file()


def test_ms_lesions_darker_on_t1w_brighter_on_flair(mrf_cohort):
    lesion = _load(mrf_cohort, "derivatives/phantom/sub-01/anat/*label-lesion_mask.nii.gz") > 0
    assert lesion.sum() > 0
    core = _nawm_core(mrf_cohort)
    t1w = _load(mrf_cohort, "sub-01/anat/sub-01_T1w.nii.gz")
    flair = _load(mrf_cohort, "sub-01/anat/sub-01_FLAIR.nii.gz")
    assert t1w[lesion].mean() < 0.9 * t1w[core].mean()
    assert flair[lesion].mean() > 1.05 * flair[core].mean()
    t1 = _load(mrf_cohort, "derivatives/phantom/sub-01/anat/*T1map.nii.gz")
    assert t1[lesion].mean() > t1[core].mean()
    mrf = load_volume(next(mrf_cohort.rglob("sub-01_MRF.nii.gz")), ndim=4)
    assert mrf.shape[-1] == 35


def test_tumours_enhance_with_dose_and_have_higher_adc(contrast_cohort):
    anat = contrast_cohort / "sub-01/anat"
    enh = _load(contrast_cohort, "derivatives/phantom/sub-01/anat/*enhancing_probseg.nii.gz")
    enhancing = enh > 0.5
    assert enhancing.sum() > 0
    core = _nawm_core(contrast_cohort)
    pre, low, std, ref = (_load(anat, f"*{n}_T1w.nii.gz") for n in
                          ("sub-01", "acq-low_ce-gadolinium", "acq-standard_ce-gadolinium",
                           "acq-reference_ce-gadolinium"))

    def lbr(img):  # lesion-to-brain ratio
        return img[enhancing].mean() / img[core].mean()

    assert lbr(pre) < lbr(low) < lbr(std)
    assert std[enhancing].mean() - low[enhancing].mean() > 0.0
    assert lbr(ref) > 1.0
    adc = _load(anat, "sub-01_ADC.nii.gz")
    tumour = _load(contrast_cohort, "derivatives/phantom/sub-01/anat/*lesion_mask.nii.gz") > 0
    assert adc[tumour].mean() > adc[core].mean()


def test_same_seed_same_subject_other_seed_other_subject(rim_cohort, tmp_path):
    again = simulate_cohort("rim-classify", tmp_path / "a", 1, 0, 2)
    other = simulate_cohort("rim-classify", tmp_path / "b", 1, 1, 2)
    for name in ("sub-01/anat/sub-01_Chimap.nii.gz", "sub-01/anat/sub-01_FLAIR.nii.gz",
                 "derivatives/phantom/sub-01/anat/sub-01_desc-lesions_dseg.nii.gz"):
        first = _load(rim_cohort, name)
        np.testing.assert_array_equal(first, _load(again, name))
        assert not np.array_equal(first, _load(other, name))
    tsv = "derivatives/phantom/sub-01/anat/sub-01_lesions.tsv"
    assert (rim_cohort / tsv).read_text() == (again / tsv).read_text()


def test_a_subject_does_not_depend_on_the_cohort_size(fcd_cohort, tmp_path):
    alone = simulate_cohort("fcd-classify", tmp_path / "one", 1, 0, 2)
    for name in ("sub-01/anat/sub-01_T1w.nii.gz", "sub-01/anat/sub-01_FLAIR.nii.gz"):
        np.testing.assert_array_equal(_load(fcd_cohort, name), _load(alone, name))


def test_parallel_workers_write_the_same_cohort(rim_cohort, tmp_path):
    # rim-classify draws from the shipped lesion library, which each worker receives once
    calls = []
    two = simulate_cohort("rim-classify", tmp_path / "two", 2, 0, 2, progress=calls.append,
                          workers=2)
    assert calls == [1, 1]
    assert BIDSDataset(two).subjects() == ["01", "02"]
    for name in ("sub-01/anat/sub-01_Chimap.nii.gz", "sub-01/anat/sub-01_FLAIR.nii.gz",
                 "derivatives/phantom/sub-01/anat/sub-01_desc-lesions_dseg.nii.gz"):
        np.testing.assert_array_equal(_load(rim_cohort, name), _load(two, name))
    tsv = "derivatives/phantom/sub-01/anat/sub-01_lesions.tsv"
    assert (rim_cohort / tsv).read_text() == (two / tsv).read_text()
    first = (rim_cohort / "participants.tsv").read_text().splitlines()
    assert (two / "participants.tsv").read_text().splitlines()[:2] == first

    def interrupt(n: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate_cohort("rim-classify", tmp_path / "new", 2, 0, 2, progress=interrupt,
                        workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two"]
    with pytest.raises(ValueError, match="workers"):
        simulate_cohort("rim-classify", tmp_path / "bad", 1, 0, 2, workers=-1)


def test_a_killed_worker_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from lesionkit.simulate import cohorts

    class KilledPool:  # a pool whose worker died (e.g. killed for lack of memory)
        def __init__(self, *args, **kwargs):
            pass

        def submit(self, *args):
            future = Future()
            future.set_exception(BrokenProcessPool("terminated abruptly"))
            return future

        def shutdown(self, *args, **kwargs):
            pass

    monkeypatch.setattr(cohorts, "ProcessPoolExecutor", KilledPool)
    with pytest.raises(InputError, match=r"fcd: expected 2 simulation workers to finish, "
                                         r"found one killed .* try fewer --workers"):
        simulate_cohort("fcd-classify", tmp_path / "fcd", 2, 0, 2, workers=2)
    assert list(tmp_path.iterdir()) == []


def test_rim_lesions_have_a_bright_rim_on_qsm_and_ms_lesions_high_adc():
    from lesionkit.simulate import parameters as phys
    from lesionkit.simulate.acquisitions import quantitative_map
    from lesionkit.simulate.anatomy import draw_deformation, subject_anatomy
    from lesionkit.simulate.lesions import lesion_fractions
    from lesionkit.simulate.lesions_ms import apply_ms_lesions, draw_ms_lesions, rim_crops
    from lesionkit.simulate.qsm import simulate_qsm
    from lesionkit.simulate.tissue import tissue_maps

    rng = np.random.default_rng(4)
    anatomy = subject_anatomy(draw_deformation(rng), 2.0)
    maps = tissue_maps(anatomy, phys.draw_tissue_values(rng))
    lesions = draw_ms_lesions(rng, anatomy, n_range=(6, 6), rim_fraction=1.0)
    fractions, labels = lesion_fractions(lesions, anatomy)
    maps = apply_ms_lesions(maps, lesions, fractions, anatomy.affine)
    qsm = simulate_qsm(maps.chi_ppb, anatomy.mask, anatomy.spacing, phys.QSM_NOISE_PPB, rng)
    rim = np.zeros(anatomy.shape, np.float32)
    for box, shell in rim_crops(lesions, fractions, anatomy.affine).values():
        rim[box] += shell
    lesion = fractions.total()
    core = (lesion > 0.9) & (rim < 0.05)
    nawm = (anatomy.wm > 0.95) & ~ndimage.binary_dilation(labels > 0, iterations=2)
    assert (rim > 0.4).sum() > 10 and core.sum() > 0
    assert qsm[rim > 0.4].mean() > qsm[core].mean() + 5.0
    assert qsm[rim > 0.4].mean() > qsm[nawm].mean() + 10.0
    adc, _, _ = quantitative_map(maps.adc, phys.ADC_MAP, anatomy.mask, anatomy.affine, rng)
    assert adc[lesion > 0.5].mean() > 1.2 * adc[nawm].mean()
