"""Which trials still have a living worker, and the heartbeat that tells.

Each trial records its worker (host, pid, process start time) in user attrs. A RUNNING
trial's worker is dead when, on this host, its process is gone (or its pid was reused),
and, on another host, when its heartbeat is older than `tune.stale_after_s`.

* RDB storages (SQLite, servers): the heartbeat is Optuna's (`record_heartbeat`) and
  stale trials are failed and retried by Optuna (`fail_stale_trials` with the storage's
  RetryHeartbeatStaleTrialCallback, which re-enqueues the trial with its user attrs);
  a trial of a dead process on this host is failed at once and retried the same way.
* Journal files: no heartbeat in Optuna: the heartbeat is a `heartbeat` user attr, and a
  dead worker's trial is failed, tagged `not_counted: interrupted` and re-enqueued here.
Either way the retry carries the lost trial's `run_dir`, so it resumes from its last.pt.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState

from gsmorph.processes import pid_alive

NOT_COUNTED = "not_counted"


def uses_optuna_heartbeat(storage) -> bool:
    return isinstance(storage, optuna.storages.RDBStorage) and storage.get_heartbeat_interval() is not None


def process_start(pid: int) -> str | None:
    """Start time of process `pid` in clock ticks since boot (Linux), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def worker_identity() -> dict[str, Any]:
    pid = os.getpid()
    return {"worker_host": socket.gethostname(), "worker_pid": pid, "worker_start": process_start(pid)}


def local_worker_dead(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial of this host whose process is gone (or whose pid now names another process)."""
    attrs = trial.user_attrs
    if "worker_pid" not in attrs or attrs.get("worker_host") != socket.gethostname():
        return False
    pid = int(attrs["worker_pid"])
    if not pid_alive(pid):
        return True
    start = attrs.get("worker_start")
    return start is not None and process_start(pid) not in (None, start)


def worker_is_dead(trial: optuna.trial.FrozenTrial, stale_after_s: float, now: float | None = None) -> bool:
    """Journal storages: whether a RUNNING trial's worker is gone (see the module docstring)."""
    attrs = trial.user_attrs
    if "worker_pid" not in attrs:
        return False
    if attrs.get("worker_host") == socket.gethostname():
        return local_worker_dead(trial)
    now = time.time() if now is None else now
    beat = attrs.get("heartbeat", trial.datetime_start.timestamp() if trial.datetime_start else now)
    return now - float(beat) > stale_after_s


def retry_attrs(trial) -> dict:
    """User attrs of the enqueued retry of `trial`: it resumes in the same run folder."""
    attrs = {"retry_of": trial.number}
    if trial.user_attrs.get("run_dir"):
        attrs["run_dir"] = trial.user_attrs["run_dir"]
    return attrs


def fail_dead_trials(study: optuna.Study, storage, stale_after_s: float) -> list[int]:
    """Fail the RUNNING trials of dead workers and queue their parameters again; return
    the numbers of the trials failed here (Optuna's own stale check is not listed)."""
    failed = []
    optuna_retry = uses_optuna_heartbeat(storage)
    if optuna_retry:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            fail_stale_trials(study)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        dead = local_worker_dead(t) if optuna_retry else worker_is_dead(t, stale_after_s)
        if t.user_attrs.get(NOT_COUNTED) or not dead:
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, NOT_COUNTED, "interrupted")
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        if optuna_retry:
            storage.get_heartbeat_stale_trial_callback()(study, storage.get_trial(t._trial_id))
        else:
            study.enqueue_trial(dict(t.params), user_attrs=retry_attrs(t))
        failed.append(t.number)
    return failed


class Heartbeat:
    """Background thread: the trial's heartbeat (Optuna's on RDB storages, the `heartbeat`
    user attr, unix s, on journals) and its `elapsed_s` user attr."""

    def __init__(self, storage, trial_id: int, interval_s: float):
        self.storage, self.trial_id, self.interval_s = storage, trial_id, max(float(interval_s), 0.05)
        self.start = time.monotonic()
        self.optuna = uses_optuna_heartbeat(storage)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def beat(self) -> None:
        try:
            if self.optuna:
                self.storage.record_heartbeat(self.trial_id)
            else:
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
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises Interrupted in the main thread while inside (so a trial is closed)."""
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
