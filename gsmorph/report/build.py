"""Everything `gsmorph report` writes, from the metrics tables and the run folders.

Under `out` (the workflow passes `results`), each folder replaced whole when complete
(gsmorph.io.FolderSet: never one holding files gsmorph did not write; the four replaced together):
  stats/    subject_values.csv, summary.csv (mean, std, bootstrap CI), wilcoxon.csv
            (n, statistic, p, p_holm, reason), friedman.csv, undefined.csv, tuning_cost.csv
  tables/   table1_<backbone>.{tex,md,csv,html}, table1_combined.*, in the authors' code's
            convention table1_combined_code_convention.*, and tables.tex (a standalone
            document inputting every table)
  figures/  dice_boxplot_*, qualitative_* (with pairs folders), pareto_*, tuning_cost,
            conflicts_*, training_curves_* as PNG and PDF
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
from gsmorph.io import FolderSet, write_csv, write_json
from gsmorph.provenance import write_provenance


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
    from gsmorph import stats
    from gsmorph.evaluate import read_metrics, undefined_counts
    from gsmorph.report import figures, names, qualitative, runs as run_files, tables

    table = read_metrics(metrics_csvs)
    problems: list[str] = []
    summaries = run_files.read_jsons(runs, "summary.json", problems)
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
    summary = stats.summarise(subjects, seed=seed, n_resamples=n_boot)
    wilcoxon = stats.wilcoxon_vs_reference(subjects, reference=reference)
    if not (subjects.method == reference).any():
        result.skipped.append(f"Wilcoxon tests and significance markers: no '{reference}' in the metrics")
    studies = run_files.read_jsons(runs, "study.json", problems, methods=figures.tuned_methods())
    outputs = {"subject_values": subjects, "summary": summary, "wilcoxon": wilcoxon,
               "friedman": stats.friedman(subjects), "undefined": result.undefined,
               "tuning_cost": figures.tuning_cost(summaries, studies)}
    with unit.part("stats") as tmp:
        for name, frame in outputs.items():
            if "dataset" in frame.columns and "data" not in frame.columns:  # say what the data are
                frame = frame.copy()
                frame.insert(frame.columns.get_loc("dataset") + 1, "data", frame["dataset"].map(names.dataset_name))
            write_csv(tmp / f"{name}.csv", frame)
        write_provenance(tmp / "provenance.json", config=config, seed=seed, method_notes=stats.__doc__)

    # tables
    backbones = tables.backbones_of(summary)
    specs = [(f"table1_{b}", [b], "ours") for b in backbones] + [("table1_combined", backbones, "ours")]
    if (summary["metric"] == "code_dice").any():
        specs.append(("table1_combined_code_convention", backbones, "gsmorph-code"))
    with unit.part("tables") as tmp:
        for name, which, convention in specs:
            t = tables.build(summary, wilcoxon, which, name, reference=reference, convention=convention,
                             undefined=result.undefined, caveats=run_caveats(summaries, which))
            (tmp / f"{name}.tex").write_text(tables.to_latex(t, label=f"tab:{name.replace('_', '-')}"))
            (tmp / f"{name}.md").write_text(tables.to_markdown(t))
            (tmp / f"{name}.html").write_text(tables.to_html(t))
            write_csv(tmp / f"{name}.csv", tables.to_frame(t))
            for ext in ("tex", "md", "csv", "html"):
                captions[f"tables/{name}.{ext}"] = t.caption
        (tmp / "tables.tex").write_text(tables.preview_document([f"{name}.tex" for name, _, _ in specs]))
        write_provenance(tmp / "provenance.json", config=config, seed=seed)
    result.n_tables = len(specs)

    # figures
    made: dict[str, str] = {}
    trials = run_files.read_csvs(runs, "trials.csv", problems, methods=figures.tuned_methods())
    sweeps = run_files.read_csvs(runs, "lambda_sweep.csv", problems)
    conflicts = run_files.read_csvs(runs, "conflicts.csv", problems, methods=figures.surgery_methods())
    logs = run_files.read_csvs(runs, "train_log.csv", problems, fallback="best/train_log.csv")
    # (function, its data): each writes its figures into the folder and says what it skipped
    drawings = [(figures.dice_boxplots, (subjects,)), (qualitative.qualitative, (list(pairs),)),
                (figures.pareto, (summaries, trials, sweeps, studies)),
                (figures.tuning_cost_chart, (outputs["tuning_cost"],)),
                (figures.conflict_figures, (conflicts,)), (figures.training_curves, (logs,))]
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
    """'<method> (<data>, seed <k>): <caveat>' for every run on `backbones` whose summary.json
    holds a `caveat` (gsmorph.training.Trainer.caveat), in table order."""
    from gsmorph.report import names

    if summaries.empty or "caveat" not in summaries.columns:
        return []
    said = summaries[summaries["caveat"].fillna("").astype(str).str.len().gt(0)
                     & summaries["backbone"].isin(list(backbones))]
    said = said.assign(rank=said["method"].map(names.method_rank)).sort_values(["rank", "dataset", "seed"])
    return [f"{names.method_name(r.method, r.backbone)} ({names.dataset_name(r.dataset)}, seed {r.seed}): {r.caveat}"
            for r in said.itertuples()]


def backbone_variants(summaries: pd.DataFrame) -> dict[str, str]:
    """{backbone: the variant name its runs recorded (summary.json `backbone_display`)}."""
    if summaries.empty or "backbone_display" not in summaries.columns:
        return {}
    named = summaries.dropna(subset=["backbone_display"])
    return {b: str(group["backbone_display"].iloc[0]) for b, group in named.groupby("backbone")}


def read_data_descriptions(metrics_csvs: list[str]) -> dict[str, dict]:
    """{dataset: description} from the metrics CSVs' provenance sidecars (written by
    `gsmorph evaluate`); a CSV without one describes nothing."""
    import json

    from gsmorph.provenance import sidecar

    data: dict[str, dict] = {}
    for path in metrics_csvs:
        try:
            data.update(json.loads(sidecar(path).read_text()).get("data") or {})
        except (OSError, ValueError):
            continue
    return data
