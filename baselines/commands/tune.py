"""`gsmorph tune`: one Optuna worker tuning the weighted-loss lambda (baselines/tuning.py).

Start several with the same --storage and --study to share the trials (SQLite for one
host, a journal file or a database server for many); together they run --trials trials.
"""
from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prepared", required=True, help="prepared dataset folder")
    parser.add_argument("--backbone", required=True, help="network name (voxelmorph, transmorph)")
    parser.add_argument("--trials", type=int, required=True, help="trials in the study, all workers together")
    parser.add_argument("--storage", required=True,
                        help="sqlite:///x.db | x.db | journal:///x.log | x.log | any SQLAlchemy URL")
    parser.add_argument("--study", required=True, help="study name in the storage")
    parser.add_argument("--seed", type=int, required=True, help="training seed; trial k samples with seed + k")
    parser.add_argument("--out", required=True, help="output folder (trials.csv, study.json, best/, trials/)")
    parser.add_argument("--config", default=None, help="YAML config (keys at top level or under 'method:')")
    parser.add_argument("--set", dest="overrides", default=None, help="JSON overriding config keys")


def run(args: argparse.Namespace) -> int:
    from baselines.tuning import tune
    from gsmorph.config import load_config

    cfg = load_config(args.config, args.overrides)
    info = tune(args.prepared, args.backbone, args.trials, args.storage, args.study, args.seed, args.out, cfg)
    print(json.dumps({k: info[k] for k in ("study", "n_trials", "best_trial", "best_lam", "best_val_dice",
                                          "total_wall_s")}))
    return 0
