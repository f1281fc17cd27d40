"""The phantom's Initial row (no registration: moved = moving = ES) against the paper's.

Usage: python benchmarks/phantom_initial.py [--subjects 40] [--sizes 64 128] [--seed 0]
                                            [--split all] [--workers 2] [--work DIR] [--out FILE]

For each raw format (ACDC, M&Ms-1) it writes N phantom subjects (gsmorph.data.synth),
prepares them at each --size (gsmorph.data.prepare), and scores every prepared subject's
2D slice pairs ES (moving) -> ED (fixed) as the workflow does for Initial:
- per slice pair and structure (LV, Myo, RV), evaluated only when both the ES and the ED
  slice contain it (else NaN): Dice (gsmorph.metrics.dice) and HD95 in mm
  (gsmorph.metrics.hd95 with the in-plane spacing);
- a pair's value = mean of its defined structures; MSE = gsmorph.metrics.mse of the
  prepared [0, 1] ES and ED slices;
- a subject's value = mean over its slices; the table = mean +- sample std over subjects.
All prepared subjects are used by default (not only a test split), to reduce noise (the
default run's own Initial row, on its test split, is in its Table 1). Per group (ACDC
pathology, M&M vendor) it also gives the Initial Dice and the ejection fraction of the
prepared labels (1 - ES LV voxels / ED LV voxels). No registration method is run.
Writes a Markdown report (default benchmarks/results/phantom_initial.md).
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from gsmorph import datasets

ROOT = Path(__file__).resolve().parent.parent
PAPER_INITIAL = {  # the paper's Table 1, Initial row (Dice %, HD95 mm, MSE x 1e-2): mean, std
    "acdc": {"dice": (61.81, 8.68), "hd95": (4.40, 1.33), "mse": (1.58, 0.52)},
    "mnm": {"dice": (61.03, 10.16), "hd95": (4.79, 1.82), "mse": (1.90, 1.08)},
}
NAMES = {d.id: d.paper for d in datasets.DATASETS}  # as the paper names them


def pair_scores(moving_label: np.ndarray, fixed_label: np.ndarray, moving: np.ndarray, fixed: np.ndarray,
                spacing: np.ndarray) -> dict[str, float]:
    """Dice and HD95 (mm) per structure (NaN unless both slices hold it), their pair means, and MSE."""
    from gsmorph import metrics
    from gsmorph.data.labels import STRUCTURES

    out: dict[str, float] = {"mse": metrics.mse(moving, fixed)}
    for name, k in STRUCTURES.items():
        a, b = moving_label == k, fixed_label == k
        both = a.any() and b.any()
        out[f"dice_{name}"] = metrics.dice(a, b) if both else np.nan
        out[f"hd95_{name}"] = metrics.hd95(a, b, spacing) if both else np.nan
    dices = [out[f"dice_{n}"] for n in STRUCTURES if not np.isnan(out[f"dice_{n}"])]
    hds = [out[f"hd95_{n}"] for n in STRUCTURES if not np.isnan(out[f"hd95_{n}"])]
    out["dice"] = float(np.mean(dices)) if dices else np.nan
    out["hd95"] = float(np.mean(hds)) if hds else np.nan
    return out


def subject_scores(prepared: Path, subject: str) -> dict[str, float]:
    """Initial scores of one prepared subject: the mean over its slice pairs of each pair
    value (NaN pairs left out), and the EF of its prepared LV labels."""
    from gsmorph.data.loader import load_subject, subject_pairs_2d
    from gsmorph.data.phantom import measured_motion

    subj = load_subject(prepared, subject)
    pairs = [pair_scores(p.moving_label, p.fixed_label, p.moving, p.fixed, p.spacing)
             for p in subject_pairs_2d(subj, "ES", "ED")]
    table = pd.DataFrame(pairs)
    row = {k: float(table[k].mean(skipna=True)) for k in table.columns}
    row["ef_lv"] = measured_motion(subj.ED_gt, subj.ES_gt)["ef_lv"]
    return row


def score_dataset(prepared: Path, split: str = "all") -> pd.DataFrame:
    """One row of Initial scores per prepared subject of `split` (all, train, val, test),
    with its group (and pathology)."""
    from gsmorph.data.loader import read_subjects

    subjects = read_subjects(prepared)
    if split != "all":
        subjects = subjects[subjects["split"] == split]
    rows = []
    for _, s in subjects.iterrows():
        row = {"subject": s["subject"], "group": str(s["group"])}
        if "pathology" in subjects.columns:
            row["pathology"] = str(s["pathology"])
        row.update(subject_scores(prepared, s["subject"]))
        rows.append(row)
    return pd.DataFrame(rows)


def fmt(values: pd.Series, scale: float = 1.0, digits: int = 2) -> str:
    """mean +- sample std of a column (scaled)."""
    v = values.dropna() * scale
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def initial_table(results: dict[tuple[str, int], pd.DataFrame]) -> list[str]:
    """Markdown rows: the phantom's Initial row per dataset and size beside the paper's."""
    lines = ["| dataset | data | subjects | Dice % | HD95 mm | MSE x 1e-2 | Dice LV / Myo / RV % | Dice gap to paper |",
             "|---|---|---|---|---|---|---|---|"]
    for fmt_name in datasets.ids():
        ref = PAPER_INITIAL[fmt_name]
        lines.append(f"| {NAMES[fmt_name]} | paper (real data) | | {ref['dice'][0]:.2f} ± {ref['dice'][1]:.2f} | "
                     f"{ref['hd95'][0]:.2f} ± {ref['hd95'][1]:.2f} | {ref['mse'][0]:.2f} ± {ref['mse'][1]:.2f} | | |")
        for (name, size), table in sorted(results.items()):
            if name != fmt_name:
                continue
            per = " / ".join(f"{100 * table[f'dice_{s}'].mean():.1f}" for s in ("LV", "Myo", "RV"))
            gap = 100 * table["dice"].mean() - ref["dice"][0]
            lines.append(f"| {NAMES[name]} | phantom, --size {size} | {len(table)} | {fmt(table['dice'], 100)} | "
                         f"{fmt(table['hd95'])} | {fmt(table['mse'], 100)} | {per} | {gap:+.2f} |")
    return lines


def group_table(table: pd.DataFrame, by: str) -> list[str]:
    """Markdown rows: Initial Dice and LV EF (prepared labels) per group."""
    lines = [f"| {by} | subjects | Initial Dice % | Dice LV / Myo / RV % | LV EF % (labels) |", "|---|---|---|---|---|"]
    for key, part in table.groupby(by):
        per = " / ".join(f"{100 * part[f'dice_{s}'].mean():.1f}" for s in ("LV", "Myo", "RV"))
        ef = part["ef_lv"] * 100
        lines.append(f"| {key} | {len(part)} | {fmt(part['dice'], 100, 1)} | {per} | "
                     f"{ef.mean():.1f} (range {ef.min():.1f}-{ef.max():.1f}) |")
    return lines


def report(results: dict[tuple[str, int], pd.DataFrame], args: argparse.Namespace, seconds: float) -> str:
    """The Markdown report."""
    lines = ["# The phantom's Initial row against the paper's", "",
             f"`python benchmarks/phantom_initial.py --subjects {args.subjects} --sizes "
             f"{' '.join(map(str, args.sizes))} --seed {args.seed} --split {args.split}`: {args.subjects} phantom "
             f"subjects per raw format, prepared at each size, the ES -> ED slice pairs of the subjects "
             f"({'all of them' if args.split == 'all' else 'the ' + args.split + ' split'}) scored with no "
             "registration (moved = ES). Subject value = mean over its slice pairs of the pair's mean over "
             "the structures both slices hold; table value = mean ± sample std over subjects. Paper: "
             "Table 1, Initial row (real ACDC and M&Ms-1 data). No registration method's result was used "
             "to set any phantom parameter.", ""]
    lines += initial_table(results)
    shown = set()
    for (name, size), table in sorted(results.items()):
        if name in shown:  # labels, Dice and EF do not depend on the crop size (no labelled voxel is cropped)
            continue
        shown.add(name)
        lines += ["", f"## {NAMES[name]}: per group (the same at every --size)", ""]
        lines += group_table(table, "group")
        if name == "mnm" and "pathology" in table.columns:
            lines += [""] + group_table(table, "pathology")
    lines += ["", f"Wall time {seconds:.0f} s on {os.cpu_count()} cores "
                  f"(load average at the end {os.getloadavg()[0]:.1f})."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="all", choices=["all", "train", "val", "test"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--formats", nargs="+", default=datasets.ids(), choices=datasets.ids())
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "phantom_initial.md")
    args = parser.parse_args()

    from gsmorph.data import synth
    from gsmorph.data.prepare import prepare

    start = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="phantom_initial_"))
    results = {}
    try:
        for name in args.formats:
            raw = work / f"raw_{name}"
            shutil.rmtree(raw, ignore_errors=True)  # a reused --work folder: no subjects of an older run
            writer = synth.WRITERS[name]
            writer(raw, args.subjects, args.seed, args.workers)
            for size in args.sizes:
                prepared = work / f"prepared_{name}_{size}"
                prepare(name, raw, prepared, size=size)
                results[(name, size)] = score_dataset(prepared, args.split)
                table = results[(name, size)]
                print(f"{NAMES[name]} --size {size}: Dice {fmt(table['dice'], 100)} HD95 {fmt(table['hd95'])} "
                      f"MSE {fmt(table['mse'], 100)} (x1e-2)", flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    text = report(results, args, time.perf_counter() - start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
