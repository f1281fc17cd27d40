"""The tiny training set-ups the tests share: one epoch of 8 training pairs (4 validation
pairs) of a three-level voxelmorph with 8-32 channels, on the CPU in one thread, so that
a training finishes in seconds. A test file states only how its set-up differs
(`tiny_config(epochs=2, batch_size=4)`); the trained run several files read is the
`gsmorph_run` fixture of tests/components/conftest.py.
"""
from __future__ import annotations

import json

from gsmorph.config import load_config

VOXELMORPH = {"voxelmorph": {"features": [8, 16, 32]}}  # three levels, 8-32 channels
NARROW = {"voxelmorph": {"features": [4, 8]}}  # two levels, 4-8 channels
TRANSMORPH = {"transmorph": {"embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [2, 2, 2, 2], "window_size": 4}}

TINY = {"backbones": VOXELMORPH, "epochs": 1, "batch_size": 8, "val_every": 1, "max_train_pairs": 8,
        "max_val_pairs": 4, "device": "cpu", "num_threads": 1}

def tiny(*, without: tuple[str, ...] = (), **changes) -> dict:
    """TINY without the keys named in `without` (the config's defaults apply to those), then
    `changes`: the overrides of load_config / `gsmorph train --set`."""
    return {**{k: v for k, v in TINY.items() if k not in without}, **changes}


# The narrow net on 4 training pairs (2 validation pairs), torch's default threads: the
# `gsmorph_run` fixture's set-up, for tests that need a trained run to exist
NARROW_RUN = tiny(backbones=NARROW, max_train_pairs=4, max_val_pairs=2, without=("num_threads",))


def tiny_config(*, without: tuple[str, ...] = (), **changes) -> dict:
    """The full config (defaults merged, checked by the schema) of `tiny(...)`."""
    return load_config(None, tiny(without=without, **changes))


def tiny_set(*, without: tuple[str, ...] = (), **changes) -> str:
    """`tiny(...)` as the JSON of `gsmorph train --set`."""
    return json.dumps(tiny(without=without, **changes))


def small_cfg(device: str = "cpu", **changes) -> dict:
    """The trainer tests' set-up: `tiny_config` for 2 epochs in batches of 4 on `device`."""
    return tiny_config(**{"epochs": 2, "batch_size": 4, "device": device, **changes})
