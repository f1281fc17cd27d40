"""Table 1: datasets side by side; Dice %, HD95 mm, MSE x 1e-2, NJD %; mean +- std over
test subjects; best per column bold; markers for significant differences from GSMorph.

One table per backbone (Initial and classical methods, then that backbone's methods) and
a combined one (classical rows once, then one block per backbone). Written as LaTeX
(booktabs), Markdown and CSV.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from gsmorph.report import names


@dataclass(frozen=True)
class Column:
    metric: str
    structure: str          # "mean" (of LV, Myo, RV) or "" for per-pair metrics
    tex: str
    md: str
    scale: float            # shown value = mean * scale
    lower_is_better: bool
    exclude_from_best: tuple[str, ...] = ()


COLUMNS = (
    Column("dice", "mean", r"Dice (\%)", "Dice (%)", 100.0, False),
    Column("hd95_mm", "mean", "HD95 (mm)", "HD95 (mm)", 1.0, True),
    Column("mse", "", r"MSE ($\times 10^{-2}$)", "MSE (x1e-2)", 100.0, True),
    Column("njd_pct", "", r"NJD (\%)", "NJD (%)", 1.0, True, ("initial",)),
)
DECIMALS = 2
MARKERS = ((0.01, "**"), (0.05, "*"))  # Holm-adjusted p below the threshold -> marker


@dataclass
class Cell:
    mean: float = math.nan
    std: float = math.nan
    n: int = 0
    p_holm: float = math.nan
    marker: str = ""
    bold: bool = False

    def text(self) -> str:
        if not math.isfinite(self.mean):
            return "--"
        out = f"{self.mean:.{DECIMALS}f}"
        return out + (f" ± {self.std:.{DECIMALS}f}" if math.isfinite(self.std) else "")


@dataclass
class Row:
    method: str
    backbone: str
    display: str
    block: str                       # "" for classical rows, else the backbone
    cells: dict = field(default_factory=dict)  # (dataset, column index) -> Cell


@dataclass
class Table:
    name: str
    datasets: list[str]
    rows: list[Row]
    caption: str


def marker(p_holm: float) -> str:
    for threshold, symbol in MARKERS:
        if math.isfinite(p_holm) and p_holm < threshold:
            return symbol
    return ""


def build(summary: pd.DataFrame, wilcoxon: pd.DataFrame, backbones: list[str], name: str,
          reference: str = "gsmorph") -> Table:
    """Table rows for `backbones` (one: a per-backbone table; several: the combined one).

    summary: stats.summarise output; wilcoxon: stats.wilcoxon_vs_reference output.
    Classical rows are compared with the reference method of backbones[0].
    """
    datasets = sorted(summary["dataset"].unique(), key=names.dataset_rank)
    present = summary[["backbone", "method"]].drop_duplicates()
    rows: list[Row] = []
    classical = sorted(present[present.backbone == names.CLASSICAL].method, key=names.method_rank)
    rows += [Row(m, names.CLASSICAL, names.method_name(m), "") for m in classical]
    for backbone in backbones:
        learned = sorted(present[present.backbone == backbone].method, key=names.method_rank)
        rows += [Row(m, backbone, names.method_name(m, backbone), backbone) for m in learned]
    ref_backbone = backbones[0] if backbones else ""
    s = summary.set_index(["dataset", "backbone", "method", "metric", "structure"])
    w = wilcoxon.set_index(["dataset", "metric", "structure", "backbone", "method", "method_backbone"])
    for row in rows:
        vs = row.backbone if row.backbone != names.CLASSICAL else ref_backbone
        for dataset in datasets:
            for i, col in enumerate(COLUMNS):
                cell = Cell()
                key = (dataset, row.backbone, row.method, col.metric, col.structure)
                if key in s.index:
                    rec = s.loc[key]
                    cell = Cell(float(rec["mean"]) * col.scale, float(rec["std"]) * col.scale, int(rec["n"]))
                wkey = (dataset, col.metric, col.structure, vs, row.method, row.backbone)
                if row.method != reference and wkey in w.index:
                    cell.p_holm = float(w.loc[wkey, "p_holm"])
                    cell.marker = marker(cell.p_holm)
                row.cells[(dataset, i)] = cell
    _mark_best(rows, datasets)
    return Table(name, datasets, rows, caption(backbones, reference))


def _mark_best(rows: list[Row], datasets: list[str]) -> None:
    """Bold every row whose shown (rounded) mean equals the column's best."""
    for dataset in datasets:
        for i, col in enumerate(COLUMNS):
            shown = {id(r): round(r.cells[(dataset, i)].mean, DECIMALS) for r in rows
                     if r.method not in col.exclude_from_best and math.isfinite(r.cells[(dataset, i)].mean)}
            if not shown:
                continue
            best = min(shown.values()) if col.lower_is_better else max(shown.values())
            for r in rows:
                if shown.get(id(r)) == best:
                    r.cells[(dataset, i)].bold = True


def caption(backbones: list[str], reference: str = "gsmorph") -> str:
    ref = names.method_name(reference)
    if not backbones:
        which = "Initial and the classical methods"
    elif len(backbones) == 1:
        which = f"the {names.backbone_name(backbones[0])} backbone"
    else:
        which = "the " + " and ".join(names.backbone_name(b) for b in backbones) + " backbones"
    text = (f"Registration of ES to ED on the test subjects, {which}: mean ± standard deviation over "
            "subjects (a subject's value is the mean over its slices and seeds). Dice and HD95 are the mean "
            "over LV, Myo and RV; MSE is scaled by 100; NJD is the percentage of voxels with a negative "
            "Jacobian determinant. Bold: best per column (highest Dice, lowest otherwise; NJD excludes "
            f"Initial). * (**): differs from {ref} with the same backbone, paired two-sided Wilcoxon "
            "signed-rank test over subjects, Holm-corrected within each dataset and metric, p < 0.05 (p < 0.01).")
    if len(backbones) > 1:
        text += (f" Initial and classical methods are compared with the {ref} of the "
                 f"{names.backbone_name(backbones[0])} backbone.")
    return text


# ---------------------------------------------------------------- writers
def _tex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(a, b)
    return text


def _tex_cell(cell: Cell) -> str:
    if not math.isfinite(cell.mean):
        return "--"
    body = cell.text().replace("±", r"\pm")
    if cell.bold:
        body = r"\mathbf{" + body + "}"
    sup = "^{" + cell.marker + "}" if cell.marker else ""
    return f"${body}{sup}$"


def to_latex(table: Table, label: str) -> str:
    k = len(COLUMNS)
    ncols = 1 + k * len(table.datasets)
    lines = [
        r"% needs \usepackage{booktabs} and \usepackage{graphicx}",
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{" + _tex_escape(table.caption).replace("±", r"$\pm$") + "}",
        r"\label{" + label + "}",
        r"\resizebox{\textwidth}{!}{%",
        r"\begin{tabular}{l" + (" " + "c" * k) * len(table.datasets) + "}",
        r"\toprule",
        " & ".join([""] + [r"\multicolumn{%d}{c}{%s}" % (k, _tex_escape(names.dataset_name(d)))
                           for d in table.datasets]) + r" \\",
        " ".join(r"\cmidrule(lr){%d-%d}" % (2 + j * k, 1 + (j + 1) * k) for j in range(len(table.datasets))),
        " & ".join(["Method"] + [c.tex for _ in table.datasets for c in COLUMNS]) + r" \\",
        r"\midrule",
    ]
    blocks = len({r.block for r in table.rows if r.block}) > 1
    current = None
    for row in table.rows:
        if row.block != current:
            if current is not None:
                lines.append(r"\midrule")
            if blocks and row.block:
                lines.append(r"\multicolumn{%d}{l}{\textit{%s backbone}} \\"
                             % (ncols, _tex_escape(names.backbone_name(row.block))))
            current = row.block
        cells = [_tex_cell(row.cells[(d, i)]) for d in table.datasets for i in range(k)]
        lines.append(" & ".join([_tex_escape(row.display)] + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""]
    return "\n".join(lines)


def to_markdown(table: Table) -> str:
    header = ["Method"] + [f"{names.dataset_name(d)} {c.md}" for d in table.datasets for c in COLUMNS]
    lines = [f"**{table.name}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    blocks = len({r.block for r in table.rows if r.block}) > 1
    for row in table.rows:
        qualify = blocks and row.block and not row.display.startswith(names.backbone_name(row.block))
        label = row.display + (f" ({names.backbone_name(row.block)})" if qualify else "")
        cells = []
        for d in table.datasets:
            for i in range(len(COLUMNS)):
                c = row.cells[(d, i)]
                text = c.text() + (f"{c.marker}" if c.marker else "")
                cells.append(f"**{text}**" if c.bold else text)
        lines.append("| " + " | ".join([label] + cells) + " |")
    lines += ["", table.caption, ""]
    return "\n".join(lines)


def to_frame(table: Table) -> pd.DataFrame:
    """One row per method x dataset x column (shown units)."""
    rows = []
    for row in table.rows:
        for d in table.datasets:
            for i, col in enumerate(COLUMNS):
                c = row.cells[(d, i)]
                rows.append({"table": table.name, "dataset": d, "backbone": row.backbone, "method": row.method,
                             "display": row.display, "metric": col.metric, "structure": col.structure,
                             "column": col.md, "mean": c.mean, "std": c.std, "n": c.n, "p_holm": c.p_holm,
                             "marker": c.marker, "best": c.bold})
    return pd.DataFrame(rows)


def preview_document(table_files: list[str]) -> str:
    """A standalone LaTeX document that inputs every table (compile with pdflatex)."""
    body = "\n".join(r"\input{" + f + "}" for f in table_files)
    return "\n".join([r"\documentclass{article}", r"\usepackage{booktabs}", r"\usepackage{graphicx}", r"\begin{document}", body,
                      r"\end{document}", ""])


def backbones_of(summary: pd.DataFrame) -> list[str]:
    return sorted({b for b in summary["backbone"].unique() if b != names.CLASSICAL}, key=names.backbone_rank)
