"""Whether a process still runs: the one liveness check of the project (GPU slots, the
writers' stale-temporary cleanup, tuning's stale trials).

Only the standard library: the GPU-slot command imports this at every job's start.
"""
from __future__ import annotations

import os
from pathlib import Path


def start_time(pid: int) -> str | None:
    """The start time of process `pid` (Linux /proc; None elsewhere or if it is gone), so a
    recycled process id is not taken for the process that had it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), counting from the state


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether a process with this id runs on this host (one owned by another user counts)
    and, when `start` (a `start_time`) is given and the start time can be read, is the
    process that started then."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    if start is None:
        return True
    now = start_time(pid)
    return now is None or now == start
