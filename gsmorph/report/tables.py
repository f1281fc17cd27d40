"""Table 1: datasets side by side; Dice %, HD95 mm, MSE x 1e-2, NJD %; mean +- std over
test subjects; best per column bold; markers for significant differences from GSMorph,
with their direction.

One table per backbone (Initial and classical methods, then that backbone's methods) and
a combined one (classical rows once, then one block per backbone), in our metric
convention; and the combined table in the GSMorph authors' code's convention (Dice
averaged with the divisor fixed at 3, HD95 in pixels, NJD by SimpleITK), to set beside
the paper's numbers. On phantoms (a true displacement exists) the Markdown and CSV tables
add an EPE column (endpoint error inside the heart, mm) and the LaTeX table a note below.
Written as LaTeX (booktabs), Markdown and CSV.

Table 2 (when the metrics hold general gradient-aggregation methods, gsmorph/aggregators.py):
GSMorph and its ablations beside those methods, with the same columns, statistics and
markers; Table 1 then leaves them out. Each table's Holm correction is over its own methods.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from gsmorph import backbones, methods
from gsmorph.report import names
from gsmorph.stats import BY_SEEDS


@dataclass(frozen=True)
class Column:
    metric: str
    structure: str          # "mean" (of LV, Myo, RV) or "" for per-pair metrics
    tex: str
    md: str
    scale: float            # shown value = mean * scale
    lower_is_better: bool
    undefined_for: tuple[str, ...] = ()  # methods for which the column means nothing ("–")
    latex: bool = True                   # False: Markdown and CSV only (LaTeX gets a note)
    decimals: int = 2                    # shown decimals (Dice %: 1)


NO_DEFORMATION = tuple(m.id for m in methods.METHODS if m.maker == "baselines.identity:identity")
EPE = Column("epe_mm", "", "EPE (mm)", "EPE (mm)", 1.0, True, latex=False)
CONVENTIONS = {
    "ours": (
        Column("dice", "mean", r"Dice (\%)", "Dice (%)", 100.0, False, decimals=1),
        Column("hd95_mm", "mean", "HD95 (mm)", "HD95 (mm)", 1.0, True),
        Column("mse", "", r"MSE ($\times 10^{-2}$)", "MSE (x1e-2)", 100.0, True),
        Column("njd_pct", "", r"NJD (\%)", "NJD (%)", 1.0, True, NO_DEFORMATION),
    ),
    "gsmorph-code": (
        Column("code_dice", "mean", r"Dice (\%)", "Dice (%)", 100.0, False, decimals=1),
        Column("code_hd95_px", "mean", "HD95 (px)", "HD95 (px)", 1.0, True),
        Column("mse", "", r"MSE ($\times 10^{-2}$)", "MSE (x1e-2)", 100.0, True),
        Column("code_njd_pct", "", r"NJD (\%)", "NJD (%)", 1.0, True, NO_DEFORMATION),
    ),
}
DECIMALS = 2  # shown decimals of a column unless it says otherwise (Column.decimals)
# one decimal for Dice (%): its differences of interest are tenths; NJD (%) keeps two, its values
# are often below 0.1 (the paper's GS-PCGrad 0.11 vs VoxelMorph-l 0.10)
WIDE_COLUMNS = 6  # LaTeX: a table with more data columns spans the page (table*)
# Holm-adjusted p below the threshold -> that many arrows: up when the method does better
# than the reference (higher Dice, lower HD95, MSE, NJD), down when it does worse
LEVELS = ((0.01, 2), (0.05, 1))
ARROWS = {"better": ("↑", r"\uparrow"), "worse": ("↓", r"\downarrow")}


@dataclass
class Cell:
    mean: float = math.nan
    std: float = math.nan
    n: int = 0
    p_holm: float = math.nan
    direction: str = ""      # "better" | "worse" than the reference, when significant
    level: int = 0           # 0, 1 (p < 0.05) or 2 (p < 0.01)
    bold: bool = False
    undefined: bool = False  # the metric means nothing for this method (e.g. NJD of Initial)
    decimals: int = DECIMALS
    note: str = ""           # shown instead of a number (e.g. the paper's "<0.001")
    seed_sd: float = math.nan  # sd over seeds of the method's mean over subjects (>= 2 seeds)
    n_seeds: int = 1

    def text(self) -> str:
        if self.undefined:
            return "–"
        if self.note:
            return self.note
        if not math.isfinite(self.mean):
            return "--"
        out = f"{self.mean:.{self.decimals}f}"
        out += f" ± {self.std:.{self.decimals}f}" if math.isfinite(self.std) else ""
        return out + (f" [{self.seed_sd:.{self.decimals}f}]" if math.isfinite(self.seed_sd) else "")

    def marker(self, latex: bool = False) -> str:
        return ARROWS[self.direction][latex] * self.level if self.level else ""


@dataclass
class Row:
    method: str
    backbone: str
    display: str
    block: str                       # "" for classical rows, else the backbone
    cells: dict = field(default_factory=dict)  # (dataset, column index) -> Cell
    reference: str = ""              # a row of published numbers (e.g. "paper"), not of this run


@dataclass
class Table:
    name: str
    datasets: list[str]
    columns: tuple[Column, ...]
    rows: list[Row]
    caption: str
    notes: list[str] = field(default_factory=list)  # lines under the table (LaTeX: EPE)
    short_caption: str = ""          # LaTeX's caption; the long one becomes a note below


def significance(p_holm: float, median_diff: float, rank_biserial: float, col: Column) -> tuple[str, int]:
    """(direction, level) of a method's difference from the reference in one column."""
    level = next((lv for threshold, lv in LEVELS if math.isfinite(p_holm) and p_holm < threshold), 0)
    if not level:
        return "", 0
    sign = rank_biserial if math.isfinite(rank_biserial) and rank_biserial != 0 else median_diff
    higher = sign > 0
    return ("worse" if higher == col.lower_is_better else "better"), level


def build(summary: pd.DataFrame, wilcoxon: pd.DataFrame, backbones: list[str], name: str,
          reference: str = methods.REFERENCE, convention: str = "ours", undefined: pd.DataFrame | None = None,
          caveats: list[str] = ()) -> Table:
    """Table rows for `backbones` (one: a per-backbone table; several: the combined one).

    summary: stats.summarise output; wilcoxon: stats.compare_to_reference output (or
    stats.wilcoxon_vs_reference's, the subject-level tests alone);
    undefined: evaluate.undefined_counts output (lost structures go in the caption);
    caveats: the runs' warnings (summary.json `caveat`), ending the caption.
    Classical rows are compared with the reference method of backbones[0].
    """
    datasets = sorted(summary["dataset"].unique(), key=names.dataset_rank)
    columns = CONVENTIONS[convention]
    if convention == "ours" and (summary["metric"] == EPE.metric).any():
        columns = columns + (EPE,)
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
            for i, col in enumerate(columns):
                cell = Cell(undefined=row.method in col.undefined_for, decimals=col.decimals)
                key = (dataset, row.backbone, row.method, col.metric, col.structure)
                if key in s.index and not cell.undefined:
                    rec = s.loc[key]
                    cell.mean, cell.std, cell.n = float(rec["mean"]) * col.scale, float(rec["std"]) * col.scale, \
                        int(rec["n"])
                    if "seed_sd" in rec:  # stats.summarise with seed values
                        cell.seed_sd, cell.n_seeds = float(rec["seed_sd"]) * col.scale, int(rec["n_seeds"])
                wkey = (dataset, col.metric, col.structure, vs, row.method, row.backbone)
                if row.method != reference and wkey in w.index and not cell.undefined:
                    rec = w.loc[wkey]
                    cell.p_holm = float(rec["p_holm"])
                    by_seeds = rec.get("procedure") == BY_SEEDS  # stats.compare_to_reference
                    cell.direction, cell.level = significance(
                        cell.p_holm, float(rec["mean_diff"] if by_seeds else rec["median_diff"]),
                        math.nan if by_seeds else float(rec["rank_biserial"]), col)
                row.cells[(dataset, i)] = cell
    _mark_best(rows, datasets, columns)
    table = Table(name, datasets, columns, rows, "")
    table.caption = caption(table, backbones, reference, convention, wilcoxon, undefined)
    if caveats:
        table.caption += " Caveats of the runs: " + "; ".join(caveats) + "."
    table.notes = epe_notes(table)
    table.short_caption = short_caption(backbones, reference, convention)
    return table


def short_caption(backbones: list[str], reference: str, convention: str) -> str:
    """The LaTeX caption: what the table shows, in two sentences (data, scale, tests and
    caveats follow in the note below it)."""
    which = " and ".join(names.backbone_name(b) for b in backbones) or "classical methods"
    conv = " (metric convention of the GSMorph authors' code)" if convention != "ours" else ""
    return (f"Registration of ES to ED, {which}{conv}: mean ± standard deviation over test subjects. "
            f"Bold: best per column; ↑/↓: better/worse than {names.method_name(reference)} "
            "(paired Wilcoxon, Holm-corrected).")


def _mark_best(rows: list[Row], datasets: list[str], columns: tuple[Column, ...]) -> None:
    """Bold every row whose shown (rounded) mean equals the column's best."""
    for dataset in datasets:
        for i, col in enumerate(columns):
            shown = {id(r): round(r.cells[(dataset, i)].mean, col.decimals) for r in rows
                     if not r.cells[(dataset, i)].undefined and math.isfinite(r.cells[(dataset, i)].mean)}
            if not shown:
                continue
            best = min(shown.values()) if col.lower_is_better else max(shown.values())
            for r in rows:
                if shown.get(id(r)) == best:
                    r.cells[(dataset, i)].bold = True


def subjects_text(table: Table) -> str:
    """'n = 12 test subjects (ACDC-format phantom), 10 (M&Ms-1-format phantom)'."""
    parts = []
    for dataset in table.datasets:
        ns = {c.n for r in table.rows for (d, _), c in r.cells.items() if d == dataset and c.n}
        n = max(ns) if ns else 0
        parts.append(f"{n} ({names.dataset_name(dataset)})")
    return "n = " + ", ".join(parts) + " test subjects"


def caption(table: Table, backbones: list[str], reference: str, convention: str, wilcoxon: pd.DataFrame,
            undefined: pd.DataFrame | None) -> str:
    ref = names.method_name(reference)
    if not backbones:
        which = "Initial and the classical methods"
    elif len(backbones) == 1:
        which = f"the {names.backbone_name(backbones[0])} backbone"
    else:
        which = "the " + " and ".join(names.backbone_name(b) for b in backbones) + " backbones"
    data = "; ".join(names.data_note(d) for d in table.datasets)
    text = (f"Registration of ES to ED, {which}. Data: {data}. Mean ± standard deviation over "
            f"subjects ({subjects_text(table)}; a subject's value is the mean over its slices and seeds). ")
    if convention == "ours":
        text += ("Dice and HD95: mean over LV, Myo and RV of the structures both frames contain; MSE scaled by 100; "
                 "NJD: percentage of voxels with a negative Jacobian determinant (– for Initial, which does not "
                 "deform). ")
    else:
        text += ("In the metric convention of the GSMorph authors' code, for comparison with the paper: Dice and "
                 "HD95 summed over the structures present in both the moved and the fixed labels and divided by "
                 "3, HD95 in pixels (no voxel spacing), NJD from SimpleITK's Jacobian determinant filter. ")
    text += "Bold: best per column (highest Dice, lowest otherwise). " + markers_text(table, backbones, ref, wilcoxon)
    if len(backbones) > 1:
        text += (f" Initial and classical methods are compared with the {ref} of the "
                 f"{names.backbone_name(backbones[0])} backbone.")
    by_subjects = wilcoxon[wilcoxon["procedure"] != BY_SEEDS] if "procedure" in wilcoxon else wilcoxon
    reachable = by_subjects["min_p"].dropna() if "min_p" in by_subjects else pd.Series(dtype=float)
    if len(reachable) and (reachable >= 0.05).all() and len(by_subjects) == len(wilcoxon):
        text += (" With this few subjects the test cannot reach p < 0.05 at all (smallest possible p "
                 f"{reachable.min():.3g}): no marker can appear.")
    lost = _lost_text(undefined, convention)
    if lost:
        text += f" Structures lost by the warp (Dice 0, HD95 undefined, left out of HD95): {lost}."
    return text


def markers_text(table: Table, backbones: list[str], ref: str, comparisons: pd.DataFrame) -> str:
    """What the markers are and what they can claim: with >= 2 seeds a training run is the
    unit of replication (stats.compare_to_reference); with one seed they compare the
    trained networks over subjects and cannot include training noise."""
    shown = comparisons
    if "backbone" in comparisons and backbones:
        shown = comparisons[comparisons["backbone"].isin(list(backbones))]
    by_seeds = shown[shown["procedure"] == BY_SEEDS] if "procedure" in shown else shown.iloc[:0]
    one_seed = shown[~shown.index.isin(by_seeds.index)]
    arrows = (f"↑ / ↓ (↑↑ / ↓↓): better / worse than {ref} with the same backbone, Holm-corrected over the "
              "methods of each column, p < 0.05 (p < 0.01)")
    wilcoxon = "paired two-sided Wilcoxon signed-rank test over subjects"
    if by_seeds.empty:
        return (f"{arrows}, {wilcoxon}. Every run here was trained with one seed: the markers compare these "
                "trained networks and cannot include training noise (a retrained network shifts a method's "
                "mean over all subjects at once), so they do not say that a difference survives retraining; "
                "with two or more seeds the markers count it (docs/statistics.md).")
    k = sorted(set(by_seeds["n_seeds_reference"].astype(int)))
    seeds = f"{k[0]}" if len(k) == 1 else f"{k[0]}-{k[-1]}"
    text = (f"{arrows}, with a training run as the unit of replication: Welch's t-test on the runs' means over "
            f"the test subjects ({seeds} seeds of {ref}; Initial and classical methods, which are not trained, "
            f"as a fixed value against {ref}'s run means). In brackets: the standard deviation over seeds of the "
            "method's mean; ± is over subjects. A marker says the difference outlasts retraining on these test "
            "subjects.")
    if not one_seed.empty:
        which = sorted({names.method_name(m, b) for m, b in zip(one_seed["method"], one_seed["method_backbone"])})
        text += (f" Trained with one seed (on its side or {ref}'s), compared by the {wilcoxon}, which cannot "
                 f"include training noise: {', '.join(which)}.")
    return text


def _lost_text(undefined: pd.DataFrame | None, convention: str) -> str:
    if undefined is None or undefined.empty or "n_lost" not in undefined or convention != "ours":
        return ""
    lost = undefined[(undefined["metric"] == "hd95_mm") & (undefined["n_lost"] > 0)]
    if lost.empty:
        return ""
    per = lost.groupby(["dataset", "backbone", "method"])["n_lost"].sum()
    return "; ".join(f"{names.method_name(m, b)} {n} ({names.dataset_name(d)})" for (d, b, m), n in per.items())


def epe_notes(table: Table) -> list[str]:
    """The EPE column as lines under the LaTeX table (phantom data only)."""
    notes = []
    for i, col in enumerate(table.columns):
        if col.latex:
            continue
        for dataset in table.datasets:
            values = [f"{r.display} {r.cells[(dataset, i)].mean:.2f}" for r in table.rows
                      if math.isfinite(r.cells[(dataset, i)].mean)]
            if values:
                notes.append(f"{names.dataset_name(dataset)}, mean endpoint error inside the heart against the "
                             f"phantom's true displacement (mm): " + "; ".join(values) + ".")
    return notes


# ---------------------------------------------------------------- writers
# every character LaTeX reads as markup, and the symbols captions use, as LaTeX text
TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": "$<$",
               ">": "$>$", "±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "–": "--"}


def _tex_escape(text: str) -> str:
    """`text` as LaTeX text: each character of TEX_ESCAPES replaced, in one pass (an
    escape's own braces are never escaped again)."""
    return "".join(TEX_ESCAPES.get(c, c) for c in str(text))


def _tex_cell(cell: Cell) -> str:
    if cell.undefined:
        return "--"
    if cell.note:
        return _tex_escape(cell.note)
    if not math.isfinite(cell.mean):
        return "--"
    body = cell.text().replace("±", r"\pm")
    if cell.bold:
        body = r"\mathbf{" + body + "}"
    sup = "^{" + cell.marker(latex=True) + "}" if cell.level else ""
    return f"${body}{sup}$"


def latex_note(table: Table) -> str:
    """The caption's details (data, scale, tests, caveats) for the note under the LaTeX
    table: the long caption without its first sentence, which the short caption says."""
    first = table.caption.split(". ", 1)
    return first[1] if table.short_caption and len(first) == 2 else table.caption


def to_latex(table: Table, label: str) -> str:
    """A drop-in table float (needs booktabs): the short caption above, the body at its own
    size (\\footnotesize, no resize box), the details in a note below; `table*` when wide."""
    cols = [c for c in table.columns if c.latex]
    index = [i for i, c in enumerate(table.columns) if c.latex]
    k = len(cols)
    ncols = 1 + k * len(table.datasets)
    env = "table*" if k * len(table.datasets) > WIDE_COLUMNS else "table"
    lines = [
        r"% needs \usepackage{booktabs}",
        r"\begin{%s}[tbp]" % env,
        r"\centering",
        r"\caption{" + _tex_escape(table.short_caption or table.caption) + "}",
        r"\label{" + label + "}",
        r"\footnotesize",
        r"\setlength{\tabcolsep}{2pt}",
        r"\begin{tabular}{l" + (" " + "c" * k) * len(table.datasets) + "}",
        r"\toprule",
        " & ".join([""] + [r"\multicolumn{%d}{c}{%s}" % (k, _tex_escape(names.dataset_name(d)))
                           for d in table.datasets]) + r" \\",
        " ".join(r"\cmidrule(lr){%d-%d}" % (2 + j * k, 1 + (j + 1) * k) for j in range(len(table.datasets))),
        " & ".join(["Method"] + [c.tex for _ in table.datasets for c in cols]) + r" \\",
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
        cells = [_tex_cell(row.cells[(d, i)]) for d in table.datasets for i in index]
        lines.append(" & ".join([_tex_escape(row.display)] + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    notes = ([latex_note(table)] if table.short_caption else []) + table.notes
    lines += [r"\par\smallskip\begin{minipage}{\linewidth}\footnotesize\raggedright " + _tex_escape(note)
              + r"\end{minipage}" for note in notes]
    lines += [r"\end{%s}" % env, ""]
    return "\n".join(lines)


def to_markdown(table: Table) -> str:
    header = ["Method"] + [f"{names.dataset_name(d)} {c.md}" for d in table.datasets for c in table.columns]
    lines = [f"**{table.name}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    blocks = len({r.block for r in table.rows if r.block}) > 1
    for row in table.rows:
        qualify = blocks and row.block and not row.display.startswith(backbones.display(row.block))
        label = row.display + (f" ({names.backbone_name(row.block)})" if qualify else "")
        cells = []
        for d in table.datasets:
            for i in range(len(table.columns)):
                c = row.cells[(d, i)]
                text = c.text() + c.marker()
                cells.append(f"**{text}**" if c.bold else text)
        lines.append("| " + " | ".join([label] + cells) + " |")
    lines += ["", table.caption, ""]
    return "\n".join(lines)


def to_html(table: Table) -> str:
    """A standalone HTML page of the table and its caption (the HTML report shows it as is)."""
    import html

    def esc(text: str) -> str:
        return html.escape(str(text))

    head = ["<th>Method</th>"] + [f'<th colspan="{len(table.columns)}">{esc(names.dataset_name(d))}</th>'
                                  for d in table.datasets]
    sub = ["<th></th>"] + [f"<th>{esc(c.md)}</th>" for _ in table.datasets for c in table.columns]
    body = []
    blocks = len({r.block for r in table.rows if r.block}) > 1
    current = None
    for row in table.rows:
        if blocks and row.block != current and row.block:
            body.append(f'<tr class="block"><td colspan="{1 + len(table.columns) * len(table.datasets)}">'
                        f"{esc(names.backbone_name(row.block))} backbone</td></tr>")
        current = row.block
        cells = []
        for d in table.datasets:
            for i in range(len(table.columns)):
                c = row.cells[(d, i)]
                text = esc(c.text()) + (f"<sup>{esc(c.marker())}</sup>" if c.level else "")
                cells.append(f"<td>{'<b>' + text + '</b>' if c.bold else text}</td>")
        body.append(f"<tr><th>{esc(row.display)}</th>{''.join(cells)}</tr>")
    style = ("body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse} "
             "th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:center} th:first-child{text-align:left} "
             "tr.block td{text-align:left;font-style:italic;background:#f4f4f4} caption{caption-side:bottom;"
             "text-align:left;max-width:70em;padding-top:8px;color:#333}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(table.name)}</title>"
            f"<style>{style}</style></head><body><table><caption>{esc(table.caption)}</caption>"
            f"<thead><tr>{''.join(head)}</tr><tr>{''.join(sub)}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></body></html>\n")


def to_frame(table: Table) -> pd.DataFrame:
    """One row per method x dataset x column (shown units)."""
    rows = []
    for row in table.rows:
        for d in table.datasets:
            for i, col in enumerate(table.columns):
                c = row.cells[(d, i)]
                rows.append({"table": table.name, "dataset": d, "data": names.dataset_name(d),
                             "backbone": row.backbone, "method": row.method, "display": row.display,
                             "metric": col.metric, "structure": col.structure, "column": col.md,
                             "mean": math.nan if c.undefined else c.mean, "std": math.nan if c.undefined else c.std,
                             "n": c.n, "p_holm": c.p_holm, "direction": c.direction, "marker": c.marker(),
                             "best": c.bold, "source": row.reference or "this run"})
    return pd.DataFrame(rows)


def preview_document(table_files: list[str], bodies: list[str] | None = None) -> str:
    """A standalone LaTeX document of every table (compile with pdflatex): the tables'
    text itself when `bodies` are given (the file compiles alone), else \\input of the files."""
    if bodies is None:
        body = "\n".join(r"\input{" + f + "}" for f in table_files)
    else:
        body = "\n".join(f"% {name}\n{text}" + r"\clearpage" for name, text in zip(table_files, bodies))
    return "\n".join([r"\documentclass{article}", r"\usepackage[utf8]{inputenc}", r"\usepackage[T1]{fontenc}",
                      r"\usepackage[margin=2cm]{geometry}", r"\usepackage{booktabs}", r"\begin{document}", body,
                      r"\end{document}", ""])


def backbones_of(summary: pd.DataFrame) -> list[str]:
    return sorted({b for b in summary["backbone"].unique() if b != names.CLASSICAL}, key=names.backbone_rank)


# ---------------------------------------------------------------- Table 2
TABLE2_TITLE = "GSMorph and general gradient-aggregation methods"
TABLE2_NOTE = ("The general methods are torchjd 0.18's aggregators on [g_sim; g_reg] with their defaults, per "
               "parameter tensor or, with -network, on the whole network. UPGrad, DualProj and CAGrad zero a "
               "group's Gramian where its trace |g_sim|^2 + |g_reg|^2 is below torchjd's norm_eps = 1e-4, so per "
               "tensor, where gradients are that small, UPGrad and DualProj give the mean of the two gradients "
               "and CAGrad no update (docs/aggregators.md).")


def general_present(summary: pd.DataFrame) -> list[str]:
    """The general gradient-aggregation methods in `summary` (Table 2's; [] for none)."""
    return [m for m in methods.general_ids() if (summary["method"] == m).any()]


def table2_methods() -> list[str]:
    """Table 2's rows: every gradient-surgery method (GSMorph, its ablations, the general ones)."""
    return methods.surgery_ids()


def titled(table: Table, title: str, note: str = "") -> Table:
    """`table` with its caption starting with `title` (and `note` after it)."""
    table.caption = f"{title}. {table.caption}" + (f" {note}" if note else "")
    return table
