"""paper_cost.py --concurrency: k trainings of one job type at once on this device."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cost_measure import device_info, prepare_phantoms
from cost_tables import CONCURRENCY_COLUMNS, FAMILIES, OPTION_SETS, method_config, read_csv, write_csv


# ========================================================================= concurrency
WORKER_FLAG = "--_concurrency-worker"
ENTRY = Path(__file__).with_name("paper_cost.py")  # the script a worker process runs


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
                    procs.append(subprocess.Popen([sys.executable, str(ENTRY), WORKER_FLAG, json.dumps(spec)], env=env))
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
