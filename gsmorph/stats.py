"""Statistics over test subjects from the long metrics table (numpy/scipy/pandas only).

Aggregation: for a per-structure metric a pair also gets structure "mean", the mean of
its defined LV/Myo/RV values (the paper's single Dice/HD95 column). A subject's value is
the mean over its pairs (slices) and seeds of the defined values; NaN only if none is
defined. Tables report mean +- sample std (ddof=1) over subjects.

Tests, each run per dataset:
- Wilcoxon signed-rank, paired over subjects, two-sided, of every method against GSMorph
  on the same backbone (Initial and classical methods, backbone "none", against the
  GSMorph of every backbone). zero_method="wilcox": subjects with a zero difference are
  dropped (scipy's default); the p-value is NaN, with a reason, when fewer than
  MIN_PAIRS subjects are paired or every difference is zero. Effect sizes: the median
  paired difference (method - GSMorph) and the matched-pairs rank-biserial correlation
  r = (R+ - R-) / (R+ + R-) (ranks of |d| over the non-zero differences; +1 when every
  difference is positive). `min_p` is the smallest two-sided p the exact test can give
  with that many non-zero differences (2 / 2^n): below 6 subjects it cannot reach 0.05.
  Holm's correction runs within what one table column shows: one dataset, metric,
  structure and backbone (every method against that backbone's GSMorph); the family is
  a column of wilcoxon.csv.
- Friedman across all methods of a backbone (with Initial and classical methods), on the
  subjects every method has; NaN with a reason for fewer than 3 methods or 2 subjects.
- Bootstrap percentile 95% confidence intervals of the mean over subjects (seeded).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from gsmorph.methods import REFERENCE  # the method every other one is tested against

MIN_PAIRS = 2
SUBJECT_KEYS = ["dataset", "backbone", "method", "subject", "metric", "structure"]
SUMMARY_KEYS = ["dataset", "backbone", "method", "metric", "structure"]


def holm(p) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values; NaN entries stay NaN and do not count in m."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adjusted)
    return out


def subject_values(table: pd.DataFrame) -> pd.DataFrame:
    """Per subject means over slices and seeds (SUBJECT_KEYS + value, n_pairs defined)."""
    table = table.copy()
    table["structure"] = table["structure"].fillna("").astype(str)
    table["backbone"] = table["backbone"].fillna("none").replace("", "none").astype(str)
    table["subject"] = table["subject"].astype(str)
    per_structure = table[table["structure"] != ""]
    if not per_structure.empty:
        pair_keys = ["dataset", "backbone", "method", "seed", "subject", "slice", "metric"]
        mean = per_structure.groupby(pair_keys, sort=False)["value"].mean().reset_index()
        mean["structure"] = "mean"
        table = pd.concat([table, mean[table.columns]], ignore_index=True)
    grouped = table.groupby(SUBJECT_KEYS, sort=True)["value"]
    out = grouped.mean().reset_index()
    out["n_pairs"] = grouped.count().to_numpy()
    return out


def bootstrap_ci(values, seed: int = 0, n_resamples: int = 2000, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of the finite values; NaNs if fewer than 2
    values or all equal (then the interval is the value itself)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    res = sps.bootstrap((values,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                        method="percentile", rng=np.random.default_rng(seed), vectorized=True)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def summarise(subjects: pd.DataFrame, seed: int = 0, n_resamples: int = 2000) -> pd.DataFrame:
    """Mean, sample std, n and bootstrap 95% CI over subjects per SUMMARY_KEYS."""
    rows = []
    for key, group in subjects.groupby(SUMMARY_KEYS, sort=True):
        v = group["value"].to_numpy(dtype=np.float64)
        v = v[np.isfinite(v)]
        low, high = bootstrap_ci(v, seed=seed, n_resamples=n_resamples)
        rows.append({**dict(zip(SUMMARY_KEYS, key)), "n": len(v),
                     "n_undefined": int(len(group) - len(v)),
                     "mean": float(np.mean(v)) if len(v) else np.nan,
                     "std": float(np.std(v, ddof=1)) if len(v) > 1 else np.nan,
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=SUMMARY_KEYS + ["n", "n_undefined", "mean", "std", "ci_low", "ci_high"])


def rank_biserial(d) -> float:
    """Matched-pairs rank-biserial correlation of paired differences d: (R+ - R-) / (R+ + R-)
    with R+/R- the sums of the ranks of |d| (average ranks for ties) over the positive /
    negative differences, zeros dropped; NaN when every difference is zero."""
    d = np.asarray(d, dtype=np.float64)
    d = d[d != 0]
    if len(d) == 0:
        return float("nan")
    ranks = sps.rankdata(np.abs(d))
    plus, minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((plus - minus) / (plus + minus))


def min_two_sided_p(n_nonzero: int) -> float:
    """The smallest two-sided p-value of the exact signed-rank test with n non-zero
    differences (all of one sign): 2 / 2^n, capped at 1."""
    return float(min(1.0, 2.0 / 2.0 ** n_nonzero)) if n_nonzero > 0 else float("nan")


def paired_wilcoxon(x, y) -> dict:
    """Two-sided Wilcoxon signed-rank of x - y over pairs where both are finite, with its
    effect sizes (median difference, rank-biserial r) and the smallest p it could give."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    d = x[ok] - y[ok]
    n_nonzero = int(np.count_nonzero(d))
    out = {"n": int(ok.sum()), "n_nonzero": n_nonzero,
           "median_diff": float(np.median(d)) if len(d) else np.nan,
           "rank_biserial": rank_biserial(d), "min_p": min_two_sided_p(n_nonzero),
           "statistic": np.nan, "p": np.nan, "reason": ""}
    if out["n"] < MIN_PAIRS:
        out["reason"] = f"fewer than {MIN_PAIRS} paired subjects"
    elif out["n_nonzero"] == 0:
        out["reason"] = "all differences are zero"
    else:
        res = sps.wilcoxon(x[ok], y[ok], zero_method="wilcox", alternative="two-sided",
                           method="asymptotic" if _needs_permutation(d) else "auto")
        out["statistic"] = float(res.statistic)
        out["p"] = sign_flip_p(d) if _needs_permutation(d) else float(res.pvalue)
    return out


PERMUTATION_MAX_N = 13  # scipy's bound: all 2**13 sign patterns fit its default 9999 resamples


def _needs_permutation(d: np.ndarray) -> bool:
    """scipy's `wilcoxon(method="auto")` rule: ties or zeros among <= 13 differences call for
    the exact sign-flip permutation distribution (its "exact" table assumes distinct ranks)."""
    nonzero = np.abs(d[d != 0])
    return len(d) <= PERMUTATION_MAX_N and (len(nonzero) < len(d) or len(np.unique(nonzero)) < len(nonzero))


def sign_flip_p(d) -> float:
    """Two-sided p of the signed-rank sum r_plus over all 2**n sign flips of `d` (zeros left
    out of the ranking, as zero_method="wilcox"): the number scipy's `wilcoxon` returns
    through its permutation branch, with a vectorised statistic (~20x faster than scipy's
    per-permutation call; the report runs hundreds)."""
    d = np.asarray(d, dtype=np.float64)
    ranks = np.zeros(len(d))
    nonzero = d != 0
    ranks[nonzero] = sps.rankdata(np.abs(d[nonzero]))

    def r_plus(signed, axis=-1):
        return np.sum((signed > 0) * ranks, axis=axis)

    return float(sps.permutation_test((d,), r_plus, permutation_type="samples", vectorized=True,
                                      n_resamples=np.inf, alternative="two-sided").pvalue)


def _wide(subjects: pd.DataFrame, dataset: str, metric: str, structure: str) -> pd.DataFrame:
    part = subjects[(subjects["dataset"] == dataset) & (subjects["metric"] == metric)
                    & (subjects["structure"] == structure)]
    return part.pivot(index="subject", columns=["backbone", "method"], values="value")


def wilcoxon_vs_reference(subjects: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """Every method vs `reference` per dataset x metric x structure x reference backbone,
    Holm within each such family (what one table column shows).

    Columns: dataset, metric, structure, backbone (of the reference), method,
    method_backbone, n, n_nonzero, median_diff (method - reference), rank_biserial, min_p,
    statistic, p, reason, family, p_holm.
    """
    rows = []
    for (dataset, metric, structure), _ in subjects.groupby(["dataset", "metric", "structure"], sort=True):
        wide = _wide(subjects, dataset, metric, structure)
        for backbone, method in wide.columns:
            if method != reference:
                continue
            ref = wide[(backbone, method)]
            for other_backbone, other in wide.columns:
                if other == reference or other_backbone not in (backbone, "none"):
                    continue
                res = paired_wilcoxon(wide[(other_backbone, other)].to_numpy(), ref.to_numpy())
                rows.append({"dataset": dataset, "metric": metric, "structure": structure, "backbone": backbone,
                             "method": other, "method_backbone": other_backbone, **res})
    cols = ["dataset", "metric", "structure", "backbone", "method", "method_backbone", "n", "n_nonzero",
            "median_diff", "rank_biserial", "min_p", "statistic", "p", "reason", "family", "p_holm"]
    out = pd.DataFrame(rows, columns=cols[:-2])
    out["family"] = out["dataset"] + "/" + out["metric"] + "/" + out["structure"] + "/" + out["backbone"]
    out["p_holm"] = np.nan
    for _, idx in out.groupby("family").groups.items():
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "p"].to_numpy())
    return out[cols]


def friedman(subjects: pd.DataFrame) -> pd.DataFrame:
    """Friedman test across the methods of each backbone (with backbone-"none" methods),
    per dataset x metric x structure, on the subjects defined for every method."""
    rows = []
    for (dataset, metric, structure), _ in subjects.groupby(["dataset", "metric", "structure"], sort=True):
        wide = _wide(subjects, dataset, metric, structure)
        backbones = sorted({b for b, _ in wide.columns if b != "none"}) or ["none"]
        for backbone in backbones:
            cols = [c for c in wide.columns if c[0] in (backbone, "none")]
            block = wide[cols].dropna()
            row = {"dataset": dataset, "metric": metric, "structure": structure, "backbone": backbone,
                   "k_methods": len(cols), "methods": ";".join(m for _, m in cols), "n": len(block),
                   "statistic": np.nan, "p": np.nan, "reason": ""}
            if len(cols) < 3:
                row["reason"] = "fewer than 3 methods"
            elif len(block) < 2:
                row["reason"] = "fewer than 2 subjects defined for every method"
            elif np.all(block.to_numpy() == block.to_numpy()[:, :1]):
                row["reason"] = "all methods equal on every subject"
            else:
                res = sps.friedmanchisquare(*[block[c].to_numpy() for c in cols])
                row["statistic"], row["p"] = float(res.statistic), float(res.pvalue)
            rows.append(row)
    return pd.DataFrame(rows, columns=["dataset", "metric", "structure", "backbone", "k_methods", "methods",
                                       "n", "statistic", "p", "reason"])
