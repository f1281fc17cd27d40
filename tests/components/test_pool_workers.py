"""Pool workers die with their parent: SIGKILL of the main process of evaluate, report or
register leaves no worker running (gsmorph.workers.watch_parent, their pools' initializer)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

PARENT = textwrap.dedent("""
    import os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from gsmorph.workers import watch_parent

    def sleeper(path):
        open(path, "w").write(str(os.getpid()))
        time.sleep(600)

    if __name__ == "__main__":
        import multiprocessing
        context = multiprocessing.get_context(sys.argv[2])
        pool = ProcessPoolExecutor(1, mp_context=context, initializer=watch_parent, initargs=(os.getpid(),))
        pool.submit(sleeper, sys.argv[1])
        time.sleep(600)
""")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie waiting for its reaper counts as gone
        return fh.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_a_killed_parent_takes_its_workers_along(tmp_path, start):
    script, pid_file = tmp_path / "parent.py", tmp_path / "worker.pid"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file), start],
                              env={**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")})
    deadline = time.monotonic() + 120
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    worker = int(pid_file.read_text())
    assert alive(worker)
    parent.send_signal(signal.SIGKILL)
    parent.wait(30)
    deadline = time.monotonic() + 10
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(worker):
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived its killed parent")
