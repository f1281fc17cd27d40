"""`gsmorph report`: statistics, Table 1 and figures from metrics CSVs and run folders
(what it writes: gsmorph/report/build.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

from gsmorph import methods
from gsmorph.cli_options import add_common, workers
from gsmorph.errors import GSMorphError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", nargs="+", required=True, metavar="CSV",
                        help="metrics CSVs written by `gsmorph evaluate` (one per dataset)")
    runs = parser.add_mutually_exclusive_group(required=True)
    runs.add_argument("--runs", help="runs folder (runs/<dataset>/<backbone>/<method>/seed<k>/): the trade-off, "
                      "cost and conflict figures read it")
    runs.add_argument("--no-runs", action="store_true", help="no run folders: make the tables, statistics and the "
                      "figures of the metrics only")
    parser.add_argument("--out", required=True, help="output folder (e.g. results); its stats/, tables/, "
                        "figures/ and report/ are replaced whole")
    parser.add_argument("--pairs", nargs="*", default=[], metavar="DIR",
                        help="pairs folders for the qualitative figure (optional)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--reference", default=methods.REFERENCE, choices=methods.ids(None, None),
                        help=f"method the others are tested against (default {methods.REFERENCE})")
    add_common(parser, "workers")


def run(args: argparse.Namespace) -> int:
    from gsmorph.report.build import make_report

    if args.n_boot < 1:
        raise GSMorphError(f"--n-boot: must be at least 1 bootstrap resample, got {args.n_boot}")
    if args.seed < 0:
        raise GSMorphError(f"--seed: must be >= 0, got {args.seed}")
    if args.runs is not None and not Path(args.runs).is_dir():
        raise GSMorphError(f"--runs {args.runs}: folder not found (give --no-runs to report without runs)")
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result = make_report(args.metrics, args.runs, args.out, pairs=args.pairs, seed=args.seed,
                         n_boot=args.n_boot, reference=args.reference, config=config, workers=workers(args.workers))
    print(f"wrote {result.n_tables} tables, {result.n_figures} figures, statistics under {args.out}")
    if not result.undefined.empty:
        print(f"undefined (NaN) pair values, left out of the means ({Path(args.out) / 'stats' / 'undefined.csv'}):")
        print(result.undefined.to_string(index=False))
    for reason in result.skipped:
        print(f"skipped: {reason}")
    return 0
