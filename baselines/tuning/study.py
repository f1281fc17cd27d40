"""One tuning worker on a shared Optuna study: the trials it runs, how they are counted.

One `tune()` call is one worker. Several workers (processes, possibly on several hosts)
may run on one study; together they finish exactly N counted trials:

- Counted trials are COMPLETE, PRUNED, FAIL (a genuine error during training) and RUNNING
  ones. Not counted: trials tagged `not_counted` ("surplus": a worker lost the race for
  the N-th place; "interrupted": its worker was killed; "aborted": bad input) and trials
  that Optuna failed as stale and retried. Trial numbers are assigned by the storage in
  creation order, so after `ask()` a worker counts the counted trials with smaller
  numbers: if they already number N, its own trial is surplus and is closed at once,
  without training. No trial is lost or duplicated, with any storage.
- A lost trial (liveness.py) is retried with the same parameters in the same run folder,
  so a rerun after a crash finishes the lambda it lost from its last.pt.
- Sampling: TPE, reseeded for every trial with `seed + trial.number`. Trial numbers are
  unique, so parallel workers never propose from the same random state (no identical
  lambdas in the random start-up phase), and one worker with the same seed proposes the
  same sequence again.
- Pruning (single objective only): MedianPruner fed by the validation Dice that the
  training loop reports after each validation.
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.samplers import BaseSampler, TPESampler
from optuna.trial import TrialState

from baselines.tuning.liveness import (
    NOT_COUNTED, Heartbeat, Interrupted, fail_dead_trials, retry_attrs, sigterm_raises, worker_identity,
)
from baselines.tuning.counting import counted, is_counted, trials_and_retried
from baselines.tuning.outputs import write_outputs
from baselines.tuning.storage import file_lock, resolve_storage
from gsmorph import methods
from gsmorph.errors import GSMorphError
from gsmorph.io import check_not_input, claim_folder
from gsmorph.locations import relative, resolve

OBJECTIVES = ("dice", "dice-njd")
POLL_S = 1.0
WARMUP_FRACTION = 0.25  # the pruner never stops a trial in its first quarter of epochs

TrainFn = Callable[..., dict]


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


def study_settings(backbone: str, prepared: str, seed: int, cfg: dict, out: str | None = None) -> dict[str, Any]:
    """What a study is bound to; a rerun with other settings is refused. `prepared` is
    recorded relative to the tuning folder `out` when given (gsmorph/locations.py)."""
    t = cfg["tune"]
    return {
        "backbone": backbone, "prepared": relative(prepared, out) if out is not None else str(Path(prepared).resolve()),
        "seed": int(seed),
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
    """What the schema cannot say of a checked config (gsmorph.config.load_config: each key's
    type and range): the ranges searched and the heartbeat's timing, each low below its high."""
    t = cfg["tune"]
    for low, high in (("lam_low", "lam_high"), ("lr_low", "lr_high")):
        if not (0 < float(t[low]) < float(t[high])):
            raise GSMorphError(f"config keys 'tune.{low}'/'tune.{high}': need 0 < {low} < {high} "
                               f"(log-uniform), got {t[low]}, {t[high]}")
    if float(t["heartbeat_s"]) <= 0 or float(t["stale_after_s"]) <= float(t["heartbeat_s"]):
        raise GSMorphError("config keys 'tune.heartbeat_s'/'tune.stale_after_s': need "
                           "0 < heartbeat_s < stale_after_s")


def open_study(storage, storage_url: str, name: str, seed: int, cfg: dict, settings: dict,
               folder: str | Path | None = None) -> optuna.Study:
    """Create or load the study `name`; refuse one made with other settings (a prepared
    folder compared as the path it names from the tuning `folder`, relative or absolute)."""
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
    if stored is not None and folder is not None and isinstance(stored.get("prepared"), str):
        same = resolve(stored["prepared"], folder) == resolve(settings["prepared"], folder)
        stored = {**stored, "prepared": settings["prepared"]} if same else stored
    if stored is None:
        study.set_user_attr("settings", settings)
    elif stored != settings:
        diff = {k: (stored.get(k), settings.get(k)) for k in settings if stored.get(k) != settings.get(k)}
        raise GSMorphError(f"study '{name}' in {storage_url} was made with other settings "
                           f"(stored, now): {diff}; use another --study")
    return study


class TrialFailed(RuntimeError):
    """Training of one lambda failed (e.g. a non-finite loss): the trial fails, the study goes on."""


def default_train_fn() -> TrainFn:
    """Training by the method table's trainer. Errors while setting up (bad input, the same
    for every lambda) stop the worker; errors while training fail only the trial."""

    def train(prepared, backbone, method, seed, out, cfg, lam=None, report=None) -> dict:
        trainer = methods.maker_of(method)(prepared, backbone, method, seed, out, cfg, lam=lam)
        trainer.initialize()  # data and network: a problem here stops the worker
        try:
            return trainer.fit(report=report)
        except GSMorphError as err:
            raise TrialFailed(str(err)) from None

    return train


def run_trial(study: optuna.Study, storage, trial: optuna.Trial, prepared: str, backbone: str, seed: int,
              out: Path, cfg: dict, train_fn: TrainFn, trained_method: str) -> None:
    """Train `trained_method` with the trial's lambda and tell the study the result."""
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

    def record(summary_wall_s: float | None = None, **attrs: Any) -> None:
        # the trainer's training time (summary.json, else train_log.csv up to where it stopped),
        # the scope of a training run's wall_s; the trial's whole time when it has neither
        trained = summary_wall_s if summary_wall_s is not None else logged_training_s(run_dir)
        attrs["wall_s"] = float(trained) if trained is not None else time.monotonic() - start
        if attrs.get("epochs_done") is None and epochs_seen:
            attrs["epochs_done"] = max(epochs_seen)  # the loop's epochs count from 1
        for key, value in attrs.items():
            if value is not None:
                trial.set_user_attr(key, value)

    with Heartbeat(storage, trial._trial_id, float(t["heartbeat_s"])):
        try:
            summary = train_fn(prepared, backbone, trained_method, seed, run_dir, trial_cfg, lam=lam, report=report)
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
            study.enqueue_trial(dict(trial.params), user_attrs=retry_attrs(trial))
            raise
        except Exception as err:  # a genuine failure of this lambda (e.g. divergence)
            record(error=f"{type(err).__name__}: {err}", device=_device_of(run_dir, trial_cfg))
            study.tell(trial, state=TrialState.FAIL)
            return
    dice = summary.get("best_val_dice")
    njd = summary.get("val_njd_pct")
    record(summary.get("wall_s"), val_dice=dice, val_njd_pct=njd, device=summary.get("device"),
           epochs_done=summary.get("epochs_done"))
    values = [dice, njd] if multi else [dice]
    if any(v is None or not math.isfinite(float(v)) for v in values):
        trial.set_user_attr("error", f"run {run_dir} gave no finite validation Dice/NJD: {values}")
        study.tell(trial, state=TrialState.FAIL)
        return
    study.tell(trial, [float(v) for v in values])


def logged_training_s(run_dir: Path) -> float | None:
    """The training seconds a trial's run folder logged (train_log.csv's last wall_s), or None."""
    import pandas as pd

    path = run_dir / "train_log.csv"
    try:
        log = pd.read_csv(path)
    except (OSError, ValueError):
        return None
    values = pd.to_numeric(log.get("wall_s", pd.Series(dtype=float)), errors="coerce").dropna()
    return float(values.iloc[-1]) if len(values) else None


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


# what a tune output folder may hold: the outputs, the trial run folders, the outputs' lock,
# and what the workflow's rules write there (the study's name, the workers' done files)
WORKFLOW_FILES = ("study_name.txt", "workers")
TUNE_FILES = ("trials.csv", "study.json", "pareto.csv", "provenance.json", "best/", "trials/", ".tune.lock",
              "study_name.txt", "workers/")


def storage_files(storage: str, out: Path) -> list[str]:
    """The names of a storage file (and its lock and journal files) that lies in `out`."""
    spec = str(storage).strip()
    spec = spec.split("://", 1)[1] if "://" in spec else spec
    spec = spec[1:] if spec.startswith("//") else spec
    path = Path(spec)
    if not spec or path.resolve().parent != out.resolve():
        return []
    return [path.name + suffix for suffix in ("", ".lock", "-journal", "-wal", "-shm")]


def tune(prepared: str, backbone: str, trials: int, storage: str, study_name: str, seed: int, out: str,
         cfg: dict, train_fn: TrainFn | None = None, method: str | None = None) -> dict:
    """One tuning worker of the tuned `method` (default: the table's only tuned method): run
    trials until the study has `trials` counted ones, wait for the other workers' running
    trials, write the outputs; return study.json's content."""
    spec = methods.get(method or methods.ids("tuned", None)[0])
    if spec.family != "tuned":
        raise GSMorphError(f"method '{spec.id}' is not tuned by `gsmorph tune` (family {spec.family})")
    if int(trials) < 1:
        raise GSMorphError(f"--trials must be >= 1, got {trials}")
    if not Path(prepared).is_dir():
        raise GSMorphError(f"{prepared}: prepared folder not found")
    check_tune_config(cfg)
    check_not_input(out, [prepared])
    train_fn = train_fn or default_train_fn()
    t = cfg["tune"]
    store, storage_url = resolve_storage(storage, float(t["heartbeat_s"]), float(t["stale_after_s"]))
    out_dir = Path(out)  # made once the storage opened: a refused storage leaves nothing
    # only a folder gsmorph tune made, an empty one, or one holding only the workflow's files
    claim_folder(out_dir, "tune", [*TUNE_FILES, *storage_files(storage, out_dir)],
                 adopt=lambda folder: all(p.name in WORKFLOW_FILES for p in folder.iterdir()))
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = study_settings(backbone, prepared, seed, cfg, out_dir)
    study = open_study(store, storage_url, study_name, seed, cfg, settings, out_dir)
    stale_after_s = float(t["stale_after_s"])
    identity = worker_identity()
    with sigterm_raises():
        while True:
            fail_dead_trials(study, store, stale_after_s)
            if counted(study) >= trials:
                break
            trial = study.ask()
            for key, value in identity.items():
                trial.set_user_attr(key, value)
            if counted(study, below=trial.number) >= trials:  # lost the race for the last place
                trial.set_user_attr(NOT_COUNTED, "surplus")
                study.tell(trial, state=TrialState.FAIL)
                break
            run_trial(study, store, trial, prepared, backbone, seed, out_dir, cfg, train_fn, spec.tunes)
        while running(study):
            time.sleep(POLL_S)
            fail_dead_trials(study, store, stale_after_s)
    with file_lock(out_dir / ".tune.lock"):
        return write_outputs(study, out_dir, storage_url, cfg, seed, trials, settings)


def running(study: optuna.Study) -> bool:
    """Whether a counted trial of any worker is still running."""
    trials, retried = trials_and_retried(study)
    return any(t.state == TrialState.RUNNING and is_counted(t, retried) for t in trials)
