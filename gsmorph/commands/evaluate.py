"""`gsmorph evaluate`: metrics of per-pair outputs into one long-format CSV."""
from __future__ import annotations

import argparse
from pathlib import Path

from gsmorph.cli_options import SPLITS, add_common, workers

CONVENTION_NAMES = ("learn2reg", "gsmorph-code")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", nargs="+", required=True, metavar="DIR",
                        help="pairs folders (pairs/<dataset>/<backbone>/<method>/seed<k>/), one per method and seed")
    parser.add_argument("--out", required=True, help="output CSV, e.g. results/<dataset>/metrics.csv")
    parser.add_argument("--split", default="test", choices=SPLITS,
                        help="the split every pairs folder must hold (default test)")
    parser.add_argument("--conventions", nargs="*", default=list(CONVENTION_NAMES), choices=CONVENTION_NAMES,
                        help="published metric conventions computed beside ours (default: all; none: give the "
                             "flag alone)")
    parser.add_argument("--prepared", metavar="DIR",
                        help="the prepared folder to read fixed and moving frames from, instead of the one each "
                             "pairs.json names (data moved elsewhere); it must hold the pairs' dataset")
    add_common(parser, "workers")


def run(args: argparse.Namespace) -> int:
    from gsmorph.evaluate import describe_data, evaluate, folder_meta, undefined_counts
    from gsmorph.io import check_file_replaceable, check_not_input, write_with_sidecar
    from gsmorph.provenance import provenance

    out = Path(args.out)
    # never onto an input: a pairs folder or the prepared folder it names (checked before any work)
    check_not_input(out, [*args.pairs, *(folder_meta(p, args.prepared)["prepared"] for p in args.pairs)])
    check_file_replaceable(out, "evaluate")
    table = evaluate(args.pairs, workers=workers(args.workers), split=args.split,
                     conventions=tuple(args.conventions), prepared=args.prepared)
    undefined = undefined_counts(table)
    record = provenance(
        config={"pairs": [str(p) for p in args.pairs], "workers": args.workers, "split": args.split,
                "conventions": args.conventions, "prepared": args.prepared},
        data=describe_data(args.pairs, args.prepared),
        n_rows=len(table),
        n_pairs=int(table.groupby(["dataset", "backbone", "method", "seed", "subject", "slice"]).ngroups),
        undefined=undefined.to_dict(orient="records"),
    )
    check_file_replaceable(out, "evaluate")  # again: a user may have put a file there meanwhile
    write_with_sidecar(out, lambda tmp: table.to_csv(tmp, index=False), record, made_by="evaluate")
    print(f"wrote {out}: {len(table)} rows")
    if undefined.empty:
        print("undefined (NaN) values: none")
    else:
        print("undefined (NaN) values (a structure missing from the moving or fixed labels; n_lost: erased "
              "by the warp):")
        print(undefined.to_string(index=False))
    return 0
