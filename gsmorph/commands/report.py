"""`gsmorph report`: statistics, Table 1 and figures from metrics CSVs and run folders.

Writes under --out (the workflow passes `results`):
  stats/    subject_values.csv, summary.csv (mean, std, bootstrap CI), wilcoxon.csv
            (n, statistic, p, p_holm, reason), friedman.csv, undefined.csv, tuning_cost.csv
  tables/   table1_<backbone>.{tex,md,csv}, table1_combined.{tex,md,csv}, tables.tex
            (a standalone document inputting every table)
  figures/  dice_boxplot_*, qualitative_* (with --pairs), pareto_*, tuning_cost,
            conflicts_* as PNG and PDF
  report/   captions.json ({relative path: caption}) and captions/<stem>.rst
Each of stats/, tables/, figures/ gets a provenance.json. Optional figures whose inputs
are missing are skipped with the reason printed and recorded in the provenance.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from gsmorph.errors import GSMorphError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", nargs="+", required=True, metavar="CSV",
                        help="metrics CSVs written by `gsmorph evaluate` (one per dataset)")
    parser.add_argument("--runs", required=True, help="runs folder (runs/<dataset>/<backbone>/<method>/seed<k>/)")
    parser.add_argument("--out", required=True, help="output folder (e.g. results)")
    parser.add_argument("--pairs", nargs="*", default=[], metavar="DIR",
                        help="pairs folders for the qualitative figure (optional)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--reference", default="gsmorph", help="method the others are tested against")


def read_metrics(paths: list[str]):
    import pandas as pd

    from gsmorph.evaluate import COLUMNS

    frames = []
    for path in paths:
        if not Path(path).is_file():
            raise GSMorphError(f"{path}: metrics file not found")
        try:
            frame = pd.read_csv(path, dtype={"subject": str, "structure": str, "backbone": str, "method": str,
                                             "dataset": str}, keep_default_na=False,
                                na_values={"value": ["", "nan", "NaN"]})
        except (OSError, ValueError) as err:
            raise GSMorphError(f"{path}: cannot read metrics CSV ({err})") from None
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise GSMorphError(f"{path}: missing columns {missing}")
        try:
            frame["value"] = frame["value"].astype(float)
            frame["seed"] = frame["seed"].astype(int)
            frame["slice"] = frame["slice"].astype(int)
        except ValueError as err:
            raise GSMorphError(f"{path}: non-numeric value, seed or slice ({err})") from None
        frames.append(frame[COLUMNS])
    table = pd.concat(frames, ignore_index=True)
    if table.empty:
        raise GSMorphError(f"{', '.join(paths)}: no metric rows")
    keys = [c for c in COLUMNS if c != "value"]
    dup = table.duplicated(keys)
    if dup.any():
        first = table[dup].iloc[0]
        raise GSMorphError(f"metrics given twice across {', '.join(paths)}: e.g. {first[keys].to_dict()}")
    return table


def run(args: argparse.Namespace) -> int:
    from gsmorph import stats
    from gsmorph.evaluate import undefined_counts
    from gsmorph.io import atomic_path, write_csv, write_json
    from gsmorph.provenance import write_provenance
    from gsmorph.report import figures, qualitative, runs, tables

    table = read_metrics(args.metrics)
    out = Path(args.out)
    config = {k: (v if not isinstance(v, Path) else str(v)) for k, v in vars(args).items()}
    skipped: list[str] = []
    captions: dict[str, str] = {}

    # statistics
    stats_dir = out / "stats"
    subjects = stats.subject_values(table)
    summary = stats.summarise(subjects, seed=args.seed, n_resamples=args.n_boot)
    wilcoxon = stats.wilcoxon_vs_reference(subjects, reference=args.reference)
    friedman = stats.friedman(subjects)
    if not (subjects.method == args.reference).any():
        skipped.append(f"Wilcoxon tests and significance markers: no '{args.reference}' in the metrics")
    outputs = {"subject_values": subjects, "summary": summary, "wilcoxon": wilcoxon, "friedman": friedman,
               "undefined": undefined_counts(table)}
    problems: list[str] = []
    summaries = runs.read_jsons(args.runs, "summary.json", problems)
    studies = runs.read_jsons(args.runs, "study.json", problems, methods=("weighted-tuned",))
    cost = figures.tuning_cost(summaries, studies)
    outputs["tuning_cost"] = cost
    for name, frame in outputs.items():
        write_csv(stats_dir / f"{name}.csv", frame)
    write_provenance(stats_dir / "provenance.json", config=config, seed=args.seed,
                     method_notes=stats.__doc__)

    # tables
    table_dir = out / "tables"
    backbones = tables.backbones_of(summary)
    specs = [(f"table1_{b}", [b]) for b in backbones] + [("table1_combined", backbones)]
    tex_files = []
    for name, which in specs:
        t = tables.build(summary, wilcoxon, which, name, reference=args.reference)
        with atomic_path(table_dir / f"{name}.tex") as tmp:
            tmp.write_text(tables.to_latex(t, label=f"tab:{name.replace('_', '-')}"))
        with atomic_path(table_dir / f"{name}.md") as tmp:
            tmp.write_text(tables.to_markdown(t))
        write_csv(table_dir / f"{name}.csv", tables.to_frame(t))
        tex_files.append(f"{name}.tex")
        for ext in ("tex", "md", "csv"):
            captions[f"tables/{name}.{ext}"] = t.caption
    with atomic_path(table_dir / "tables.tex") as tmp:
        tmp.write_text(tables.preview_document(tex_files))
    write_provenance(table_dir / "provenance.json", config=config, seed=args.seed)

    # figures
    fig_dir = out / "figures"
    made = {}
    made.update(figures.dice_boxplots(subjects, fig_dir, skipped))
    made.update(qualitative.qualitative(args.pairs, fig_dir, skipped))
    trials = runs.read_csvs(args.runs, "trials.csv", problems, methods=("weighted-tuned",))
    sweeps = runs.read_csvs(args.runs, "lambda_sweep.csv", problems, methods=("hypermorph",))
    made.update(figures.pareto(summaries, trials, sweeps, fig_dir, skipped))
    made.update(figures.tuning_cost_chart(cost, fig_dir, skipped))
    conflicts = runs.read_csvs(args.runs, "conflicts.csv", problems, methods=figures.GS_METHODS)
    made.update(figures.conflict_figures(conflicts, fig_dir, skipped))
    for stem, text in made.items():
        for ext in ("png", "pdf"):
            captions[f"figures/{stem}.{ext}"] = text
    skipped += problems
    write_provenance(fig_dir / "provenance.json", config=config, seed=args.seed, skipped=skipped)

    # captions for Snakemake's report()
    write_json(out / "report" / "captions.json", captions)
    for rel, text in captions.items():
        stem = Path(rel).stem
        with atomic_path(out / "report" / "captions" / f"{stem}.rst") as tmp:
            tmp.write_text(text + "\n")

    print(f"wrote {len(tex_files)} tables, {len(made)} figures, statistics under {out}")
    undefined = outputs["undefined"]
    if not undefined.empty:
        print(f"undefined (NaN) pair values, left out of the means ({stats_dir / 'undefined.csv'}):")
        print(undefined.to_string(index=False))
    for reason in skipped:
        print(f"skipped: {reason}")
    return 0
