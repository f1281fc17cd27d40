"""Registering a split with a non-learned method of the table (Initial, Demons, SyN): every
pair through its registrar, in a process pool, into one pairs folder (gsmorph/pairs.py).

Pairs are 2D slices (config "mode": "2d", default) or whole volumes ("3d"), moving and
fixed frames from the config (ES onto ED by default). Registrations run in a pool of
fresh processes, each single-threaded (ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1), so the
result for a seed does not depend on the number of workers. runtime_s of a pair is the
wall time of its registration plus warping, on one core. The output folder is written
whole or not at all (index.csv last).
"""
from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from gsmorph import methods
from gsmorph.cli_options import SPLITS, workers as default_workers
from gsmorph.errors import GSMorphError
from gsmorph.workers import watch_parent


def register_split(method: str, prepared: str | os.PathLike, split: str, out: str | os.PathLike,
                   cfg: dict[str, Any], workers: int | None = None, seed: int = 0, nifti: bool = False) -> Path:
    """Register all pairs of `split` with `method`; write the pairs folder `out` (with
    nifti: also as NIfTI in `<out>/nifti/`, gsmorph/pairs.py); return it."""
    from gsmorph import pairs as pairs_format
    from gsmorph.data import loader
    from gsmorph.provenance import provenance

    prepared, out = Path(prepared), Path(out)
    spec = methods.get(method)
    if spec.family != "classical":
        raise GSMorphError(f"method '{method}' is not registered pair by pair (family {spec.family})")
    if split not in SPLITS:
        raise GSMorphError(f"unknown split '{split}', expected one of {list(SPLITS)}")
    if not prepared.is_dir():
        raise GSMorphError(f"{prepared}: prepared folder not found")
    if not (prepared / "subjects.csv").is_file():
        raise GSMorphError(f"{prepared / 'subjects.csv'}: file not found (is {prepared} a prepared folder?)")
    if workers is not None and workers < 1:
        raise GSMorphError(f"--workers must be at least 1, got {workers}")
    if int(seed) < 0:
        raise GSMorphError(f"--seed must be >= 0, got {seed}")
    mode = cfg.get("mode", "2d")  # cfg: a checked method config (gsmorph.config.load_config)
    moving, fixed = cfg.get("moving", "ES"), cfg.get("fixed", "ED")
    from gsmorph.io import check_not_input, check_replaceable

    check_not_input(out, [prepared])  # refused before any registration runs
    check_replaceable(out)

    # every pair of the split, as `gsmorph infer` registers (drop_missing is a training option)
    pair_list = loader.pairs(prepared, split, mode=mode, moving=moving, fixed=fixed)
    if not pair_list:
        raise GSMorphError(f"{prepared}: split '{split}' has no pairs to register")
    params = {k: v for section in spec.sections for k, v in cfg[section].items()}
    n_workers = max(1, min(default_workers(workers), len(pair_list))) if spec.parallel else 1
    results = _register_all(method, pair_list, params, seed, n_workers, in_pool=spec.parallel)

    by_subject: dict[str, list[int]] = {}
    for i, pair in enumerate(pair_list):
        by_subject.setdefault(str(pair.subject), []).append(i)
    meta = {
        "dataset": loader.dataset_name(prepared),
        "backbone": "none",
        "method": method,
        "seed": int(seed),
        "split": split,
        "mode": mode,
        "moving": moving,
        "fixed": fixed,
        "prepared": str(prepared.resolve()),
        "params": params,
        "workers": n_workers,
        "n_pairs": len(pair_list),
        "provenance": provenance(config=cfg, seed=seed, method=method),
    }
    subjects = (pairs_format.SubjectPairs(
        subject=subject,
        slice_index=np.array([pair_list[i].slice_index for i in idx], dtype=np.int32),
        disp=np.stack([results[i][0] for i in idx]),
        moved_image=np.stack([results[i][1] for i in idx]),
        moved_label=np.stack([results[i][2] for i in idx]),
        runtime_s=np.array([results[i][3] for i in idx], dtype=np.float64),
        spacing=np.asarray(pair_list[idx[0]].spacing, dtype=np.float64),
    ) for subject, idx in by_subject.items())
    return pairs_format.write_folder(out, meta, subjects, inputs=[prepared], made_by="register",
                                     nifti=nifti)


def register_pair(method: str, params: dict[str, Any], seed: int, subject: str, slice_index: int,
                  moving: np.ndarray, fixed: np.ndarray, moving_label: np.ndarray, spacing: np.ndarray):
    """Register one pair with the method's registrar; return (disp (ndim, *S) f32 voxels,
    moved_image (*S) f32, moved_label (*S) uint8, runtime_s: wall seconds of registration
    plus warping)."""
    from baselines.classical import warp

    where = f"subject {subject}" + (f" slice {slice_index}" if slice_index >= 0 else "")
    start = time.perf_counter()
    try:
        disp = methods.maker_of(method)(moving, fixed, spacing, params, seed=seed)
        moved_image = warp(np.asarray(moving, dtype=np.float32), disp, order=1)
        moved_label = warp(np.asarray(moving_label, dtype=np.uint8), disp, order=0)
    except GSMorphError as err:
        raise GSMorphError(f"{method} on {where}: {err}") from None
    runtime = time.perf_counter() - start
    if not np.all(np.isfinite(disp)):
        raise GSMorphError(f"{method} on {where}: the displacement has non-finite values")
    return disp.astype(np.float32), moved_image, moved_label, runtime


def _register_all(method, pair_list, params, seed, n_workers: int, in_pool: bool) -> list[tuple]:
    """Every pair's result, in order; in a pool of n_workers single-threaded processes (one
    worker too: the result must not depend on it), or in this process without in_pool."""
    task = partial(register_pair, method, params, int(seed))
    columns = (
        [str(p.subject) for p in pair_list],
        [int(p.slice_index) for p in pair_list],
        [p.moving for p in pair_list],
        [p.fixed for p in pair_list],
        [p.moving_label for p in pair_list],
        [np.asarray(p.spacing, dtype=np.float64) for p in pair_list],
    )
    if not in_pool:
        return list(map(task, *columns))
    # A fresh interpreter per worker (spawn), so the single-thread setting is in place
    # before ITK is loaded, whatever the parent process has imported.
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=context, initializer=watch_parent,
                                 initargs=(os.getpid(), _single_threaded)) as pool:
            return list(pool.map(task, *columns))
    except BrokenProcessPool as err:
        raise GSMorphError(f"a {method} worker process died before finishing ({err}); out of memory, "
                           "or a crash inside ITK/ANTs; try fewer --workers") from None


def _single_threaded() -> None:
    """Worker start-up: one thread for ITK (SimpleITK and ANTs) and numerical libraries."""
    for var in ("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
