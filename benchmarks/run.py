"""Run lesionkit's speed and memory benchmarks and write BENCHMARKS.md.

Usage:
    python benchmarks/run.py --out bench-out --markdown BENCHMARKS.md [--only simulate,mrf]
    python benchmarks/run.py --out bench-out --only engine --update   # one suite again

Each suite is a function ``bench_*(out_dir) -> list[dict]`` in this folder; its rows
are written as one table per suite, with the machine and the command on top. With
``--update`` the suites run replace their own sections of the existing file, each then
saying when and how it was rerun; the other sections are kept as they were. Sections
that are no suite of this script (figures measured on another machine, e.g. ``## gpu``
from ``benchmarks/gpu.py``) are kept by every run, after the suites.
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


def sections(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """A BENCHMARKS.md split into its preamble (lines before the first suite) and its
    suite sections (``## name`` and the lines up to the next suite), in file order."""
    preamble: list[str] = []
    found: dict[str, list[str]] = {}
    current = preamble
    for line in text.splitlines():
        if line.startswith("## "):
            current = found.setdefault(line[3:].strip(), [])
        current.append(line)
    return preamble, found


def measured_elsewhere(text: str) -> list[str]:
    """The lines of the sections of ``text`` that are no suite of this script."""
    _, found = sections(text)
    return [line for name, body in found.items() if name not in SUITES for line in body]


def updated(text: str, new: dict[str, list[str]]) -> str:
    """``text`` with the sections of ``new`` (suite -> its lines, heading included)
    replacing those of the same suite; suites it lacks are appended in ``SUITES`` order."""
    preamble, found = sections(text)
    merged = {**found, **new}
    order = [name for name in found] + [name for name in SUITES
                                        if name in new and name not in found]
    lines = list(preamble)
    for name in order:
        body = merged[name]
        while body and not body[-1].strip():
            body = body[:-1]
        lines += [*body, ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--markdown", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument("--only", default=",".join(SUITES), help="comma-separated suites")
    parser.add_argument("--update", action="store_true",
                        help="replace only these suites' sections of the existing --markdown")
    args = parser.parse_args(argv)
    unknown = [name for name in args.only.split(",") if name not in SUITES]
    if unknown:
        raise SystemExit(f"--only: expected suites among {', '.join(SUITES)}, found "
                         f"{', '.join(unknown)}")
    if args.update and not args.markdown.is_file():
        raise SystemExit(f"--update: expected an existing {args.markdown}, found none")
    machine = machine_description()
    load = next((line[2:] for line in machine if line.startswith("- Load")), "")
    command = "make bench  (python benchmarks/run.py " + " ".join(argv or sys.argv[1:]) + ")"
    lines = ["# lesionkit benchmarks", "",
             "Figures from the digital phantom, produced by the command below; they are",
             "rewritten on every run (a section that says \"Rerun alone\" was run again",
             "by itself later, with the command it names).", "",
             f"Command: `{command}`", f"Date: {dt.date.today().isoformat()}", "", "Machine:",
             *machine, ""]
    new: dict[str, list[str]] = {}
    for name in args.only.split(","):
        module_name, function_name = SUITES[name]
        start = time.perf_counter()
        try:
            module = importlib.import_module(module_name)
            rows = getattr(module, function_name)(args.out / name)
        except (ImportError, AttributeError) as error:
            rows = [{"benchmark": name, "status": f"not available: {error}"}]
        elapsed = time.perf_counter() - start
        rerun = ([f"Rerun alone on {dt.date.today().isoformat()}: `python benchmarks/run.py "
                  f"{' '.join(argv or sys.argv[1:])}`; {load or 'load average unknown'}", ""]
                 if args.update else [])
        new[name] = [f"## {name}", "", *rerun, f"Suite wall time: {elapsed:.1f} s", "",
                     *markdown_table(rows), ""]
        print(f"{name}: {len(rows)} rows in {elapsed:.1f} s", flush=True)
    from lesionkit.io import atomic_path

    if args.update:
        text = updated(args.markdown.read_text(), new)
    else:
        kept = measured_elsewhere(args.markdown.read_text()) if args.markdown.is_file() else []
        while kept and not kept[-1].strip():
            kept = kept[:-1]
        text = "\n".join(lines + [line for body in new.values() for line in body] + kept) + "\n"
    with atomic_path(args.markdown) as tmp:
        tmp.write_text(text)
    print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
