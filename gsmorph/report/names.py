"""Display names, order, colours and markers of methods, backbones and datasets in tables
and figures, all taken from the method table (gsmorph/methods.py), the backbone table
(gsmorph/backbones.py) and the dataset table (gsmorph/datasets.py)."""
from __future__ import annotations

from gsmorph import backbones, datasets, methods

DATASET_NAMES = datasets.names()
DATASET_ORDER = datasets.ids()
CLASSICAL = "none"  # backbone of Initial and the classical methods
FALLBACK_COLOUR, FALLBACK_MARKER = "#333333", "o"
PAPER_SCALE = {"epochs": 500, "image_size": [128, 128]}

# What the evaluated data are ({dataset: gsmorph.evaluate.describe_data entry}) and what
# the backbones were ({backbone: variant name, e.g. 'TransMorph-S'}), set once per report
# by `describe`, so that every title, caption and table says it.
_DATA: dict[str, dict] = {}
_BACKBONES: dict[str, str] = {}


def describe(data: dict[str, dict] | None = None, backbone_names: dict[str, str] | None = None) -> None:
    """Set the data descriptions and backbone variant names every label of this report uses."""
    _DATA.clear()
    _DATA.update(data or {})
    _BACKBONES.clear()
    _BACKBONES.update(backbone_names or {})


def backbone_name(backbone: str) -> str:
    """The backbone's variant as the runs recorded it (e.g. 'TransMorph-S'), else its table name."""
    return _BACKBONES.get(backbone) or backbones.display(backbone)


def dataset_name(dataset: str) -> str:
    """'ACDC', or 'ACDC-format phantom' when the data are the synthetic phantom."""
    name = DATASET_NAMES.get(dataset, dataset.upper())
    return f"{name}-format phantom" if _DATA.get(dataset, {}).get("phantom") else name


def is_phantom(dataset: str) -> bool:
    """Whether the report's data of `dataset` are the synthetic phantom (names.describe)."""
    return bool(_DATA.get(dataset, {}).get("phantom"))


def subject_name(dataset: str, subject: str) -> str:
    """'phantom patient001' for a phantom's subject (its ids follow the download's layout,
    so they would read as real ones), else the id as is."""
    return f"phantom {subject}" if is_phantom(dataset) else subject


def data_note(dataset: str) -> str:
    """The data and their scale for a caption: 'ACDC-format phantom (24 subjects: 8 train,
    4 val, 12 test), 10 training epochs and 64 x 64 images (the paper: 500 and 128 x 128)'."""
    info = _DATA.get(dataset)
    if not info:
        return f"{dataset_name(dataset)} (data not described: no metrics provenance)"
    splits = info.get("splits", {})
    text = f"{dataset_name(dataset)} ({info.get('n_subjects', '?')} subjects: " + \
        ", ".join(f"{splits.get(k, 0)} {k}" for k in ("train", "val", "test")) + ")"
    epochs, size = info.get("epochs") or [], info.get("image_size")
    scale = []
    if epochs and epochs != [PAPER_SCALE["epochs"]]:
        scale.append(f"{'/'.join(map(str, epochs))} training epoch" + ("s" if epochs != [1] else ""))
    if size and list(size) != PAPER_SCALE["image_size"]:
        scale.append(f"{size[0]} x {size[1]} images")
    if scale:
        text += ", " + " and ".join(scale) + \
            f" (the paper: {PAPER_SCALE['epochs']} epochs, {PAPER_SCALE['image_size'][0]} x 128 images)"
    return text


def method_name(method: str, backbone: str = "voxelmorph") -> str:
    """'weighted-m' on transmorph -> 'TransMorph-m'; 'gsmorph' -> 'GSMorph'; unknown ids as is."""
    spec = methods.find(method)
    return spec.name(backbones.display(backbone)) if spec else method  # the variant goes in headers


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
    return datasets.rank(dataset)


def backbone_rank(backbone: str) -> tuple[int, str]:
    return backbones.rank(backbone)
