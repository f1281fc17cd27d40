"""The paper's Table 1 (gsmorph/report/paper_table1.csv: the published means and standard
deviations, VoxelMorph backbone, real ACDC and M&Ms-1 at 500 epochs) as reference rows, one
"(paper)" row under each method's row of the table in the authors' code's convention.

The published HD95 is labelled mm but the authors' code computes it in pixels (no voxel
spacing): it sits in the code-convention table's HD95 (px) column, as their code made it.
"""
from __future__ import annotations

import math
from importlib import resources

import pandas as pd

from gsmorph import datasets
from gsmorph.report import names
from gsmorph.report.tables import Cell, Row, Table

DATASETS = {d.paper: d.id for d in datasets.DATASETS}  # the paper's column -> dataset id
BACKBONE = "voxelmorph"  # the paper's learned methods
# code-convention column metric -> the paper table's column prefix
COLUMNS = {"code_dice": "dice", "code_hd95_px": "hd95_mm", "mse": "mse_e2", "code_njd_pct": "njd_pct"}
NOTE = ("Rows '(paper)': the numbers of the paper's Table 1 (VoxelMorph backbone, real ACDC and M&Ms-1, 500 "
        "epochs; its HD95, labelled mm, is in pixels in the authors' code), beside ours in the same convention; "
        "no tests or bold on them.")


def read_paper_table() -> pd.DataFrame:
    """The published Table 1: dataset, method and `<metric>_mean`/`_std` columns (as text)."""
    with resources.files("gsmorph.report").joinpath("paper_table1.csv").open() as fh:
        return pd.read_csv(fh, dtype=str, keep_default_na=False)


def _cell(text_mean: str, text_std: str, decimals: int) -> Cell:
    cell = Cell(decimals=decimals)
    try:
        cell.mean = float(text_mean)
        cell.std = float(text_std) if text_std else math.nan
    except ValueError:
        cell.note = text_mean  # e.g. "<0.001"
    return cell


def add_paper_rows(table: Table, paper: pd.DataFrame | None = None) -> Table:
    """Insert a '(paper)' row under every classical and VoxelMorph row the paper reported
    (the table's own rows, bold and markers unchanged); the caption says what they are."""
    paper = read_paper_table() if paper is None else paper
    published = {(DATASETS.get(r["dataset"], r["dataset"]), r["method"]): r for _, r in paper.iterrows()}
    rows, added = [], 0
    for row in table.rows:
        rows.append(row)
        if row.reference or row.backbone not in (names.CLASSICAL, BACKBONE):
            continue
        name = names.method_name(row.method, BACKBONE) if row.backbone == BACKBONE else names.method_name(row.method)
        if not any((d, name) in published for d in table.datasets):
            continue
        ref = Row(row.method, row.backbone, f"{row.display} (paper)", row.block, reference="paper")
        for dataset in table.datasets:
            entry = published.get((dataset, name))
            for i, col in enumerate(table.columns):
                key = COLUMNS.get(col.metric)
                if entry is None or key is None or row.method in col.undefined_for:
                    ref.cells[(dataset, i)] = Cell(undefined=row.method in col.undefined_for, decimals=col.decimals)
                else:
                    ref.cells[(dataset, i)] = _cell(entry[f"{key}_mean"], entry[f"{key}_std"], col.decimals)
        rows.append(ref)
        added += 1
    if added:
        table.rows = rows
        table.caption += " " + NOTE
    return table
