"""Measured cost of the paper's workflow on the current device, and its projection.

One script, four parts, any of them in one run (in this order):

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
--project      counts the jobs and epochs of a config (workflow/configs/paper.yaml on top of
               config.yaml by default): per dataset x seed x backbone x learned method one
               training job that also infers the test split (HyperMorph on VoxelMorph only);
               the tuned baseline as tuning.workers worker jobs sharing method.tune.trials
               trials and a job inferring with the study's best run, a pruned
               trial running a fraction of the epochs (--pruned-fraction, --pruned-epochs:
               an assumption stated in the output, or read from a study's trials.csv with
               --pruned-from); classical methods run on CPUs and are only counted. Projects
               GPU-hours (the jobs one after another) and wall time on N GPUs with k jobs per
               GPU (--gpus, --slots): a simulation in which the jobs, longest first, take the
               free slot of the least busy GPU, and m jobs training on one GPU each run at
               S(m) / m of their speed alone (S measured by --concurrency, or --speedup);
               start-up, loading and finishing run at full speed (CPU side). Writes
               projection.md.

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
import csv
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from gsmorph.workflow_config import deep_merge

REPO = Path(__file__).resolve().parents[1]
FAMILIES = {"weighted": "weighted-m", "surgery": "gsmorph", "hypermorph": "hypermorph"}  # the method timed
OPTION_SETS = {
    "fp32": {},
    "tf32": {"precision": "tf32"},
    "tf32-cl": {"precision": "tf32", "channels_last": True},
    "bf16": {"precision": "bf16"},
    "bf16-cl": {"precision": "bf16", "channels_last": True},
    "bf16-cl-graph": {"precision": "bf16", "channels_last": True, "surgery_cuda_graph": True},
    "bf16-cl-compile": {"precision": "bf16", "channels_last": True, "compile": True},
}
PRUNED_FRACTION = 0.5  # of all trials; tuning_cost.md saw 4/8 and 5/8 with 3 start-up trials
PRUNED_EPOCHS = 0.4    # of the epochs, run by a pruned trial; tuning_cost.md: 8-16 of 30 (0.37 on average)
TIME_COLUMNS = ["device", "device_name", "torch", "dataset", "subjects", "size", "backbone", "family", "method",
                "options", "batch_size", "train_pairs", "val_pairs", "test_pairs", "timed_train_pairs",
                "timed_val_pairs", "epochs", "train_epoch_s", "val_s", "start_s", "load_s", "build_s", "finish_s",
                "infer_s", "peak_mem_mb", "val_dice", "source"]
CONCURRENCY_COLUMNS = ["device", "device_name", "dataset", "backbone", "family", "options", "k", "epochs",
                       "train_s_mean", "train_s_min", "train_s_max", "wall_s_max", "speedup"]


# =============================================================================== config
merge = deep_merge  # nested mappings merged key by key, as Snakemake's --configfile does


def workflow_config(path: str | os.PathLike | None) -> dict:
    """config.yaml with `path` loaded on top, as Snakemake's --configfile does."""
    import yaml

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    if path:
        config = merge(config, yaml.safe_load(Path(path).read_text()) or {})
    return config


def method_config(config: dict, **overrides) -> dict:
    from gsmorph.config import load_config

    return load_config(None, merge(config.get("method") or {}, overrides))


def subjects_of(config: dict, dataset: str) -> int:
    subjects = config["synth"]["subjects"]
    return int(subjects[dataset] if isinstance(subjects, dict) else subjects)


def validations(epochs: int, val_every: int) -> int:
    """How many validations a run of `epochs` makes (every val_every epochs and the last)."""
    return epochs // val_every + (1 if epochs % val_every else 0)


def steps(pairs: float, batch: int) -> int:
    return max(1, math.ceil(pairs / batch))


# ======================================================================= time table
@dataclass
class Times:
    """One row of times.csv, with what the projection derives from it."""

    row: dict

    def __getattr__(self, key):
        row = self.__dict__["row"]
        if key not in row:
            raise AttributeError(key)
        value = row[key]
        try:
            return float(value)
        except (TypeError, ValueError):
            return value

    def pair_scale(self, config: dict | None, split: str) -> float:
        """Pairs of `split` at the config's number of subjects over those measured (the
        subjects of a split scale the pairs; 1 when they agree or the data is real)."""
        if config is None or config.get(f"{self.dataset}_root"):
            return 1.0
        from gsmorph.data.splits import split_counts

        ratios = tuple(config["prepare"]["split_ratios"])
        want = split_counts(subjects_of(config, self.dataset), ratios)[split]
        have = split_counts(int(self.subjects), ratios)[split]
        return want / have if have else 1.0

    def epoch_s(self, config: dict | None, batch: int) -> float:
        pairs = self.train_pairs * self.pair_scale(config, "train")
        return self.train_epoch_s * steps(pairs, batch) / steps(self.timed_train_pairs, int(self.batch_size))

    def validation_s(self, config: dict | None) -> float:
        pairs = self.val_pairs * self.pair_scale(config, "val")
        return self.val_s * pairs / max(self.timed_val_pairs, 1)

    def inference_s(self, config: dict | None) -> float:
        infer = self.infer_s
        return infer * self.pair_scale(config, "test") if isinstance(infer, float) else 0.0


def read_csv(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def time_table(rows: list[dict]) -> dict[tuple, Times]:
    """{(dataset, backbone, family, options): Times}."""
    return {(r["dataset"], r["backbone"], r["family"], r["options"]): Times(r) for r in rows}


# ========================================================================== counting
@dataclass
class Job:
    name: str
    kind: str            # train | tune_worker | tune (train and tune also infer the test split)
    dataset: str
    backbone: str
    family: str
    overhead_s: float    # start-up, loading, building, finishing: CPU side, not slowed by sharing
    gpu_s: float         # training and validation epochs (or inference) alone on the GPU
    epochs: float = 0.0

    @property
    def total_s(self) -> float:
        return self.overhead_s + self.gpu_s


@dataclass
class Counted:
    jobs: list[Job]
    classical: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def family_of(method: str) -> str:
    from gsmorph import methods

    spec = methods.get(method)
    if spec.family in ("classical", "tuned"):
        return spec.family
    if spec.surgery:
        return "surgery"
    if spec.lam_key or spec.takes_lam:
        return "weighted"
    return spec.id  # a trained method choosing its own lambda (hypermorph)


def count_jobs(config: dict, table: dict[tuple, Times], options: str, pruned_fraction: float = PRUNED_FRACTION,
               pruned_epochs: float = PRUNED_EPOCHS, fallback: str | None = None) -> Counted:
    """The GPU jobs of `config` (what the workflow runs), timed with option set `options`
    (a job type without a row for it takes the `fallback` option set's, said in the notes)."""
    from gsmorph import methods

    cfg = method_config(config)
    epochs, val_every, batch = int(cfg["epochs"]), int(cfg["val_every"]), int(cfg["batch_size"])
    n_val = validations(epochs, val_every)
    trials, workers = int(cfg["tune"]["trials"]), int(config["tuning"]["workers"])
    keep = 1.0 - pruned_fraction * (1.0 - pruned_epochs)  # expected share of a trial's epochs
    learned = [(b, m) for b in config["backbones"] for m in config["methods"]
               if methods.get(m).family != "classical" and methods.get(m).supports(b)]
    counted = Counted(jobs=[])
    counted.classical = [f"register {d} {m}" for d in config["datasets"] for m in config["methods"]
                         if methods.get(m).family == "classical"]
    for dataset in config["datasets"]:
        for seed in config["seeds"]:
            for backbone, method in learned:
                family = family_of(method)
                timed = "weighted" if family == "tuned" else family
                key = (dataset, backbone, timed, options)
                if key not in table and fallback and (dataset, backbone, timed, fallback) in table:
                    note = f"{backbone} {timed} on {dataset}: {fallback} times ({options} not measured)"
                    if note not in counted.notes:
                        counted.notes.append(note)
                    key = (dataset, backbone, timed, fallback)
                if key not in table:
                    raise KeyError(f"no time for {key} (dataset, backbone, family, options)")
                t = table[key]
                epoch_s, val_s = t.epoch_s(config, batch), t.validation_s(config)
                per_run = t.load_s + t.build_s + t.finish_s
                name = f"{dataset}/{backbone}/{method}/seed{seed}"
                infer_s = t.inference_s(config)  # the workflow's train and tune jobs infer themselves
                if family == "tuned":
                    trial_gpu = keep * (epochs * epoch_s + n_val * val_s)
                    if workers > 1:
                        for w in range(workers):
                            n = trials / workers
                            counted.jobs.append(Job(f"{name}:tune_worker{w}", "tune_worker", dataset, backbone,
                                                    "weighted", t.start_s + n * per_run, n * trial_gpu,
                                                    n * keep * epochs))
                        # writes the study's outputs (the workers ran every trial) and infers
                        counted.jobs.append(Job(f"{name}:tune", "tune", dataset, backbone, "weighted", t.start_s,
                                                infer_s))
                    else:
                        counted.jobs.append(Job(f"{name}:tune", "tune", dataset, backbone, "weighted",
                                                t.start_s + trials * per_run, trials * trial_gpu + infer_s,
                                                trials * keep * epochs))
                else:
                    counted.jobs.append(Job(name, "train", dataset, backbone, family, t.start_s + per_run,
                                            epochs * epoch_s + n_val * val_s + infer_s, float(epochs)))
    if any(family_of(m) == "tuned" for m in config["methods"]):
        counted.notes.append(f"tuning: {trials} trials per study, {workers} worker job(s); "
                             f"{pruned_fraction:.0%} of trials pruned after {pruned_epochs:.0%} of their epochs "
                             f"(each trial {keep:.0%} of a full run's epochs on average)")
    return counted


def pruning_from(trials_csv: str | os.PathLike) -> tuple[float, float]:
    """(pruned fraction, epochs of a pruned trial / a complete one) seen in a study's trials.csv."""
    rows = [r for r in read_csv(trials_csv) if r["state"] in ("COMPLETE", "PRUNED")]
    full = max(float(r["epochs_done"]) for r in rows if r["state"] == "COMPLETE")
    pruned = [float(r["epochs_done"]) / full for r in rows if r["state"] == "PRUNED"]
    return len(pruned) / len(rows), (statistics.mean(pruned) if pruned else 1.0)


# ======================================================================== simulation
def speedup_of(points: dict[int, float], m: int) -> float:
    """S(m) from measured points (S(1) = 1): linear between them, flat past the last."""
    pts = sorted({1: 1.0, **{int(k): float(v) for k, v in points.items()}}.items())
    if m <= 1:
        return 1.0
    for (k0, s0), (k1, s1) in zip(pts, pts[1:]):
        if k0 <= m <= k1:
            return s0 + (s1 - s0) * (m - k0) / (k1 - k0)
    return pts[-1][1]


def simulate(jobs: list[Job], gpus: int, slots_per_gpu: int, speedup: dict[str, dict[int, float]] | None = None
             ) -> float:
    """Makespan (s) of `jobs` on `gpus` GPUs with `slots_per_gpu` slots each (see the module
    docstring). speedup: {backbone: {k: S(k)}} ("*" for any backbone); none: S(m) = 1."""
    speedup = speedup or {}
    queue = deque(sorted(jobs, key=lambda j: -j.total_s))
    occupancy = [0] * gpus
    running: list[list] = []  # [job, gpu, phase, remaining]
    t = 0.0

    def start_more():
        while queue and min(occupancy) < slots_per_gpu:
            gpu = min(range(gpus), key=lambda g: (occupancy[g], g))
            job = queue.popleft()
            occupancy[gpu] += 1
            running.append([job, gpu, "overhead", job.overhead_s])

    start_more()
    while running:
        changed = True
        while changed:  # finish phases that are over (zero-length ones included)
            changed = False
            for r in list(running):
                if r[3] <= 1e-9 * max(1.0, r[0].total_s):
                    if r[2] == "overhead":
                        r[2], r[3] = "gpu", r[0].gpu_s
                    else:
                        running.remove(r)
                        occupancy[r[1]] -= 1
                        start_more()
                    changed = True
        if not running:
            break
        busy = [sum(1 for r in running if r[1] == g and r[2] == "gpu") for g in range(gpus)]
        rates = []
        for job, gpu, phase, _ in running:
            if phase == "overhead":
                rates.append(1.0)
            else:
                points = speedup.get(job.backbone, speedup.get("*", {}))
                rates.append(speedup_of(points, busy[gpu]) / busy[gpu])
        dt = min(r[3] / rate for r, rate in zip(running, rates))
        t += dt
        for r, rate in zip(running, rates):
            r[3] -= rate * dt
    return t


# ========================================================================= projection
@dataclass
class Projection:
    options: str
    gpus: int
    slots: int
    jobs: int
    epochs: float
    gpu_hours: float      # every job alone, one after another
    wall_hours: float


def project(config: dict, table: dict[tuple, Times], options: str, gpus: int, slots: int,
            speedup: dict[str, dict[int, float]] | None, pruned_fraction: float = PRUNED_FRACTION,
            pruned_epochs: float = PRUNED_EPOCHS, fallback: str | None = None) -> tuple[Projection, Counted]:
    counted = count_jobs(config, table, options, pruned_fraction, pruned_epochs, fallback)
    total = sum(j.total_s for j in counted.jobs)
    wall = simulate(counted.jobs, gpus, slots, speedup if slots > 1 else None)
    return Projection(options, gpus, slots, len(counted.jobs), sum(j.epochs for j in counted.jobs),
                      total / 3600, wall / 3600), counted


def speedups_from(rows: list[dict]) -> dict[str, dict[str, dict[int, float]]]:
    """{options: {backbone: {k: S(k)}}} from concurrency.csv rows; "*" (options and
    backbone): the option set and backbone with the most points, for those not measured."""
    out: dict[str, dict[str, dict[int, float]]] = {}
    for r in rows:
        out.setdefault(r["options"], {}).setdefault(r["backbone"], {})[int(r["k"])] = float(r["speedup"])
    for per_backbone in out.values():
        per_backbone.setdefault("*", per_backbone[max(per_backbone, key=lambda b: len(per_backbone[b]))])
    if out:
        out["*"] = out[max(out, key=lambda o: sum(len(v) for v in out[o].values()))]
    return out


def parse_speedup(text: str) -> dict[str, dict[int, float]]:
    """'2:1.7,4:2.4' (every backbone) or 'voxelmorph=2:1.7,4:2.4;transmorph=2:1.3'."""
    out = {}
    for part in text.split(";"):
        name, _, points = part.rpartition("=")
        out[name.strip() or "*"] = {int(k): float(v) for k, v in (p.split(":") for p in points.split(","))}
    return out


def projection_report(config: dict, config_name: str, table: dict[tuple, Times], gpus: int, slot_list: list[int],
                      speedups: dict[str, dict], speedup_source: str, pruned: tuple[float, float], pruned_source: str,
                      times_source: str) -> tuple[str, dict]:
    """Markdown: job counts, projections (today, each option set, with k slots) and the
    goal's ratio; also the numbers as a dict. speedups: {options: {backbone: {k: S}}}
    ("*": every option set without its own); a job type without a row for an option
    set takes its fp32 time (said in the notes)."""
    option_sets = sorted({k[3] for k in table}, key=lambda o: list(OPTION_SETS).index(o) if o in OPTION_SETS else 99)
    if "fp32" not in option_sets:
        raise SystemExit("project: times.csv has no fp32 rows")
    lines = [f"## Projection of {config_name}", "",
             f"Times: {times_source}. Concurrency speed-up: {speedup_source}. Pruning: {pruned_source}.", ""]
    cfg = method_config(config)
    today, counted = project(config, table, "fp32", gpus, 1, None, *pruned)
    kinds: dict[str, list[Job]] = {}
    for job in counted.jobs:
        kinds.setdefault(job.kind, []).append(job)
    lines += ["### Jobs (GPU) of the config", "",
              f"{len(config['datasets'])} dataset(s) x {len(config['seeds'])} seed(s); {cfg['epochs']} epochs per "
              f"run, batch {cfg['batch_size']}, validation every {cfg['val_every']} epochs.", "",
              "| job | count | epochs (all jobs) | hours alone, fp32 |", "|---|---|---|---|"]
    for kind, jobs in kinds.items():
        lines.append(f"| {kind} | {len(jobs)} | {sum(j.epochs for j in jobs):,.0f} | "
                     f"{sum(j.total_s for j in jobs) / 3600:.2f} |")
    lines.append(f"| all | {len(counted.jobs)} | {sum(j.epochs for j in counted.jobs):,.0f} | "
                 f"{today.gpu_hours:.2f} |")
    lines += ["", f"Not on a GPU: {len(counted.classical)} classical registration job(s) (CPU).", ""]
    lines += [f"- {n}." for n in counted.notes] + [""]
    by_family: dict[str, float] = {}
    for job in counted.jobs:
        label = f"{job.backbone} {'tuning' if job.kind.startswith('tune') else job.kind}"
        by_family[label] = by_family.get(label, 0.0) + job.total_s / 3600
    lines += ["Hours alone (fp32) by backbone and job kind: " +
              ", ".join(f"{k} {v:.2f}" for k, v in sorted(by_family.items(), key=lambda kv: -kv[1])) + ".", ""]
    rows, notes = [], []
    for options in option_sets:
        speedup = speedups.get(options, speedups.get("*", {}))
        for slots in sorted(set([1] + slot_list)):
            p, c = project(config, table, options, gpus, slots, speedup, *pruned, fallback="fp32")
            rows.append(p)
            notes += [n for n in c.notes if "not measured" in n and n not in notes]
    lines += [f"### GPU-hours and wall time on {gpus} GPU(s)", "",
              "| options | jobs per GPU | GPU-hours (jobs alone, one after another) | wall time (h) | "
              "wall / today's |", "|---|---|---|---|---|"]
    for p in rows:
        mark = " (today)" if p.options == "fp32" and p.slots == 1 else ""
        lines.append(f"| {p.options}{mark} | {p.slots} | {p.gpu_hours:.2f} | {p.wall_hours:.2f} | "
                     f"{p.wall_hours / today.wall_hours:.2f} |")
    lines += [""] + [f"- {n}." for n in notes] + ([""] if notes else [])
    best = min(rows, key=lambda p: p.wall_hours)
    ratio = best.wall_hours / today.wall_hours
    lines += [f"Today (fp32, one job at a time): {today.wall_hours:.2f} h. Best: {best.options} with "
              f"{best.slots} job(s) per GPU, {best.wall_hours:.2f} h = {ratio:.2f} of today's "
              f"(goal: at most 1/3: {'met' if ratio <= 1 / 3 else 'not met'}).", ""]
    numbers = {"today_wall_h": today.wall_hours, "today_gpu_h": today.gpu_hours, "best": best.__dict__,
               "ratio": ratio, "rows": [p.__dict__ for p in rows]}
    return "\n".join(lines), numbers


def time_table_markdown(rows: list[dict], config: dict | None) -> str:
    """Seconds per epoch (the config's pairs and batch) of every job type and option set."""
    table = time_table(rows)
    cfg = method_config(config) if config else None
    option_sets = sorted({r["options"] for r in rows}, key=lambda o: list(OPTION_SETS).index(o)
                         if o in OPTION_SETS else 99)
    first = rows[0]
    lines = [f"## Seconds per epoch on {first['device_name']} ({first['device']}, torch {first['torch']})", "",
             "Train epoch at the config's training pairs and batch (validation every "
             f"{cfg['val_every'] if cfg else '?'} epochs adds val / that per epoch). "
             "`source`: measured, or scaled from another dataset by steps per epoch.", "",
             "| dataset | backbone | family | train pairs | " + " | ".join(option_sets) +
             " | val (fp32) | start + load + build + finish | peak GPU MiB (fp32) | source |",
             "|---|---|---|---|" + "---|" * len(option_sets) + "---|---|---|---|"]
    batch = int(cfg["batch_size"]) if cfg else None
    keys = sorted({(r["dataset"], r["backbone"], r["family"]) for r in rows})
    for dataset, backbone, family in keys:
        base = table.get((dataset, backbone, family, "fp32")) or next(
            t for k, t in table.items() if k[:3] == (dataset, backbone, family))
        b = batch or int(base.batch_size)
        cells = []
        for o in option_sets:
            t = table.get((dataset, backbone, family, o))
            cells.append("-" if t is None else f"{t.epoch_s(config, b):.3f}")
        pairs = base.train_pairs * base.pair_scale(config, "train")
        fixed = base.start_s + base.load_s + base.build_s + base.finish_s
        lines.append(f"| {dataset} | {backbone} | {family} | {pairs:.0f} | " + " | ".join(cells) +
                     f" | {base.validation_s(config):.3f} | {fixed:.1f} | {base.peak_mem_mb} | {base.source} |")
    return "\n".join(lines) + "\n"


# =========================================================================== measuring
def device_info(device) -> dict:
    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "CPU")
    if device.type == "cpu":
        name = f"{name or 'CPU'}, {torch.get_num_threads()} torch thread(s), {os.cpu_count()} cores"
    return {"device": device.type, "device_name": name, "torch": torch.__version__}


def prepare_phantoms(config: dict, datasets: list[str], work: Path, size: int) -> dict[str, Path]:
    """Phantoms of the config's subjects per dataset, prepared at `size` (made once per --work)."""
    from gsmorph.cli import main

    out = {}
    for dataset in datasets:
        n = subjects_of(config, dataset)
        raw, prepared = work / f"raw_{dataset}_{n}", work / f"prepared_{dataset}_{n}_{size}"
        if not (prepared / "subjects.csv").is_file():
            start = time.perf_counter()
            assert main(["synth", "--format", dataset, "--out", str(raw), "--subjects", str(n), "--seed",
                         str(config["synth"]["seed"])]) == 0
            ratios = [str(r) for r in config["prepare"]["split_ratios"]]
            folders = (config["prepare"].get("folders") or {}).get(dataset)
            assert main(["prepare", "--dataset", dataset, "--raw", str(raw), "--out", str(prepared), "--size",
                         str(size), "--seed", str(config["prepare"]["seed"]), "--split-ratios", *ratios]
                        + (["--folders", *folders] if folders else [])) == 0
            print(f"phantom {dataset}: {n} subjects at {size}: {time.perf_counter() - start:.1f} s", flush=True)
        out[dataset] = prepared
    return out


def measure_start_s(device: str) -> float:
    """Seconds for a new process to start Python, import the training code and make its
    CUDA context: what every job pays before loading its data."""
    code = ("import gsmorph.training, gsmorph.losses, gsmorph.networks.voxelmorph, gsmorph.networks.transmorph, "
            "gsmorph.metrics, gsmorph.inference, gsmorph.data.loader, gsmorph.commands.train, monai.networks.nets, "
            "baselines.hypermorph, torch; d = gsmorph.device.resolve_device(%r); torch.zeros(1, device=d).sum().item()"
            % device)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))
    return time.perf_counter() - start


class DataCache:
    """The train and val pairs of each run (gsmorph.training.TrainingData, handed to the
    trainer), each split loaded once per process; the first full load of a dataset's split
    is timed (every job pays it)."""

    def __init__(self):
        self.cache: dict[tuple, list] = {}
        self.split_s: dict[tuple, float] = {}  # (prepared, split): seconds of the first full load

    def split(self, prepared: Path, split: str, cfg: dict, device, limit: int | None, seed: int) -> list:
        from gsmorph.training import load_split

        key = (str(prepared), split, limit, seed, str(device), cfg["mode"])
        if key not in self.cache:
            start = time.perf_counter()
            self.cache[key] = load_split(prepared, split, cfg, device, limit, seed)
            if limit is None:
                self.split_s.setdefault((str(prepared), split), time.perf_counter() - start)
        return self.cache[key]

    def data(self, prepared: Path, cfg: dict, device, seed: int):
        """The pairs a training with config `cfg` trains and validates on."""
        from gsmorph.training import TrainingData

        return TrainingData(train=self.split(prepared, "train", cfg, device, cfg.get("max_train_pairs"), seed),
                            val=self.split(prepared, "val", cfg, device, cfg.get("max_val_pairs"), seed))

    def load_s(self, prepared: Path) -> float:
        """What a training job pays to load its data: the train and val splits, in full."""
        return sum(self.split_s.get((str(prepared), split), 0.0) for split in ("train", "val"))


def pair_counts(prepared: Path, cfg: dict, device, cache: DataCache) -> dict[str, int]:
    from gsmorph.training import count_pairs

    return {split: count_pairs(cache.split(prepared, split, cfg, device, None, 0)) for split in ("train", "val", "test")}


def time_run(prepared: Path, backbone: str, family: str, cfg: dict, seed: int, work: Path, cache: DataCache,
             infer: bool) -> dict:
    """Train one job type for cfg['epochs'] epochs; its times (see the module docstring)."""
    import shutil

    import torch

    from gsmorph import methods
    from gsmorph.device import resolve_device, synchronize

    method = FAMILIES[family]
    out = Path(tempfile.mkdtemp(prefix=f"{family}-{backbone}-", dir=work))
    device = None
    try:
        start = time.perf_counter()
        trainer = methods.maker_of(method)(prepared, backbone, method, seed, out / "run", cfg,
                                           data=cache.data(prepared, cfg, resolve_device(cfg["device"]), seed))
        device = trainer.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        trainer.initialize()
        synchronize(device)
        build_s = time.perf_counter() - start
        fit_start = time.perf_counter()
        summary = trainer.fit()
        fit_s = time.perf_counter() - fit_start
        epoch_s = [row["epoch_s"] for row in trainer.log_rows]
        validated = [row["val_dice"] is not None for row in trainer.log_rows]
        train_only = [s for s, v, i in zip(epoch_s, validated, range(len(epoch_s))) if not v and i > 0]
        train_epoch_s = statistics.median(train_only)
        val_times = []  # a validation and its checkpoint, timed alone (twice, median)
        for _ in range(2):
            start = time.perf_counter()
            trainer.validate()
            trainer.save_checkpoint()
            synchronize(device)
            val_times.append(time.perf_counter() - start)
        val_s = statistics.median(val_times)
        result = {"method": method, "epochs": len(epoch_s), "train_epoch_s": train_epoch_s, "val_s": val_s,
                  "build_s": build_s, "finish_s": max(0.0, fit_s - sum(epoch_s)),
                  "timed_train_pairs": sum(b["moving"].shape[0] for b in trainer.train_data),
                  "timed_val_pairs": sum(b["moving"].shape[0] for b in trainer.val_data),
                  "peak_mem_mb": round(torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda"
                  else "", "val_dice": round(summary["best_val_dice"], 4), "infer_s": ""}
        if infer:
            from gsmorph.inference import infer_split

            start = time.perf_counter()
            infer_split(out / "run", prepared, "test", out / "pairs", device=str(device))
            result["infer_s"] = time.perf_counter() - start
        return result
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run_measure(args, config: dict, work: Path) -> list[dict]:
    import torch

    from gsmorph.device import resolve_device

    device = resolve_device(args.device)
    info = device_info(device)
    datasets = args.datasets or list(config["datasets"])
    timed = args.time_datasets or datasets
    phantoms = prepare_phantoms(config, datasets, work, args.size)
    start_s = measure_start_s(str(device))
    print(f"process start (Python, imports, {device.type} context): {start_s:.1f} s", flush=True)
    rows = []
    out_csv = Path(args.out_dir) / "times.csv"
    kept = read_csv(out_csv) if args.append and out_csv.is_file() else []
    cache = DataCache()
    base = method_config(config, device=str(device), num_threads=args.threads)
    if args.threads:
        torch.set_num_threads(args.threads)
    counts = {d: pair_counts(phantoms[d], base, device, cache) for d in datasets}
    for dataset in timed:  # the capped splits too, so that no timed run loads data
        cache.split(phantoms[dataset], "train", base, device, args.max_train_pairs, args.seed)
        cache.split(phantoms[dataset], "val", base, device, args.max_val_pairs, args.seed)
    from gsmorph.training import Trainer

    for backbone in args.backbones:  # first-use costs of this process (paid once per job in start_s)
        Trainer.network_from(backbone, 2, base["backbones"].get(backbone) or {}, 0).to(device)
    for options in args.options:
        for dataset in timed:
            for backbone in args.backbones:
                for family in args.families:
                    if family == "hypermorph" and backbone != "voxelmorph":
                        continue
                    cfg = method_config(config, device=str(device), epochs=args.epochs,
                                        val_every=args.epochs // 2, max_train_pairs=args.max_train_pairs,
                                        max_val_pairs=args.max_val_pairs, num_threads=args.threads,
                                        **OPTION_SETS[options])
                    label = f"{options} {dataset} {backbone} {family}"
                    try:
                        result = time_run(phantoms[dataset], backbone, family, cfg, args.seed, work, cache,
                                          infer=options == "fp32" and family == "surgery")
                    except Exception as err:  # one failing option must not lose the others
                        print(f"{label}: FAILED ({type(err).__name__}: {err})", flush=True)
                        continue
                    row = {**info, "dataset": dataset, "subjects": subjects_of(config, dataset),
                           "size": args.size, "backbone": backbone, "family": family, "options": options,
                           "batch_size": cfg["batch_size"], **{f"{s}_pairs": counts[dataset][s]
                                                               for s in ("train", "val", "test")},
                           "start_s": round(start_s, 3), "load_s": round(cache.load_s(phantoms[dataset]), 3),
                           "source": "measured", **result}
                    rows.append(row)
                    print(f"{label}: train epoch {row['train_epoch_s']:.3f} s "
                          f"({row['timed_train_pairs']} pairs), val {row['val_s']:.3f} s, "
                          f"build {row['build_s']:.1f} s, val Dice {row['val_dice']}", flush=True)
                    write_csv(out_csv, _with_inference(_merged(kept, rows)), TIME_COLUMNS)
    rows = _with_inference(_merged(kept, rows))
    fresh = {(r["dataset"], r["backbone"], r["family"], r["options"]) for r in rows if r not in kept}
    for dataset in [d for d in datasets if d not in timed]:  # scaled from the first timed dataset
        source = timed[0]
        for row in [r for r in rows if r["dataset"] == source and r["source"] == "measured"
                    and (r["dataset"], r["backbone"], r["family"], r["options"]) in fresh]:
            row = {k: (float(v) if k in FLOAT_COLUMNS and v not in ("", None) else v) for k, v in row.items()}
            scaled = dict(row)
            scaled.update({"dataset": dataset, "subjects": subjects_of(config, dataset),
                           **{f"{s}_pairs": counts[dataset][s] for s in ("train", "val", "test")},
                           "timed_train_pairs": counts[dataset]["train"] if args.max_train_pairs is None
                           else row["timed_train_pairs"],
                           "timed_val_pairs": counts[dataset]["val"] if args.max_val_pairs is None
                           else row["timed_val_pairs"],
                           "source": f"scaled from {source}"})
            full_steps = steps(counts[dataset]["train"], int(row["batch_size"]))
            if args.max_train_pairs is None:
                scaled["train_epoch_s"] = row["train_epoch_s"] * full_steps / steps(
                    row["timed_train_pairs"], int(row["batch_size"]))
                scaled["val_s"] = row["val_s"] * counts[dataset]["val"] / max(1, row["timed_val_pairs"])
            if row["infer_s"] != "":
                scaled["infer_s"] = row["infer_s"] * counts[dataset]["test"] / max(1, row["test_pairs"])
            scaled["load_s"] = row["load_s"] * counts[dataset]["train"] / max(1, row["train_pairs"])
            rows = _merged(rows, [scaled])
    write_csv(out_csv, rows, TIME_COLUMNS)
    return rows


FLOAT_COLUMNS = {"train_pairs", "val_pairs", "test_pairs", "timed_train_pairs", "timed_val_pairs", "batch_size",
                 "train_epoch_s", "val_s", "load_s", "infer_s"}


def _merged(old: list[dict], new: list[dict]) -> list[dict]:
    """Rows of `old` not measured again in `new`, then `new` (key: dataset, backbone,
    family, options)."""
    key = lambda r: (r["dataset"], r["backbone"], r["family"], r["options"])  # noqa: E731
    again = {key(r) for r in new}
    return [r for r in old if key(r) not in again] + list(new)


def _with_inference(rows: list[dict]) -> list[dict]:
    """Every row gets the inference time measured for its dataset and backbone (fp32)."""
    infer = {(r["dataset"], r["backbone"]): r["infer_s"] for r in rows if r.get("infer_s") not in ("", None)}
    return [{**r, "infer_s": infer.get((r["dataset"], r["backbone"]), r.get("infer_s", ""))} for r in rows]


# ========================================================================= concurrency
WORKER_FLAG = "--_concurrency-worker"


def concurrency_worker(spec: dict) -> None:
    """One of k concurrent trainings: initialise, wait at the barrier, train, report."""
    from gsmorph import methods
    from gsmorph.device import synchronize

    cfg = spec["cfg"]
    method = FAMILIES[spec["family"]]
    trainer = methods.maker_of(method)(spec["prepared"], spec["backbone"], method, spec["seed"], spec["out"], cfg)
    trainer.initialize()
    synchronize(trainer.device)
    barrier = Path(spec["barrier"])
    (barrier / f"ready{spec['index']}").touch()
    while sum(1 for p in barrier.iterdir() if p.name.startswith("ready")) < spec["k"]:
        time.sleep(0.02)
    start = time.perf_counter()
    trainer.fit()
    wall = time.perf_counter() - start
    epoch_s = [row["epoch_s"] for row in trainer.log_rows]
    Path(spec["result"]).write_text(json.dumps({"epoch_s": epoch_s, "wall_s": wall}))


def run_concurrency(args, config: dict, work: Path) -> list[dict]:
    from gsmorph.device import resolve_device

    device = resolve_device(args.device)
    info = device_info(device)
    dataset = (args.time_datasets or args.datasets or list(config["datasets"]))[0]
    prepared = prepare_phantoms(config, [dataset], work, args.size)[dataset]
    out_csv = Path(args.out_dir) / "concurrency.csv"
    kept = read_csv(out_csv) if args.append and out_csv.is_file() else []
    again = {(b, o) for b in args.concurrency_backbones for o in args.concurrency_options}
    kept = [r for r in kept if (r["backbone"], r["options"]) not in again]
    rows = []
    for backbone in args.concurrency_backbones:
        for options in args.concurrency_options:
            base_t = None
            for k in args.k:
                cfg = method_config(config, device=str(device), epochs=args.concurrency_epochs,
                                    val_every=args.concurrency_epochs, num_threads=args.threads or 1,
                                    max_train_pairs=args.max_train_pairs, max_val_pairs=args.max_val_pairs,
                                    **OPTION_SETS[options])
                folder = Path(tempfile.mkdtemp(prefix=f"k{k}-", dir=work))
                (folder / "barrier").mkdir()
                procs = []
                for i in range(k):
                    spec = {"cfg": cfg, "family": args.concurrency_family, "prepared": str(prepared),
                            "backbone": backbone, "seed": args.seed + i, "out": str(folder / f"run{i}"),
                            "barrier": str(folder / "barrier"), "index": i, "k": k,
                            "result": str(folder / f"result{i}.json")}
                    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads or 1)}
                    procs.append(subprocess.Popen([sys.executable, __file__, WORKER_FLAG, json.dumps(spec)], env=env))
                codes = [p.wait() for p in procs]
                if any(codes):
                    print(f"concurrency {backbone} {options} k={k}: a worker failed ({codes})", flush=True)
                    break
                results = [json.loads((folder / f"result{i}.json").read_text()) for i in range(k)]
                train = [sum(r["epoch_s"][1:]) for r in results]  # epoch 1 is the warm-up
                mean = statistics.mean(train)
                base_t = mean if k == 1 or base_t is None else base_t
                row = {**info, "dataset": dataset, "backbone": backbone, "family": args.concurrency_family,
                       "options": options, "k": k, "epochs": args.concurrency_epochs - 1,
                       "train_s_mean": round(mean, 3), "train_s_min": round(min(train), 3),
                       "train_s_max": round(max(train), 3),
                       "wall_s_max": round(max(r["wall_s"] for r in results), 3),
                       "speedup": round(k * base_t / mean, 3)}
                rows.append(row)
                print(f"concurrency {backbone} {options} k={k}: {mean:.2f} s of training per job "
                      f"({min(train):.2f}-{max(train):.2f}), speed-up {row['speedup']:.2f}", flush=True)
                write_csv(out_csv, kept + rows, CONCURRENCY_COLUMNS)
    return kept + rows


# ============================================================================= quality
def run_quality(args, config: dict, work: Path) -> list[dict]:
    from gsmorph.device import resolve_device
    from gsmorph.training import train_method

    device = resolve_device(args.device)
    dataset = (args.time_datasets or args.datasets or list(config["datasets"]))[0]
    prepared = prepare_phantoms(config, [dataset], work, args.size)[dataset]
    rows = []
    for backbone, epochs in zip(args.quality_backbones, args.quality_epochs):
        for options in ["fp32"] + [o for o in args.quality_options if o != "fp32"]:
            for seed in range(args.quality_seeds):
                cfg = method_config(config, device=str(device), epochs=epochs,
                                    val_every=max(1, epochs // 5), **OPTION_SETS[options])
                out = Path(tempfile.mkdtemp(prefix="quality-", dir=work))
                start = time.perf_counter()
                try:
                    summary = train_method(prepared, backbone, "gsmorph", args.seed + seed, out / "run", cfg)
                except Exception as err:  # one failing option must not lose the others
                    print(f"quality {backbone} {options} seed {args.seed + seed}: FAILED "
                          f"({type(err).__name__}: {err})", flush=True)
                    continue
                rows.append({"dataset": dataset, "backbone": backbone, "method": "gsmorph", "options": options,
                             "seed": args.seed + seed, "epochs": epochs, "best_val_dice": summary["best_val_dice"],
                             "val_njd_pct": summary["val_njd_pct"], "wall_s": round(time.perf_counter() - start, 1)})
                print(f"quality {backbone} {options} seed {args.seed + seed}: val Dice "
                      f"{summary['best_val_dice']:.4f} ({rows[-1]['wall_s']} s)", flush=True)
                write_csv(Path(args.out_dir) / "quality.csv", rows, list(rows[0]))
    return rows


def quality_markdown(rows: list[dict]) -> str:
    lines = ["## Validation Dice, fp32 and the fast options (GSMorph, short runs)", "",
             "| backbone | epochs | options | seeds | best val Dice (each seed) | mean | fp32 spread | "
             "mean - fp32's |", "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["backbone"], r["epochs"], r["options"]), []).append(r)
    for (backbone, epochs, options), rs in groups.items():
        ref = groups.get((backbone, epochs, "fp32"), rs)
        dice = [float(r["best_val_dice"]) for r in rs]
        ref_dice = [float(r["best_val_dice"]) for r in ref]
        lines.append(f"| {backbone} | {epochs} | {options} | {len(rs)} | {', '.join(f'{d:.4f}' for d in dice)} | "
                     f"{statistics.mean(dice):.4f} | {max(ref_dice) - min(ref_dice):.4f} | "
                     f"{statistics.mean(dice) - statistics.mean(ref_dice):+.4f} |")
    return "\n".join(lines) + "\n"


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
        text, _ = projection_report(config, config_name, table, args.gpus, args.slots, speedups, speedup_source,
                                    pruned, pruned_source, f"{times_path.name} ({rows[0]['device_name']})")
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
