"""Simulated metrics with training noise: how often do the table markers fire?

Each training run (method x seed) shifts every test subject by one common draw (sd
`seed_sd`); subjects differ by `subject_sd` (the same subjects for every method) and
each subject of each run has its own residual (`residual_sd`). Every learned method but
`effect_method` equals GSMorph in expectation; Initial (not trained, one seed) equals it
too. One table column per simulated "dataset" (metric mse, lower is better).

    python scripts/seed_noise_simulation.py docs/statistics_simulation.csv

writes, per number of seeds, the share of null cells marked (Holm-adjusted p < 0.05)
by the seed-level procedure and by the subject-level Wilcoxon, and the share of columns
where the effect is found (tests/unit/test_stats_seeds.py runs a smaller version).
"""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd

LEARNED = ("weighted-s", "weighted-m", "weighted-l", "weighted-tuned", "hypermorph", "gs-agr", "gs-pcgrad")
REFERENCE = "gsmorph"


def simulated_metrics(rng: np.random.Generator, n_columns: int, n_seeds: int, n_subjects: int = 12,
                      seed_sd: float = 0.02, subject_sd: float = 0.05, residual_sd: float = 0.005,
                      effect: float = 0.0, effect_method: str = "weighted-m") -> pd.DataFrame:
    """A long metrics table (gsmorph.evaluate.COLUMNS, one slice per subject): datasets
    c000..., backbone voxelmorph for GSMorph and LEARNED, Initial on backbone none
    (seed 0 only). `effect` is added to every run of `effect_method`."""
    rows = []
    subjects = [f"p{i:02d}" for i in range(n_subjects)]
    for c in range(n_columns):
        dataset = f"c{c:03d}"
        base = 0.5 + rng.normal(0.0, subject_sd, n_subjects)
        runs = [(m, "voxelmorph", k) for m in (REFERENCE,) + LEARNED for k in range(n_seeds)]
        runs.append(("initial", "none", 0))
        for method, backbone, seed in runs:
            shift = rng.normal(0.0, seed_sd) if backbone != "none" else 0.0
            values = base + shift + (effect if method == effect_method else 0.0) \
                + rng.normal(0.0, residual_sd, n_subjects)
            rows += [{"dataset": dataset, "backbone": backbone, "method": method, "seed": seed,
                      "subject": s, "slice": 0, "metric": "mse", "structure": "", "value": v}
                     for s, v in zip(subjects, values)]
    return pd.DataFrame(rows)


def marker_rates(table: pd.DataFrame, effect_method: str | None = None) -> dict:
    """Share of null cells marked by each procedure, and of columns where `effect_method`
    is marked better (lower mse), over every column of `table`."""
    from gsmorph import stats

    subjects = stats.subject_values(table)
    wilcoxon = stats.wilcoxon_vs_reference(subjects)
    seeds = stats.compare_to_reference(stats.seed_subject_values(table), wilcoxon)
    null = seeds["method"] != effect_method
    found = ~null & (seeds["p_holm"] < 0.05) & (seeds["mean_diff"] < 0)
    return {"n_null_cells": int(null.sum()), "seed_level_marked": float((seeds.loc[null, "p_holm"] < 0.05).mean()),
            "seed_level_raw_p_below_005": float((seeds.loc[null, "p"] < 0.05).mean()),
            "wilcoxon_marked": float((wilcoxon.loc[wilcoxon["method"] != effect_method, "p_holm"] < 0.05).mean()),
            "procedures": ";".join(sorted(set(seeds["procedure"]))),
            "effect_found": float(found.sum() / max(1, (~null).sum())) if effect_method else float("nan")}


def main(out: str) -> None:
    from gsmorph.io import write_csv

    rows = []
    for n_seeds in (2, 3, 5):
        rng = np.random.default_rng(n_seeds)
        rows.append({"n_seeds": n_seeds, "case": "null", "effect_in_seed_sds": 0.0,
                     **marker_rates(simulated_metrics(rng, 100, n_seeds))})
        for effect in (3.0, 5.0):
            table = simulated_metrics(rng, 100, n_seeds, effect=-effect * 0.02)
            rows.append({"n_seeds": n_seeds, "case": "one method differs", "effect_in_seed_sds": effect,
                         **marker_rates(table, "weighted-m")})
    write_csv(out, pd.DataFrame(rows))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/statistics_simulation.csv")
