"""Why HyperMorph does not learn lambda: a controlled ablation of its parametrisation, sigma,
lambda sampling and learning rate, each run one `gsmorph train --method hypermorph`.

Usage:
  python benchmarks/hypermorph_ablation.py run --prepared DIR --out DIR [--epochs 10]
      [--set JSON] [--only NAME ...] [--threads 1]
  python benchmarks/hypermorph_ablation.py table --out DIR [DIR ...] > table.md

`run` trains every configuration of CONFIGS (or those of --only) on the prepared folder,
into DIR/<dataset>-e<epochs>/<name>-seed<k>/ (each of --seeds; a finished run is not trained again), with the
default run's method settings (config.yaml `method:`, HyperMorph's variant keys replaced
by the configuration's), and appends one row per run to DIR/results.csv: the settings,
hyper_lambda_effect, the validation Dice and NJD % at lambda 0 / 0.5 / 1 (the coarse grid's
t = 0, 0.5, 1: for log-weight sampling t = 0.5 is the equivalent weight at the middle of the
log range), the Dice without deformation, and the run's wall seconds (summary.json wall_s:
data loading, training, validation and the final sweep, on --threads CPU threads).
`table` prints results.csv as a Markdown table (the numbers of docs/hypermorph.md).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (hypermorph keys, lr or None for VoxelMorph's AdamW 5e-3); "old" is the code's
# default before this ablation (scaled generation, lambda ~ U, sigma 0.05)
BASE = {"parametrisation": "scaled", "encoding": "lambda", "loss": "hoopes", "sampling": "uniform",
        "mse_sigma": 0.05, "lambda_per": "sample", "smoothness": "l2"}
DENSE = {"parametrisation": "dense"}
MIP = {"parametrisation": "offset", "encoding": "cos-sin"}
LOGW = {"sampling": "log-weight"}
EST = {"mse_sigma": "estimate"}
FILM = {"parametrisation": "film"}
CONFIGS: dict[str, tuple[dict, float | None]] = {
    "old": ({}, None),
    "dense": (DENSE, None),
    "mip": (MIP, None),
    "sigma-est": (EST, None),
    "logw": (LOGW, None),
    "logw+est": ({**LOGW, **EST}, None),
    "dense+logw": ({**DENSE, **LOGW}, None),
    "mip+logw": ({**MIP, **LOGW}, None),
    "mip+logw+est": ({**MIP, **LOGW, **EST}, None),
    "dense+logw+est": ({**DENSE, **LOGW, **EST}, None),
    "old@1e-3": ({}, 1e-3),
    "dense@1e-4": (DENSE, 1e-4),
    "dense@1e-3": (DENSE, 1e-3),
    "mip@1e-3": (MIP, 1e-3),
    "logw@1e-3": (LOGW, 1e-3),
    "dense+logw@1e-4": ({**DENSE, **LOGW}, 1e-4),
    "dense+logw@1e-3": ({**DENSE, **LOGW}, 1e-3),
    "mip+logw@1e-3": ({**MIP, **LOGW}, 1e-3),
    "logw+est@1e-3": ({**LOGW, **EST}, 1e-3),
    "logw+est+ends": ({**LOGW, **EST, "endpoint_prob": 0.5}, None),
    "mip+logw+est@1e-3": ({**MIP, **LOGW, **EST}, 1e-3),
    "logw+est+lr10": ({**LOGW, **EST, "lambda_lr_factor": 10.0}, None),
    "logw+est+lr30": ({**LOGW, **EST, "lambda_lr_factor": 30.0}, None),
    "old+lr10": ({"lambda_lr_factor": 10.0}, None),
    "film": (FILM, None),
    "film+logw": ({**FILM, **LOGW}, None),
    "film+logw+est": ({**FILM, **LOGW, **EST}, None),
    "film+logw+est@1e-3": ({**FILM, **LOGW, **EST}, 1e-3),
    "published": ({"variant": "published"}, None),
    "published@1e-4": ({"variant": "published"}, 1e-4),
    "gsmorph": ({"variant": "gsmorph"}, None),
    "default": ({"variant": "default"}, None),
}
COLUMNS = ["dataset", "epochs", "name", "seed", "parametrisation", "encoding", "sampling", "sigma", "lr",
           "hyper_lambda_effect", "dice_0", "dice_05", "dice_1", "njd_0", "njd_05", "njd_1", "dice_identity",
           "hyper_lambda", "wall_s"]


def default_method_settings() -> dict:
    """config.yaml's `method:` keys a train job gets (the workflow's own selection)."""
    import yaml

    method = yaml.safe_load((ROOT / "config.yaml").read_text())["method"]
    keep = ("epochs", "batch_size", "val_every")
    cfg = {k: method[k] for k in keep if k in method}
    cfg["backbones"] = {"voxelmorph": method["backbones"]["voxelmorph"]}
    cfg["hypermorph"] = dict(method.get("hypermorph") or {})
    return cfg


def run_one(prepared: Path, out: Path, name: str, epochs: int, extra: dict, threads: int, seed: int = 0) -> dict:
    import pandas as pd
    import torch

    from gsmorph.config import load_config
    from gsmorph.workflow_config import deep_merge
    from gsmorph.training import train_method

    keys, lr = CONFIGS[name]
    overrides = deep_merge(default_method_settings(), extra)
    overrides["epochs"] = epochs
    variant = keys.get("variant")
    hyper = {**overrides["hypermorph"], **({} if variant else BASE), **keys}
    overrides["hypermorph"] = hyper
    if lr is not None:
        overrides["hypermorph"]["optim"] = {"optimizer": "adam", "lr": lr}
    overrides["num_threads"] = threads
    overrides["device"] = "cpu"
    torch.set_num_threads(threads)
    run = out / f"{name}-seed{seed}"
    if not (run / "summary.json").is_file():
        train_method(prepared, "voxelmorph", "hypermorph", seed, run, load_config(None, overrides))
    summary = json.loads((run / "summary.json").read_text())
    sweep = pd.read_csv(run / "lambda_sweep.csv")
    coarse = sweep[sweep.stage == "coarse"].set_index("hyper_input")
    settings = summary["hyper_settings"]
    return {"dataset": prepared.name, "epochs": epochs, "name": name, "seed": seed,
            "parametrisation": settings["parametrisation"], "encoding": settings["encoding"],
            "sampling": settings["sampling"], "sigma": round(summary["hyper_sigma"], 4),
            "lr": summary["optim"]["lr"], "hyper_lambda_effect": summary["hyper_lambda_effect"],
            "dice_0": coarse.val_dice[0.0], "dice_05": coarse.val_dice[0.5], "dice_1": coarse.val_dice[1.0],
            "njd_0": coarse.val_njd_pct[0.0], "njd_05": coarse.val_njd_pct[0.5], "njd_1": coarse.val_njd_pct[1.0],
            "dice_identity": summary["hyper_val_dice_identity"], "hyper_lambda": summary["hyper_lambda"],
            "wall_s": summary["wall_s"]}


def append_row(path: Path, row: dict) -> None:
    import pandas as pd

    from gsmorph.io import write_csv

    new = pd.DataFrame([row], columns=COLUMNS)
    if path.is_file():
        table = pd.read_csv(path)
        same = ((table.dataset == row["dataset"]) & (table.epochs == row["epochs"]) & (table.name == row["name"])
                & (table.seed == row["seed"]))
        new = pd.concat([table[~same], new], ignore_index=True)
    table = new
    write_csv(path, table)


def table(folders: list[Path]) -> str:
    import pandas as pd

    rows = pd.concat([pd.read_csv(f / "results.csv") for f in folders], ignore_index=True)
    lines = ["| data | epochs | run | seed | generation | input | sampling | sigma | lr | effect | Dice 0 / 0.5 / 1 (%) "
             "| NJD 0 / 0.5 / 1 (%) | Dice id. (%) | wall s |", "|" + "---|" * 15]
    for r in rows.itertuples():
        lines.append(
            f"| {r.dataset} | {r.epochs} | {r.name} | {r.seed} | {r.parametrisation} | {r.encoding} | {r.sampling} | {r.sigma:.3g} "
            f"| {r.lr:.0e} | {r.hyper_lambda_effect:.3f} | {100 * r.dice_0:.1f} / {100 * r.dice_05:.1f} / "
            f"{100 * r.dice_1:.1f} | {r.njd_0:.2f} / {r.njd_05:.2f} / {r.njd_1:.2f} | {100 * r.dice_identity:.1f} "
            f"| {r.wall_s:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    run = sub.add_parser("run")
    run.add_argument("--prepared", type=Path, required=True)
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--epochs", type=int, default=10)
    run.add_argument("--set", default="{}", help="JSON method keys merged over config.yaml's")
    run.add_argument("--only", nargs="*", default=None, choices=sorted(CONFIGS))
    run.add_argument("--threads", type=int, default=1)
    run.add_argument("--seeds", type=int, nargs="+", default=[0])
    show = sub.add_parser("table")
    show.add_argument("--out", type=Path, nargs="+", required=True)
    args = parser.parse_args(argv)
    if args.verb == "table":
        print(table(args.out))
        return 0
    folder = args.out / f"{args.prepared.name}-e{args.epochs}"
    for seed in args.seeds:
        for name in args.only or list(CONFIGS):
            row = run_one(args.prepared, folder, name, args.epochs, json.loads(args.set), args.threads, seed)
            append_row(args.out / "results.csv", row)
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
