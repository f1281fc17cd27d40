"""The report's artifacts, declared once: every file `gsmorph report` writes that the
workflow names, with its place in Snakemake's HTML report and its captions.

- FIGURES: each kind of figure: its file stem (a str.format pattern over `dataset`,
  `backbone`, `method`), its HTML-report category and label, `caption` (a str.format
  template: the verb fills it with the names of one figure's data and writes it to
  report/captions.json) and `report_caption` (the HTML report's, one for the kind, since
  the workflow knows the names only once the verb ran; None: `caption`, which then names
  no data).
- STATS: each statistics table (stats/<name>.csv and .html): its page title and HTML caption.
- TABLE_CAPTION, PROVENANCE_CAPTION: the HTML captions of Table 1 and of the provenance page.
- expected_files: what the verb writes for a workflow configuration (the rules' outputs).

The HTML report reads its captions from files: workflow/report/<name>.rst are written from
this table (`python -m gsmorph.report.artifacts workflow/report`; a test checks they agree).
Their Jinja `{{ snakemake.params.scale }}` is the report rule's parameter (the run's data
and scale).
"""
from __future__ import annotations

import os
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

# the HTML report's categories, numbered: it lists them alphabetically
CATEGORIES = {"tables": "1. Table 1", "results": "2. Results", "cost": "3. Trade-offs and cost",
              "diagnostics": "4. Diagnostics", "stats": "5. Statistics and tests", "provenance": "6. Provenance"}
SCALE = "{{ snakemake.params.scale }}"  # the report rule's parameter: the run's data and scale


@dataclass(frozen=True)
class FigureKind:
    stem: str  # str.format pattern over dataset, backbone, method
    category: str  # key of CATEGORIES
    title: str  # the figure's label in the HTML report
    caption: str  # str.format template over the names of one figure's data (captions.json)
    report_caption: str | None = None  # the HTML report's, for every figure of the kind; None: caption

    def name(self, **fields) -> str:
        return self.stem.format(**fields)

    def describe(self, **fields) -> str:
        return self.caption.format(**fields)

    def html_caption(self) -> str:
        return self.report_caption or self.caption


FIGURES: dict[str, FigureKind] = {
    "dice_boxplot": FigureKind(
        "dice_boxplot_{dataset}_{backbone}", "results", "Dice box plot",
        "Dice (%) per structure on the {dataset} test subjects ({backbone} backbone for learned methods); one "
        "value per subject (mean over its slices and seeds); boxes: quartiles, whiskers: 1.5 IQR.",
        "Dice (%) per structure (LV, Myo, RV) on the test subjects, one box per method; learned methods on the "
        "backbone named in the labels, Initial and the classical methods beside them. One value per subject "
        "(mean over its slices and seeds); boxes: quartiles, whiskers: 1.5 IQR."),
    "qualitative": FigureKind(
        "qualitative_{dataset}_{backbone}", "results", "qualitative registrations",
        "Two {dataset} test cases ({cases}). Per case, top row: the fixed image (ED) and each method's moved "
        "image; bottom row: the moving image (ES) and each method's deformation x + u(x) as a warped grid over "
        "its moved image. Contours: {contours} (fixed, moving or warped labels).",
        "Two test cases per dataset. Per case, top row: the fixed (ED) image, then each method's moved image; "
        "bottom row: the moving (ES) image, then each method's deformation drawn as a warped grid over its "
        "moved image. Contours (legend under the panels): LV red, Myo green, RV light blue (fixed, moving or "
        "warped labels); a phantom's subjects are named \"phantom <id>\"."),
    "pareto": FigureKind(
        "pareto_{dataset}_{backbone}", "cost", "accuracy-smoothness trade-off",
        "Accuracy-smoothness trade-off on the {dataset} validation split ({backbone}): mean Dice vs NJD (%) of "
        "every Optuna trial of the weighted loss (the chosen one outlined), the fixed lambdas, HyperMorph's "
        "lambda sweep (the chosen lambda outlined), and GSMorph (no lambda, mean over seeds){general}.",
        "The accuracy-smoothness trade-off on the validation split: mean Dice against NJD (%) of every Optuna "
        "trial of the weighted loss, the fixed lambdas, HyperMorph's lambda sweep and GSMorph (no lambda, mean "
        "over seeds)."),
    "frontier": FigureKind(
        "frontier_{dataset}_{backbone}", "cost", "weighted-loss frontier on test",
        "The weighted loss's accuracy-smoothness frontier on the {dataset} test subjects ({backbone}): test "
        "Dice vs NJD (%) of every weighted-loss run (fixed lambdas, lambda sweep, the tuned lambda; mean over "
        "seeds), the frontier through the undominated ones (linear between them), and GSMorph; dotted: its "
        "gap.{gap}",
        "The weighted loss's accuracy-smoothness frontier on the test subjects: test Dice vs NJD (%) of every "
        "weighted-loss run (fixed lambdas, lambda sweep, the tuned lambda; mean over seeds), the frontier "
        "through the undominated ones (linear between them), and GSMorph; dotted: its gap to the frontier at "
        "its NJD (stats/frontier_gap.csv)."),
    # one text: the verb's, which says what wall_s measures (the whole training, data loading
    # and validation included) and that the panels share one axis
    "tuning_cost": FigureKind(
        "tuning_cost", "cost", "compute per method",
        "Compute spent to obtain each method's reported model (wall-clock time of the whole training, data "
        "loading and validation included, mean over seeds; one shared axis): GSMorph needs one training; the "
        "fixed lambdas need one training each; the tuned weighted loss needs the whole Optuna study; "
        "HyperMorph needs one training (its lambda is then chosen by a validation sweep). Devices are listed "
        "in stats/tuning_cost.csv."),
    "conflicts": FigureKind(
        "conflicts_{dataset}_{backbone}_{method}", "diagnostics", "gradient conflicts",
        "Gradient conflicts during {method} training on {dataset} ({backbone}): {rows}, in the order the network "
        "registers its parameters, and per epoch, the share of optimisation steps where the similarity and "
        "smoothness gradients conflict (negative inner product) and their mean cosine; mean over seeds.",
        "Gradient conflicts during the training of a gradient-surgery method: per parameter group (rows, "
        "network order) and epoch, the share of optimisation steps where the similarity and smoothness "
        "gradients conflict (negative inner product) and their mean cosine; mean over seeds."),
    "training_curves": FigureKind(
        "training_curves_{dataset}_{backbone}", "diagnostics", "training curves",
        "Training of every learned method on {dataset} ({backbone}): mean similarity and smoothness loss per "
        "epoch (log scale; HyperMorph's similarity is scaled by 1/sigma^2 and its losses mix every lambda) and "
        "the validation Dice at each validation; mean over seeds.",
        "Training of every learned method: the similarity and smoothness losses per epoch (log scale; "
        "HyperMorph's similarity is scaled by 1/sigma^2 and mixes every lambda) and the validation Dice at each "
        "validation, mean over seeds."),
}


@dataclass(frozen=True)
class Statistic:
    title: str  # the title of its page (stats/<name>.html)
    caption: str | None = None  # the HTML report's; None: not in the HTML report (written only for some data)


STATS: dict[str, Statistic] = {
    "summary": Statistic(
        "Mean, standard deviation and bootstrap 95% CI over test subjects",
        "Per dataset, backbone, method, metric and structure: mean, standard deviation and bootstrap 95% "
        "confidence interval over test subjects (each subject's value is first averaged over its slices and "
        "over seeds)."),
    "wilcoxon": Statistic(
        "Paired Wilcoxon signed-rank tests against GSMorph (Holm-corrected)",
        "Paired Wilcoxon signed-rank tests of every method against GSMorph on the same test subjects, per "
        "dataset, backbone, metric and structure, with Holm-corrected p-values (``p_holm``) and the reason "
        "when a test could not be run."),
    "comparisons": Statistic(
        "The comparisons behind the table markers (over seeds when there are two or more)",
        "The comparisons behind the Table 1 markers: with two or more seeds a training run is the unit of "
        "replication (Welch's t-test on the runs' means over the test subjects; Initial and classical methods "
        "as a fixed value), otherwise the subject-level Wilcoxon test (``procedure``); Holm-corrected p-values "
        "(``p_holm``) per table column. See docs/statistics.md."),
    "friedman": Statistic(
        "Friedman tests across methods",
        "Friedman tests across all methods on the same test subjects, per dataset, backbone and metric."),
    "subject_values": Statistic(
        "Per-subject values (each metric averaged over a subject's slices and seeds)",
        "The per-subject values every statistic is computed from: each metric averaged over a subject's slices "
        "(and over seeds for learned methods)."),
    "undefined": Statistic(
        "Undefined metric values (left out of the means)",
        "Counts of undefined metric values (e.g. HD95 when a structure is empty in either mask), left out of "
        "the means."),
    "tuning_cost": Statistic(
        "Compute spent to obtain each method's reported model",
        "Wall-clock seconds spent to obtain each method's reported model: one training for GSMorph and "
        "HyperMorph, the three trainings of the fixed lambdas, the whole Optuna study for the tuned weighted "
        "loss, with the devices they ran on."),
    "convergence": Statistic(
        "Convergence diagnostics of every trained run (gsmorph/convergence.py)",
        "Convergence diagnostics of every trained run (gsmorph/convergence.py, thresholds in the method "
        "config's `convergence` section): the relative change of each training loss over the last fifth of the "
        "epochs, the slope of the validation Dice over the last checks with its standard error and one-sided "
        "p, whether the best check is the last, which selection rule chose best.pt and whether patience "
        "stopped the run. A run without a plateau carries a caveat in the captions of Table 1; "
        "tables/convergence.md shows the same as a table."),
    "mean_ranks": Statistic(
        "Mean rank of each method (1 = best) within the subjects of each Friedman block, per dataset and over "
        "datasets",
        "Mean rank of every method (1 = best: highest Dice, lowest HD95, MSE and NJD; ties share their mean "
        "rank) within each subject of a Friedman block (a backbone's methods with Initial and the classical "
        "ones, on the subjects all of them have; Initial left out of NJD), averaged over the subjects, per "
        "dataset and (``dataset`` all) over the datasets."),
    "frontier_points": Statistic(
        "The weighted loss's test points (Dice, NJD) per lambda and seed",
        "Test Dice (%) and NJD (%) of every weighted-loss run and GSMorph, per seed, with the lambda and whether "
        "the run is on the weighted loss's accuracy-smoothness frontier of its seed."),
    "frontier_gap": Statistic(
        "GSMorph's gap to the weighted loss's accuracy-smoothness frontier",
        "GSMorph's gap to the weighted loss's frontier on test: its Dice minus the frontier's at its NJD, per "
        "seed and (seed ``all``) the mean with a 95% CI over seeds. See docs/statistics.md."),
    # Table 2's (only with general gradient-aggregation methods in the metrics)
    "comparisons_aggregators": Statistic("The comparisons behind Table 2's markers"),
    "wilcoxon_aggregators": Statistic(
        "Paired Wilcoxon signed-rank tests of Table 2 against GSMorph (Holm-corrected)"),
}

TABLE_CAPTION = (
    "Table 1: registration of ES to ED on the test subjects, mean ± standard deviation over subjects (a "
    "subject's value is the mean over its slices and seeds) of Dice (%), HD95 (mm), MSE (x 1e-2) and NJD (%), "
    "with paired Wilcoxon tests against GSMorph (Holm-corrected). The table in the authors' code's convention "
    "has the paper's own Table 1 under each method as a \"(paper)\" row (VoxelMorph backbone, real data, 500 "
    "epochs). The same tables as LaTeX and Markdown are in results/tables/.")
PROVENANCE_CAPTION = (
    "What made these results: the whole workflow configuration, the seeds (learned methods repeat over "
    "``seeds``; Initial, Demons and SyN use the first), package versions, the git commit of the code "
    "(``+dirty`` when it had uncommitted changes) and, per ``gsmorph`` verb, the hash of its source that "
    "decides which jobs Snakemake reruns.")
TABLE_FORMATS = ("html", "csv", "md", "tex")
FIGURE_FORMATS = ("png", "pdf")
TABLE_DOCS = ("tables.tex", "convergence.md")  # beside the tables: the standalone document, convergence


# ---------------------------------------------------------------- what a configuration makes

@dataclass(frozen=True)
class Figure:
    kind: str  # key of FIGURES
    dataset: str  # "all" for a figure over every dataset
    backbone: str  # "all" likewise
    method: str = ""  # the surgery method of a conflict map, else ""


def expected_figures(datasets: list[str], backbones: list[str], method_ids: list[str]) -> dict[str, Figure]:
    """{stem: Figure} of the figures `gsmorph report` makes from the runs of a workflow
    configuration: every dataset x backbone of learned methods gets its box plot,
    qualitative registrations and training curves; a pareto plot and the compute chart
    with a method that has a lambda (or is GSMorph); a frontier with a weighted-loss
    method; a conflict map per gradient-surgery method."""
    from gsmorph import methods

    learned = [m for m in method_ids if methods.get(m).learned]
    groups = [(d, b) for d in datasets for b in (backbones if learned else [])]
    pareto = {*methods.fixed_lambdas(), *methods.ids("tuned"), *methods.own_lambda_ids(), methods.REFERENCE}

    def each(kind: str) -> dict[str, Figure]:
        return {FIGURES[kind].name(dataset=d, backbone=b): Figure(kind, d, b) for d, b in groups}

    stems = each("dice_boxplot") | each("qualitative")
    if pareto & set(learned):
        stems |= each("pareto")
        stems[FIGURES["tuning_cost"].name()] = Figure("tuning_cost", "all", "all")
    stems |= {FIGURES["conflicts"].name(dataset=d, backbone=b, method=m): Figure("conflicts", d, b, m)
              for d, b in groups for m in methods.surgery_ids() if m in method_ids and methods.get(m).supports(b)}
    stems |= each("training_curves")
    stems |= {FIGURES["frontier"].name(dataset=d, backbone=b): Figure("frontier", d, b) for d, b in groups
              if any(methods.is_weighted_loss(m) and methods.get(m).supports(b) for m in learned)}
    return stems


def table_stems(backbones: list[str]) -> list[str]:
    """Table 1 per backbone, combined, and combined in the authors' code's convention."""
    return [f"table1_{b}" for b in backbones] + ["table1_combined", "table1_combined_code_convention"]


def expected_files(datasets: list[str], backbones: list[str], method_ids: list[str]) -> dict[str, list[str]]:
    """{kind: [paths relative to the verb's --out]} that `gsmorph report` writes for a
    workflow configuration: tables, tables_doc, figures (PNG), figures_pdf, stats (CSV),
    stats_pages (HTML)."""
    from gsmorph import methods

    learned = [m for m in method_ids if methods.get(m).learned]
    figures = expected_figures(datasets, backbones, method_ids)
    stats = [name for name, s in STATS.items() if s.caption is not None]
    return {
        "tables": [f"tables/{t}.{ext}" for t in table_stems(backbones if learned else []) for ext in TABLE_FORMATS],
        "tables_doc": [f"tables/{name}" for name in TABLE_DOCS],
        "figures": [f"figures/{stem}.png" for stem in figures],
        "figures_pdf": [f"figures/{stem}.pdf" for stem in figures],
        "stats": [f"stats/{name}.csv" for name in stats],
        "stats_pages": [f"stats/{name}.html" for name in stats],
    }


# ---------------------------------------------------------------- the HTML report's caption files

def caption_files() -> dict[str, str]:
    """{file name: reStructuredText} of every caption file of the HTML report (workflow/report/)."""
    def rst(text: str, scale: bool) -> str:
        wrapped = textwrap.fill(text, width=90, break_on_hyphens=False, break_long_words=False)
        return wrapped + (f"\n{SCALE}" if scale else "") + "\n"

    files = {figure_caption_file(kind): rst(f.html_caption(), True) for kind, f in FIGURES.items()}
    files |= {stats_caption_file(name): rst(s.caption, False) for name, s in STATS.items() if s.caption}
    files["table1.rst"] = rst(TABLE_CAPTION, True)
    files["provenance.rst"] = rst(PROVENANCE_CAPTION, False)
    return files


def figure_caption_file(kind: str) -> str:
    return f"figure_{kind}.rst"


def stats_caption_file(name: str) -> str:
    return f"stats_{name}.rst"


def write_caption_files(folder: str | os.PathLike) -> list[Path]:
    """Write caption_files() into `folder` (atomically, each); return their paths."""
    from gsmorph.io import atomic_path

    paths = []
    for name, text in caption_files().items():
        path = Path(folder) / name
        with atomic_path(path) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":  # python -m gsmorph.report.artifacts workflow/report
    for written in write_caption_files(sys.argv[1] if len(sys.argv) > 1 else "workflow/report"):
        print(written)
