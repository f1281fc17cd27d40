"""paper_cost.py --measure: seconds per epoch of every job type and each job's fixed costs
(see paper_cost.py's docstring), through the training package's public face: each run gets
its pairs as gsmorph.training.TrainingData and times a checkpoint with save_checkpoint()."""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cost_tables import FAMILIES, OPTION_SETS, TIME_COLUMNS, method_config, read_csv, steps, subjects_of, write_csv


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
