"""benchmarks/normal_variant_fps.py: false components and those on the normal
hyperintensities, the structures redrawn from a phantom sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import load_script
from lesionkit.simulate import acquisitions as acq
from lesionkit.simulate import normal_variants as nv
from lesionkit.simulate.anatomy import draw_deformation, source_coordinates

BENCH = Path(__file__).parents[2] / "benchmarks" / "normal_variant_fps.py"


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH, "lesionkit_benchmarks_normal_variant_fps")


def test_components_on_a_lesion_are_not_false_and_those_on_a_structure_are_told(bench):
    shape = (20, 20, 20)
    truth = np.zeros(shape, bool)
    truth[2:4, 2:4, 2:4] = True
    variants = np.zeros(shape, np.float32)
    variants[10:14, 10:14, 10:14] = 0.8
    variants[16:18, 2:4, 2:4] = 0.2  # below the touch fraction
    probability = np.zeros(shape, np.float32)
    probability[3:5, 3:5, 3:5] = 0.9  # on the lesion
    probability[13:16, 13:16, 13:16] = 0.5  # reaches the structure
    probability[16:18, 2:4, 2:4] = 0.5  # on a faint edge only
    probability[7, 16, 16] = 0.4  # alone
    probability[7, 2, 16] = 0.2  # below 0.33
    assert bench.false_components(probability, truth, variants) == (3, 1)
    assert bench.false_components(probability, truth, variants, threshold=0.6) == (0, 0)


def test_the_structures_are_redrawn_from_the_sidecar_seed(bench, tmp_path):
    seed, index = 7, 2
    sidecar = tmp_path / "sub-03_FLAIR.json"
    sidecar.write_text(json.dumps({"Phantom": True, "PhantomSeed": seed,
                                   "PhantomSubjectIndex": index}))
    child = np.random.SeedSequence(seed).spawn(5)[index]  # as the cohort of 5 drew it
    rngs = acq.streams(child)  # the streams make_subject gives the subject
    coords = source_coordinates(draw_deformation(rngs["anatomy"]), 2.0)
    expected = sum(nv.variant_fractions(coords, nv.draw_variants(rngs["variants"])).values())
    np.testing.assert_array_equal(bench.subject_variants(sidecar, 2.0), expected)
    sidecar.write_text(json.dumps({"Phantom": False}))
    with pytest.raises(SystemExit, match="PhantomSeed"):
        bench.subject_variants(sidecar, 2.0)


def test_a_missing_sidecar_is_named(bench, tmp_path):
    with pytest.raises(SystemExit, match=r"sub-01_FLAIR\.json: expected the FLAIR.s JSON"):
        bench.subject_variants(tmp_path / "sub-01_FLAIR.json", 2.0)


def test_structures_are_brighter_than_white_matter_on_flair(bench):
    ratios = bench.structure_ratios(0)
    assert {"lining", "cst", "grey matter"} <= set(ratios)
    assert all(value > 1.0 for value in ratios.values())
    assert ratios["cst"] < 1.25  # below the published MS lesion/WM range
