"""The dataset table: every cine-MRI dataset the suite reads, declared once (no reader
import here).

A dataset's `id` names it everywhere: the workflow's `datasets` and `<id>_root` keys,
`gsmorph prepare --dataset` and `synth --format`, the folders prepared/<id>/, runs/<id>/,
pairs/<id>/, results/<id>/. `name` is how tables, figures, captions and notices call it;
`folders` are the top-level folders of its raw layout (config prepare.folders, prepare
--folders); `paper` its column in the paper's Table 1 (gsmorph/report/paper_table1.csv).
Its reader is the module gsmorph.data.<id> (`reader`), its labels map
gsmorph.data.labels.TO_CANONICAL[id], its phantom writer gsmorph.data.synth.WRITERS[id].
The workflow schema, the CLI and the report take the ids and names from here.
"""
from __future__ import annotations

from dataclasses import dataclass

from gsmorph.errors import GSMorphError


@dataclass(frozen=True)
class Dataset:
    id: str
    name: str  # display name: "ACDC", "M&Ms-1"
    folders: tuple[str, ...]  # top-level folders of the raw layout
    paper: str  # its name in the paper's Table 1


DATASETS: list[Dataset] = [
    Dataset("acdc", "ACDC", ("training", "testing"), "ACDC"),
    Dataset("mnm", "M&Ms-1", ("Training", "Validation", "Testing"), "M&M"),
]


def ids() -> list[str]:
    return [d.id for d in DATASETS]


def get(dataset_id: str) -> Dataset:
    for dataset in DATASETS:
        if dataset.id == dataset_id:
            return dataset
    raise GSMorphError(f"unknown dataset '{dataset_id}'; use one of {ids()}")


def reader(dataset_id: str):
    """The dataset's reader module, gsmorph.data.<id>: check_root(root) raises GSMorphError
    unless root looks like the download; list_subjects(root, folders) gives (subject, a call
    reading its RawSubject, labelled) for every subject of the layout's `folders`."""
    import importlib

    return importlib.import_module(f"gsmorph.data.{get(dataset_id).id}")


def names() -> dict[str, str]:
    """{id: display name}, in table order."""
    return {d.id: d.name for d in DATASETS}


def rank(dataset_id: str) -> tuple[int, str]:
    """Sort key: the table order, unknown ids after the known ones (alphabetical)."""
    order = ids()
    return (order.index(dataset_id), "") if dataset_id in order else (len(order), dataset_id)
