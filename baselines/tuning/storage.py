"""Where a study lives: `resolve_storage` turns a --storage spec into an Optuna storage.

* `sqlite:///x.db` or a path ending .db/.sqlite/.sqlite3: SQLite through Optuna's
  RDBStorage; a new file gets its schema under an exclusive file lock (two processes
  creating it at once otherwise race on alembic);
* `journal:///x.log` or a path ending .log: Optuna's JournalStorage on one file, made for
  several processes (on several hosts, over a shared file system);
* any other SQLAlchemy URL: RDBStorage (e.g. a PostgreSQL server).

An RDBStorage is opened with Optuna's own heartbeat (`heartbeat_s`, `stale_after_s`) and
its retry of stale trials (RetryHeartbeatStaleTrialCallback); a journal has neither, and
the worker-liveness checks of liveness.py stand in for them.

study.json records a file storage relative to its own folder (`recorded_url`:
`journal:<relative path>`, `sqlite:///<relative path>`); `storage_of` turns that record
back into a --storage spec that opens the study from anywhere (absolute ones as they are).
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any, Iterator

import optuna

from gsmorph.errors import GSMorphError
from gsmorph.locations import relative, resolve

# The heartbeat is Optuna's, driven here with ask/tell (liveness.Heartbeat records it):
# Optuna warns that it expects Study.optimize, and that the feature is experimental.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
warnings.filterwarnings("ignore", message=".*heartbeat_interval.* is an experimental feature")


def resolve_storage(spec: str, heartbeat_s: float | None = None,
                    stale_after_s: float | None = None) -> tuple[optuna.storages.BaseStorage, str]:
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
            return _rdb(f"sqlite:///{Path(spec).resolve()}", heartbeat_s, stale_after_s)
        raise GSMorphError(
            f"--storage '{spec}': give a database URL (sqlite:///x.db, postgresql://...), "
            "a journal file (journal:///x.log), or a path ending .db or .log")
    return _rdb(spec, heartbeat_s, stale_after_s)


def _journal(path: str) -> tuple[optuna.storages.BaseStorage, str]:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if not path:
        raise GSMorphError("--storage journal: no file path given")
    file = Path(path).resolve()
    check_journal(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(file))), f"journal://{file}"


def check_journal(file: Path) -> None:
    """Refuse an existing non-empty file whose first line is not an Optuna journal record
    (a JSON object with an `op_code`): Optuna would append its records to a user's file."""
    if not file.is_file() or file.stat().st_size == 0:
        return
    import json

    try:
        with open(file, "rb") as fh:
            first = json.loads(fh.readline().decode("utf-8"))
    except (OSError, ValueError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise GSMorphError(f"--storage {file}: not an Optuna journal file ({type(err).__name__}); "
                           "refusing to append to it: give a new file or a journal") from None
    if not isinstance(first, dict) or "op_code" not in first:
        raise GSMorphError(f"--storage {file}: not an Optuna journal file (its first line is no journal record); "
                           "refusing to append to it: give a new file or a journal")


def _heartbeat_kwargs(heartbeat_s: float | None, stale_after_s: float | None) -> dict[str, Any]:
    if heartbeat_s is None:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback()
    interval = max(1, round(float(heartbeat_s)))
    return {"heartbeat_interval": interval, "grace_period": max(interval + 1, round(float(stale_after_s))),
            "heartbeat_stale_trial_callback": retry}


def _rdb(url: str, heartbeat_s: float | None = None,
         stale_after_s: float | None = None) -> tuple[optuna.storages.BaseStorage, str]:
    engine_kwargs: dict[str, Any] = {}
    lock: contextlib.AbstractContextManager = contextlib.nullcontext()
    if url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///"):])
        db.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 120}}
        lock = file_lock(db.with_name(db.name + ".lock"))
    try:
        with lock:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                                 **_heartbeat_kwargs(heartbeat_s, stale_after_s))
    except Exception as err:  # SQLAlchemy/driver errors come in many types
        raise GSMorphError(f"--storage '{url}': cannot open ({type(err).__name__}: {err})") from None
    return storage, url


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
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


JOURNAL, SQLITE = "journal:", "sqlite:///"


def recorded_url(url: str, folder: str | Path) -> str:
    """A canonical storage URL (resolve_storage) as study.json in `folder` records it: a
    journal or SQLite file relative to `folder`, any other URL (a server) as it is."""
    if url.startswith(JOURNAL + "//"):
        return JOURNAL + relative(url[len(JOURNAL) + 2:], folder)
    if url.startswith(SQLITE + "/"):
        return SQLITE + relative(url[len(SQLITE):], folder)
    return url


def storage_of(folder: str | Path) -> str:
    """The --storage spec of the study whose study.json lies in `folder`: its file, relative
    to `folder` (or absolute, as earlier versions wrote it), made absolute."""
    from gsmorph.io import read_json

    url = read_json(Path(folder) / "study.json").get("storage")
    if not isinstance(url, str) or not url:
        raise GSMorphError(f"{Path(folder) / 'study.json'}: no 'storage' recorded")
    if url.startswith(JOURNAL):
        path = url[len(JOURNAL):]
        path = path[2:] if path.startswith("//") else path
        return f"{JOURNAL}//{resolve(path, folder)}"
    if url.startswith(SQLITE):
        return f"{SQLITE}{resolve(url[len(SQLITE):], folder)}"
    return url
