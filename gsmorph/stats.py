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

Seeds are replicates (docs/statistics.md): with two or more seeds, a training run is the
unit of replication and subjects are repeated measures inside it.
- `seed_subject_values`: per subject and seed means over slices; a run's mean is the mean
  over the subjects it shares with what it is compared with.
- `compare_to_reference` (the table markers, stats/comparisons.csv): Welch's t-test on
  the runs' means (method's seeds against GSMorph's), df by Welch-Satterthwaite, so they
  follow the number of seeds; a method that is not trained (backbone "none": Initial,
  classical) has no training noise and is a fixed value: a one-sample t-test of GSMorph's
  run means against it (df = seeds - 1). With fewer than two seeds on a side that has
  training noise, the subject-level Wilcoxon above is used, and it cannot count training
  noise. Holm runs within each table column over whatever tests that column holds.
- `summarise` with seed values: `seed_sd`, the sd over seeds of the runs' means, and with
  two or more seeds the 95% CI is the t-interval over the runs' means (ci_over "seeds");
  with one seed the bootstrap over subjects (ci_over "subjects").
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from gsmorph.methods import REFERENCE  # the method every other one is tested against

MIN_PAIRS = 2
SUBJECT_KEYS = ["dataset", "backbone", "method", "subject", "metric", "structure"]
SUMMARY_KEYS = ["dataset", "backbone", "method", "metric", "structure"]
SEED_KEYS = ["dataset", "backbone", "method", "seed", "subject", "metric", "structure"]
NOT_TRAINED = "none"  # the backbone of Initial and the classical methods: no training noise
BY_SEEDS = "welch-t over seed means"  # `procedure` of a comparison that counts training noise
BY_SUBJECTS = "wilcoxon over subjects"  # one seed: the trained networks taken as fixed


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


def subject_values(table: pd.DataFrame, keys: list[str] = SUBJECT_KEYS) -> pd.DataFrame:
    """Per subject means over slices and seeds (SUBJECT_KEYS + value, n_pairs defined);
    with keys=SEED_KEYS per subject and seed (see seed_subject_values)."""
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
    grouped = table.groupby(keys, sort=True)["value"]
    out = grouped.mean().reset_index()
    out["n_pairs"] = grouped.count().to_numpy()
    return out


def seed_subject_values(table: pd.DataFrame) -> pd.DataFrame:
    """Per subject and seed means over slices (SEED_KEYS + value, n_pairs defined)."""
    table = table.copy()
    table["seed"] = pd.to_numeric(table["seed"], errors="coerce").fillna(0).astype(int)
    return subject_values(table, keys=SEED_KEYS)


def run_means(values: pd.DataFrame) -> pd.Series:
    """{seed: mean over subjects} of one method's seed x subject values (rows seeds,
    columns subjects), over the subjects defined in every seed; empty if none is."""
    complete = values.dropna(axis=1, how="any")
    return complete.mean(axis=1) if complete.shape[1] else pd.Series(dtype=float)


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


def summarise(subjects: pd.DataFrame, seed: int = 0, n_resamples: int = 2000,
              seed_values: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean, sample std, n and 95% CI over subjects per SUMMARY_KEYS; with seed_values
    (seed_subject_values) also n_seeds and seed_sd (sd over seeds of the runs' means over
    subjects), and with two or more seeds the CI is the t-interval over the runs' means."""
    runs = _by_run(seed_values)
    rows = []
    for key, group in subjects.groupby(SUMMARY_KEYS, sort=True):
        v = group["value"].to_numpy(dtype=np.float64)
        v = v[np.isfinite(v)]
        means = run_means(runs[key]) if key in runs else pd.Series(dtype=float)
        if len(means) >= 2:
            low, high, over = *mean_ci(means.to_numpy()), "seeds"
        else:
            low, high, over = *bootstrap_ci(v, seed=seed, n_resamples=n_resamples), "subjects"
        rows.append({**dict(zip(SUMMARY_KEYS, key)), "n": len(v),
                     "n_undefined": int(len(group) - len(v)),
                     "mean": float(np.mean(v)) if len(v) else np.nan,
                     "std": float(np.std(v, ddof=1)) if len(v) > 1 else np.nan,
                     "ci_low": low, "ci_high": high, "ci_over": over, "n_seeds": len(means) if runs else 1,
                     "seed_sd": float(np.std(means, ddof=1)) if len(means) >= 2 else np.nan})
    return pd.DataFrame(rows, columns=SUMMARY_KEYS + ["n", "n_undefined", "mean", "std", "ci_low", "ci_high",
                                                      "ci_over", "n_seeds", "seed_sd"])


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of >= 2 values (the value itself when all are equal)."""
    values = np.asarray(values, dtype=np.float64)
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    ci = sps.ttest_1samp(values, 0.0).confidence_interval(confidence)
    return float(ci.low), float(ci.high)


def _by_run(seed_values: pd.DataFrame | None) -> dict[tuple, pd.DataFrame]:
    """{SUMMARY_KEYS tuple: seed x subject values} of seed_subject_values output."""
    if seed_values is None or seed_values.empty:
        return {}
    return {key: part.pivot(index="seed", columns="subject", values="value")
            for key, part in seed_values.groupby(SUMMARY_KEYS, sort=True)}


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


def seed_test(method: pd.DataFrame, reference: pd.DataFrame, trained: bool = True,
              confidence: float = 0.95) -> dict | None:
    """Method vs reference with a training run as the unit of replication.

    method, reference: seed x subject values (rows seeds). Each run's mean is taken over
    the subjects defined in every run of both. trained: Welch's t-test of the method's run
    means against the reference's; not trained (Initial, classical: no training noise):
    its subject values are averaged over its rows and held fixed, and the reference's run
    means are tested against that value (one-sample t, df = seeds - 1). Returns None when
    a side with training noise has fewer than two seeds (the caller falls back to the
    subject-level test). mean_diff and the CI are method - reference.
    """
    subjects = reference.columns.intersection(method.columns)
    ref = reference[subjects].to_numpy(dtype=np.float64)
    own = method[subjects].to_numpy(dtype=np.float64)
    if not trained:  # per subject, over its rows: a fixed value
        count = np.isfinite(own).sum(axis=0)
        own = np.where(count > 0, np.nansum(own, axis=0) / np.maximum(count, 1), np.nan)[None]
    keep = np.isfinite(ref).all(axis=0) & np.isfinite(own).all(axis=0)
    out = {"procedure": BY_SEEDS, "n_seeds": len(own), "n_seeds_reference": len(ref), "n": int(keep.sum()),
           "mean_diff": np.nan, "ci_low": np.nan, "ci_high": np.nan, "df": np.nan, "statistic": np.nan,
           "p": np.nan, "reason": ""}
    if len(ref) < 2 or (trained and len(own) < 2):
        return None
    if not keep.any():
        out["reason"] = "no subject defined in every run of both"
        return out
    g = ref[:, keep].mean(axis=1)
    a = own[:, keep].mean(axis=1)
    out["mean_diff"] = float(a.mean() - g.mean())
    if np.all(g == g[0]) and np.all(a == a[0]):
        out["reason"] = "no variation between the runs' means"
        return out
    res = sps.ttest_ind(a, g, equal_var=False) if trained else sps.ttest_1samp(a[0] - g, 0.0)
    ci = res.confidence_interval(confidence)
    out.update(statistic=float(res.statistic), p=float(res.pvalue), df=float(res.df),
               ci_low=float(ci.low), ci_high=float(ci.high))
    return out


COMPARISON_COLUMNS = ["dataset", "metric", "structure", "backbone", "method", "method_backbone", "procedure",
                      "n_seeds", "n_seeds_reference", "n", "mean_diff", "ci_low", "ci_high", "df", "statistic",
                      "p", "reason", "median_diff", "rank_biserial", "min_p", "family", "p_holm"]


def compare_to_reference(seed_values: pd.DataFrame, wilcoxon: pd.DataFrame,
                         reference: str = REFERENCE) -> pd.DataFrame:
    """The comparisons behind the table markers: for every row of wilcoxon_vs_reference,
    seed_test when both sides have the seeds it needs, else that subject-level Wilcoxon
    row (procedure BY_SUBJECTS; its training noise is not counted). Holm within each
    family (one table column) over the p-values used. Columns: COMPARISON_COLUMNS."""
    runs = _by_run(seed_values)
    rows = []
    for w in wilcoxon.to_dict("records"):
        ref_key = (w["dataset"], w["backbone"], reference, w["metric"], w["structure"])
        key = (w["dataset"], w["method_backbone"], w["method"], w["metric"], w["structure"])
        res = None
        if key in runs and ref_key in runs:
            res = seed_test(runs[key], runs[ref_key], trained=w["method_backbone"] != NOT_TRAINED)
        row = {c: w.get(c, np.nan) for c in ("dataset", "metric", "structure", "backbone", "method",
                                              "method_backbone", "family")}
        if res is None:
            k = lambda kk: len(runs[kk]) if kk in runs else 1  # noqa: E731
            row.update(procedure=BY_SUBJECTS, n_seeds=k(key), n_seeds_reference=k(ref_key), n=w["n"],
                       mean_diff=np.nan, ci_low=np.nan, ci_high=np.nan, df=np.nan, statistic=w["statistic"],
                       p=w["p"], reason=w["reason"], median_diff=w["median_diff"],
                       rank_biserial=w["rank_biserial"], min_p=w["min_p"])
        else:
            row.update(res, median_diff=np.nan, rank_biserial=np.nan, min_p=np.nan)
        rows.append(row)
    out = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    out["p_holm"] = np.nan
    for _, idx in out.groupby("family").groups.items():
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "p"].to_numpy())
    return out
