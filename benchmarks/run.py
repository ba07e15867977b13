"""Run lesionkit's speed and memory benchmarks and write BENCHMARKS.md.

Usage:
    python benchmarks/run.py --out bench-out --markdown BENCHMARKS.md [--only simulate,mrf]

Each suite is a function ``bench_*(out_dir) -> list[dict]`` in this folder; its rows
are written as one table per suite, with the machine and the command on top.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

#: suite name -> (module in benchmarks/, function)
SUITES = {
    "simulate": ("simulate_bench", "bench_simulation"),
    "mrf": ("mrf_bench", "bench_matching"),
    "engine": ("engine_bench", "bench_engine"),
    "mrf-lesion": ("mrf_lesion_bench", "bench_mrf_lesion"),
    "fcd": ("fcd_bench", "bench_fcd"),
    "data": ("data_bench", "bench_data"),
    "rim-classify": ("rim_classify_bench", "bench_rim_classify"),
    "contrast-amplify": ("contrast_amplify_bench", "bench_contrast_amplify"),
    "ddp": ("ddp_bench", "bench_ddp"),
}


def machine_description() -> list[str]:
    """Lines describing the machine the figures were taken on."""
    import torch

    lines = [
        f"- Python {platform.python_version()} on {platform.platform()}",
        f"- CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores",
        f"- torch {torch.__version__}, {torch.get_num_threads()} threads",
    ]
    if torch.cuda.is_available():
        lines.append(f"- GPU: {torch.cuda.get_device_name(0)}")
    else:
        lines.append("- GPU: none (CPU figures)")
    if hasattr(os, "getloadavg"):
        lines.append("- Load average at start (1, 5, 15 min): "
                     + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    try:
        with open("/proc/meminfo") as handle:
            total_kb = int(handle.readline().split()[1])
        lines.append(f"- Memory: {total_kb / 2**20:.0f} GiB")
    except OSError:
        pass
    return lines


def markdown_table(rows: list[dict]) -> list[str]:
    """Rows of dicts as a Markdown table (columns in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for key in columns:
            value = row.get(key, "")
            cells.append(f"{value:.4g}" if isinstance(value, float) else str(value))
        out.append("| " + " | ".join(cells) + " |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--markdown", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument("--only", default=",".join(SUITES), help="comma-separated suites")
    args = parser.parse_args(argv)
    command = "make bench  (python benchmarks/run.py " + " ".join(argv or sys.argv[1:]) + ")"
    lines = ["# lesionkit benchmarks", "",
             "Figures from the digital phantom, produced by the command below; they are",
             "rewritten on every run.", "",
             f"Command: `{command}`", f"Date: {dt.date.today().isoformat()}", "", "Machine:",
             *machine_description(), ""]
    for name in args.only.split(","):
        module_name, function_name = SUITES[name]
        start = time.perf_counter()
        try:
            module = importlib.import_module(module_name)
            rows = getattr(module, function_name)(args.out / name)
        except (ImportError, AttributeError) as error:
            rows = [{"benchmark": name, "status": f"not available: {error}"}]
        elapsed = time.perf_counter() - start
        lines += [f"## {name}", "", f"Suite wall time: {elapsed:.1f} s", "",
                  *markdown_table(rows), ""]
        print(f"{name}: {len(rows)} rows in {elapsed:.1f} s", flush=True)
    from lesionkit.io import atomic_path

    with atomic_path(args.markdown) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
