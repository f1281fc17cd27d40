"""Optuna tuning of the weighted-loss lambda: the "Tuned" baseline and its compute cost.

One `tune()` call is one worker. Several workers (processes, possibly on several hosts)
may run on one study; together they finish exactly N counted trials:

- Counted trials are COMPLETE, PRUNED, FAIL (a genuine error during training) and RUNNING
  ones. Trials carrying the user attribute `not_counted` are not: "surplus" (a worker lost
  the race for the N-th place), "interrupted" (its worker was killed), "aborted" (bad
  input). Trial numbers are assigned by the storage in creation order, so after `ask()` a
  worker counts the counted trials with smaller numbers: if they already number N, its
  own trial is surplus and is closed at once, without training. No trial is lost or
  duplicated, with any storage.
- Each trial records its worker (host, pid, process start time) and a heartbeat. A
  RUNNING trial whose worker is dead (same host: the pid is gone or reused; other host:
  no heartbeat for `tune.stale_after_s`) is marked FAIL + interrupted, and its parameters
  are enqueued again: the retry resumes in the lost trial's run folder (from its last.pt),
  so a rerun after a crash finishes the same lambda it lost.
- Sampling: TPE, reseeded for every trial with `seed + trial.number`. Trial numbers are
  unique, so parallel workers never propose from the same random state (no identical
  lambdas in the random start-up phase), and one worker with the same seed proposes the
  same sequence again.
- Pruning (single objective only): MedianPruner fed by the validation Dice that the
  training loop reports after each validation.

Storage (`resolve_storage`): `sqlite:///x.db` or a path ending .db/.sqlite; a journal
file `journal:///x.log` or a path ending .log (Optuna's JournalStorage, made for several
processes on one file); any other SQLAlchemy URL. A new SQLite file gets its schema under
an exclusive file lock (two processes creating it at once otherwise race on alembic).

Outputs (`write_outputs`, atomic, under a lock so parallel workers do not collide):
`trials.csv`, `study.json` (total_wall_s = the tuning cost: wall seconds of every trial,
pruned, failed and interrupted ones included), `best/` (copy of the best trial's run
folder), for the multi-objective study `pareto.csv`, and `provenance.json`.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
import pandas as pd
from optuna.samplers import BaseSampler, TPESampler
from optuna.trial import TrialState

from gsmorph.errors import GSMorphError
from gsmorph.io import atomic_dir, check_not_input, write_csv, write_json
from gsmorph.provenance import write_provenance

NOT_COUNTED = "not_counted"
OBJECTIVES = ("dice", "dice-njd")
TRIALS_COLUMNS = ["number", "lam", "lr", "state", "val_dice", "val_njd_pct", "wall_s", "device",
                  "epochs_done", "note"]
POLL_S = 1.0
WARMUP_FRACTION = 0.25  # the pruner never stops a trial in its first quarter of epochs

TrainFn = Callable[..., dict]


# ----------------------------------------------------------------------------- storage

def resolve_storage(spec: str) -> tuple[optuna.storages.BaseStorage, str]:
    """An Optuna storage for `spec` and its canonical URL (recorded in study.json)."""
    spec = str(spec).strip()
    if not spec:
        raise GSMorphError("--storage is empty")
    if spec.startswith("journal:"):
        path = spec[len("journal:"):]
        path = path[2:] if path.startswith("//") else path
        return _journal(path)
    if "://" not in spec:
        if spec.endswith(".log"):
            return _journal(spec)
        if spec.endswith((".db", ".sqlite", ".sqlite3")):
            return _rdb(f"sqlite:///{Path(spec).resolve()}")
        raise GSMorphError(
            f"--storage '{spec}': give a database URL (sqlite:///x.db, postgresql://...), "
            "a journal file (journal:///x.log), or a path ending .db or .log")
    return _rdb(spec)


def _journal(path: str) -> tuple[optuna.storages.BaseStorage, str]:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if not path:
        raise GSMorphError("--storage journal: no file path given")
    file = Path(path).resolve()
    file.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(file))), f"journal://{file}"


def _rdb(url: str) -> tuple[optuna.storages.BaseStorage, str]:
    engine_kwargs: dict[str, Any] = {}
    lock: contextlib.AbstractContextManager = contextlib.nullcontext()
    if url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///"):])
        db.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 120}}
        lock = _file_lock(db.with_name(db.name + ".lock"))
    try:
        with lock:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except Exception as err:  # SQLAlchemy/driver errors come in many types
        raise GSMorphError(f"--storage '{url}': cannot open ({type(err).__name__}: {err})") from None
    return storage, url


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (POSIX flock; a no-op where unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- sampling

class TrialSeededTPE(BaseSampler):
    """TPE whose random state is `seed + trial.number` for each trial (see module doc)."""

    def __init__(self, seed: int, multi_objective: bool = False):
        self.seed = int(seed)
        self.multi_objective = multi_objective
        self._tpe = self._make(self.seed)

    def _make(self, seed: int) -> TPESampler:
        return TPESampler(seed=seed % 2**32, multivariate=not self.multi_objective)

    def before_trial(self, study, trial) -> None:
        self._tpe = self._make(self.seed + trial.number)
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._tpe.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._tpe.reseed_rng()


# ----------------------------------------------------------------------------- workers

def _process_start(pid: int) -> str | None:
    """Start time of process `pid` in clock ticks since boot (Linux), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def worker_identity() -> dict[str, Any]:
    pid = os.getpid()
    return {"worker_host": socket.gethostname(), "worker_pid": pid, "worker_start": _process_start(pid)}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_is_dead(trial: optuna.trial.FrozenTrial, stale_after_s: float, now: float | None = None) -> bool:
    """Whether a RUNNING trial's worker is gone (see module doc)."""
    attrs = trial.user_attrs
    if "worker_pid" not in attrs:
        return False
    if attrs.get("worker_host") == socket.gethostname():
        pid = int(attrs["worker_pid"])
        if not _pid_alive(pid):
            return True
        start = attrs.get("worker_start")
        return start is not None and _process_start(pid) not in (None, start)
    now = time.time() if now is None else now
    beat = attrs.get("heartbeat", trial.datetime_start.timestamp() if trial.datetime_start else now)
    return now - float(beat) > stale_after_s


class Heartbeat:
    """Background thread writing the trial's `heartbeat` (unix s) and `elapsed_s` attrs."""

    def __init__(self, storage, trial_id: int, interval_s: float):
        self.storage, self.trial_id, self.interval_s = storage, trial_id, max(float(interval_s), 0.05)
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def beat(self) -> None:
        try:
            self.storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
            self.storage.set_trial_user_attr(self.trial_id, "elapsed_s", time.monotonic() - self.start)
        except Exception:  # the trial may just have been finished; the next beat is moot
            pass

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat()

    def __enter__(self) -> "Heartbeat":
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class Interrupted(BaseException):
    """SIGTERM received (e.g. a scheduler cancelled the job)."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ----------------------------------------------------------------------------- counting

def is_counted(trial: optuna.trial.FrozenTrial) -> bool:
    """COMPLETE and PRUNED trials always count (even if a worker that wrongly took their
    owner for dead tagged them); FAIL and RUNNING ones unless tagged `not_counted`."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state in (TrialState.FAIL, TrialState.RUNNING) and not trial.user_attrs.get(NOT_COUNTED)


def is_finished(trial: optuna.trial.FrozenTrial) -> bool:
    return is_counted(trial) and trial.state != TrialState.RUNNING


def fail_dead_trials(study: optuna.Study, storage, stale_after_s: float) -> list[int]:
    """Mark RUNNING trials of dead workers FAIL + interrupted, enqueue their params again."""
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get(NOT_COUNTED) or not worker_is_dead(t, stale_after_s):
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, NOT_COUNTED, "interrupted")
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        study.enqueue_trial(dict(t.params), user_attrs=_retry_attrs(t))
        failed.append(t.number)
    return failed


# ----------------------------------------------------------------------------- study

def study_settings(backbone: str, prepared: str, seed: int, cfg: dict) -> dict[str, Any]:
    """What a study is bound to; a rerun with other settings is refused."""
    t = cfg["tune"]
    return {
        "backbone": backbone, "prepared": str(Path(prepared).resolve()), "seed": int(seed),
        "objective": t["objective"], "lam_low": float(t["lam_low"]), "lam_high": float(t["lam_high"]),
        "tune_lr": bool(t["tune_lr"]),
        "lr_low": float(t["lr_low"]) if t["tune_lr"] else None,
        "lr_high": float(t["lr_high"]) if t["tune_lr"] else None,
        "epochs": int(cfg["epochs"]),
    }


def warmup_epochs(cfg: dict) -> int:
    """Epochs before the pruner may stop a trial: the larger of tune.pruner_warmup_steps
    and WARMUP_FRACTION x epochs (the first epochs of every run sit near the
    no-registration Dice, and comparing them prunes at random)."""
    return max(int(cfg["tune"]["pruner_warmup_steps"]), int(round(WARMUP_FRACTION * int(cfg["epochs"]))))


def check_tune_config(cfg: dict) -> None:
    t = cfg["tune"]
    if t["objective"] not in OBJECTIVES:
        raise GSMorphError(f"config key 'tune.objective': '{t['objective']}' is not one of {list(OBJECTIVES)}")
    for low, high in (("lam_low", "lam_high"), ("lr_low", "lr_high")):
        if not (0 < float(t[low]) < float(t[high])):
            raise GSMorphError(f"config keys 'tune.{low}'/'tune.{high}': need 0 < {low} < {high} "
                               f"(log-uniform), got {t[low]}, {t[high]}")
    if float(t["heartbeat_s"]) <= 0 or float(t["stale_after_s"]) <= float(t["heartbeat_s"]):
        raise GSMorphError("config keys 'tune.heartbeat_s'/'tune.stale_after_s': need "
                           "0 < heartbeat_s < stale_after_s")


def open_study(storage, storage_url: str, name: str, seed: int, cfg: dict, settings: dict) -> optuna.Study:
    """Create or load the study `name`; refuse one made with other settings."""
    t = cfg["tune"]
    multi = t["objective"] == "dice-njd"
    directions = ["maximize", "minimize"] if multi else ["maximize"]
    pruner = (optuna.pruners.NopPruner() if multi else optuna.pruners.MedianPruner(
        n_startup_trials=int(t["pruner_startup_trials"]), n_warmup_steps=warmup_epochs(cfg)))
    kwargs = dict(storage=storage, study_name=name, sampler=TrialSeededTPE(seed, multi), pruner=pruner,
                  directions=directions, load_if_exists=True)
    for attempt in range(5):  # schema or study creation may race on a database server
        try:
            study = optuna.create_study(**kwargs)
            break
        except optuna.exceptions.DuplicatedStudyError:
            continue
        except Exception as err:  # e.g. an IntegrityError from a concurrent creator
            if attempt == 4:
                raise GSMorphError(f"study '{name}' in {storage_url}: cannot create or load "
                                   f"({type(err).__name__}: {err})") from None
            time.sleep(0.2 * (attempt + 1))
    if [d.name.lower() for d in study.directions] != directions:
        raise GSMorphError(f"study '{name}' in {storage_url} has directions "
                           f"{[d.name.lower() for d in study.directions]}, config tune.objective "
                           f"'{t['objective']}' needs {directions}: use another --study")
    stored = study.user_attrs.get("settings")
    if stored is None:
        study.set_user_attr("settings", settings)
    elif stored != settings:
        diff = {k: (stored.get(k), settings.get(k)) for k in settings if stored.get(k) != settings.get(k)}
        raise GSMorphError(f"study '{name}' in {storage_url} was made with other settings "
                           f"(stored, now): {diff}; use another --study")
    return study


# ----------------------------------------------------------------------------- one trial

class TrialFailed(RuntimeError):
    """Training of one lambda failed (e.g. a non-finite loss): the trial fails, the study goes on."""


def _default_train_fn() -> TrainFn:
    """gsmorph's weighted-loss training. Errors while setting up (bad input, the same for
    every lambda) stop the worker; errors while training fail only the trial."""
    from gsmorph.training import Trainer

    def train(prepared, backbone, method, seed, out, cfg, lam=None, report=None) -> dict:
        trainer = Trainer(prepared, backbone, method, seed, out, cfg, lam=lam)
        try:
            return trainer.fit(report=report)
        except GSMorphError as err:
            raise TrialFailed(str(err)) from None

    return train


def _retry_attrs(trial) -> dict:
    """User attrs of the enqueued retry of `trial`: it resumes in the same run folder."""
    attrs = {"retry_of": trial.number}
    if trial.user_attrs.get("run_dir"):
        attrs["run_dir"] = trial.user_attrs["run_dir"]
    return attrs


def run_trial(study: optuna.Study, storage, trial: optuna.Trial, prepared: str, backbone: str, seed: int,
              out: Path, cfg: dict, train_fn: TrainFn) -> None:
    """Train one weighted-loss run for the trial's lambda and tell the study the result."""
    t = cfg["tune"]
    multi = t["objective"] == "dice-njd"
    lam = trial.suggest_float("lam", float(t["lam_low"]), float(t["lam_high"]), log=True)
    trial_cfg = copy.deepcopy(cfg)
    if t["tune_lr"]:
        trial_cfg["lr"] = trial.suggest_float("lr", float(t["lr_low"]), float(t["lr_high"]), log=True)
    # a retry of an interrupted trial resumes from its run folder's last.pt
    previous = trial.user_attrs.get("run_dir")
    run_dir = out / "trials" / (Path(previous).name if previous else f"trial_{trial.number:04d}")
    trial.set_user_attr("run_dir", str(run_dir))
    epochs_seen: list[int] = []
    start = time.monotonic()

    def report(epoch: int, val_dice: float) -> None:
        epochs_seen.append(int(epoch))
        trial.set_user_attr("elapsed_s", time.monotonic() - start)  # cost known if killed
        if multi or val_dice is None or not math.isfinite(float(val_dice)):
            return
        trial.report(float(val_dice), int(epoch))
        if trial.should_prune():
            raise optuna.TrialPruned(f"epoch {epoch}: val Dice {val_dice:.4f} below the median")

    def record(**attrs: Any) -> None:
        attrs["wall_s"] = time.monotonic() - start
        if attrs.get("epochs_done") is None and epochs_seen:
            attrs["epochs_done"] = max(epochs_seen)  # the loop's epochs count from 1
        for key, value in attrs.items():
            if value is not None:
                trial.set_user_attr(key, value)

    with Heartbeat(storage, trial._trial_id, float(t["heartbeat_s"])):
        try:
            summary = train_fn(prepared, backbone, "weighted", seed, run_dir, trial_cfg, lam=lam, report=report)
        except optuna.TrialPruned:
            record(device=_device_of(run_dir, trial_cfg))
            study.tell(trial, state=TrialState.PRUNED)
            return
        except GSMorphError as err:  # bad input: the same for every lambda, stop the worker
            record(error=str(err))
            trial.set_user_attr(NOT_COUNTED, "aborted")
            study.tell(trial, state=TrialState.FAIL)
            raise
        except (KeyboardInterrupt, Interrupted):
            record()
            trial.set_user_attr(NOT_COUNTED, "interrupted")
            study.tell(trial, state=TrialState.FAIL)
            study.enqueue_trial(dict(trial.params), user_attrs=_retry_attrs(trial))
            raise
        except Exception as err:  # a genuine failure of this lambda (e.g. divergence)
            record(error=f"{type(err).__name__}: {err}", device=_device_of(run_dir, trial_cfg))
            study.tell(trial, state=TrialState.FAIL)
            return
    dice = summary.get("best_val_dice")
    njd = summary.get("val_njd_pct")
    record(val_dice=dice, val_njd_pct=njd, device=summary.get("device"), epochs_done=summary.get("epochs_done"))
    values = [dice, njd] if multi else [dice]
    if any(v is None or not math.isfinite(float(v)) for v in values):
        trial.set_user_attr("error", f"run {run_dir} gave no finite validation Dice/NJD: {values}")
        study.tell(trial, state=TrialState.FAIL)
        return
    study.tell(trial, [float(v) for v in values])


def _device_of(run_dir: Path, cfg: dict) -> str:
    """The device a trial ran on, from its run folder when written, else the config's."""
    for name in ("summary.json", "run.json"):
        path = run_dir / name
        if path.is_file():
            try:
                device = json.loads(path.read_text()).get("device")
            except ValueError:
                device = None
            if device:
                return str(device)
    from gsmorph.device import resolve_device

    return str(resolve_device(cfg.get("device", "auto")))


# ----------------------------------------------------------------------------- the worker

def tune(prepared: str, backbone: str, trials: int, storage: str, study_name: str, seed: int, out: str,
         cfg: dict, train_fn: TrainFn | None = None) -> dict:
    """One tuning worker: run trials until the study has `trials` counted ones, wait for the
    other workers' running trials, write the outputs; return study.json's content."""
    if int(trials) < 1:
        raise GSMorphError(f"--trials must be >= 1, got {trials}")
    if not Path(prepared).is_dir():
        raise GSMorphError(f"{prepared}: prepared folder not found")
    check_tune_config(cfg)
    check_not_input(out, [prepared])
    train_fn = train_fn or _default_train_fn()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    store, storage_url = resolve_storage(storage)
    settings = study_settings(backbone, prepared, seed, cfg)
    study = open_study(store, storage_url, study_name, seed, cfg, settings)
    stale_after_s = float(cfg["tune"]["stale_after_s"])
    identity = worker_identity()
    with _sigterm_raises():
        while True:
            fail_dead_trials(study, store, stale_after_s)
            if sum(is_counted(t) for t in study.get_trials(deepcopy=False)) >= trials:
                break
            trial = study.ask()
            for key, value in identity.items():
                trial.set_user_attr(key, value)
            ahead = sum(is_counted(t) for t in study.get_trials(deepcopy=False) if t.number < trial.number)
            if ahead >= trials:  # lost the race for the last place
                trial.set_user_attr(NOT_COUNTED, "surplus")
                study.tell(trial, state=TrialState.FAIL)
                break
            run_trial(study, store, trial, prepared, backbone, seed, out_dir, cfg, train_fn)
        while any(t.state == TrialState.RUNNING and is_counted(t) for t in study.get_trials(deepcopy=False)):
            time.sleep(POLL_S)
            fail_dead_trials(study, store, stale_after_s)
    with _file_lock(out_dir / ".tune.lock"):
        return write_outputs(study, out_dir, storage_url, cfg, seed, trials, settings)


# ----------------------------------------------------------------------------- outputs

def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial that did work (surplus placeholders left out)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        note = t.user_attrs.get(NOT_COUNTED, "") if t.state in (TrialState.FAIL, TrialState.RUNNING) else ""
        if note == "surplus" or t.state == TrialState.WAITING:
            continue
        if t.state == TrialState.FAIL and not note:
            note = t.user_attrs.get("error", "failed")
        if "retry_of" in t.user_attrs:
            note = (note + "; " if note else "") + f"retry of trial {t.user_attrs['retry_of']}"
        wall = t.user_attrs.get("wall_s", t.user_attrs.get("elapsed_s"))
        dice = t.user_attrs.get("val_dice")
        if dice is None and t.state == TrialState.PRUNED and t.intermediate_values:
            dice = t.intermediate_values[max(t.intermediate_values)]
        rows.append({
            "number": t.number, "lam": t.params.get("lam"), "lr": t.params.get("lr"),
            "state": t.state.name, "val_dice": dice, "val_njd_pct": t.user_attrs.get("val_njd_pct"),
            "wall_s": wall, "device": t.user_attrs.get("device"),
            "epochs_done": t.user_attrs.get("epochs_done"), "note": note,
        })
    return pd.DataFrame(rows, columns=TRIALS_COLUMNS)


def pareto_frame(study: optuna.Study) -> pd.DataFrame:
    rows = [{"number": t.number, "lam": t.params.get("lam"), "lr": t.params.get("lr"),
             "val_dice": t.values[0], "val_njd_pct": t.values[1]} for t in study.best_trials]
    return pd.DataFrame(rows, columns=["number", "lam", "lr", "val_dice", "val_njd_pct"]).sort_values("number")


def choose_best(study: optuna.Study, cfg: dict) -> optuna.trial.FrozenTrial | None:
    """Single objective: the highest validation Dice. Multi-objective: among the Pareto
    trials with NJD % <= tune.njd_bound the one with the highest Dice; if none meets the
    bound, the Pareto trial with the lowest NJD."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    if len(study.directions) == 1:
        return max(complete, key=lambda t: (t.values[0], -t.number))
    pareto = study.best_trials
    within = [t for t in pareto if t.values[1] <= float(cfg["tune"]["njd_bound"])]
    if within:
        return max(within, key=lambda t: (t.values[0], -t.number))
    return min(pareto, key=lambda t: (t.values[1], -t.values[0], t.number))


def write_outputs(study: optuna.Study, out: Path, storage_url: str, cfg: dict, seed: int, n_target: int,
                  settings: dict) -> dict:
    frame = trials_frame(study)
    best = choose_best(study, cfg)
    finished = [t for t in study.get_trials(deepcopy=False) if is_finished(t)]
    states = frame["state"].value_counts().to_dict() if len(frame) else {}
    info = {
        "study": study.study_name, "storage": storage_url, "objective": cfg["tune"]["objective"],
        "n_trials": len(finished), "n_target": int(n_target),
        "n_complete": int(states.get("COMPLETE", 0)), "n_pruned": int(states.get("PRUNED", 0)),
        "n_failed": int(states.get("FAIL", 0)),
        "total_wall_s": float(pd.to_numeric(frame["wall_s"], errors="coerce").fillna(0).sum()),
        "best_trial": best.number if best else None,
        "best_lam": best.params.get("lam") if best else None,
        "best_lr": best.params.get("lr", cfg["lr"]) if best else None,
        "best_val_dice": best.values[0] if best else None,
        "best_val_njd_pct": best.user_attrs.get("val_njd_pct") if best else None,
        "njd_bound": float(cfg["tune"]["njd_bound"]) if len(study.directions) > 1 else None,
        "devices": sorted({str(d) for d in frame["device"].dropna()}),
        "seed": int(seed), "settings": settings,
    }
    write_csv(out / "trials.csv", frame)
    if len(study.directions) > 1:
        write_csv(out / "pareto.csv", pareto_frame(study))
    if best is not None:
        source = Path(best.user_attrs["run_dir"])
        if not (source / "run.json").is_file():
            raise GSMorphError(f"{source}: the best trial's run folder has no run.json")
        with atomic_dir(out / "best", made_by="tune") as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
    write_json(out / "study.json", info)
    write_provenance(out / "provenance.json", config=cfg, seed=seed, study=study.study_name, storage=storage_url)
    if best is None:
        raise GSMorphError(f"study '{study.study_name}' in {storage_url}: no trial completed "
                           f"(see {out / 'trials.csv'})")
    return info
