"""Model selection and early stopping: each rule picks the check it should on a hand-made
validation history; patience stops where it should, in training too, and a killed run
resumed ends bitwise identical to an uninterrupted one."""
import json
import math

import pandas as pd
import pytest
import torch

from gsmorph import selection
from gsmorph.config import load_config
from gsmorph.errors import GSMorphError
from gsmorph.training import Trainer

from tiny import small_cfg

# checks every 5 epochs: a lucky 0.95 at epoch 15, then a plateau near 0.89-0.91
DICE = [0.80, 0.86, 0.95, 0.84, 0.88, 0.89, 0.91, 0.89, 0.88, 0.87]
HISTORY = [(5 * (i + 1), d) for i, d in enumerate(DICE)]


def test_best_picks_the_highest_check():
    assert selection.replay(HISTORY, "best", 3) == {"epoch": 15, "score": 0.95, "best_score": 0.95, "stop_epoch": None}


def test_smoothed_picks_the_end_of_the_best_window_of_three():
    # window means ending at 20..50: .8833 .89 .87 .8933 .8967 .8933 .88 (the lucky check alone does not win)
    out = selection.replay(HISTORY, "smoothed", 3)
    assert out["epoch"] == 40 and out["score"] == pytest.approx((0.89 + 0.91 + 0.89) / 3)
    assert selection.replay(HISTORY, "smoothed", 1)["epoch"] == 15  # a window of one is `best`
    assert selection.replay(HISTORY[:2], "smoothed", 3)["score"] == pytest.approx(0.83)  # fewer checks: their mean


def test_last_picks_the_last_check():
    out = selection.replay(HISTORY, "last", 3)
    assert out["epoch"] == 50 and out["score"] == 0.87 and out["best_score"] == 0.95


def test_ties_keep_the_earlier_check():
    assert selection.replay([(1, 0.9), (2, 0.9), (3, 0.8)], "best", 3)["epoch"] == 1


@pytest.mark.parametrize("rule, patience, stop", [
    ("best", 1, 20),      # 0.84 at 20 is below 0.95
    ("best", 3, 30),      # 20, 25, 30 below 0.95
    ("smoothed", 3, None),  # new highest means at 35 and 40, then two checks below
    ("smoothed", 2, 50),
    ("last", 2, 25),      # patience watches the checks' Dice: 0.95 at 15 not beaten at 20, 25
])
def test_patience_stops_where_it_should(rule, patience, stop):
    assert selection.replay(HISTORY, rule, 3, patience)["stop_epoch"] == stop


def test_a_tracker_restored_mid_run_continues_as_an_uninterrupted_one():
    straight = selection.Tracker("smoothed", 3, 2)
    for i in range(len(HISTORY)):
        straight.update(HISTORY[:i + 1])
    first = selection.Tracker("smoothed", 3, 2)
    for i in range(5):
        first.update(HISTORY[:i + 1])
    second = selection.Tracker("smoothed", 3, 2)
    second.load(json.loads(json.dumps(first.state())))
    for i in range(5, len(HISTORY)):
        second.update(HISTORY[:i + 1])
    assert second.state() == straight.state() and second.should_stop() == straight.should_stop()


def test_bad_selection_keys_are_config_errors():
    with pytest.raises(GSMorphError, match="config key 'selection'"):
        load_config(None, {"selection": "median"})
    with pytest.raises(GSMorphError, match="config key 'patience'"):
        load_config(None, {"patience": 0})
    with pytest.raises(GSMorphError, match="config key 'selection_window'"):
        load_config(None, {"selection_window": 0})
    assert load_config()["patience"] is None and load_config()["selection"] == "best"


# --------------------------------------------------------------- in training
SCRIPT = [0.50, 0.60, 0.70, 0.65, 0.68, 0.90, 0.91, 0.92]  # validation Dice of epochs 1..8


def _cfg(**overrides):
    return small_cfg(**{"epochs": 8, "max_train_pairs": 4, "max_val_pairs": 1, **overrides})


def _scripted(prepared, run, cfg, weights: dict | None = None) -> Trainer:
    """A weighted-loss trainer whose validation returns SCRIPT (and keeps each epoch's weights)."""
    trainer = Trainer(prepared, "voxelmorph", "weighted", 0, run, cfg, lam=0.01)
    trainer.initialize()

    def validate():
        epoch = trainer.epoch + 1
        if weights is not None:
            weights[epoch] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        return SCRIPT[epoch - 1], 0.0

    trainer.validate = validate
    return trainer


@pytest.mark.parametrize("rule", ["best", "smoothed", "last"])
def test_each_rule_puts_its_check_in_best_pt(prepared_acdc, tmp_path, rule):
    weights: dict = {}
    cfg = _cfg(epochs=5, selection=rule, selection_window=2)
    summary = _scripted(prepared_acdc, tmp_path / "run", cfg, weights).fit()
    # checks 1..5: best 0.70 at 3; smoothed (2) means .5 .55 .65 .675 .665: 4; last: 5
    epoch = {"best": 3, "smoothed": 4, "last": 5}[rule]
    assert summary["best_epoch"] == epoch and summary["best_val_dice"] == SCRIPT[epoch - 1]
    assert summary["selection"] == rule and summary["selection_window"] == 2
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["selection"] == rule and info["stopped_early"] is False
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert all(torch.equal(best[k], weights[epoch][k]) for k in best)


def test_patience_stops_training_and_a_killed_run_resumes_exactly(prepared_acdc, tmp_path):
    cfg = _cfg(patience=2)
    straight = _scripted(prepared_acdc, tmp_path / "straight", cfg).fit()
    # best 0.70 at epoch 3; 0.65, 0.68 do not beat it: patience 2 spent at epoch 5
    assert straight["epochs_done"] == 5 and straight["stopped_early"] is True and straight["best_epoch"] == 3
    assert pd.read_csv(tmp_path / "straight" / "train_log.csv")["epoch"].tolist() == [1, 2, 3, 4, 5]

    class Killed(Exception):
        pass

    def kill(epoch, val_dice):
        if epoch == 4:
            raise Killed

    with pytest.raises(Killed):
        _scripted(prepared_acdc, tmp_path / "resumed", cfg).fit(report=kill)
    resumed = _scripted(prepared_acdc, tmp_path / "resumed", cfg).fit()
    assert resumed["epochs_done"] == 5 and resumed["stopped_early"] is True
    a, b = (torch.load(tmp_path / r / "last.pt", weights_only=True) for r in ("straight", "resumed"))
    assert a["selection"] == b["selection"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    # rerun once stopped: nothing more is trained, even with a larger budget
    again = _scripted(prepared_acdc, tmp_path / "resumed", _cfg(patience=2, epochs=10)).fit()
    assert again["epochs_done"] == 5 and len(pd.read_csv(tmp_path / "resumed" / "train_log.csv")) == 5


def test_patience_off_trains_the_whole_budget(prepared_acdc, tmp_path):
    summary = _scripted(prepared_acdc, tmp_path / "run", _cfg(epochs=6)).fit()
    assert summary["epochs_done"] == 6 and summary["stopped_early"] is False and summary["patience"] is None
    assert summary["best_epoch"] == 6 and not math.isnan(summary["selection_score"])
