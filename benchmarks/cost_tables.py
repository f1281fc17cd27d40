"""paper_cost.py's shared tables: the method families and option sets it times, the
columns of its CSV files, the workflow config it reads, and the time table (`Times`)."""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
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
