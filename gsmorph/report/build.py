"""Everything `gsmorph report` writes, from the metrics tables and the run folders.

Under `out` (the workflow passes `results`), each folder replaced whole when complete
(gsmorph.io.FolderSet: never one holding files gsmorph did not write; the four replaced together):
  stats/    subject_values.csv, summary.csv (mean, std, CI, seed sd), wilcoxon.csv
            (subject-level: n, statistic, p, p_holm, reason), comparisons.csv (what the
            markers use: over seeds when there are two or more, docs/statistics.md),
            friedman.csv, undefined.csv, tuning_cost.csv, frontier_points.csv and
            frontier_gap.csv (the weighted loss's frontier on test, GSMorph's gap: gsmorph.frontier),
            convergence.csv (every trained run's convergence diagnostics, gsmorph/report/convergence.py),
            mean_ranks.csv (per dataset and over datasets, gsmorph/report/ranks.py); each also as <name>.html (the table as a page, for the HTML report)
  tables/   table1_<backbone>.{tex,md,csv,html}, table1_combined.*, in the authors' code's
            convention table1_combined_code_convention.* (with the paper's own
            Table 1 as "(paper)" rows, gsmorph/report/paper.py), and tables.tex (a standalone
            document holding every table: it compiles alone)
  figures/  dice_boxplot_*, qualitative_* (with pairs folders), pareto_*, tuning_cost,
            conflicts_*, training_curves_*, frontier_* as PNG and PDF
  report/   captions.json ({relative path: caption}): what each table and figure shows
Each of stats/, tables/, figures/ gets a provenance.json. Optional figures whose inputs
are missing are skipped with the reason returned and recorded in the provenance.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from gsmorph import methods
from gsmorph.errors import GSMorphError
from gsmorph.io import FolderSet, write_csv, write_json
from gsmorph.provenance import write_provenance
from gsmorph.report.artifacts import STATS


STATS_TITLES = {name: stat.title for name, stat in STATS.items()}  # gsmorph/report/artifacts.py


@dataclass
class ReportResult:
    n_tables: int = 0
    n_figures: int = 0
    undefined: pd.DataFrame = field(default_factory=pd.DataFrame)
    skipped: list[str] = field(default_factory=list)


def make_report(metrics_csvs: list[str], runs: str | os.PathLike | None, out: str | os.PathLike,
                pairs: list[str] = (), seed: int = 0, n_boot: int = 2000,
                reference: str = methods.REFERENCE, config: dict | None = None, workers: int = 1) -> ReportResult:
    """Statistics, tables, figures and captions under `out` (see the module docstring).
    runs: the runs folder, or None to make only what the metrics give; workers: processes
    drawing the figures (the same files whatever the number)."""
    from gsmorph import frontier, stats
    from gsmorph.evaluate import read_metrics, undefined_counts
    from gsmorph.report import convergence, figures, html_pages, names, paper, qualitative, ranks, runs as run_files, tables

    table = read_metrics(metrics_csvs)
    problems: list[str] = []
    summaries = run_files.read_jsons(runs, "summary.json", problems)
    # the run files the figures read, read (and refused) before anything is written
    trials = run_files.read_csvs(runs, "trials.csv", problems, methods=figures.tuned_methods())
    sweeps = run_files.read_csvs(runs, "lambda_sweep.csv", problems)
    conflicts = run_files.read_csvs(runs, "conflicts.csv", problems, methods=figures.surgery_methods())
    logs = run_files.read_csvs(runs, "train_log.csv", problems, fallback="best/train_log.csv",
                               numeric=("epoch", "loss_sim", "loss_reg", "val_dice"))
    names.describe(read_data_descriptions(metrics_csvs), backbone_variants(summaries))
    out = Path(out)
    inputs = [runs, *pairs, *metrics_csvs]
    result = ReportResult()
    captions: dict[str, str] = {}

    # every folder built apart, then all four replace the old ones together (one unit)
    unit = FolderSet(out, ("stats", "tables", "figures", "report"), inputs=inputs, made_by="report")

    # statistics
    result.undefined = undefined_counts(table)
    subjects = stats.subject_values(table)
    seed_values = stats.seed_subject_values(table)
    summary = stats.summarise(subjects, seed=seed, n_resamples=n_boot, seed_values=seed_values)
    wilcoxon = stats.wilcoxon_vs_reference(subjects, reference=reference)
    if not (subjects.method == reference).any():
        result.skipped.append(f"Wilcoxon tests and significance markers: no '{reference}' in the metrics")
    # Table 2 (general gradient-aggregation methods, when present): its own rows and Holm family
    general = tables.general_present(summary)
    summary1, frames = summary, {}
    if general:  # wilcoxon.csv then holds Table 1's family, wilcoxon_aggregators.csv Table 2's
        own = subjects.method.isin(tables.table2_methods())
        wilcoxon2 = stats.wilcoxon_vs_reference(subjects[own], reference=reference)
        summary2 = summary[summary.method.isin(tables.table2_methods())]
        summary1 = summary[~summary.method.isin(general)]
        wilcoxon = stats.wilcoxon_vs_reference(subjects[~subjects.method.isin(general)], reference=reference)
        comparisons2 = stats.compare_to_reference(seed_values, wilcoxon2, reference=reference)
    comparisons = stats.compare_to_reference(seed_values, wilcoxon, reference=reference)
    studies = run_files.read_jsons(runs, "study.json", problems, methods=figures.tuned_methods())
    frontier_points = frontier.test_points(seed_values, frontier.lambdas(summaries, studies))
    frontier_gap = frontier.gaps(frontier_points, reference=reference)
    outputs = {"subject_values": subjects, "summary": summary, "wilcoxon": wilcoxon, "comparisons": comparisons,
               "friedman": stats.friedman(subjects), "undefined": result.undefined,
               "tuning_cost": figures.tuning_cost(summaries, studies), "mean_ranks": ranks.mean_ranks(subjects),
               "convergence": convergence.table(summaries),
               "frontier_points": frontier_points, "frontier_gap": frontier_gap}
    if general:
        outputs["wilcoxon_aggregators"] = wilcoxon2
        outputs["comparisons_aggregators"] = comparisons2
    with unit.part("stats") as tmp:
        for name, frame in outputs.items():
            if "dataset" in frame.columns and "data" not in frame.columns:  # say what the data are
                frame = frame.copy()
                frame.insert(frame.columns.get_loc("dataset") + 1, "data", frame["dataset"].map(names.dataset_name))
            write_csv(tmp / f"{name}.csv", frame)
            (tmp / f"{name}.html").write_text(html_pages.frame_page(frame, STATS_TITLES.get(name, name)))
        write_provenance(tmp / "provenance.json", config=config, seed=seed, method_notes=stats.__doc__)

    # tables
    backbones = tables.backbones_of(summary1)
    specs = [(f"table1_{b}", [b], "ours") for b in backbones] + [("table1_combined", backbones, "ours")]
    if (summary1["metric"] == "code_dice").any():
        specs.append(("table1_combined_code_convention", backbones, "gsmorph-code"))
    if general:
        which2 = [[b] for b in backbones] + ([backbones] if len(backbones) > 1 else [])
        names2 = [f"table2_aggregators_{b[0] if len(b) == 1 else 'combined'}" for b in which2]
        specs += [(name, which, "ours") for name, which in zip(names2, which2)]
        frames = {name: (summary2, comparisons2) for name in names2}
    with unit.part("tables") as tmp:
        latex = []
        for name, which, convention in specs:
            s_, c_ = frames.get(name, (summary1, comparisons))
            t = tables.build(s_, c_, which, name, reference=reference, convention=convention,
                             undefined=result.undefined, caveats=run_caveats(summaries, which))
            if name in frames:
                t = tables.titled(t, tables.TABLE2_TITLE, tables.TABLE2_NOTE)
            elif convention == "ours":
                t.caption += frontier.gap_text(frontier_gap, which)
            if convention == "gsmorph-code":  # the published numbers beside ours, same convention
                t = paper.add_paper_rows(t)
            latex.append(tables.to_latex(t, label=f"tab:{name.replace('_', '-')}"))
            (tmp / f"{name}.tex").write_text(latex[-1])
            (tmp / f"{name}.md").write_text(tables.to_markdown(t))
            (tmp / f"{name}.html").write_text(tables.to_html(t))
            write_csv(tmp / f"{name}.csv", tables.to_frame(t))
            for ext in ("tex", "md", "csv", "html"):
                captions[f"tables/{name}.{ext}"] = t.caption
        (tmp / "tables.tex").write_text(tables.preview_document([f"{name}.tex" for name, _, _ in specs], latex))
        (tmp / "convergence.md").write_text(convergence.to_markdown(outputs["convergence"]))
        captions["tables/convergence.md"] = convergence.CAPTION
        write_provenance(tmp / "provenance.json", config=config, seed=seed)
    result.n_tables = len(specs)

    # figures
    made: dict[str, str] = {}
    # (function, its data): each writes its figures into the folder and says what it skipped
    drawings = [(figures.dice_boxplots, (subjects,)), (qualitative.qualitative, (list(pairs),)),
                (figures.pareto, (summaries, trials, sweeps, studies)),
                (figures.tuning_cost_chart, (outputs["tuning_cost"],)),
                (figures.conflict_figures, (conflicts,)), (figures.training_curves, (logs,)),
                (figures.frontier_figure, (frontier_points, frontier_gap))]
    with unit.part("figures") as tmp:
        for made_part, skipped_part in draw(drawings, tmp, workers):
            made.update(made_part)
            result.skipped += skipped_part
        result.skipped += problems
        write_provenance(tmp / "provenance.json", config=config, seed=seed, skipped=result.skipped)
    for stem, text in made.items():
        for ext in ("png", "pdf"):
            captions[f"figures/{stem}.{ext}"] = text
    result.n_figures = len(made)

    with unit.part("report") as tmp:
        write_json(tmp / "captions.json", captions)
    unit.commit()
    return result


def _draw_one(function, data: tuple, folder: Path) -> tuple[dict[str, str], list[str]]:
    skipped: list[str] = []
    return function(*data, folder, skipped), skipped


def draw(drawings: list[tuple], folder: Path, workers: int = 1) -> list[tuple[dict[str, str], list[str]]]:
    """Run every (figure function, data) into `folder`: [(captions made, reasons skipped)] in
    the order given. With workers > 1, in that many forked processes (they inherit the
    names set by names.describe); one at a time where the platform cannot fork."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from gsmorph.workers import watch_parent

    if workers <= 1 or len(drawings) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [_draw_one(function, data, folder) for function, data in drawings]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=min(workers, len(drawings)), mp_context=context,
                             initializer=watch_parent, initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(_draw_one, function, data, folder) for function, data in drawings]
        return [future.result() for future in futures]


def run_caveats(summaries: pd.DataFrame, backbones: list[str]) -> list[str]:
    """What a reader of a table on `backbones` must know of its runs (summary.json
    `caveat`, gsmorph.training.Trainer.caveat), in table order: one line counting the runs
    without a plateau (their diagnostics: tables/convergence.md), then
    '<method> (<data>, seed <k>): <caveat>' for every other caveat a run holds."""
    from gsmorph import convergence
    from gsmorph.report import names

    if summaries.empty or "caveat" not in summaries.columns:
        return []
    runs = summaries[summaries["backbone"].isin(list(backbones))]
    runs = runs.assign(rank=runs["method"].map(names.method_rank)).sort_values(["rank", "dataset", "seed"])
    out, unsettled = [], 0
    for r in runs.to_dict("records"):
        text = str(r.get("caveat") or "") if not pd.isna(r.get("caveat")) else ""
        if "conv_reasons" in r and not pd.isna(r.get("conv_reasons")):
            converged = r.get("converged")
            own = convergence.caveat({"converged": None if pd.isna(converged) else bool(converged),
                                      "conv_reasons": r["conv_reasons"]})
            if own and text.startswith(own):
                unsettled += 1
                text = text[len(own):].lstrip("; ")
        if text:
            out.append(f"{names.method_name(r['method'], r['backbone'])} ({names.dataset_name(r['dataset'])}, "
                       f"seed {r['seed']}): {text}")
    if unsettled:
        out.insert(0, f"{unsettled} of {len(runs)} trained runs had not reached a plateau by their last epoch "
                      "(tables/convergence.md gives each run's diagnostics)")
    return out


def backbone_variants(summaries: pd.DataFrame) -> dict[str, str]:
    """{backbone: the variant name its runs recorded (summary.json `backbone_display`)}."""
    if summaries.empty or "backbone_display" not in summaries.columns:
        return {}
    named = summaries.dropna(subset=["backbone_display"])
    return {b: str(group["backbone_display"].iloc[0]) for b, group in named.groupby("backbone")}


def read_data_descriptions(metrics_csvs: list[str]) -> dict[str, dict]:
    """{dataset: description} from the metrics CSVs' provenance sidecars (written by
    `gsmorph evaluate`); a CSV without one describes nothing. Two CSVs whose metrics of one
    dataset come from two preparations (their prepared_identity) are refused."""
    import json

    from gsmorph.pairs import IDENTITY
    from gsmorph.provenance import sidecar

    data: dict[str, dict] = {}
    source: dict[str, str] = {}
    for path in metrics_csvs:
        try:
            described = json.loads(sidecar(path).read_text()).get("data") or {}
        except (OSError, ValueError):
            continue
        for dataset, entry in described.items():  # one preparation per dataset in one table
            identity = (entry or {}).get(IDENTITY)
            known = (data.get(dataset) or {}).get(IDENTITY)
            if identity and known and identity != known:
                raise GSMorphError(f"{path}: its {dataset} metrics come from another preparation ({identity}) than "
                                   f"those of {source[dataset]} ({known}); report metrics of one preparation")
            data[dataset] = entry
            source[dataset] = str(path)
    return data
