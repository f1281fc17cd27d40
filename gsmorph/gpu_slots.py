"""GPU slots for the workflow's GPU jobs.

`python -m gsmorph.gpu_slots gpu-slot --owner PID`, run by every GPU rule of the workflow
before its verb (`slot_shell_prefix`): the job takes the first free slot of a folder of
slot files (a slot whose owner process has ended is free, however it ended;
gsmorph.processes.pid_alive) and is pinned to GPU ``slot mod n`` through
CUDA_VISIBLE_DEVICES, n being the number of GPUs the machine shows. Snakemake's resource
``gpu_slots`` (= n GPUs x k jobs per GPU) bounds how many GPU jobs run at once, so each
GPU gets at most k of them. With at most one GPU, or inside a SLURM job (SLURM_JOB_ID set:
SLURM has chosen the job's GPU), nothing is pinned.

Only the standard library is imported, so that the command starts in a few tens of
milliseconds.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gsmorph.errors import GSMorphError
from gsmorph.processes import pid_alive, start_time

GPUS_ENV = "GSMORPH_GPUS"            # number of GPUs to spread jobs over (overrides detection)
SLOT_DIR_ENV = "GSMORPH_GPU_SLOT_DIR"
DEFAULT_SLOT_DIR = ".snakemake/gpu_slots"  # in the workflow's working directory


def visible_gpus(env: dict | None = None) -> list[str]:
    """The GPUs a job may be pinned to, as CUDA_VISIBLE_DEVICES entries.

    GSMORPH_GPUS=N: the first N entries of CUDA_VISIBLE_DEVICES when it is set, else 0..N-1
    (also a fake count, for tests); otherwise the entries of CUDA_VISIBLE_DEVICES when it is
    set; otherwise one per GPU the NVIDIA driver lists (/proc/driver/nvidia/gpus, then
    `nvidia-smi -L`); none when there is no NVIDIA driver."""
    env = os.environ if env is None else env
    listed = env.get("CUDA_VISIBLE_DEVICES")
    entries = None if listed is None else [e.strip() for e in listed.split(",") if e.strip()]
    count = env.get(GPUS_ENV, "").strip()
    if count:
        if not count.isdigit():
            raise GSMorphError(f"{GPUS_ENV}={count!r}: expected a number of GPUs")
        n = int(count)
        return entries[:n] if entries is not None else [str(i) for i in range(n)]
    if entries is not None:
        return entries
    return [str(i) for i in range(_driver_gpu_count())]


def _driver_gpu_count() -> int:
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        return sum(1 for _ in proc.iterdir())
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU ")) if out.returncode == 0 else 0


def claim_gpu_slot(folder: str | os.PathLike, owner: int, gpus: list[str]) -> tuple[int, str]:
    """Take the first free slot in `folder` for process `owner`; return (slot, GPU entry).

    A slot file holds its owner's process id and start time; a slot is free when it has
    no file or its owner is no longer running (it finished, failed or was killed: nothing
    needs releasing). The scan and the claim happen under an exclusive lock of
    folder/.lock, so concurrent jobs get distinct slots. GPU = gpus[slot % len(gpus)]: the
    first len(gpus) jobs land on distinct GPUs, and at most k jobs share a GPU while at
    most k x len(gpus) run (Snakemake's `gpu_slots` resource)."""
    import fcntl

    if not gpus:
        raise GSMorphError("claim_gpu_slot: no GPU to pin to")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mine = f"{owner} {start_time(owner) or '-'}\n"
    with open(folder / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        slot = 0
        while True:
            path = folder / f"slot{slot}"
            try:
                pid, start = path.read_text().split()
                free = not pid_alive(int(pid), None if start == "-" else start)
            except (OSError, ValueError):
                free = True
            if free:
                tmp = path.with_name(f".{path.name}.{os.getpid()}")
                tmp.write_text(mine)
                os.replace(tmp, path)
                return slot, gpus[slot % len(gpus)]
            slot += 1


def slot_shell_prefix(python: str = "python") -> str:
    """The shell the workflow's GPU rules run before their verb (ends in '&& '): claim a
    slot for this job's shell ($$) and export its CUDA_VISIBLE_DEVICES."""
    # not `python -m` (it puts the job's working folder first on sys.path, so a data
    # folder's shlex.py would run): -c with sys.path's first entry (the working folder)
    # dropped before gsmorph is imported; works on every Python >= 3.10 (-P needs 3.11)
    command = "import sys; del sys.path[0]; from gsmorph.gpu_slots import main; sys.exit(main())"
    return (f"GSMORPH_SLOT=$({python} -c '{command}' gpu-slot --owner $$) && "
            'eval "$GSMORPH_SLOT" && ')


def _gpu_slot_command(argv: list[str]) -> int:
    import argparse
    import shlex

    parser = argparse.ArgumentParser(prog="python -m gsmorph.gpu_slots gpu-slot",
                                     description="Claim a GPU slot for process --owner; print the shell "
                                                 "that exports its CUDA_VISIBLE_DEVICES (nothing to do with "
                                                 "at most one GPU).")
    parser.add_argument("--owner", type=int, required=True, help="the job's process id (its shell's $$)")
    parser.add_argument("--dir", default=os.environ.get(SLOT_DIR_ENV, DEFAULT_SLOT_DIR),
                        help=f"slot folder (default ${SLOT_DIR_ENV} or {DEFAULT_SLOT_DIR})")
    args = parser.parse_args(argv)
    try:
        gpus = visible_gpus()
        if len(gpus) <= 1 or os.environ.get("SLURM_JOB_ID"):  # SLURM gave the job its GPU(s)
            print("true")
            return 0
        slot, gpu = claim_gpu_slot(args.dir, args.owner, gpus)
    except GSMorphError as err:
        print(f"gsmorph gpu-slot: {err}", file=sys.stderr)
        return 2
    print(f"export CUDA_VISIBLE_DEVICES={shlex.quote(gpu)} GSMORPH_GPU_SLOT={slot}")
    print(f"gsmorph gpu-slot: slot {slot} of {args.dir}, GPU {gpu} (of {len(gpus)})", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] != "gpu-slot":
        print("usage: python -m gsmorph.gpu_slots gpu-slot --owner PID [--dir FOLDER]", file=sys.stderr)
        return 2
    return _gpu_slot_command(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
