"""Display names, order, colours and markers of methods, backbones and datasets in tables
and figures, all taken from the method table (gsmorph/methods.py) and the backbone table
(gsmorph/backbones.py)."""
from __future__ import annotations

from gsmorph import backbones, methods

DATASET_NAMES = {"acdc": "ACDC", "mnm": "M&Ms"}
DATASET_ORDER = ["acdc", "mnm"]
CLASSICAL = "none"  # backbone of Initial and the classical methods
FALLBACK_COLOUR, FALLBACK_MARKER = "#333333", "o"


def backbone_name(backbone: str) -> str:
    return backbones.display(backbone)


def dataset_name(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset.upper())


def method_name(method: str, backbone: str = "voxelmorph") -> str:
    """'weighted-m' on transmorph -> 'TransMorph-m'; 'gsmorph' -> 'GSMorph'; unknown ids as is."""
    spec = methods.find(method)
    return spec.name(backbone_name(backbone)) if spec else method


def method_colour(method: str) -> str:
    spec = methods.find(method)
    return spec.colour if spec else FALLBACK_COLOUR


def method_marker(method: str) -> str:
    spec = methods.find(method)
    return spec.marker if spec else FALLBACK_MARKER


def method_rank(method: str) -> tuple[int, str]:
    """Sort key: the table order, unknown methods after the known ones (alphabetical)."""
    return methods.rank(method)


def dataset_rank(dataset: str) -> tuple[int, str]:
    return (DATASET_ORDER.index(dataset), "") if dataset in DATASET_ORDER else (len(DATASET_ORDER), dataset)


def backbone_rank(backbone: str) -> tuple[int, str]:
    return backbones.rank(backbone)
