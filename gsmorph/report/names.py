"""Display names and the order of methods, backbones and datasets in tables and figures."""
from __future__ import annotations

# method ids in table order; weighted-s/-m/-l take the backbone's display name
METHOD_ORDER = ["initial", "demons", "syn", "weighted-s", "weighted-m", "weighted-l", "weighted-tuned",
                "hypermorph", "gs-agr", "gs-pcgrad", "gsmorph"]
FIXED_NAMES = {"initial": "Initial", "demons": "Demons", "syn": "SyN", "weighted-tuned": "Tuned",
               "hypermorph": "HyperMorph", "gs-agr": "GS-Agr", "gs-pcgrad": "GS-PCGrad", "gsmorph": "GSMorph"}
BACKBONE_NAMES = {"voxelmorph": "VoxelMorph", "transmorph": "TransMorph"}
DATASET_NAMES = {"acdc": "ACDC", "mnm": "M&Ms"}
DATASET_ORDER = ["acdc", "mnm"]
CLASSICAL = "none"  # backbone of Initial and the classical methods


def backbone_name(backbone: str) -> str:
    return BACKBONE_NAMES.get(backbone, backbone)


def dataset_name(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset.upper())


def method_name(method: str, backbone: str = "voxelmorph") -> str:
    """'weighted-m' on transmorph -> 'TransMorph-m'; 'gsmorph' -> 'GSMorph'; unknown ids as is."""
    if method in FIXED_NAMES:
        return FIXED_NAMES[method]
    if method.startswith("weighted-"):
        return f"{backbone_name(backbone)}-{method.split('-', 1)[1]}"
    return method


def method_rank(method: str) -> tuple[int, str]:
    """Sort key: the table order, unknown methods after the known ones (alphabetical)."""
    return (METHOD_ORDER.index(method), "") if method in METHOD_ORDER else (len(METHOD_ORDER), method)


def dataset_rank(dataset: str) -> tuple[int, str]:
    return (DATASET_ORDER.index(dataset), "") if dataset in DATASET_ORDER else (len(DATASET_ORDER), dataset)


def backbone_rank(backbone: str) -> tuple[int, str]:
    order = list(BACKBONE_NAMES)
    return (order.index(backbone), "") if backbone in order else (len(order), backbone)
