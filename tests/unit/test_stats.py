"""Statistics: Holm on a hand case; Wilcoxon, Friedman and bootstrap equal scipy on fixed data."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from gsmorph import stats

X = np.array([0.81, 0.77, 0.90, 0.85, 0.70, 0.88, 0.79, 0.83])
Y = np.array([0.84, 0.80, 0.89, 0.88, 0.75, 0.90, 0.85, 0.86])
Z = np.array([0.60, 0.65, 0.70, 0.58, 0.62, 0.66, 0.61, 0.69])


def long_table(values_by_method, metric="dice", structure="LV", dataset="acdc", slices=1):
    rows = []
    for (backbone, method), values in values_by_method.items():
        for i, v in enumerate(values):
            for s in range(slices):
                rows.append({"dataset": dataset, "backbone": backbone, "method": method, "seed": 0,
                             "subject": f"p{i:02d}", "slice": s, "metric": metric, "structure": structure,
                             "value": v})
    return pd.DataFrame(rows)


def test_holm_hand_case():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert np.allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02])
    out = stats.holm([0.5, np.nan, 0.6])
    assert np.allclose(out[[0, 2]], [1.0, 1.0]) and math.isnan(out[1])
    assert np.all(np.isnan(stats.holm([np.nan])))


def test_holm_matches_statsmodels_when_installed():
    multitest = pytest.importorskip("statsmodels.stats.multitest", reason="statsmodels not installed")
    p = np.random.default_rng(0).random(12) ** 3
    assert np.allclose(stats.holm(p), multitest.multipletests(p, method="holm")[1])


def test_subject_values_mean_over_slices_and_structure_mean():
    rows = [
        ("LV", 0, 0.8), ("LV", 1, 0.6), ("Myo", 0, 0.5), ("Myo", 1, np.nan), ("RV", 0, np.nan), ("RV", 1, np.nan),
    ]
    table = pd.DataFrame([{"dataset": "acdc", "backbone": "voxelmorph", "method": "gsmorph", "seed": 0,
                           "subject": "p1", "slice": s, "metric": "dice", "structure": st, "value": v}
                          for st, s, v in rows])
    sub = stats.subject_values(table).set_index("structure")
    assert sub.loc["LV", "value"] == pytest.approx(0.7)
    assert sub.loc["Myo", "value"] == pytest.approx(0.5) and sub.loc["Myo", "n_pairs"] == 1
    assert math.isnan(sub.loc["RV", "value"])
    # pair means: slice 0 (0.8 + 0.5) / 2 = 0.65, slice 1 0.6 -> subject 0.625
    assert sub.loc["mean", "value"] == pytest.approx(0.625)


def test_wilcoxon_equals_scipy_and_holm_within_each_table_column():
    table = long_table({("voxelmorph", "gsmorph"): Y, ("voxelmorph", "weighted-m"): X,
                        ("none", "initial"): Z}, slices=2)
    table = pd.concat([table, long_table({("voxelmorph", "gsmorph"): Y, ("voxelmorph", "weighted-m"): X,
                                          ("none", "initial"): Z}, structure="Myo")])
    res = stats.wilcoxon_vs_reference(stats.subject_values(table))
    lv = res[res.structure == "LV"].set_index("method")
    expected = sps.wilcoxon(X, Y, zero_method="wilcox", alternative="two-sided")
    assert lv.loc["weighted-m", "statistic"] == pytest.approx(expected.statistic)
    assert lv.loc["weighted-m", "p"] == pytest.approx(expected.pvalue)
    assert lv.loc["weighted-m", "n"] == 8 and lv.loc["initial", "method_backbone"] == "none"
    assert lv.loc["weighted-m", "median_diff"] == pytest.approx(np.median(X - Y))
    assert lv.loc["initial", "p"] == pytest.approx(sps.wilcoxon(Z, Y).pvalue)
    # Holm within what one table column shows (dataset x metric x structure x backbone):
    # here the 2 methods of each structure, by hand: m = 2, sorted p1 <= p2 ->
    # p1' = min(1, 2 p1), p2' = max(p1', p2)
    dice = res[res.metric == "dice"]
    assert len(dice) == 6 and dice["family"].nunique() == 3
    for structure in ("LV", "Myo", "mean"):
        part = dice[dice.structure == structure].set_index("method")
        assert set(part["family"]) == {f"acdc/dice/{structure}/voxelmorph"}
        p1, p2 = sorted(part["p"])
        first = min(1.0, 2 * p1)
        assert sorted(part["p_holm"]) == pytest.approx([first, max(first, p2)])
    # effect sizes: X - Y > 0 for every subject: rank-biserial +1; min p of 8 subjects 2/2^8
    assert lv.loc["weighted-m", "rank_biserial"] == pytest.approx(1.0 if (X > Y).all() else
                                                                   stats.rank_biserial(X - Y))
    assert lv.loc["weighted-m", "min_p"] == pytest.approx(2 / 2 ** 8)


def test_wilcoxon_small_n_and_zero_differences_give_nan_with_reason():
    out = stats.paired_wilcoxon([0.5], [0.4])
    assert math.isnan(out["p"]) and "fewer than" in out["reason"]
    out = stats.paired_wilcoxon(X, X)
    assert math.isnan(out["p"]) and out["reason"] == "all differences are zero"
    with_nan = X.copy()
    with_nan[0] = np.nan
    out = stats.paired_wilcoxon(with_nan, Y)
    assert out["n"] == 7 and out["p"] == pytest.approx(sps.wilcoxon(X[1:], Y[1:]).pvalue)


def test_friedman_equals_scipy():
    table = long_table({("voxelmorph", "gsmorph"): Y, ("voxelmorph", "weighted-m"): X, ("none", "initial"): Z})
    res = stats.friedman(stats.subject_values(table))
    lv = res[res.structure == "LV"].iloc[0]
    expected = sps.friedmanchisquare(Z, X, Y)
    assert lv["k_methods"] == 3 and lv["n"] == 8
    assert lv["statistic"] == pytest.approx(expected.statistic)
    assert lv["p"] == pytest.approx(expected.pvalue)
    two = stats.friedman(stats.subject_values(long_table({("voxelmorph", "gsmorph"): Y, ("none", "initial"): Z})))
    assert math.isnan(two["p"].iloc[0]) and "3 methods" in two["reason"].iloc[0]


def test_bootstrap_ci_equals_scipy_and_is_seeded():
    low, high = stats.bootstrap_ci(X, seed=3, n_resamples=999)
    ref = sps.bootstrap((X,), np.mean, n_resamples=999, method="percentile", rng=np.random.default_rng(3))
    assert (low, high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
    assert low < X.mean() < high
    assert stats.bootstrap_ci(X, seed=3, n_resamples=999) == (low, high)
    assert all(math.isnan(v) for v in stats.bootstrap_ci([0.5]))
    assert stats.bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)


def test_summarise_mean_std_and_undefined_count():
    values = np.append(X, np.nan)
    summary = stats.summarise(stats.subject_values(long_table({("voxelmorph", "gsmorph"): values})), n_resamples=500)
    row = summary[summary.structure == "LV"].iloc[0]
    assert row["n"] == 8 and row["n_undefined"] == 1
    assert row["mean"] == pytest.approx(X.mean()) and row["std"] == pytest.approx(X.std(ddof=1))
    assert row["ci_low"] < row["mean"] < row["ci_high"]


def test_rank_biserial_by_hand():
    # d = [3, -1, 2, 0]: the zero dropped; |d| ranks 3 -> 3, 1 -> 1, 2 -> 2; R+ = 5, R- = 1
    assert stats.rank_biserial([3, -1, 2, 0]) == pytest.approx((5 - 1) / 6)
    # ties share their average rank: |d| = 1, 1, 2 -> ranks 1.5, 1.5, 3; R+ = 1.5 + 3, R- = 1.5
    assert stats.rank_biserial([1, -1, 2]) == pytest.approx((4.5 - 1.5) / 6)
    assert stats.rank_biserial([-1, -2]) == -1.0
    assert math.isnan(stats.rank_biserial([0, 0]))


def test_the_smallest_possible_p_of_few_subjects():
    assert stats.min_two_sided_p(3) == 0.25 and stats.min_two_sided_p(5) == 0.0625
    assert stats.min_two_sided_p(6) == pytest.approx(0.03125)
    out = stats.paired_wilcoxon([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])  # all positive: the smallest p
    assert out["p"] == pytest.approx(out["min_p"]) == pytest.approx(0.25)


def test_sign_flip_p_by_hand():
    # |d| ranks 1.5, 1.5, 3, all positive: r_plus = 6 is the largest of 8 equally likely
    # sign patterns, so two-sided p = 2 * 1/8.
    assert stats.sign_flip_p([1.0, 1.0, 2.0]) == pytest.approx(0.25)
    # a zero is left out of the ranking and its sign flip changes nothing
    assert stats.sign_flip_p([0.0, 1.0, 1.0, 2.0]) == pytest.approx(0.25)


def test_ties_and_zeros_with_few_subjects_give_scipys_permutation_p():
    rng = np.random.default_rng(3)
    for _ in range(60):
        n = int(rng.integers(3, 14))
        x = rng.integers(0, 5, size=n).astype(float)
        y = rng.integers(0, 5, size=n).astype(float)
        if not np.any(x - y):
            continue
        res = stats.paired_wilcoxon(x, y)
        expected = sps.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
        assert res["p"] == pytest.approx(expected.pvalue, abs=1e-12)
        assert res["statistic"] == expected.statistic
