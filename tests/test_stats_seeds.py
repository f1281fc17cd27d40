

# ---------------------------------------------------------------- the weighted-loss frontier
def test_frontier_gap_of_a_hand_made_sweep():
    from gsmorph import frontier

    # weighted runs (NJD %, Dice %): (0.1, 80), (0.5, 84), (1.0, 86), (2.0, 87), and (0.8, 83)
    # dominated by (0.5, 84); GSMorph at NJD 0.75 with Dice 83
    def point(method, seed, njd, dice):
        return {"dataset": "acdc", "backbone": "voxelmorph", "method": method, "seed": seed, "lam": np.nan,
                "dice_pct": dice, "njd_pct": njd}

    sweep = [(0.1, 80.0), (0.5, 84.0), (1.0, 86.0), (2.0, 87.0), (0.8, 83.0)]
    rows = []
    for seed, gs in ((0, (0.75, 83.0)), (1, (0.75, 84.0)), (2, (3.0, 88.0)), (3, (0.05, 70.0))):
        rows += [point(f"weighted-sweep-{i}", seed, *p) for i, p in enumerate(sweep)] + [point("gsmorph", seed, *gs)]
    points = pd.DataFrame(rows)
    points["on_frontier"] = False
    for seed in range(4):
        part = (points.seed == seed) & (points.method != "gsmorph")
        points.loc[part, "on_frontier"] = frontier.pareto_mask(points[part].njd_pct, points[part].dice_pct)
    assert list(points[points.seed == 0].on_frontier) == [True, True, True, True, False, False]
    gap = frontier.gaps(points).set_index("seed")
    # at NJD 0.75, halfway between (0.5, 84) and (1.0, 86): 85 -> gaps 83 - 85, 84 - 85
    assert gap.loc["0", "frontier_dice_pct"] == pytest.approx(85.0) and gap.loc["0", "gap_dice_pct"] == pytest.approx(-2)
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
    njd = table.assign(metric="njd_pct")
    dice = table.assign(metric="dice", structure="LV")
    points = frontier.test_points(stats.seed_subject_values(pd.concat([njd, dice])),
                                  {("c000", "voxelmorph", "weighted-m", 1): 0.01})
    assert set(points.method) == {"gsmorph", "weighted-s", "weighted-m", "weighted-l", "weighted-tuned"}
    assert not points[points.method == "gsmorph"].on_frontier.any()
    lam = points.set_index(["method", "seed"]).lam
    assert lam[("weighted-m", 1)] == 0.01 and math.isnan(lam[("weighted-m", 0)])
