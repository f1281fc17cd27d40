"""Label ids: the canonical ones used after `prepare`, and those of each raw dataset.

Canonical: 0 background, 1 LV (blood pool), 2 Myo, 3 RV (blood pool).
ACDC stores 1 RV, 2 Myo, 3 LV; M&Ms-1 stores 1 LV, 2 Myo, 3 RV.
"""
from __future__ import annotations

import numpy as np

BACKGROUND, LV, MYO, RV = 0, 1, 2, 3
STRUCTURES: dict[str, int] = {"LV": LV, "Myo": MYO, "RV": RV}

# raw id -> canonical id, indexed by the raw id (each map is its own inverse)
ACDC_TO_CANONICAL = np.array([BACKGROUND, RV, MYO, LV], dtype=np.uint8)
MNM_TO_CANONICAL = np.array([BACKGROUND, LV, MYO, RV], dtype=np.uint8)
TO_CANONICAL = {"acdc": ACDC_TO_CANONICAL, "mnm": MNM_TO_CANONICAL}


def to_canonical(raw: np.ndarray, dataset: str) -> np.ndarray:
    """Map a raw label map (integer values in {0,1,2,3}) of `dataset` to canonical ids."""
    return TO_CANONICAL[dataset][np.asarray(raw, dtype=np.intp)]


def from_canonical(canonical: np.ndarray, dataset: str) -> np.ndarray:
    """Canonical ids -> the raw ids `dataset` stores (the maps are involutions)."""
    return TO_CANONICAL[dataset][np.asarray(canonical, dtype=np.intp)]
