"""Compute of the Optuna-tuned weighted baseline (N trials) versus one GSMorph run, on the phantom.

Usage:
  python benchmarks/tuning_cost.py [--trials 6] [--epochs 10] [--subjects 12] [--size 64]
      [--backbone voxelmorph] [--seed 0] [--device auto] [--set JSON] [--work DIR]

Steps (all in --work, default a temporary folder): write an ACDC-layout phantom and
prepare it (`gsmorph synth`, `gsmorph prepare`); train one GSMorph run; run one tuning
worker with N trials of the weighted loss, each with the GSMorph run's budget (same
config, epochs and seed); register the test split with GSMorph and with the tuned best
run, and evaluate both. Prints a Markdown table: compute in wall seconds (end to end per
training run, data loading included, the same way for both: the study's total_wall_s is
the sum over all its trials, pruned ones included), process CPU seconds of each phase,
the ratio tuned / GSMorph, and the validation and test mean Dice each reached.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_prepared(work: Path, subjects: int, size: int, seed: int) -> Path:
    from gsmorph.cli import main

    raw, prepared = work / "raw", work / "prepared"
    if not (prepared / "subjects.csv").is_file():
        assert main(["synth", "--format", "acdc", "--out", str(raw), "--subjects", str(subjects),
                     "--seed", str(seed)]) == 0
        assert main(["prepare", "--dataset", "acdc", "--raw", str(raw), "--out", str(prepared),
                     "--size", str(size), "--seed", str(seed)]) == 0
    return prepared


def test_dice(run_dir: Path, prepared: Path, out: Path, name: str) -> float:
    """Mean over test pairs of the mean LV/Myo/RV Dice (structures empty in both: left out)."""
    from gsmorph.evaluate import evaluate
    from gsmorph.inference import infer_split

    folder = infer_split(run_dir, prepared, "test", out / name, method_name=name)
    table = evaluate([folder])
    dice = table[table["metric"] == "dice"]
    return float(dice.groupby(["subject", "slice"])["value"].mean().mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--subjects", type=int, default=12)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--backbone", default="voxelmorph")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", dest="overrides", default=None, help="JSON config overrides for every run")
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args(argv)

    from baselines.tuning import tune
    from gsmorph.config import load_config
    from gsmorph.training import train_method

    work = Path(args.work or tempfile.mkdtemp(prefix="tuning_cost_"))
    work.mkdir(parents=True, exist_ok=True)
    prepared = make_prepared(work, args.subjects, args.size, args.seed)
    overrides = {"epochs": args.epochs, "device": args.device}
    overrides.update(json.loads(args.overrides) if args.overrides else {})
    cfg = load_config(None, overrides)

    # warm-up (imports, kernels, allocator), not timed: otherwise the first run measured pays it
    warm = load_config(None, {**overrides, "epochs": 1, "max_train_pairs": 2, "max_val_pairs": 2})
    train_method(prepared, args.backbone, "gsmorph", args.seed, work / "warmup", warm)

    t0, c0 = time.perf_counter(), cpu_s()
    gs = train_method(prepared, args.backbone, "gsmorph", args.seed, work / "gsmorph", cfg)
    gs_wall, gs_cpu = time.perf_counter() - t0, cpu_s() - c0

    t0, c0 = time.perf_counter(), cpu_s()
    study = tune(str(prepared), args.backbone, args.trials, str(work / "study.db"), "tuning-cost", args.seed,
                 str(work / "tune"), cfg)
    tune_wall, tune_cpu = time.perf_counter() - t0, cpu_s() - c0

    gs_test = test_dice(work / "gsmorph", prepared, work / "pairs", "gsmorph")
    tuned_test = test_dice(work / "tune" / "best", prepared, work / "pairs", "weighted-tuned")

    device = gs["device"]
    ratio = study["total_wall_s"] / gs_wall
    print(f"\nphantom: {args.subjects} subjects, {args.size}x{args.size}, backbone {args.backbone}, "
          f"{args.epochs} epochs per run, seed {args.seed}, device {device}; config overrides {overrides}\n")
    print("| method | training runs | compute (wall s) | process CPU s | ratio (wall) | ratio (CPU) | val Dice "
          "| test Dice |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| GSMorph | 1 | {gs_wall:.1f} | {gs_cpu:.1f} | 1.00 | 1.00 | {gs['best_val_dice']:.4f} | {gs_test:.4f} |")
    print(f"| Tuned (Optuna, {args.trials} trials: {study['n_complete']} complete, {study['n_pruned']} pruned, "
          f"{study['n_failed']} failed) | {study['n_trials']} | {study['total_wall_s']:.1f} | {tune_cpu:.1f} | "
          f"{ratio:.2f} | {tune_cpu / gs_cpu:.2f} | {study['best_val_dice']:.4f} | {tuned_test:.4f} |")
    print(f"\nbest lambda {study['best_lam']:.4g} (trial {study['best_trial']}); "
          f"tuning worker wall incl. study overhead {tune_wall:.1f} s; work folder {work}")
    summary = {"device": device, "gsmorph_wall_s": gs_wall, "gsmorph_cpu_s": gs_cpu, "tune_total_wall_s":
               study["total_wall_s"], "tune_cpu_s": tune_cpu, "ratio": ratio,
               "ratio_cpu": tune_cpu / gs_cpu, "gsmorph_val_dice": gs["best_val_dice"],
               "tuned_val_dice": study["best_val_dice"], "gsmorph_test_dice": gs_test, "tuned_test_dice": tuned_test,
               "best_lam": study["best_lam"], "n_trials": study["n_trials"], "n_pruned": study["n_pruned"],
               "args": vars(args)}
    (work / "tuning_cost.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
