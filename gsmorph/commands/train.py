"""`gsmorph train`: train one learned registration method into a run folder."""
from __future__ import annotations

import argparse
import json

from gsmorph.errors import GSMorphError

METHODS = ("gsmorph", "gs-pcgrad", "gs-agr", "weighted", "hypermorph")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prepared", required=True, help="prepared folder (gsmorph prepare)")
    parser.add_argument("--backbone", required=True, help="network name, e.g. voxelmorph or transmorph")
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--lam", type=float, default=None, help="smoothness weight (weighted method only)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True, help="run folder; an existing one is resumed from last.pt")
    parser.add_argument("--config", default=None, help="YAML config (method keys at top level or under 'method:')")
    parser.add_argument("--set", dest="overrides", default=None, help="JSON object of config overrides")


def run(args: argparse.Namespace) -> int:
    from gsmorph.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.method == "hypermorph":
        if args.lam is not None:
            raise GSMorphError("method 'hypermorph' learns over all lambdas and takes no --lam")
        try:
            from baselines.hypermorph import train_run as hyper_train_run
        except ImportError as err:
            raise GSMorphError(f"method 'hypermorph' is not available ({err})") from None
        summary = hyper_train_run(args.prepared, args.backbone, args.seed, args.out, cfg)
    else:
        from gsmorph.training import train_run

        summary = train_run(args.prepared, args.backbone, args.method, args.seed, args.out, cfg, lam=args.lam)
    print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 0
