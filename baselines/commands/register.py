"""`gsmorph register`: register every pair of a split with a non-learned method (Initial,
Demons, SyN; the classical family of gsmorph/methods.py) into a pairs folder
(baselines/registration.py)."""
from __future__ import annotations

import argparse

from gsmorph import methods
from gsmorph.cli_options import add_common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, choices=methods.ids("classical", None), help="registration method")
    parser.add_argument("--prepared", required=True, help="prepared dataset folder (with subjects.csv)")
    parser.add_argument("--out", required=True, help="pairs folder to write, e.g. pairs/<dataset>/none/<method>/seed0")
    add_common(parser, "split", "config", "workers", "seed", "nifti")


def run(args: argparse.Namespace) -> int:
    from baselines.registration import register_split
    from gsmorph.config import load_config

    cfg = load_config(args.config, args.overrides)
    out = register_split(args.method, args.prepared, args.split, args.out, cfg, workers=args.workers, seed=args.seed,
                         nifti=args.nifti)
    print(f"gsmorph register: wrote {out}")
    return 0
