"""`gsmorph train`: train one learned registration method (the trained family of
gsmorph/methods.py) into a run folder, with the trainer the method table names."""
from __future__ import annotations

import argparse
import json

from gsmorph import backbones, methods
from gsmorph.cli_options import add_common, check_pairs_out, infer_if_asked


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prepared", required=True, help="prepared folder (gsmorph prepare)")
    parser.add_argument("--backbone", required=True, choices=backbones.names(), help="network")
    parser.add_argument("--method", required=True, choices=methods.ids("trained", None))
    parser.add_argument("--lam", type=float, default=None,
                        help="smoothness weight (only for methods that take one: "
                             f"{', '.join(m.id for m in methods.METHODS if m.takes_lam)})")
    add_common(parser, "required_seed")
    parser.add_argument("--out", required=True, help="run folder; an existing one is resumed from last.pt")
    parser.add_argument("--fresh-if-changed", action="store_true",
                        help="start afresh (removing the run's files) when the folder holds a run made with "
                             "another config, code, data or thread count, instead of refusing")
    add_common(parser, "config", "device", "pairs_out")


def run(args: argparse.Namespace) -> int:
    from gsmorph.config import load_config
    from gsmorph.device import apply_threads
    from gsmorph.training import train_method

    check_pairs_out(args, args.out)
    cfg = load_config(args.config, args.overrides, device=args.device)
    apply_threads(cfg)
    summary = train_method(args.prepared, args.backbone, args.method, args.seed, args.out, cfg, lam=args.lam,
                           fresh_if_changed=args.fresh_if_changed)
    print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    infer_if_asked(args, args.out, args.method)
    return 0
