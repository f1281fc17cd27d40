"""`gsmorph prepare`: raw ACDC / M&Ms-1 download (or phantom) -> prepared ED/ES pairs."""
from __future__ import annotations

import argparse
from pathlib import Path

from gsmorph import datasets


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=datasets.ids())
    parser.add_argument("--raw", required=True, type=Path, help="the raw download (or phantom) folder")
    parser.add_argument("--out", required=True, type=Path, help="prepared folder: a new one, or one gsmorph wrote (replaced whole); never the --raw folder or one around or inside it")
    parser.add_argument("--size", type=int, default=128, help="in-plane crop/pad size (voxels)")
    parser.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                        help="fail: stop at the first bad subject; skip: list it in excluded.csv")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subject split")
    parser.add_argument("--split-ratios", type=float, nargs=3, default=(0.7, 0.1, 0.2),
                        metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--split-file", type=Path, default=None, help="CSV with columns subject, split")
    parser.add_argument("--subjects-file", type=Path, default=None, metavar="FILE",
                        help="read only the subjects this file lists (a CSV with a 'subject' column, or one id"
                             " per line); a listed id that is not a labelled subject of the download is an error")
    parser.add_argument("--intensity", choices=("percentile", "minmax"), default="percentile",
                        help="intensity scaling to [0, 1] of each subject's ED and ES together: the 0.5-99.5"
                             " percentile range (default) or the minimum and maximum (the paper's code)")
    parser.add_argument("--folders", nargs="+", default=None, metavar="NAME",
                        help="read only these top-level folders of the raw layout (ACDC: training, testing;"
                             " M&Ms-1: Training, Validation, Testing); default: all")


def run(args: argparse.Namespace) -> int:
    from gsmorph.data.prepare import prepare

    summary = prepare(args.dataset, args.raw, args.out, size=args.size, on_error=args.on_error, seed=args.seed,
                      ratios=tuple(args.split_ratios), split_file=args.split_file, folders=args.folders,
                      intensity=args.intensity, subjects_file=args.subjects_file)
    print(f"prepared {summary['n_prepared']} subjects into {args.out} ({summary['intensity']} intensities"
          + (f"; {summary['n_listed']} listed in {args.subjects_file}" if args.subjects_file else "") + ") "
          f"(splits {summary['split_counts']}; {summary['n_excluded']} excluded, "
          f"{len(summary['unlabelled'])} unlabelled)")
    for item in summary["excluded"]:
        print(f"excluded {item['subject']}: {item['file']}: {item['reason']}")
    return 0
