"""`gsmorph tune`: one Optuna worker tuning the lambda of a weighted loss (the "tuned"
family of gsmorph/methods.py; baselines/tuning/).

Start several with the same --storage and --study to share the trials (SQLite for one
host, a journal file or a database server for many); together they run --trials trials.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from gsmorph import backbones, methods
from gsmorph.cli_options import add_common, check_pairs_out, infer_if_asked


def add_arguments(parser: argparse.ArgumentParser) -> None:
    tuned = methods.ids("tuned", None)
    parser.add_argument("--method", choices=tuned, default=tuned[0], help=f"tuned method (default {tuned[0]})")
    parser.add_argument("--prepared", required=True, help="prepared dataset folder")
    parser.add_argument("--backbone", required=True, choices=backbones.names(), help="network")
    parser.add_argument("--trials", type=int, required=True, help="trials in the study, all workers together")
    parser.add_argument("--storage", required=True,
                        help="sqlite:///x.db | x.db | journal:///x.log | x.log | any SQLAlchemy URL")
    parser.add_argument("--study", required=True, help="study name in the storage")
    add_common(parser, "required_seed")
    parser.add_argument("--out", required=True, help="output folder (trials.csv, study.json, best/, trials/)")
    add_common(parser, "config", "device", "pairs_out")


def run(args: argparse.Namespace) -> int:
    from baselines.tuning import tune
    from gsmorph.config import load_config
    from gsmorph.device import apply_threads

    check_pairs_out(args.pairs_out, args.prepared, args.out)
    cfg = load_config(args.config, args.overrides, device=args.device)
    apply_threads(cfg)
    info = tune(args.prepared, args.backbone, args.trials, args.storage, args.study, args.seed, args.out, cfg,
                method=args.method)
    print(json.dumps({k: info[k] for k in ("study", "n_trials", "best_trial", "best_lam", "best_val_dice",
                                          "total_wall_s")}))
    infer_if_asked(args, args.pairs_out, Path(args.out) / "best", args.method)
    return 0
