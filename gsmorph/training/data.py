"""The pairs a training run learns from and validates on, as tensors on its device.

A split is a list of buckets of equal spatial shape (2D: one bucket); each bucket holds
moving, fixed (N, 1, *S) float32 in [0, 1] and moving_label, fixed_label (N, 1, *S)
uint8 (0 bg, 1 LV, 2 Myo, 3 RV). `TrainingData` bundles the train and val splits; a
caller that already holds them (a benchmark timing many runs on the same pairs) passes one
to the Trainer (`Trainer(..., data=TrainingData(train, val))`) instead of having each run
read the prepared folder.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

Buckets = list[dict]


def _select(pairs: list, limit: int | None, seed: int) -> list:
    if limit is None or len(pairs) <= int(limit):
        return pairs
    keep = np.sort(np.random.default_rng(seed).choice(len(pairs), size=int(limit), replace=False))
    return [pairs[i] for i in keep]


def load_split(prepared: Path, split: str, cfg: dict, device: torch.device, limit: int | None, seed: int) -> Buckets:
    """The pairs of a split as tensors on `device`, grouped in buckets of equal spatial
    shape (2D: one bucket). Each bucket: moving, fixed (N, 1, *S) float32,
    moving_label, fixed_label (N, 1, *S) uint8. `limit`: at most that many pairs, drawn
    with `seed` (their order kept)."""
    from gsmorph.data import loader

    pairs = loader.pairs(prepared, split, mode=cfg["mode"], moving=cfg["moving"], fixed=cfg["fixed"],
                         drop_missing=bool(cfg["drop_missing"]))
    pairs = _select(pairs, limit, seed)
    by_shape: dict[tuple, list] = {}
    for pair in pairs:
        by_shape.setdefault(tuple(pair.moving.shape), []).append(pair)
    buckets = []
    for group in by_shape.values():
        arrays = loader.stack(group)
        bucket = {}
        for key in ("moving", "fixed", "moving_label", "fixed_label"):
            bucket[key] = torch.from_numpy(np.ascontiguousarray(arrays[key])).unsqueeze(1).to(device)
        bucket["moving"] = bucket["moving"].float()
        bucket["fixed"] = bucket["fixed"].float()
        buckets.append(bucket)
    return buckets


def count_pairs(buckets: Buckets) -> int:
    """Number of pairs in buckets made by `load_split`."""
    return sum(b["moving"].shape[0] for b in buckets)


def data_identity(prepared: Path) -> str:
    """A digest of a prepared folder's subjects.csv and provenance.json: changes whenever
    the folder is prepared again (gsmorph.data.loader.prepared_identity, which pairs.json
    records too)."""
    from gsmorph.data.loader import prepared_identity

    return prepared_identity(prepared)


@dataclass(frozen=True)
class TrainingData:
    """The train and val splits of one run (buckets of `load_split`)."""

    train: Buckets
    val: Buckets

    @classmethod
    def load(cls, prepared: Path, cfg: dict, device: torch.device, seed: int) -> "TrainingData":
        """Both splits of a prepared folder, each cut to config `max_train_pairs` /
        `max_val_pairs` (drawn with `seed`)."""
        return cls(train=load_split(prepared, "train", cfg, device, cfg.get("max_train_pairs"), seed),
                   val=load_split(prepared, "val", cfg, device, cfg.get("max_val_pairs"), seed))
