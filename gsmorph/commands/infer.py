"""`gsmorph infer`: register a split's pairs with a trained run and write per-pair outputs."""
from __future__ import annotations

import argparse

from gsmorph.cli_options import add_common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run folder made by gsmorph train (or tune's best/)")
    parser.add_argument("--prepared", required=True, help="prepared folder")
    parser.add_argument("--out", required=True, help="pairs folder to write (see gsmorph/pairs.py)")
    parser.add_argument("--method-name", default=None,
                        help="method name in the outputs (default: the run's method, e.g. weighted-s)")
    parser.add_argument("--weights", choices=("best", "last"), default="best",
                        help="best: best.pt, the check config `selection` chose (default); last: the last "
                             "epoch's weights (last.pt)")
    add_common(parser, "split", "device", "nifti")


def run(args: argparse.Namespace) -> int:
    from gsmorph.inference import infer_split

    out = infer_split(args.run, args.prepared, args.split, args.out, method_name=args.method_name,
                      device=args.device or "auto", nifti=args.nifti, weights=args.weights)
    print(out)
    return 0
