"""FCD type II on the 2 mm template: geometry, effects, determinism and subtlety."""

import dataclasses

import numpy as np
import pytest
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lesionkit.simulate import acquisitions as acq
from lesionkit.simulate import parameters as phys
from lesionkit.simulate import signal
from lesionkit.simulate.anatomy import load_template, to_spacing
from lesionkit.simulate.lesions import distance_mm, ventricles
from lesionkit.simulate.lesions_fcd import (
    FCD_RANGES,
    apply_fcd,
    draw_fcd,
    fcd_anatomy,
    wm_t1_rise,
)
from lesionkit.simulate.tissue import tissue_maps


@pytest.fixture(scope="module")
def anatomy():
    return to_spacing(load_template(), 2.0)


def _values(seed):
    return phys.draw_tissue_values(np.random.default_rng(seed))


def test_fcd_inside_brain_with_drawn_size(anatomy):
    for seed in range(4):
        params = draw_fcd(np.random.default_rng(seed), anatomy, transmantle_probability=0.0)
        lo, hi = FCD_RANGES["diameter_mm"]
        assert lo <= params.diameter_mm <= hi
        fraction = apply_fcd(anatomy, _values(seed), params)[2]
        assert fraction.dtype == np.float32 and fraction.min() >= 0 and fraction.max() <= 1
        assert not fraction[~anatomy.mask].any()
        idx = np.argwhere(fraction >= 0.5)
        world = idx @ anatomy.affine[:3, :3].T + anatomy.affine[:3, 3]
        extent = np.linalg.norm(world - np.asarray(params.centre_mm), axis=1).max()
        assert extent <= params.diameter_mm / 2 + 2.0
        assert (fraction >= 0.5).sum() * 8 >= 0.1 * np.pi / 6 * params.diameter_mm**3


def test_fcd_follows_the_cortical_ribbon_at_the_bottom_of_sulci(anatomy):
    """The lesion is cortex plus a subcortical band (not a ball reaching into deep white
    matter), centred deeper below the brain surface than a typical junction voxel."""
    from lesionkit.simulate.lesions import cortex

    to_cortex = distance_mm(cortex(anatomy), anatomy.affine)
    depth = distance_mm(~anatomy.mask, anatomy.affine)
    junction = (anatomy.wm >= 0.5) & anatomy.mask & (to_cortex <= 2.0)
    centre_depths = []
    for seed in range(6):
        params = draw_fcd(np.random.default_rng(seed), anatomy, transmantle_probability=0.0)
        fraction = apply_fcd(anatomy, _values(seed), params)[2]
        core = fraction >= 0.5
        # within the thickened cortex's reach plus the band (+ one voxel of blur)
        assert to_cortex[core].max() <= params.subcortical_mm + params.thickening_mm + 2.0
        ijk = np.argwhere(core)
        world = ijk @ anatomy.affine[:3, :3].T + anatomy.affine[:3, 3]
        assert np.linalg.norm(world - params.centre_mm, axis=1).min() <= 2.0
        centre = np.round(np.linalg.solve(anatomy.affine[:3, :3], np.asarray(
            params.centre_mm) - anatomy.affine[:3, 3])).astype(int)
        centre_depths.append(depth[tuple(centre)])
    assert min(centre_depths) >= np.quantile(depth[junction], 0.4)


def test_fcd_flair_cnr_calibrated():
    """About two thirds of FCD II lesions are visible on conventional MRI: on a seeded
    set of 40 phantom patients (as ``simulate fcd-classify`` draws them), 60-80 % reach a
    FLAIR contrast-to-noise ratio of 2.5 (noise-free lesion effect over noise SD)."""
    from lesionkit.simulate import cohorts

    children = np.random.SeedSequence(3).spawn(80)
    cnr = []
    for i in range(0, 80, 2):  # the patients of an 80-subject cohort
        sub = acq.make_subject(None, 3, i, children[i], "patient", 2)
        healthy_anatomy, _, healthy = cohorts.base_subject(sub, 2.0)
        anatomy, (maps,), lesion = cohorts._fcd(sub, healthy_anatomy, [healthy])
        cnr.append(acq.lesion_cnr(healthy, maps, lesion, anatomy.mask, anatomy.spacing,
                                  phys.FLAIR))
    visible = np.mean(np.array(cnr) > 2.5)
    assert 0.6 <= visible <= 0.8, (visible, np.round(np.sort(cnr), 2))
    assert min(cnr) > 1.0  # every lesion is there, some only just


def test_fcd_deterministic_by_seed(anatomy):
    a = draw_fcd(np.random.default_rng(5), anatomy)
    b = draw_fcd(np.random.default_rng(5), anatomy)
    c = draw_fcd(np.random.default_rng(6), anatomy)
    assert a == b and a != c
    np.testing.assert_array_equal(apply_fcd(anatomy, _values(0), a)[2],
                                  apply_fcd(anatomy, _values(0), b)[2])


def test_thickened_cortex_and_blurred_junction(anatomy):
    params = dataclasses.replace(draw_fcd(np.random.default_rng(1), anatomy),
                                 diameter_mm=24.0, thickening_mm=3.0, blur_sd_mm=2.0)
    new, box, weight, _ = fcd_anatomy(anatomy, params)
    inside = weight > 0.99
    gm_old, gm_new = anatomy.gm[box][inside], new.gm[box][inside]
    assert gm_new.sum() > gm_old.sum() * 1.1  # thicker cortex
    total_old = (anatomy.gm + anatomy.wm)[box][inside]
    np.testing.assert_allclose((new.gm + new.wm)[box][inside], total_old, atol=1e-5)

    def edge(gm):
        return np.sqrt(sum(g**2 for g in np.gradient(gm)))[inside].mean()

    assert edge(new.gm[box]) < 0.8 * edge(anatomy.gm[box])  # blurred junction
    outside = np.ones(anatomy.gm.shape, bool)
    outside[box] = False
    np.testing.assert_array_equal(new.gm[outside], anatomy.gm[outside])


def test_maps_from_values_and_from_maps_agree_and_change_t1_t2(anatomy):
    params = draw_fcd(np.random.default_rng(2), anatomy)
    values = _values(2)
    maps = tissue_maps(anatomy, values)
    new_a, from_maps, fraction = apply_fcd(anatomy, maps, params)
    _, from_values, _ = apply_fcd(anatomy, values, params)
    np.testing.assert_allclose(from_maps.t1_ms, from_values.t1_ms, rtol=1e-4)
    # outside the lesion the maps equal maps rebuilt from the changed anatomy
    rebuilt = tissue_maps(new_a, values)
    ijk = np.indices(anatomy.shape).reshape(3, -1).T
    world = (ijk @ anatomy.affine[:3, :3].T + anatomy.affine[:3, 3]).reshape(*anatomy.shape, 3)
    reach = np.linalg.norm(world - np.asarray(params.centre_mm), axis=-1)
    far = (fraction == 0) & (reach > 0.65 * params.diameter_mm + 2.0)  # beyond the taper
    np.testing.assert_allclose(from_maps.t2_ms[far], rebuilt.t2_ms[far], rtol=1e-4)
    wm_lesion = (fraction > 0.5) & (new_a.wm > 0.5)
    assert wm_lesion.any()
    ratio_t1 = from_maps.t1_ms[wm_lesion] / rebuilt.t1_ms[wm_lesion]
    rise = wm_t1_rise(params.t1_shift, values)
    assert (ratio_t1 > 1.0).all() and (ratio_t1 <= 1 + rise + 1e-4).all()
    assert ratio_t1.mean() > 1 + 0.4 * rise
    ratio_t2 = from_maps.t2_ms[fraction > 0] / rebuilt.t2_ms[fraction > 0]
    assert (ratio_t2 > 1.0).all() and (ratio_t2 <= 1 + params.t2_increase + 1e-4).all()


def test_t1_rise_follows_each_fields_gm_wm_gap(anatomy):
    """The same FCD raises WM T1 by its share of the GM-WM T1 gap of each field: about
    5-15 % at 3T (METHODS.md), and by a larger fraction at 7T, where the gap is wider."""
    middle = {t: {p: 0.5 for p in phys.PROPERTIES} for t in phys.TISSUES}
    lo, hi = FCD_RANGES["t1_shift"]
    v3 = phys.tissue_values(middle, "3T")
    assert wm_t1_rise(lo, v3) == pytest.approx(0.05, abs=0.01)
    assert wm_t1_rise(hi, v3) == pytest.approx(0.15, abs=0.02)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        quantiles = phys.draw_tissue_quantiles(rng)
        params = draw_fcd(rng, anatomy, transmantle_probability=0.0)
        rises, strength = {}, {}
        for field in ("3T", "7T"):
            values = phys.tissue_values(quantiles, field)
            new_a, maps, fraction = apply_fcd(anatomy, values, params)
            core = (fraction > 0.5) & (new_a.wm > 0.5)
            ratio = maps.t1_ms[core] / tissue_maps(new_a, values).t1_ms[core]
            rises[field] = wm_t1_rise(params.t1_shift, values)
            strength[field] = (ratio - 1) / rises[field]  # the same taper x WM at both
        np.testing.assert_allclose(strength["7T"], strength["3T"], atol=1e-3)
        assert strength["3T"].max() > 0.5
        assert rises["7T"] > rises["3T"] + 0.002


def _r1_conspicuity(root, label):
    """|lesion - shell| / noise SD on the written 7T and resliced 3T R1 maps (s^-1).

    Shell: GM/WM voxels within 3 mm of the lesion mask; noise SD: the map's known level,
    the mean of the map as acquired in the brain over the SNR of its sidecar.
    """
    import json

    from lesionkit.io import load_volume

    anat = root / f"sub-{label}"
    truth = root / "derivatives" / "phantom" / f"sub-{label}" / "ses-7T" / "anat"

    def read(path):
        return load_volume(path).data.astype(float)

    stem = f"sub-{label}_ses-7T"
    lesion = read(truth / f"{stem}_label-lesion_mask.nii.gz") > 0
    brain = read(truth / f"{stem}_desc-brain_mask.nii.gz") > 0
    tissue = sum(read(truth / f"{stem}_label-{t}_probseg.nii.gz") for t in ("GM", "WM"))
    k = round(3.0 / float(np.abs(load_volume(truth / f"{stem}_label-lesion_mask.nii.gz")
                                 .affine[0, 0])))
    shell = ndimage.binary_dilation(lesion, iterations=k) & ~lesion & brain & (tissue > 0.5)
    out = {}
    for field, name, native in (("7T", "ses-7T/anat/sub-{l}_ses-7T_R1map", None),
                                ("3T", "ses-3T/anat/sub-{l}_ses-3T_R1map",
                                 "ses-3T/anat/sub-{l}_ses-3T_acq-native_R1map")):
        r1 = read(anat / (name.format(l=label) + ".nii.gz"))
        acquired = r1 if native is None else read(anat / (native.format(l=label) + ".nii.gz"))
        snr = json.loads((anat / (name.format(l=label) + ".json")).read_text())["SNR"]
        noise = acquired[acquired > 0].mean() / snr
        out[field] = abs(r1[lesion].mean() - r1[shell].mean()) / noise
    return out, int(lesion.sum())


def test_fcd_more_conspicuous_on_7t_than_3t_r1(tmp_path):
    """enhance-r1 FCD patients (2 mm cohort grid): the lesion's contrast to its shell over
    the noise SD is higher on the 7T R1 map than on the resliced 3T one (METHODS.md 1)."""
    from lesionkit.simulate.cohorts import enhance_r1_subject

    for index, child in enumerate(np.random.SeedSequence(11).spawn(2)):
        sub = acq.make_subject(tmp_path, 11, index, child, "fcd", 2)
        enhance_r1_subject(sub)
        cnr, voxels = _r1_conspicuity(tmp_path, sub.label)
        assert voxels > 100
        assert cnr["7T"] > 1.2 * cnr["3T"], cnr


def test_transmantle_reaches_ventricle(anatomy):
    params = draw_fcd(np.random.default_rng(3), anatomy, transmantle_probability=1.0)
    assert params.transmantle_end_mm is not None
    _, _, fraction = apply_fcd(anatomy, _values(3), params)
    to_vent = distance_mm(ventricles(anatomy), anatomy.affine)
    near_ventricle = (fraction > 0) & (to_vent <= 4.0)
    assert near_ventricle.any()
    without = dataclasses.replace(params, transmantle_end_mm=None, transmantle_width_mm=0.0)
    assert apply_fcd(anatomy, _values(3), without)[2].sum() < fraction.sum()


def _subject(anatomy, seed):
    """Tissue values, FCD and scanner fields of one subject."""
    rng = np.random.default_rng(seed)
    values = phys.draw_tissue_values(rng)
    params = draw_fcd(rng, anatomy)
    fields = []
    for a in (phys.FLAIR, phys.T1W_MPRAGE):
        low, high = phys.B1_RANGE[a.field]
        b1 = signal.smooth_field(signal.draw_smooth_field(rng), anatomy.shape, low, high)
        low, high = 1 - a.bias_amplitude, 1 + a.bias_amplitude
        bias = signal.smooth_field(signal.draw_smooth_field(rng), anatomy.shape, low, high)
        fields.append((a, b1, bias))
    return tissue_maps(anatomy, values), params, fields


def _noise_free(maps, anatomy, fields):
    fwhm = float(np.mean(anatomy.spacing))
    return [signal.blur(acq.signal_equation(maps, a, b1), anatomy.spacing, a.blur_factor * fwhm)
            * bias * acq.IMAGE_SCALE for a, b1, bias in fields]


def _noisy(maps, anatomy, fields, seed):
    rng = np.random.default_rng(seed)
    return [acq.weighted_image(maps, a, anatomy.mask, anatomy.spacing, rng, b1, bias)
            for a, b1, bias in fields]


def _global_features(images, mask):
    feats = []
    for img in images:
        v = img[mask]
        feats += [v.mean(), v.std(), *np.percentile(v, [5, 25, 50, 75, 95])]
    return np.array(feats)


def test_fcd_subtle_globally_but_visible_locally(anatomy):
    """Global intensity statistics (mean, SD, percentiles of FLAIR and T1w in the brain)
    do not separate patients from controls; the lesion shows against its surround."""
    mask = anatomy.mask
    feats, groups, shifts = [], [], []
    for seed in range(8):
        maps, params, fields = _subject(anatomy, seed)
        _, lesion_maps, fraction = apply_fcd(anatomy, maps, params)
        patient = seed % 2 == 1
        feats.append(_global_features(
            _noisy(lesion_maps if patient else maps, anatomy, fields, seed + 100), mask))
        groups.append(int(patient))
        # paired: the same subject with and without its FCD (noise-free images)
        (flair_c, t1_c), (flair_p, t1_p) = (_noise_free(m, anatomy, fields)
                                            for m in (maps, lesion_maps))
        clean = _global_features([flair_p, t1_p] if patient else [flair_c, t1_c], mask)
        np.testing.assert_allclose(clean[[0, 7]], feats[-1][[0, 7]], rtol=0.1)  # same units
        shifts.append(_global_features([flair_p, t1_p], mask)
                      - _global_features([flair_c, t1_c], mask))
        lesion = (fraction >= 0.5) & mask
        ring = ndimage.binary_dilation(lesion, iterations=3) & ~lesion & mask
        for img_c, img_p, sign in ((flair_c, flair_p, 1), (t1_c, t1_p, -1)):
            contrast_c = img_c[lesion].mean() / img_c[ring].mean()
            contrast_p = img_p[lesion].mean() / img_p[ring].mean()
            assert sign * (contrast_p - contrast_c) > 0.02  # FLAIR brighter, T1w darker
    feats, shifts = np.array(feats), np.array(shifts)
    between_sd = feats.std(axis=0, ddof=1)
    # the FCD moves every global statistic by far less than subjects differ
    assert (np.abs(shifts).max(axis=0) < 0.1 * between_sd).all()
    prob = cross_val_predict(
        make_pipeline(StandardScaler(), LogisticRegression()), feats, groups,
        cv=StratifiedKFold(4, shuffle=True, random_state=0), method="predict_proba")[:, 1]
    assert abs(roc_auc_score(groups, prob) - 0.5) < 0.4


@pytest.mark.slow
def test_fcd_cohort_not_separable_by_global_statistics(tmp_path):
    """Through the cohort writer (deformed anatomy, bias, noise, NIfTI on disk): global
    FLAIR/T1w statistics give chance-level patient-vs-control AUC; lesions are brighter
    than their surround on FLAIR."""
    from lesionkit.bids import BIDSDataset
    from lesionkit.io import load_volume
    from lesionkit.simulate import simulate_cohort

    root = simulate_cohort("fcd-classify", tmp_path / "ds", 12, 3, 2)
    ds = BIDSDataset(root)
    groups = dict(zip(ds.participants()["participant_id"].astype(str).str.removeprefix("sub-"),
                      ds.participants()["group"], strict=True))
    feats, labels = [], []
    for sub in ds.subjects():
        mask = load_volume(ds.find(sub, suffix="mask", derivatives="phantom", desc="brain")[0]
                           .path, kind="label").data > 0
        images = [load_volume(ds.find(sub, suffix=s)[0].path).data for s in ("FLAIR", "T1w")]
        feats.append(_global_features(images, mask))
        labels.append(int(groups[sub] == "patient"))
        if groups[sub] == "patient":
            lesion = load_volume(ds.find(sub, suffix="mask", derivatives="phantom",
                                         label="lesion")[0].path, kind="label").data > 0
            ring = ndimage.binary_dilation(lesion, iterations=3) & ~lesion & mask
            assert images[0][lesion].mean() > images[0][ring].mean()
    assert sum(labels) == 6
    prob = cross_val_predict(
        make_pipeline(StandardScaler(), LogisticRegression()), np.array(feats), labels,
        cv=StratifiedKFold(6, shuffle=True, random_state=0), method="predict_proba")[:, 1]
    assert abs(roc_auc_score(labels, prob) - 0.5) < 0.35
