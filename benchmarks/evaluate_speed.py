"""Time `gsmorph.evaluate.evaluate` on 1,000 synthetic 2D pairs (128 x 128, 3 structures).

Usage: python benchmarks/evaluate_speed.py [--pairs 1000] [--workers 1 2] [--work DIR]
Writes nothing outside --work (default: a temporary folder); prints a Markdown table
with wall seconds and the main process's CPU seconds (with one worker, the CPU time is
what a machine not shared with other jobs would take, give or take I/O waits).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage


def make_data(work: Path, n_pairs: int, slices: int = 10, size: int = 128, seed: int = 0) -> Path:
    from gsmorph import pairs
    from gsmorph.io import write_nifti

    rng = np.random.default_rng(seed)
    prepared = work / "prepared"
    out = work / "pairs" / "bench" / "voxelmorph" / "gsmorph" / "seed0"
    grid = np.indices((size, size)).astype(float) - size / 2
    radius = np.hypot(grid[0], grid[1])
    n_subjects = int(np.ceil(n_pairs / slices))
    subjects = []
    for s in range(n_subjects):
        k = min(slices, n_pairs - s * slices)
        subject = f"b{s:04d}"
        subjects.append(subject)
        lab = np.zeros((size, size, k), np.uint8)
        for z in range(k):
            r = 18 + 4 * rng.random()
            lab[..., z][radius < r + 6] = 2
            lab[..., z][radius < r] = 1
            lab[..., z][(np.hypot(grid[0], grid[1] + 2 * r) < r) & (lab[..., z] == 0)] = 3
        img = lab.astype(np.float32) / 3 + 0.05 * rng.random(lab.shape, dtype=np.float32)
        for frame in ("ED", "ES"):
            write_nifti(prepared / subject / f"{frame}.nii.gz", img, (1.4, 1.4, 8.0))
            write_nifti(prepared / subject / f"{frame}_gt.nii.gz", lab, (1.4, 1.4, 8.0))
        disp = ndimage.gaussian_filter(rng.normal(0, 20, (k, 2, size, size)), (0, 0, 6, 6)).astype(np.float32)
        moved_lab = np.stack([np.roll(lab[..., z], rng.integers(-3, 4), axis=0) for z in range(k)])
        pairs.save_subject(out, pairs.SubjectPairs(
            subject, np.arange(k), disp, np.moveaxis(img, -1, 0), moved_lab,
            np.full(k, 0.01), np.array([1.4, 1.4])))
    pairs.finish(out, {"dataset": "bench", "backbone": "voxelmorph", "method": "gsmorph", "seed": 0,
                       "split": "test", "prepared": str(prepared)}, subjects)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    from gsmorph.evaluate import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        folder = make_data(work, args.pairs)
        load = os.getloadavg()[0]
        print(f"load average at start: {load:.1f}")
        print("| pairs | workers | wall s | CPU s (main process) | rows | CPUs |\n|---|---|---|---|---|---|")
        for workers in args.workers:
            start, cpu = time.perf_counter(), time.process_time()
            table = evaluate([folder], workers=workers)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            print(f"| {args.pairs} | {workers} | {seconds:.1f} | {cpu:.1f} | {len(table)} | {os.cpu_count()} |")


if __name__ == "__main__":
    main()
