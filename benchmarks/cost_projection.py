"""paper_cost.py --project: the GPU jobs the workflow plans for a config (cost_jobs.py),
timed from times.csv, and their projected GPU-hours and wall time on N GPUs with k jobs
per GPU (a simulation)."""
from __future__ import annotations

import os
import statistics
from collections import deque
from dataclasses import dataclass, field

from cost_jobs import WorkflowJob, workflow_jobs
from cost_tables import OPTION_SETS, PRUNED_EPOCHS, PRUNED_FRACTION, Times, method_config, read_csv, time_table, validations


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
               pruned_epochs: float = PRUNED_EPOCHS, fallback: str | None = None,
               planned: list[WorkflowJob] | None = None) -> Counted:
    """The GPU jobs of `config`, as the workflow plans them (`planned`: cost_jobs.workflow_jobs
    of the config, computed here when not given), timed with option set `options` (a job type
    without a row for it takes the `fallback` option set's, said in the notes). A train job
    training several methods (config group_training) starts once and runs them one after another."""
    cfg = method_config(config)
    epochs, val_every, batch = int(cfg["epochs"]), int(cfg["val_every"]), int(cfg["batch_size"])
    n_val = validations(epochs, val_every)
    trials, workers = int(cfg["tune"]["trials"]), int(config["tuning"]["workers"])
    keep = 1.0 - pruned_fraction * (1.0 - pruned_epochs)  # expected share of a trial's epochs
    planned = workflow_jobs(config) if planned is None else planned
    counted = Counted(jobs=[])

    def times(dataset: str, backbone: str, family: str) -> Times:
        key = (dataset, backbone, family, options)
        if key not in table and fallback and (dataset, backbone, family, fallback) in table:
            note = f"{backbone} {family} on {dataset}: {fallback} times ({options} not measured)"
            if note not in counted.notes:
                counted.notes.append(note)
            key = (dataset, backbone, family, fallback)
        if key not in table:
            raise KeyError(f"no time for {key} (dataset, backbone, family, options)")
        return table[key]

    for job in planned:
        w = job.wildcards
        if job.rule == "register":
            counted.classical.append(f"register {w['dataset']} {w['method']}")
        if job.rule not in ("train", "train_group", "tune_worker", "tune"):
            continue
        dataset, backbone, seed = w["dataset"], w["backbone"], w["seed"]
        if job.rule in ("train", "train_group"):
            members = job.methods()
            start_s = times(dataset, backbone, family_of(members[0])).start_s
            overhead, gpu = start_s, 0.0
            for method in members:
                t = times(dataset, backbone, family_of(method))
                overhead += t.load_s + t.build_s + t.finish_s
                gpu += epochs * t.epoch_s(config, batch) + n_val * t.validation_s(config) + t.inference_s(config)
            family = "+".join(dict.fromkeys(family_of(m) for m in members))
            counted.jobs.append(Job(f"{dataset}/{backbone}/{'+'.join(members)}/seed{seed}", "train", dataset,
                                    backbone, family, overhead, gpu, float(epochs * len(members))))
            continue
        t = times(dataset, backbone, "weighted")  # a tuned method's trials train the weighted loss
        per_run = t.load_s + t.build_s + t.finish_s
        trial_gpu = keep * (epochs * t.epoch_s(config, batch) + n_val * t.validation_s(config))
        name = f"{dataset}/{backbone}/{w['method']}/seed{seed}"
        if job.rule == "tune_worker":  # the workers share the study's trials
            n = trials / workers
            counted.jobs.append(Job(f"{name}:tune_worker{w['worker']}", "tune_worker", dataset, backbone,
                                    "weighted", t.start_s + n * per_run, n * trial_gpu, n * keep * epochs))
        elif workers > 1:  # the workers ran every trial: it writes the study's outputs and infers
            counted.jobs.append(Job(f"{name}:tune", "tune", dataset, backbone, "weighted", t.start_s,
                                    t.inference_s(config)))
        else:
            counted.jobs.append(Job(f"{name}:tune", "tune", dataset, backbone, "weighted",
                                    t.start_s + trials * per_run, trials * trial_gpu + t.inference_s(config),
                                    trials * keep * epochs))
    if any(j.kind.startswith("tune") for j in counted.jobs):
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
            pruned_epochs: float = PRUNED_EPOCHS, fallback: str | None = None,
            planned: list[WorkflowJob] | None = None) -> tuple[Projection, Counted]:
    counted = count_jobs(config, table, options, pruned_fraction, pruned_epochs, fallback, planned)
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
                      times_source: str, planned: list[WorkflowJob] | None = None) -> tuple[str, dict]:
    """Markdown: job counts, projections (today, each option set, with k slots) and the
    goal's ratio; also the numbers as a dict. speedups: {options: {backbone: {k: S}}}
    ("*": every option set without its own); a job type without a row for an option
    set takes its fp32 time (said in the notes). planned: the config's workflow jobs
    (cost_jobs.workflow_jobs; planned here when not given)."""
    option_sets = sorted({k[3] for k in table}, key=lambda o: list(OPTION_SETS).index(o) if o in OPTION_SETS else 99)
    if "fp32" not in option_sets:
        raise SystemExit("project: times.csv has no fp32 rows")
    lines = [f"## Projection of {config_name}", "",
             f"Times: {times_source}. Concurrency speed-up: {speedup_source}. Pruning: {pruned_source}.", ""]
    cfg = method_config(config)
    planned = workflow_jobs(config) if planned is None else planned  # the workflow's jobs, planned once
    today, counted = project(config, table, "fp32", gpus, 1, None, *pruned, planned=planned)
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
            p, c = project(config, table, options, gpus, slots, speedup, *pruned, fallback="fp32", planned=planned)
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
