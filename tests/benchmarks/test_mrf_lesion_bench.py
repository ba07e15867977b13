"""benchmarks/mrf_lesion_bench.py: the network's work and rate against a matrix product's."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import load_script

BENCH = Path(__file__).parents[2] / "benchmarks" / "mrf_lesion_bench.py"


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH, "lesionkit_benchmarks_mrf")


def test_work_is_counted_per_slice_and_set_against_the_matrix_product(bench) -> None:
    two, four = (bench.work_rates((16, 16, n), repeats=1, size=256) for n in (2, 4))
    # Slices are independent passes of the 2D U-Net: twice the slices, twice the work.
    assert four["network GFLOP"] == pytest.approx(2 * two["network GFLOP"])
    # One 16 x 16 slice: 35 -> 32 channels, 3 x 3, is 16 * 16 * 32 * 35 * 9 * 2 operations.
    assert two["network GFLOP"] > 2 * 16 * 16 * 32 * 35 * 9 * 2 / 1e9
    for precision in ("float32", "bfloat16"):
        rate = four[f"matmul {precision} GFLOP/s"]
        assert rate > 0
        assert four[f"network at the {precision} matmul rate s"] == pytest.approx(
            four["network GFLOP"] / rate)
