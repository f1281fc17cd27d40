"""Pool workers that die with their parent: a killed `gsmorph evaluate`, `report` or
`register` (SIGKILL, out of memory) leaves no worker processes behind.

Every pool of these verbs starts its workers with `watch_parent(os.getpid(), ...)` as the
initializer: a daemon thread in the worker checks twice a second whether its parent is
still the process that started the pool (a worker whose parent dies is adopted by another
process, so its parent id changes) and ends the worker at once if not. A thread, not
Linux's PR_SET_PDEATHSIG: that signal follows the parent *thread* that started the
worker, which in a process pool need not live as long as the pool.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Callable

POLL_S = 0.5


def _watch(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(POLL_S)


def watch_parent(parent: int, then: Callable[[], None] | None = None) -> None:
    """Pool initializer: end this worker when the process `parent` is gone; then() (another
    initializer) runs next."""
    if os.getppid() != parent:  # the parent died while this worker started
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="watch-parent", daemon=True).start()
    if then is not None:
        then()
