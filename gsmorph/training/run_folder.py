"""A training run's folder: its files, its checkpoints and the resume decision.

`TrainingState` declares, once, the training state a resume restores besides the live
objects (weights, optimiser, selection tracker, RNGs, a stateful aggregator); `RunFolder`
writes and reads the files (see gsmorph/training/__init__.py for what each holds).
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from gsmorph import checkpoints
from gsmorph.device import get_rng_state, set_rng_state
from gsmorph.errors import GSMorphError
from gsmorph.io import claim_folder, folder_lock, read_json, sha256, write_csv, write_json

LOG_COLUMNS = ["epoch", "loss_sim", "loss_reg", "val_dice", "epoch_s", "wall_s", "lr"]
CONFLICT_COLUMNS = ["epoch", "group", "n_steps", "conflict_frac", "cosine_mean"]
# what a fresh start removes from a run folder (never any other file)
RUN_FILES = ("run.json", "best.pt", "last.pt", "train_log.csv", "conflicts.csv", "summary.json",
             "provenance.json")
# config keys that may change between a run and its resumption (the budget and the device)
RESUMABLE_CHANGES = ("epochs", "num_threads", "device", "tensorboard", "convergence")
SELECTION = "selection"  # the last.pt entry holding the fields marked so and the tracker's state
_CAST = {"int": int, "float": float, "bool": bool}  # a field's annotation -> its type on load


def _same(value):
    return value


def fingerprint(spec, backbone: str, seed: int, lam: float | None, backbone_kwargs: dict, cfg: dict, optim: dict,
                device, code_module: str, prepared: Path) -> dict[str, Any]:
    """What identifies a run for a resume: the method `spec`, backbone and its kwargs, seed,
    lambda, optimiser settings, the config without what may change (RESUMABLE_CHANGES) and
    the other methods' sections, the CPU thread count, the trainer's code version (of
    module `code_module`) and the prepared data's identity."""
    from gsmorph import methods
    from gsmorph.code_version import code_version
    from gsmorph.training.data import data_identity

    # the run's own: kwargs, lam and optimiser settings (lr override included)
    ignored = set(RESUMABLE_CHANGES) | {"backbones", "lambdas", "optim", "lr"}
    others = {s for m in methods.METHODS for s in m.sections} - set(spec.sections)
    kept = {k: v for k, v in cfg.items() if k not in ignored | others}
    optim = dict(optim)
    if optim["schedule"] == "poly":  # the lr of every epoch depends on the number of epochs
        optim["epochs"] = int(cfg["epochs"])
    return {"method": spec.id, "backbone": backbone, "seed": seed, "lam": lam, "backbone_kwargs": backbone_kwargs,
            "cfg": kept, "optim": optim, "cpu_threads": torch.get_num_threads() if device.type == "cpu" else None,
            "code": code_version(code_module), "data": data_identity(prepared)}


@dataclass
class TrainingState:
    """What last.pt restores besides the live objects: each field is a last.pt entry of
    its `key` (default: its name), or one inside last.pt's "selection" entry."""

    epoch: int = 0
    best_val_dice: float = math.nan
    best_epoch: int = 0
    best_val_njd_pct: float = math.nan
    best_sha256: str | None = None
    log_rows: list = field(default_factory=list, metadata={"key": "log"})
    conflict_rows: list = field(default_factory=list, metadata={"key": "conflicts"})
    wall_s: float = 0.0
    selection_score: float = field(default=math.nan, metadata={"in": SELECTION})
    stopped_early: bool = field(default=False, metadata={"in": SELECTION})

    def entries(self, selection: dict) -> dict:
        """The last.pt entries of this state, the tracker's `selection` state joined in."""
        out: dict[str, Any] = {SELECTION: dict(selection)}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("in") == SELECTION:
                out[SELECTION][f.name] = value
            else:
                out[f.metadata.get("key", f.name)] = value
        return out

    @classmethod
    def from_entries(cls, entries: dict) -> tuple["TrainingState", dict]:
        """(state, the tracker's selection state) from last.pt's entries; a last.pt written
        before model selection existed: the best validation Dice chose best.pt."""
        selection = entries.get(SELECTION) or {"best_score": entries["best_val_dice"], "since_best": 0,
                                              "selection_score": entries["best_val_dice"], "stopped_early": False}
        values = {}
        for f in dataclasses.fields(cls):
            value = selection[f.name] if f.metadata.get("in") == SELECTION else entries[f.metadata.get("key", f.name)]
            values[f.name] = list(value) if isinstance(value, list) else _CAST.get(f.type, _same)(value)
        return cls(**values), selection


@dataclass
class Live:
    """The objects of a training whose state last.pt holds (surgery: a gradient-surgery
    aggregator, saved when it has state)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    tracker: Any
    shuffle: torch.Generator
    surgery: Any = None


class RunFolder:
    """The files of one training run in `out` (RUN_FILES, the trainer's `extra_files`,
    tensorboard/): written atomically; last.pt's and best.pt's SHA-256 recorded in run.json."""

    def __init__(self, out: Path, extra_files: tuple[str, ...] = ()):
        self.out = Path(out)
        self.extra_files = tuple(extra_files)
        self.last_sha256: str | None = None  # of the last.pt run.json names
        self.checkpoint_epoch = 0  # the epoch of that last.pt (0: none written yet)

    def owned_files(self) -> list[str]:
        """The names a run folder may hold (claim_folder): the run's files and tensorboard/."""
        return [*RUN_FILES, *self.extra_files, "tensorboard/"]

    def claim(self):
        """Take the folder for this training (one made by gsmorph train, or an empty one);
        returns the lock to hold while training (one training at a time)."""
        claim_folder(self.out, "train", self.owned_files(), adopt=self.written_before)
        return folder_lock(self.out, "gsmorph train")

    @staticmethod
    def written_before(folder: Path) -> bool:
        """A run folder of an earlier gsmorph (no marker): its run.json records last.pt's SHA-256."""
        try:
            info = read_json(folder / "run.json")
            named = {(info.get(key) or {}).get("last.pt") for key in ("checksums", "previous_checksums")} - {None}
            return sha256(folder / "last.pt") in named
        except (GSMorphError, OSError, AttributeError):
            return False

    def remove_files(self) -> None:
        """A fresh start: no stale weights from an earlier attempt."""
        for name in RUN_FILES + self.extra_files:
            (self.out / name).unlink(missing_ok=True)
        shutil.rmtree(self.out / "tensorboard", ignore_errors=True)

    def write_logs(self, state: TrainingState, with_conflicts: bool) -> None:
        """train_log.csv (LOG_COLUMNS, then any other key of the rows) and conflicts.csv."""
        import pandas as pd

        extra = [k for row in state.log_rows for k in row if k not in LOG_COLUMNS]
        columns = LOG_COLUMNS + list(dict.fromkeys(extra))
        write_csv(self.out / "train_log.csv", pd.DataFrame(state.log_rows, columns=columns))
        if with_conflicts:
            write_csv(self.out / "conflicts.csv", pd.DataFrame(state.conflict_rows, columns=CONFLICT_COLUMNS))

    def write_run_info(self, info: dict, previous: dict | None = None) -> None:
        """run.json; `previous`: the checksums of files being replaced now."""
        if previous is not None:
            info["previous_checksums"] = previous
        write_json(self.out / "run.json", info)

    def save_best(self, model: torch.nn.Module) -> str:
        return checkpoints.save(model.state_dict(), self.out / "best.pt")

    def load_best(self, model: torch.nn.Module, device, digest: str) -> None:
        model.load_state_dict(checkpoints.load(self.out / "best.pt", device, digest))

    def save_checkpoint(self, live: Live, state: TrainingState, fingerprint: dict,
                        run_info: Callable[[], dict]) -> None:
        """last.pt: the full training state (tensors and plain types: loads with
        weights_only=True). run.json names the new last.pt and the one it replaces before
        the rename, so a kill at any instant leaves a last.pt that run.json names."""
        payload = {"model": live.model.state_dict(), "optimizer": live.optimizer.state_dict(),
                   **state.entries(live.tracker.state()), "rng": get_rng_state(), "shuffle_rng": live.shuffle.get_state(),
                   "fingerprint": json.dumps(fingerprint, sort_keys=True, default=str)}
        if live.surgery is not None and live.surgery.state:
            payload["surgery"] = live.surgery.state_dict()

        def record(digest: str) -> None:
            previous, self.last_sha256 = self.last_sha256, digest
            self.write_run_info(run_info(), previous={"last.pt": previous})

        self.last_sha256 = checkpoints.save(payload, self.out / "last.pt", before_rename=record)
        self.checkpoint_epoch = state.epoch

    def resume(self, live: Live, device, fingerprint: dict, fresh_if_changed: bool) -> TrainingState | None:
        """The state of out/last.pt, its live objects restored; None when there is none (or
        when fresh_if_changed and it belongs to another run). GSMorphError when last.pt was
        made with another fingerprint (naming the keys that differ)."""
        path = self.out / "last.pt"
        if not path.is_file():
            return None
        info = read_json(self.out / "run.json") if (self.out / "run.json").is_file() else {}
        recorded = (info.get("checksums") or {}).get("last.pt")
        found = sha256(path)  # the new last.pt, or the one a killed checkpoint was replacing
        if found in (recorded, (info.get("previous_checksums") or {}).get("last.pt")):
            recorded = found
        entries = checkpoints.load(path, device, recorded)
        stored = json.loads(entries.get("fingerprint") or "{}")
        changed = sorted(k for k, v in fingerprint.items() if json.loads(json.dumps(v, default=str)) != stored.get(k))
        if changed:
            if fresh_if_changed:
                print(f"{path}: made with another {', '.join(changed)}; starting afresh", file=sys.stderr, flush=True)
                return None
            raise GSMorphError(f"{path}: holds a run made with another {', '.join(changed)}; "
                               "use another --out, delete the folder, or pass --fresh-if-changed")
        live.model.load_state_dict(entries["model"])
        live.optimizer.load_state_dict(entries["optimizer"])
        state, selection = TrainingState.from_entries(entries)
        live.tracker.load(selection)
        if live.surgery is not None and "surgery" in entries:  # a stateful aggregator's state
            live.surgery.load_state_dict(entries["surgery"])
        set_rng_state(entries["rng"])
        live.shuffle.set_state(entries["shuffle_rng"])
        self.last_sha256, self.checkpoint_epoch = recorded, state.epoch
        return state

    def finished_wall_s(self, epoch: int) -> float | None:
        """summary.json's wall_s when the run in this folder finished at `epoch`."""
        if not (self.out / "summary.json").is_file():
            return None
        done = read_json(self.out / "summary.json")
        if done.get("epochs_done") == epoch and isinstance(done.get("wall_s"), (int, float)):
            return float(done["wall_s"])
        return None

    def finish(self, summary: dict, **provenance) -> None:
        """summary.json (its caveat, if any, printed as a warning) and provenance.json."""
        from gsmorph.provenance import write_provenance

        if summary["caveat"]:
            print(f"warning: {self.out}: {summary['caveat']}", file=sys.stderr, flush=True)
        write_json(self.out / "summary.json", summary)
        write_provenance(self.out / "provenance.json", **provenance)

    def stopped(self, reason: str) -> str:
        """`reason` with what a stopped training leaves behind."""
        kept = f"last good checkpoint {self.out / 'last.pt'} (epoch {self.checkpoint_epoch})" \
            if self.checkpoint_epoch else "no checkpoint was written yet"
        return f"{reason}; training stopped, {kept}"
