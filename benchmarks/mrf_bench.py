"""MRF benchmarks: dictionary build, matching throughput against a plain matrix product,
and MP-PCA + matching of one 2 mm phantom brain, with peak memory (tracemalloc).

Run alone: ``python benchmarks/mrf_bench.py bench-out/mrf``.
"""

from __future__ import annotations

import json
import resource
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lesionkit import mrf

N_VOXELS = 16384  # fingerprints in the throughput comparison (plain product needs n x atoms)


def _measure(function: Callable[[], object], repeats: int = 1) -> tuple[float, float, object]:
    """Best wall time (s) over untraced repeats (or of the traced call when repeats=0) and
    peak memory (MiB) allocated during one call, as seen by tracemalloc (numpy included)."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    tracemalloc.start()
    start = time.perf_counter()
    result = function()
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return (elapsed if repeats == 0 else best), peak, result


def _row(case: str, value: float, unit: str, **extra) -> dict:
    return {"benchmark": "mrf", "case": case, "value": float(value), "unit": unit, **extra}


def _noisy_fingerprints(rng: np.random.Generator, n: int) -> np.ndarray:
    t1 = np.exp(rng.uniform(np.log(600), np.log(3000), n))
    t2s = np.exp(rng.uniform(np.log(25), np.log(150), n))
    b1 = rng.uniform(0.8, 1.2, n)
    x = np.abs(mrf.simulate_fingerprints(t1, t2s, b1)) * rng.uniform(0.6, 1.0, n)[:, None]
    return (x + rng.normal(0, 0.01, x.shape)).astype(np.float32)


def _phantom_series(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, object]:
    """A 2 mm phantom brain MRF series (no lesions, B1 = 1) with Rician noise (SNR 25 on
    the brain mean), its brain mask and the true tissue maps."""
    from lesionkit.simulate import anatomy, parameters, signal, tissue

    brain = anatomy.to_spacing(anatomy.load_template(), 2.0)
    maps = tissue.tissue_maps(brain, parameters.draw_tissue_values(rng, "3T"))
    clean = np.zeros((*brain.shape, len(mrf.MRF_EPI)), np.float32)
    inside = maps.pd > 0
    clean[inside] = (
        np.abs(mrf.simulate_fingerprints(maps.t1_ms[inside], maps.t2s_ms[inside], 1.0))
        * maps.pd[inside][:, None]
    )
    sd = float(clean[brain.mask].mean() / 25.0)
    return signal.rician_noise(clean, sd, rng), brain.mask, maps


def _timed(function: Callable[[], object]) -> tuple[float, float, object]:
    """Wall and process CPU time (s) of one untraced call (CPU > wall means threads;
    CPU well below wall means a busy machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def _brain_rows(rng: np.random.Generator, dictionary: mrf.Dictionary) -> list[dict]:
    try:
        series, mask, truth = _phantom_series(rng)
    except (ImportError, AttributeError, TypeError, KeyError) as error:
        return [_row("2 mm brain", float("nan"), "s", detail=f"phantom unavailable: {error}")]
    # Untraced: tracemalloc slows dipy's Python loops; memory is the process peak RSS.
    t_denoise, c_denoise, denoised = _timed(lambda: mrf.denoise_mppca(series, mask))
    t_volume, c_volume, maps = _timed(
        lambda: mrf.match_volume(denoised, mask, dictionary, denoise=False)
    )
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tissue = mask & (truth.pd > 0.5)
    deviation = {
        key: float(np.median(np.abs(maps[key][tissue] / getattr(truth, key)[tissue] - 1)))
        for key in ("t1_ms", "t2s_ms")
    }
    detail = (
        f"grid {series.shape}, {int(mask.sum())} brain voxels, SNR 25; median "
        f"|rel. deviation| T1 {deviation['t1_ms']:.3f}, T2* {deviation['t2s_ms']:.3f}"
    )
    return [
        _row("2 mm brain MP-PCA (dipy)", t_denoise, "s", cpu_s=round(c_denoise, 1)),
        _row("2 mm brain matching", t_volume, "s", cpu_s=round(c_volume, 1)),
        _row("2 mm brain MP-PCA + matching", t_denoise + t_volume, "s",
             peak_mib=round(peak_rss, 1), detail=detail + "; peak = process max RSS"),
    ]  # fmt: skip


def bench_matching(out_dir: Path | str) -> list[dict]:
    """Measure the MRF reference pipeline and write ``mrf_bench.json`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    seconds, peak, dictionary = _measure(mrf.build_dictionary, repeats=2)
    rows = [
        _row("dictionary atoms", len(dictionary), "atoms",
             detail="T1 300-3500 ms x T2* 10-2500 ms (5 % steps) x 9 B1, T1 >= T2*"),
        _row("dictionary build", seconds, "s", peak_mib=round(peak, 1)),
    ]  # fmt: skip
    # The brain first, so the process peak RSS is not the plain product's.
    brain = _brain_rows(rng, dictionary)

    x = _noisy_fingerprints(rng, N_VOXELS)
    atoms_t = dictionary.atoms.T

    def plain() -> np.ndarray:
        return np.abs(x @ atoms_t).argmax(axis=1)

    t_match, m_match, matched = _measure(lambda: mrf.match(x, dictionary), repeats=2)
    t_plain, m_plain, best = _measure(plain, repeats=2)
    agree = float(np.mean(dictionary.t1_ms[best].astype(np.float32) == matched[0]))
    rows += [
        _row("match (chunked)", N_VOXELS / t_match, "voxels/s", peak_mib=round(m_match, 1),
             detail=f"{N_VOXELS} fingerprints x {len(dictionary)} atoms"),
        _row("plain abs(X @ D.T).argmax", N_VOXELS / t_plain, "voxels/s",
             peak_mib=round(m_plain, 1), detail=f"same sizes; same T1 {agree:.4f}"),
        *brain,
    ]  # fmt: skip
    (out_dir / "mrf_bench.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    from common import output_folder

    for row in bench_matching(output_folder("bench-out/mrf", __doc__)):
        print(row)
