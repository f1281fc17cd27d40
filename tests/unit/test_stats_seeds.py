"""Seeds as replicates: the seed-level comparisons by hand, and by simulation (each
retraining shifts all subjects by one common draw) that they hold their level where the
subject-level Wilcoxon does not, and still find a real effect of a few seed sds."""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from gsmorph import stats
from gsmorph.report import tables

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "seed_noise_simulation.py"
spec = importlib.util.spec_from_file_location("seed_noise_simulation", SCRIPT)
sim = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sim)

SUBJECTS = ["p1", "p2", "p3"]


def runs(rows):
    """seed x subject values."""
    return pd.DataFrame(rows, columns=SUBJECTS)


def test_welch_on_run_means_by_hand():
    method = runs([[0.8, 0.9, 1.0], [0.7, 0.8, 0.9]])          # run means 0.9, 0.8
    reference = runs([[0.5, 0.6, 0.7], [0.6, 0.7, 0.8], [0.7, 0.8, 0.9]])  # 0.6, 0.7, 0.8
    res = stats.seed_test(method, reference)
    expected = sps.ttest_ind([0.9, 0.8], [0.6, 0.7, 0.8], equal_var=False)
    assert res["procedure"] == stats.BY_SEEDS and res["n_seeds"] == 2 and res["n_seeds_reference"] == 3
    assert res["mean_diff"] == pytest.approx(0.85 - 0.7)
    assert res["p"] == pytest.approx(expected.pvalue) and res["df"] == pytest.approx(expected.df)
    # Welch-Satterthwaite df by hand: s^2/n = 0.005/2, 0.01/3
    v1, v2 = 0.005 / 2, 0.01 / 3
    assert res["df"] == pytest.approx((v1 + v2) ** 2 / (v1 ** 2 / 1 + v2 ** 2 / 2))
    assert res["ci_low"] < res["mean_diff"] < res["ci_high"]


def test_a_subject_undefined_in_one_run_leaves_every_run_mean():
    method = runs([[0.8, 0.9, np.nan], [0.7, 0.8, 0.9]])
    reference = runs([[0.5, 0.6, 0.7], [0.6, 0.7, 0.8]])
    res = stats.seed_test(method, reference)
    assert res["n"] == 2  # p3 dropped from every run of both
    assert res["mean_diff"] == pytest.approx(np.mean([0.85, 0.75]) - np.mean([0.55, 0.65]))
    assert stats.seed_test(runs([[np.nan] * 3, [0.7, 0.8, 0.9]]), reference)["reason"].startswith("no subject")


def test_a_method_that_is_not_trained_is_a_fixed_value():
    initial = runs([[0.4, 0.5, 0.6]])                            # mean 0.5
    reference = runs([[0.5, 0.6, 0.7], [0.6, 0.7, 0.8], [0.8, 0.9, 1.0]])  # 0.6, 0.7, 0.9
    res = stats.seed_test(initial, reference, trained=False)
    expected = sps.ttest_1samp(0.5 - np.array([0.6, 0.7, 0.9]), 0.0)
    assert res["p"] == pytest.approx(expected.pvalue) and res["df"] == 2
    assert res["mean_diff"] == pytest.approx(0.5 - np.mean([0.6, 0.7, 0.9]))


def test_one_seed_falls_back_to_the_subject_level_wilcoxon():
    reference = runs([[0.5, 0.6, 0.7], [0.6, 0.7, 0.8]])
    assert stats.seed_test(runs([[0.8, 0.9, 1.0]]), reference) is None
    assert stats.seed_test(runs([[0.8, 0.9, 1.0]]), reference.iloc[:1], trained=False) is None
    table = sim.simulated_metrics(np.random.default_rng(0), 2, 1)
    wilcoxon = stats.wilcoxon_vs_reference(stats.subject_values(table))
    comparisons = stats.compare_to_reference(stats.seed_subject_values(table), wilcoxon)
    assert set(comparisons["procedure"]) == {stats.BY_SUBJECTS}
    assert np.allclose(comparisons["p_holm"], wilcoxon["p_holm"], equal_nan=True)


def test_seed_sd_and_the_ci_over_run_means():
    rows = [{"dataset": "acdc", "backbone": "voxelmorph", "method": "gsmorph", "seed": k, "subject": s,
             "slice": 0, "metric": "mse", "structure": "", "value": v + shift}
            for k, shift in enumerate((0.0, 0.1, 0.2)) for s, v in zip(SUBJECTS, (0.7, 0.8, 0.9))]
    table = pd.DataFrame(rows)
    summary = stats.summarise(stats.subject_values(table), seed_values=stats.seed_subject_values(table)).iloc[0]
    half = sps.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)            # run means 0.8, 0.9, 1.0
    assert summary["n_seeds"] == 3 and summary["seed_sd"] == pytest.approx(0.1)
    assert (summary["ci_low"], summary["ci_high"]) == pytest.approx((0.9 - half, 0.9 + half))
    assert summary["ci_over"] == "seeds"
    one = stats.summarise(stats.subject_values(table[table.seed == 0]),
                          seed_values=stats.seed_subject_values(table[table.seed == 0])).iloc[0]
    assert one["ci_over"] == "subjects" and math.isnan(one["seed_sd"])


def test_under_the_null_with_seed_noise_few_cells_are_marked_and_wilcoxon_marks_most():
    # 40 columns x 8 methods against GSMorph (7 learned, 3 seeds each, and Initial)
    rates = sim.marker_rates(sim.simulated_metrics(np.random.default_rng(7), 40, 3))
    assert rates["n_null_cells"] == 320 and rates["procedures"] == stats.BY_SEEDS
    assert rates["seed_level_marked"] <= 0.05
    assert rates["seed_level_raw_p_below_005"] <= 0.075  # the level before Holm, binomial slack
    assert rates["wilcoxon_marked"] > 0.5                  # the subject-level test: the bug fixed


def test_a_real_effect_of_four_seed_sds_is_found():
    effect = -4 * 0.02  # lower mse: better
    rates = sim.marker_rates(sim.simulated_metrics(np.random.default_rng(11), 30, 5, effect=effect), "weighted-m")
    assert rates["effect_found"] >= 0.75
    assert rates["seed_level_marked"] <= 0.05


def test_table_cells_show_the_seed_sd_and_the_caption_says_what_markers_count():
    table = sim.simulated_metrics(np.random.default_rng(3), 1, 3, effect=-0.2)
    seed_values = stats.seed_subject_values(table)
    subjects = stats.subject_values(table)
    summary = stats.summarise(subjects, seed_values=seed_values, n_resamples=200)
    comparisons = stats.compare_to_reference(seed_values, stats.wilcoxon_vs_reference(subjects))
    # Holm within each table column over the seed-level p-values
    assert np.allclose(comparisons["p_holm"], stats.holm(comparisons["p"]))  # one column: one family
    t = tables.build(summary, comparisons, ["voxelmorph"], "t")
    md = tables.to_markdown(t)
    row = next(line for line in md.splitlines() if line.startswith("| VoxelMorph-m |"))
    sd = summary[(summary.method == "weighted-m")].iloc[0]["seed_sd"] * 100
    assert f"[{sd:.2f}]" in row and "↑" in row
    assert "unit of replication" in t.caption and "3 seeds" in t.caption
    one = sim.simulated_metrics(np.random.default_rng(3), 1, 1)
    s1 = stats.subject_values(one)
    c1 = stats.compare_to_reference(stats.seed_subject_values(one), stats.wilcoxon_vs_reference(s1))
    t1 = tables.build(stats.summarise(s1, seed_values=stats.seed_subject_values(one), n_resamples=200), c1,
                      ["voxelmorph"], "t1")
    rows = [line for line in tables.to_markdown(t1).splitlines() if line.startswith("| ") and "---" not in line]
    assert "cannot include training noise" in t1.caption and not any("[" in line for line in rows[1:])


# ---------------------------------------------------------------- the weighted-loss frontier
def _point(method, seed, njd, dice):
    return {"dataset": "acdc", "backbone": "voxelmorph", "method": method, "seed": seed, "lam": np.nan,
            "dice_pct": dice, "njd_pct": njd}


def test_frontier_gap_of_a_hand_made_sweep():
    from gsmorph import frontier

    # weighted runs (NJD %, Dice %): (0.1, 80), (0.5, 84), (1.0, 86), (2.0, 87), and (0.8, 83)
    # dominated by (0.5, 84); GSMorph per seed at the NJD and Dice below
    sweep = [(0.1, 80.0), (0.5, 84.0), (1.0, 86.0), (2.0, 87.0), (0.8, 83.0)]
    rows = []
    for seed, gs in ((0, (0.75, 83.0)), (1, (0.75, 84.0)), (2, (3.0, 88.0)), (3, (0.05, 70.0))):
        rows += [_point(f"weighted-sweep-{i}", seed, *p) for i, p in enumerate(sweep)]
        rows.append(_point("gsmorph", seed, *gs))
    points = pd.DataFrame(rows)
    points["on_frontier"] = False
    for seed in range(4):
        part = (points.seed == seed) & (points.method != "gsmorph")
        points.loc[part, "on_frontier"] = frontier.pareto_mask(points[part].njd_pct, points[part].dice_pct)
    assert list(points[points.seed == 0].on_frontier) == [True, True, True, True, False, False]
    gap = frontier.gaps(points).set_index("seed")
    # at NJD 0.75, halfway between (0.5, 84) and (1.0, 86): 85 -> gaps 83 - 85, 84 - 85
    assert gap.loc["0", "frontier_dice_pct"] == pytest.approx(85.0)
    assert gap.loc["0", "gap_dice_pct"] == pytest.approx(-2.0)
    assert gap.loc["1", "gap_dice_pct"] == pytest.approx(-1.0) and gap.loc["1", "where"] == "inside"
    # beyond the frontier's largest NJD: its best Dice (87); below its smallest: undefined
    assert gap.loc["2", "where"] == "above" and gap.loc["2", "gap_dice_pct"] == pytest.approx(1.0)
    assert gap.loc["3", "where"] == "below" and math.isnan(gap.loc["3", "gap_dice_pct"])
    every = gap.loc["all"]
    assert every["n_seeds"] == 3 and every["gap_dice_pct"] == pytest.approx(np.mean([-2, -1, 1]))
    half = sps.t.ppf(0.975, 2) * np.std([-2, -1, 1], ddof=1) / math.sqrt(3)
    assert (every["ci_low"], every["ci_high"]) == pytest.approx((every["gap_dice_pct"] - half,
                                                                 every["gap_dice_pct"] + half))


def test_frontier_points_come_from_weighted_loss_runs_only():
    from gsmorph import frontier

    assert frontier.is_weighted_loss("weighted-m") and frontier.is_weighted_loss("weighted-tuned")
    assert frontier.is_weighted_loss("weighted-sweep-3") and frontier.is_weighted_loss("weighted")
    assert not frontier.is_weighted_loss("gs-pcgrad") and not frontier.is_weighted_loss("hypermorph")
    table = sim.simulated_metrics(np.random.default_rng(0), 1, 2)
    table = table[table.method != "initial"]
    both = pd.concat([table.assign(metric="njd_pct"), table.assign(metric="dice", structure="LV")])
    points = frontier.test_points(stats.seed_subject_values(both), {("c000", "voxelmorph", "weighted-m", 1): 0.01})
    assert set(points.method) == {"gsmorph", "weighted-s", "weighted-m", "weighted-l", "weighted-tuned"}
    assert not points[points.method == "gsmorph"].on_frontier.any()
    lam = points.set_index(["method", "seed"]).lam
    assert lam[("weighted-m", 1)] == 0.01 and math.isnan(lam[("weighted-m", 0)])


def test_the_gap_line_of_a_table_caption():
    from gsmorph import frontier

    gap = pd.DataFrame([{"dataset": "acdc", "backbone": "voxelmorph", "seed": "all", "gap_dice_pct": -1.5,
                         "where": "inside", "n_seeds": 3, "ci_low": -2.5, "ci_high": -0.5},
                        {"dataset": "mnm", "backbone": "voxelmorph", "seed": "all", "gap_dice_pct": np.nan,
                         "where": "below", "n_seeds": 0, "ci_low": np.nan, "ci_high": np.nan}])
    text = frontier.gap_text(gap, ["voxelmorph"])
    assert "-1.50 (3 seed(s), 95% CI -2.50 to -0.50)" in text and "undefined (below)" in text
    assert frontier.gap_text(gap, ["transmorph"]) == ""
