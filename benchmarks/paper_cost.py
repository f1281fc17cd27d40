"""Measured cost of the paper's workflow on the current device, and its projection.

One script, four parts, any of them in one run (in this order), each in its own module
beside this one (cost_measure.py, cost_concurrency.py, cost_quality.py, cost_projection.py with
cost_jobs.py; cost_tables.py holds what they share):

--measure      seconds per epoch of every job type (method family x backbone x dataset) at
               the config's scale on phantoms of the datasets' sizes, a few epochs each,
               for each option set of --options (fp32, tf32, bf16, bf16-cl, ...: the fast-step
               keys of gsmorph/training/fast_step.py), plus each job's fixed costs: process start (Python,
               imports, CUDA context), data loading, network building, finishing the run
               folder, inference of the test split. Writes times.csv.
--concurrency  k = 1, 2, 4, ... trainings of one job type at once on this device (separate
               processes, started together behind a barrier): seconds of training per
               job, and the aggregate speed-up S(k) = k x t(1) / t(k). Writes concurrency.csv.
--quality      validation Dice of short runs, fp32 against the fast option sets, several
               seeds (noise = the seed-to-seed spread). Writes quality.csv.
--project      the GPU jobs the workflow plans for a config (workflow/configs/paper.yaml on top
               of config.yaml by default; Snakemake's dry run, cost_jobs.py), timed: a train
               job per run, or per dataset, backbone and seed training the grouped methods
               one after another (config group_training), each also inferring the test
               split; the tuned baseline's tuning.workers worker jobs sharing
               method.tune.trials trials and its tune job inferring with the study's best
               run, a pruned trial running a fraction of the epochs (--pruned-fraction,
               --pruned-epochs: an assumption stated in the output, or read from a study's
               trials.csv with --pruned-from); classical methods run on CPUs and are only
               counted. Projects GPU-hours (the jobs one after another) and wall time on N
               GPUs with k jobs per GPU (--gpus, --slots): a simulation in which the jobs,
               longest first, take the free slot of the least busy GPU, and m jobs training
               on one GPU each run at S(m) / m of their speed alone (S measured by
               --concurrency, or --speedup); start-up, loading and finishing run at full
               speed (CPU side). Writes projection.md.

Epoch times: a timed run validates half way and at its last epoch; epoch 1 is a warm-up
(cuDNN autotuning, compilation) and the first validation takes the validation's warm-up;
the other train-only epochs give the epoch time (median). The validation time is that of
a validation and its checkpoint timed alone after the run (median of two).
With --max-train-pairs / --max-val-pairs (a CPU run) fewer pairs are timed and the times
are scaled to the dataset's pairs by steps per epoch. Datasets left out of
--time-datasets are scaled from a timed one by steps per epoch (the step time does not
depend on the dataset at equal image size and batch); such rows say so in `source`.

Usage (the GPU measurement: benchmarks/gpu_measurements.sh):
  python benchmarks/paper_cost.py --measure --concurrency --project --out-dir OUT
  python benchmarks/paper_cost.py --project --times OUT/times.csv [--concurrency-csv OUT/concurrency.csv]
      [--config workflow/configs/paper.yaml] [--gpus 1] [--slots 1 2 4 8] [--speedup 2:1.7,4:2.4]
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its parts beside it, also when loaded by path

from cost_concurrency import WORKER_FLAG, concurrency_worker, run_concurrency  # noqa: E402
from cost_jobs import parse_dry_run  # noqa: E402
from cost_measure import run_measure  # noqa: E402
from cost_projection import (Job, count_jobs, parse_speedup, project, projection_report, pruning_from,  # noqa: E402
                             simulate, speedup_of, speedups_from, time_table_markdown)
from cost_quality import quality_markdown, run_quality  # noqa: E402
from cost_tables import (FAMILIES, OPTION_SETS, PRUNED_EPOCHS, PRUNED_FRACTION, REPO, TIME_COLUMNS, Times,  # noqa: E402
                         merge, read_csv, time_table, workflow_config, write_csv)

__all__ = ["Job", "TIME_COLUMNS", "Times", "count_jobs", "main", "merge", "parse_speedup", "project", "pruning_from",
           "read_csv", "simulate", "speedup_of", "time_table", "write_csv"]


# ================================================================================ main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", action="store_true")
    parser.add_argument("--concurrency", action="store_true")
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--project", action="store_true")
    parser.add_argument("--config", default=str(REPO / "workflow/configs/paper.yaml"),
                        help="workflow config loaded on top of config.yaml (default: paper.yaml)")
    parser.add_argument("--out-dir", default="paper_cost_out")
    parser.add_argument("--work", default=None, help="phantoms and runs (default: a temporary folder)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    m = parser.add_argument_group("--measure")
    m.add_argument("--datasets", nargs="+", default=None, help="default: the config's")
    m.add_argument("--time-datasets", nargs="+", default=None,
                   help="datasets to time (others scaled from the first of these); default: all")
    m.add_argument("--subjects", default=None, help="phantom subjects, e.g. acdc=24,mnm=24 (default: the config's)")
    m.add_argument("--size", type=int, default=None, help="image size (default: the config's prepare.size)")
    m.add_argument("--backbones", nargs="+", default=None)
    m.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    m.add_argument("--options", nargs="+", default=None, choices=list(OPTION_SETS),
                   help="option sets (default: fp32 on a CPU; fp32 tf32 bf16 bf16-cl on CUDA)")
    m.add_argument("--epochs", type=int, default=6, help="epochs per timed run (>= 4; epoch 1 is the warm-up)")
    m.add_argument("--max-train-pairs", type=int, default=None, help="time fewer pairs (scaled up)")
    m.add_argument("--max-val-pairs", type=int, default=None)
    parser.add_argument("--append", action="store_true",
                        help="keep the rows of --out-dir's times.csv / concurrency.csv not measured again")
    c = parser.add_argument_group("--concurrency")
    c.add_argument("--k", type=int, nargs="+", default=[1, 2, 4, 8])
    c.add_argument("--concurrency-backbones", nargs="+", default=["voxelmorph"])
    c.add_argument("--concurrency-options", nargs="+", default=["fp32"], choices=list(OPTION_SETS))
    c.add_argument("--concurrency-family", default="surgery", choices=list(FAMILIES))
    c.add_argument("--concurrency-epochs", type=int, default=8)
    q = parser.add_argument_group("--quality")
    q.add_argument("--quality-backbones", nargs="+", default=["voxelmorph"])
    q.add_argument("--quality-epochs", type=int, nargs="+", default=[30], help="one per backbone")
    q.add_argument("--quality-options", nargs="+", default=["bf16-cl"], choices=list(OPTION_SETS))
    q.add_argument("--quality-seeds", type=int, default=2)
    p = parser.add_argument_group("--project")
    p.add_argument("--times", default=None, help="times.csv (default: --out-dir's, e.g. just measured)")
    p.add_argument("--concurrency-csv", default=None, help="concurrency.csv (default: --out-dir's, if any)")
    p.add_argument("--speedup", default=None, help="S(k) instead of a measured one: '2:1.7,4:2.4,8:2.2'")
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--slots", type=int, nargs="+", default=[1, 2, 4, 8], help="jobs per GPU to project")
    p.add_argument("--pruned-fraction", type=float, default=PRUNED_FRACTION)
    p.add_argument("--pruned-epochs", type=float, default=PRUNED_EPOCHS)
    p.add_argument("--pruned-from", default=None, help="a study's trials.csv: the observed pruning")
    p.add_argument("--label", default="", help="a line naming the machine and scale, put in projection.md")
    p.add_argument("--planned", default=None, help="the config's dry run saved by `python benchmarks/cost_jobs.py "
                   "CONFIG > FILE` (a machine without Snakemake); default: Snakemake plans it here")
    parser.add_argument("--set", default=None, help="JSON method keys for what is trained here (smoke tests: "
                        "times then no longer stand for the config's networks)")
    args = parser.parse_args(argv)
    if not (args.measure or args.concurrency or args.quality or args.project):
        parser.error("nothing to do: give --measure, --concurrency, --quality and/or --project")
    if args.measure and args.epochs < 4:
        parser.error("--epochs must be >= 4 (a warm-up, train-only epochs, a validated last epoch)")
    return args


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == WORKER_FLAG:
        concurrency_worker(json.loads(sys.argv[2]))
        return 0
    args = parse_args(argv)
    config = workflow_config(args.config)  # projected as it is
    measured = copy.deepcopy(config)       # what --measure, --concurrency, --quality train on
    if args.subjects:
        measured["synth"]["subjects"] = {k: int(v) for k, v in (p.split("=") for p in args.subjects.split(","))}
    if args.set:
        measured["method"] = merge(measured.get("method") or {}, json.loads(args.set))
    if 1 not in args.k:
        args.k = [1] + args.k
    args.size = args.size or int(config["prepare"]["size"])
    args.backbones = args.backbones or list(config["backbones"])
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.options is None:
        import torch

        cuda = args.device != "cpu" and torch.cuda.is_available()
        args.options = ["fp32", "tf32", "bf16", "bf16-cl"] if cuda else ["fp32"]
    work_ctx = tempfile.TemporaryDirectory(prefix="paper_cost-") if args.work is None else None
    work = Path(args.work or work_ctx.name)
    work.mkdir(parents=True, exist_ok=True)
    header = (f"paper_cost.py, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
              f"commit {_commit()}, host {platform.node()}")
    print(header, flush=True)
    try:
        if args.measure:
            run_measure(args, measured, work)
        if args.concurrency:
            run_concurrency(args, measured, work)
        if args.quality:
            run_quality(args, measured, work)
    finally:
        if work_ctx is not None:
            work_ctx.cleanup()
    if args.project:
        text = report(args, config)
        (out_dir / "projection.md").write_text(text)
        print(text)
    return 0


def report(args, config: dict) -> str:
    out_dir = Path(args.out_dir)
    times_path = Path(args.times) if args.times else out_dir / "times.csv"
    rows = read_csv(times_path)
    conc_path = Path(args.concurrency_csv) if args.concurrency_csv else out_dir / "concurrency.csv"
    conc_rows = read_csv(conc_path) if conc_path.is_file() else []
    if args.speedup:
        speedups, speedup_source = {"*": parse_speedup(args.speedup)}, f"given, {args.speedup}"
    elif conc_rows:
        speedups = speedups_from(conc_rows)
        speedup_source = f"measured ({conc_path.name}: " + "; ".join(
            f"{b} {o} " + ", ".join(f"S({k})={v:.2f}" for k, v in sorted(pts.items()))
            for o, per in speedups.items() if o != "*" for b, pts in per.items() if b != "*") + \
            "; an option set or backbone not measured takes the most complete one's)"
    else:
        speedups, speedup_source = {}, "none measured: S(k) = 1 (k jobs per GPU gain nothing)"
    if args.pruned_from:
        pruned = pruning_from(args.pruned_from)
        pruned_source = f"observed in {args.pruned_from}: {pruned[0]:.0%} pruned after {pruned[1]:.0%} of the epochs"
    else:
        pruned = (args.pruned_fraction, args.pruned_epochs)
        pruned_source = (f"assumed, {pruned[0]:.0%} of trials pruned after {pruned[1]:.0%} of their epochs "
                         "(benchmarks/results/tuning_cost.md saw 4/8 and 5/8 pruned after 8-16 of 30 epochs)")
    table = time_table(rows)
    config_name = Path(args.config).relative_to(REPO).as_posix() if Path(args.config).resolve().is_relative_to(REPO) \
        else args.config
    try:
        planned = parse_dry_run(Path(args.planned).read_text()) if args.planned else None
        text, _ = projection_report(config, config_name, table, args.gpus, args.slots, speedups, speedup_source,
                                    pruned, pruned_source, f"{times_path.name} ({rows[0]['device_name']})", planned)
    except KeyError as err:
        raise SystemExit(f"project: {times_path} lacks a job type of {config_name}: {err.args[0]}") from None
    parts = [f"# paper_cost.py: {rows[0]['device_name']}", ""] + ([args.label, ""] if args.label else [])
    parts += [time_table_markdown(rows, config), text]
    if conc_rows:
        parts += ["## Concurrent trainings on one device", "",
                  "| backbone | options | k | epochs timed | training s per job (mean, min-max) | speed-up S(k) |",
                  "|---|---|---|---|---|---|"]
        parts += [f"| {r['backbone']} | {r['options']} | {r['k']} | {r['epochs']} | {float(r['train_s_mean']):.2f} "
                  f"({float(r['train_s_min']):.2f}-{float(r['train_s_max']):.2f}) | {float(r['speedup']):.2f} |"
                  for r in conc_rows] + [""]
    quality_path = out_dir / "quality.csv"
    if quality_path.is_file():
        parts.append(quality_markdown(read_csv(quality_path)))
    return "\n".join(parts)


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip() or "?"
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
