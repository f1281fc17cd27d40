"""Mean ranks of the methods: within each subject, the methods of one Friedman block (a
backbone's methods with Initial and the classical ones, on the subjects every one of them
has) ranked 1 = best (ties share the mean rank, as in the Friedman test), averaged over the
subjects; then, per backbone, method and metric, the mean over the datasets.

Rows of `mean_ranks`: dataset ("all" for the mean over datasets), data, backbone, method,
metric, structure, k_methods, n_subjects (summed over datasets for "all"), n_datasets,
mean_rank.
"""
from __future__ import annotations

import pandas as pd
from scipy.stats import rankdata

from gsmorph.report import names
from gsmorph.report.tables import NO_DEFORMATION

# (metric, structure, higher is better): Table 1's columns
METRICS = (("dice", "mean", True), ("hd95_mm", "mean", False), ("mse", "", False), ("njd_pct", "", False))
COLUMNS = ["dataset", "data", "backbone", "method", "metric", "structure", "k_methods", "n_subjects",
           "n_datasets", "mean_rank"]


def block_ranks(block: pd.DataFrame, higher_is_better: bool) -> pd.Series:
    """Mean rank per column of a (subjects x methods) block without missing values."""
    values = block.to_numpy(dtype=float)
    ranks = rankdata(-values if higher_is_better else values, axis=1)
    return pd.Series(ranks.mean(axis=0), index=block.columns)


def mean_ranks(subjects: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and over datasets (see the module docstring); subjects: stats.subject_values."""
    rows = []
    for metric, structure, higher in METRICS:
        part = subjects[(subjects["metric"] == metric) & (subjects["structure"] == structure)]
        if metric == "njd_pct":  # NJD means nothing for a method that does not deform
            part = part[~part["method"].isin(NO_DEFORMATION)]
        for dataset, by_dataset in part.groupby("dataset", sort=True):
            wide = by_dataset.pivot_table(index="subject", columns=["backbone", "method"], values="value")
            backbones = sorted({b for b, _ in wide.columns if b != names.CLASSICAL}) or [names.CLASSICAL]
            for backbone in backbones:
                block = wide[[c for c in wide.columns if c[0] in (backbone, names.CLASSICAL)]].dropna()
                if block.shape[1] < 2 or block.empty:
                    continue
                for (b, method), rank in block_ranks(block, higher).items():
                    rows.append({"dataset": dataset, "data": names.dataset_name(dataset), "backbone": backbone,
                                 "method": method, "metric": metric, "structure": structure,
                                 "k_methods": block.shape[1], "n_subjects": len(block), "n_datasets": 1,
                                 "mean_rank": float(rank)})
    per = pd.DataFrame(rows, columns=COLUMNS)
    if per.empty:
        return per
    keys = ["backbone", "method", "metric", "structure"]
    over = per.groupby(keys, sort=False).agg(k_methods=("k_methods", "max"), n_subjects=("n_subjects", "sum"),
                                             n_datasets=("dataset", "nunique"), mean_rank=("mean_rank", "mean"))
    over = over.reset_index().assign(dataset="all", data="mean over datasets")
    out = pd.concat([per, over[COLUMNS]], ignore_index=True)
    metric_order = {m: i for i, (m, _, _) in enumerate(METRICS)}
    key = [(metric_order[r.metric], r.dataset == "all", names.dataset_rank(r.dataset), names.backbone_rank(r.backbone),
            names.method_rank(r.method)) for r in out.itertuples()]
    out = out.iloc[sorted(range(len(out)), key=key.__getitem__)].reset_index(drop=True)
    return out[COLUMNS]
