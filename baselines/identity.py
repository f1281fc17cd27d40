"""The "Initial" method: no registration, so the table's Initial row comes out of the same
per-pair format and evaluation path as every other method."""
from __future__ import annotations

from typing import Any

import numpy as np

from gsmorph.errors import GSMorphError


def identity(moving: np.ndarray, fixed: np.ndarray, spacing=None, cfg: dict[str, Any] | None = None,
             seed: int = 0) -> np.ndarray:
    """Zero displacement (ndim, *S) float32 for a pair of arrays of shape S."""
    moving, fixed = np.asarray(moving), np.asarray(fixed)
    if moving.shape != fixed.shape or moving.ndim not in (2, 3):
        raise GSMorphError(f"moving {moving.shape} and fixed {fixed.shape} must be 2D or 3D arrays of one shape")
    return np.zeros((moving.ndim, *moving.shape), dtype=np.float32)
