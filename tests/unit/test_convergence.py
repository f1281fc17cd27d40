"""Convergence diagnostics on hand-made training logs: a run cut short gets the caveat, a
plateaued one does not; the line fits have their analytic values."""
import math

import numpy as np
import pytest

from gsmorph import convergence
from gsmorph.config import DEFAULTS

SETTINGS = DEFAULTS["convergence"]


def make_log(epochs: int, val_every: int, loss, dice, noise: float = 0.0, seed: int = 0) -> list[dict]:
    """Rows of train_log.csv: loss(e) for loss_sim and loss_reg = 0.1, dice(e) + noise at
    every val_every-th epoch (None elsewhere)."""
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(1, epochs + 1):
        val = dice(e) + noise * rng.standard_normal() if e % val_every == 0 else None
        rows.append({"epoch": e, "loss_sim": loss(e), "loss_reg": 0.1, "val_dice": val, "epoch_s": 1.0})
    return rows


def decaying(e):  # exponential decay to a floor: flat from about epoch 40
    return 0.004 + 0.02 * math.exp(-e / 8)


def rising(e):  # validation Dice that saturates around epoch 40
    return 0.93 - 0.25 * math.exp(-e / 10)


def test_a_plateaued_run_has_no_caveat():
    rows = make_log(150, 5, decaying, rising, noise=0.01)
    d = convergence.diagnose(rows, best_epoch=120, settings=SETTINGS)
    assert d["converged"] is True and convergence.caveat(d) == ""
    assert d["conv_loss_epochs"] == 30  # the last fifth of 150 epochs
    assert abs(d["conv_rel_change_loss_sim"]) < 0.01 and d["conv_rel_change_loss_reg"] == pytest.approx(0.0, abs=1e-12)
    assert d["conv_val_checks"] == 5 and d["conv_best_is_last"] is False


def test_the_same_run_cut_short_gets_the_caveat():
    rows = make_log(150, 5, decaying, rising, noise=0.01)[:20]
    d = convergence.diagnose(rows, best_epoch=20, settings=SETTINGS)
    assert d["converged"] is False
    text = convergence.caveat(d)
    assert text.startswith("not converged: loss_sim changed -")
    assert "over the last 4 epochs" in text  # ceil(20 / 5)
    assert d["conv_best_is_last"] is True  # the last check, epoch 20, is the best


def test_a_rising_validation_dice_alone_gets_the_caveat():
    """Flat losses, Dice rising 1 point per check (5 epochs) with no noise: rise 4 points over 5 checks."""
    rows = make_log(50, 5, lambda e: 0.01, lambda e: 0.80 + 0.002 * e)
    d = convergence.diagnose(rows, best_epoch=50, settings=SETTINGS)
    assert d["conv_val_dice_slope"] == pytest.approx(0.002)
    assert d["conv_val_dice_rise"] == pytest.approx(0.04)  # slope x 20 epochs spanned
    assert d["conv_val_dice_slope_p"] == 0.0
    assert d["converged"] is False and "validation Dice rising +4.0 points over the last 5 checks" in d["conv_reasons"]
    # a rise below dice_tol is a plateau
    flat = convergence.diagnose(make_log(50, 5, lambda e: 0.01, lambda e: 0.80 + 0.0001 * e), 50, SETTINGS)
    assert flat["converged"] is True


def test_a_noisy_rise_that_is_not_significant_is_no_caveat():
    """Dice 0.90, 0.95, 0.89, 0.96, 0.90: a line rises, but nowhere near p < 0.05."""
    values = iter([0.90, 0.95, 0.89, 0.96, 0.90])
    rows = make_log(25, 5, lambda e: 0.01, lambda e: next(values))
    d = convergence.diagnose(rows, best_epoch=20, settings=SETTINGS)
    assert d["conv_val_dice_slope_p"] > 0.3 and d["converged"] is True


def test_dice_trend_matches_the_textbook_formulas():
    epochs = np.array([5.0, 10, 15, 20, 25])
    dice = np.array([0.80, 0.83, 0.82, 0.86, 0.85])
    trend = convergence.dice_trend(epochs, dice)
    x = epochs - epochs.mean()
    slope = (x * (dice - dice.mean())).sum() / (x ** 2).sum()
    resid = dice - dice.mean() - slope * x
    se = math.sqrt((resid ** 2).sum() / 3 / (x ** 2).sum())
    from scipy import stats

    assert trend["slope"] == pytest.approx(slope) and trend["slope_se"] == pytest.approx(se)
    assert trend["slope_p"] == pytest.approx(stats.t.sf(slope / se, 3))
    assert trend["rise"] == pytest.approx(slope * 20)


def test_loss_relative_change_of_a_line():
    epochs = np.arange(1.0, 11.0)
    assert convergence.loss_relative_change(epochs, 2.0 - 0.1 * epochs) == pytest.approx(-0.9 / 1.45)
    assert convergence.loss_relative_change(epochs, np.zeros(10)) == 0.0


def test_too_short_a_run_is_not_judged():
    rows = make_log(2, 1, decaying, rising)
    d = convergence.diagnose(rows, best_epoch=2, settings=SETTINGS)
    assert d["converged"] is None and d["conv_rel_change_loss_sim"] is None
    assert convergence.caveat(d) == ("convergence not judged: 2 epoch(s) logged (3 needed); "
                                     "2 validation check(s) (3 needed)")
    # losses long enough, checks too few: not judged either
    d = convergence.diagnose(make_log(30, 15, lambda e: 0.01, rising), 30, SETTINGS)
    assert d["converged"] is None and "2 validation check(s)" in convergence.caveat(d)


def test_a_failing_loss_wins_over_too_few_checks():
    d = convergence.diagnose(make_log(10, 5, lambda e: 1.0 / e, rising), 10, SETTINGS)
    assert d["converged"] is False and "loss_sim changed" in convergence.caveat(d)


def test_thresholds_come_from_the_config():
    rows = make_log(150, 5, decaying, rising, noise=0.01)[:20]
    strict = convergence.diagnose(rows, 20, SETTINGS)["conv_reasons"]
    assert "loss_sim changed" in strict and "validation Dice rising" in strict
    loose = convergence.diagnose(rows, 20, {**SETTINGS, "loss_tol": 1.0})
    assert loose["converged"] is False and loose["conv_reasons"].startswith("validation Dice rising")
    assert convergence.diagnose(rows, 20, {**SETTINGS, "loss_tol": 1.0, "dice_tol": 1.0})["converged"] is True
    assert convergence.diagnose(rows, 20, {**SETTINGS, "loss_tol": 1.0, "alpha": 1e-12})["converged"] is True


def test_bad_thresholds_are_config_errors():
    from gsmorph.config import load_config
    from gsmorph.errors import GSMorphError

    with pytest.raises(GSMorphError, match="config key 'convergence.val_checks'"):
        load_config(None, {"convergence": {"val_checks": 2}})
    with pytest.raises(GSMorphError, match="unknown config key 'convergence.window'"):
        load_config(None, {"convergence": {"window": 2}})


def test_the_report_table_has_one_row_per_diagnosed_run_in_table_order():
    import pandas as pd

    from gsmorph.report import convergence as report_table

    plateau = convergence.diagnose(make_log(150, 5, decaying, rising, noise=0.01), 120, SETTINGS)
    short = convergence.diagnose(make_log(150, 5, decaying, rising, noise=0.01)[:20], 20, SETTINGS)
    base = {"dataset": "acdc", "backbone": "voxelmorph", "seed": 0, "selection": "best", "stopped_early": False}
    summaries = pd.DataFrame([
        {**base, "method": "gsmorph", "epochs_done": 20, "best_epoch": 20, **short},
        {**base, "method": "weighted-m", "epochs_done": 150, "best_epoch": 120, **plateau},
        {**base, "method": "weighted-tuned"},  # a tuned run's folder: no diagnostics, no row
    ])
    frame = report_table.table(summaries)
    assert frame["method"].tolist() == ["weighted-m", "gsmorph"]
    assert frame["converged"].tolist() == [True, False]
    text = report_table.to_markdown(frame)
    rows = [line for line in text.splitlines() if line.startswith("| ACDC")]
    assert len(rows) == 2 and rows[0].endswith("| yes |") and "| no: loss_sim changed" in rows[1]
    assert "| 20 (last) |" in rows[1]
    assert report_table.table(pd.DataFrame(columns=["dataset", "backbone", "method", "seed"])).empty
