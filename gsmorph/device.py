"""Device choice, CPU threads, seeding and random-number-generator state (for exact resume).

The fast-step options of a training step live in gsmorph/training/fast_step.py, the GPU
slots of the workflow's GPU jobs in gsmorph/gpu_slots.py.
"""
from __future__ import annotations

import random

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
