"""Device choice, the fast-step options, seeding and random-number-generator state (for
exact resume), and GPU slots for the workflow's GPU jobs.

Fast-step options (method config keys, gsmorph/schemas/method.schema.yaml), all CUDA only:

* ``precision``: ``fp32`` (PyTorch's defaults, as always: float32 throughout; cuDNN's own
  default lets convolutions use TF32 on Ampere and newer, matrix products stay float32),
  ``tf32`` (TF32 for matrix products too: ``torch.set_float32_matmul_precision("high")``),
  ``bf16`` (``tf32`` plus the network's forward pass of a training step under bfloat16
  autocast; warping, losses, gradients, the gradient surgery and the optimiser stay
  float32, and validation runs in float32 as inference does);
* ``channels_last``: network weights and the training step's input in channels-last
  memory order (the layout tensor-core convolutions want);
* ``compile``: ``torch.compile`` of the network (``nn.Module.compile``: the state dict and
  checkpoints keep their keys);
* ``surgery_cuda_graph``: the gradient surgery's step captured in a CUDA graph
  (gsmorph.surgery.GradientSurgery(cuda_graph=True)); methods without surgery ignore it.

On a CPU every one of them is refused with a GSMorphError naming the key and the device:
the CPU path stays the float32 eager one whose results are bitwise reproducible.

GPU slots (`python -m gsmorph.device gpu-slot --owner PID`, run by every GPU rule of the
workflow before its verb): the job takes the first free slot of a folder of slot files
(a slot whose owner process has ended is free, however it ended) and is pinned to GPU
``slot mod n`` through CUDA_VISIBLE_DEVICES, n being the number of GPUs the machine shows.
Snakemake's resource ``gpu_slots`` (= n GPUs x k jobs per GPU) bounds how many GPU jobs run
at once, so each GPU gets at most k of them. With at most one GPU, or inside a SLURM job
(SLURM_JOB_ID set: SLURM has chosen the job's GPU), nothing is pinned.

torch and numpy are imported where they are used, so that the slot command starts in a
few tens of milliseconds.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from gsmorph.errors import GSMorphError

# ------------------------------------------------------------------------- device


def resolve_device(name: str | None = "auto"):
    """'auto' -> CUDA when available, else CPU; 'cpu' / 'cuda' / 'cuda:N' as given."""
    import torch

    name = name or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GSMorphError(f"config key 'device': '{name}' requested but CUDA is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise GSMorphError(f"config key 'device': unknown device '{name}'") from None


def apply_threads(cfg: dict) -> int:
    """Set torch's CPU thread count from config `num_threads` (None: torch's default, which
    follows OMP_NUM_THREADS); return the count in effect. Called by the verbs, once."""
    import torch

    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg["num_threads"]))
    return torch.get_num_threads()


def synchronize(device) -> None:
    """Wait for queued kernels (timing on CUDA); a no-op on CPU."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- fast-step options

PRECISIONS = ("fp32", "tf32", "bf16")
STEP_KEYS = ("precision", "channels_last", "compile", "surgery_cuda_graph")
MIN_CAPABILITY = {"tf32": (8, 0), "bf16": (8, 0)}  # Ampere: TF32 and bfloat16 tensor cores
COMPILE_CAPABILITY = (7, 0)  # Triton, which torch.compile generates CUDA kernels with


@dataclass(frozen=True)
class StepOptions:
    """How a training step runs (see the module docstring); the defaults are today's
    float32 eager step."""

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    surgery_cuda_graph: bool = False

    @property
    def default(self) -> bool:
        return self == StepOptions()

    @property
    def autocast(self) -> bool:
        return self.precision == "bf16"

    def as_dict(self) -> dict:
        return asdict(self)


def step_options(cfg: dict, device, capability: tuple[int, int] | None = None,
                 has_triton: bool | None = None, name: str | None = None) -> StepOptions:
    """The fast-step options of a method config, checked against `device`.

    GSMorphError naming the key, its value and the device for an option the device lacks:
    any non-default option on a CPU; tf32/bf16 on a GPU of compute capability below 8.0;
    compile without Triton or below 7.0. capability, has_triton and name describe a CUDA
    device (read from it when None; given by tests to stand in for a GPU)."""
    options = StepOptions(precision=str(cfg.get("precision", "fp32")),
                          channels_last=bool(cfg.get("channels_last", False)),
                          compile=bool(cfg.get("compile", False)),
                          surgery_cuda_graph=bool(cfg.get("surgery_cuda_graph", False)))
    if options.precision not in PRECISIONS:
        raise GSMorphError(f"config key 'precision': '{options.precision}' is not one of {', '.join(PRECISIONS)}")
    asked = [(k, v) for k, v in options.as_dict().items() if v != getattr(StepOptions(), k)]
    if not asked:
        return options
    if device.type != "cuda":
        key, value = asked[0]
        shown = f"'{value}'" if isinstance(value, str) else str(value).lower()
        others = f" (also set: {', '.join(k for k, _ in asked[1:])})" if asked[1:] else ""
        raise GSMorphError(f"config key '{key}': {shown} needs a CUDA GPU, and this run's device is "
                           f"{device.type}{others}; on a CPU leave precision fp32 and channels_last, compile, "
                           "surgery_cuda_graph false (the float32 eager step, bitwise reproducible)")
    if capability is None or name is None:
        import torch

        capability = capability or torch.cuda.get_device_capability(device)
        name = name or torch.cuda.get_device_name(device)
    capability = tuple(capability)
    needed = MIN_CAPABILITY.get(options.precision)
    if needed and capability < needed:
        raise GSMorphError(f"config key 'precision': '{options.precision}' needs a GPU of compute capability "
                           f"{needed[0]}.{needed[1]} or newer (Ampere, Hopper); {device} ({name}) has "
                           f"{capability[0]}.{capability[1]}: use precision fp32")
    if options.compile:
        if has_triton is None:
            try:
                from torch.utils._triton import has_triton as _has_triton

                has_triton = bool(_has_triton())
            except ImportError:
                has_triton = False
        if not has_triton or capability < COMPILE_CAPABILITY:
            raise GSMorphError(f"config key 'compile': true needs Triton and a GPU of compute capability "
                               f"{COMPILE_CAPABILITY[0]}.{COMPILE_CAPABILITY[1]} or newer; {device} ({name}) has "
                               f"{capability[0]}.{capability[1]}" + ("" if has_triton else " and Triton is missing"))
    return options


def apply_precision(options: StepOptions, device) -> None:
    """Set the process-wide float32 precision of matrix products and convolutions for
    `options` on a CUDA device (fp32: PyTorch's defaults, set explicitly so that a run
    after a tf32 one in the same process is fp32 again); nothing on a CPU."""
    if device.type != "cuda":
        return
    import torch

    fast = options.precision in ("tf32", "bf16")
    torch.set_float32_matmul_precision("high" if fast else "highest")
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default, also for fp32


def memory_format(spatial_dims: int):
    """torch.channels_last (2D) or torch.channels_last_3d (3D)."""
    import torch

    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d


# ------------------------------------------------------------------ seeds and RNG


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state() -> dict:
    """Every global RNG state as tensors and plain types (loadable with weights_only=True)."""
    import numpy as np
    import torch

    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "internal": list(py_state[1]), "gauss_next": py_state[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what get_rng_state returned."""
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state((
        "MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
        np_state["has_gauss"], np_state["cached_gaussian"],
    ))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------- GPU slots

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


def _start_time(pid: int) -> str | None:
    """The start time of process `pid` (Linux /proc; None elsewhere or if it is gone), so a
    recycled process id is not taken for the slot's owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), counting from the state


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    now = _start_time(pid)
    return start is None or now is None or now == start


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
    mine = f"{owner} {_start_time(owner) or '-'}\n"
    with open(folder / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        slot = 0
        while True:
            path = folder / f"slot{slot}"
            try:
                pid, start = path.read_text().split()
                free = not _alive(int(pid), None if start == "-" else start)
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
    command = "import sys; del sys.path[0]; from gsmorph.device import main; sys.exit(main())"
    return (f"GSMORPH_SLOT=$({python} -c '{command}' gpu-slot --owner $$) && "
            'eval "$GSMORPH_SLOT" && ')


def _gpu_slot_command(argv: list[str]) -> int:
    import argparse
    import shlex

    parser = argparse.ArgumentParser(prog="python -m gsmorph.device gpu-slot",
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
        print("usage: python -m gsmorph.device gpu-slot --owner PID [--dir FOLDER]", file=sys.stderr)
        return 2
    return _gpu_slot_command(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
