"""Time `gsmorph synth` (and `gsmorph prepare`) for N phantom subjects of each raw format.

Usage: python benchmarks/phantom_speed.py [--subjects 100] [--workers 2] [--work DIR]
Prints a Markdown table: wall seconds, and CPU seconds of this process plus its worker
processes (CPU / cores is what an unshared machine would take), and the load average.
Writes nothing outside --work (default: a temporary folder, removed afterwards).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), _cpu()
    fn()
    return time.perf_counter() - wall, _cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()

    from gsmorph.data import synth
    from gsmorph.data.prepare import prepare

    work = args.work or Path(tempfile.mkdtemp(prefix="phantom_speed_"))
    print(f"load average before: {os.getloadavg()[0]:.1f}; cores: {os.cpu_count()}")
    print("| format | subjects | workers | synth wall s | synth CPU s | prepare wall s | prepare CPU s |")
    print("|---|---|---|---|---|---|---|")
    try:
        for fmt, writer in synth.WRITERS.items():
            raw = work / f"raw_{fmt}"
            s_wall, s_cpu = timed(lambda: writer(raw, args.subjects, 0, args.workers))
            p_wall, p_cpu = timed(lambda: prepare(fmt, raw, work / f"prepared_{fmt}", size=128))
            print(f"| {fmt} | {args.subjects} | {args.workers} | {s_wall:.1f} | {s_cpu:.1f} | {p_wall:.1f} | {p_cpu:.1f} |")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
