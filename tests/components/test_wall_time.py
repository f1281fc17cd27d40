"""wall_s of a run is its training time: start-up left out, resumed parts added, and an
invocation that trains no epoch adds nothing (the cost figure compares these numbers)."""
import time

import pandas as pd
import pytest

from gsmorph import checkpoints
from gsmorph.config import load_config
from gsmorph.io import read_json
from gsmorph.training import Trainer, train_method

pytestmark = pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")

STARTUP_S = 0.5  # a known delay added to start-up (data loading), which must not count


def cfg(epochs):
    return load_config(None, {"backbones": {"voxelmorph": {"features": [8, 16, 32]}}, "epochs": epochs,
                              "batch_size": 4, "val_every": 1, "max_train_pairs": 8, "max_val_pairs": 4,
                              "device": "cpu", "num_threads": 1})


@pytest.fixture()
def slow_startup(monkeypatch):
    original = Trainer.initialize

    def initialize(self):
        time.sleep(STARTUP_S)
        original(self)

    monkeypatch.setattr(Trainer, "initialize", initialize)


def timed(*args, **kwargs):
    start = time.perf_counter()
    summary = train_method(*args, **kwargs)
    return summary, time.perf_counter() - start


def test_start_up_is_not_training_time(prepared_acdc, tmp_path, slow_startup):
    run = tmp_path / "run"
    first, outer = timed(prepared_acdc, "voxelmorph", "weighted", 0, run, cfg(1), lam=0.01)
    log = pd.read_csv(run / "train_log.csv")
    assert log["epoch_s"].sum() <= first["wall_s"] <= outer - STARTUP_S
    # a resume that trains epoch 2 adds that epoch (and its final steps), not its start-up
    second, outer = timed(prepared_acdc, "voxelmorph", "weighted", 0, run, cfg(2), lam=0.01)
    log = pd.read_csv(run / "train_log.csv")
    assert log["wall_s"].is_monotonic_increasing and len(log) == 2
    assert log["wall_s"].iloc[0] + log["epoch_s"].iloc[1] <= second["wall_s"]
    assert second["wall_s"] <= first["wall_s"] + outer - STARTUP_S


def test_a_finished_run_invoked_again_adds_nothing(prepared_acdc, tmp_path, slow_startup):
    run = tmp_path / "run"
    first = train_method(prepared_acdc, "voxelmorph", "weighted", 0, run, cfg(1), lam=0.01)
    log = (run / "train_log.csv").read_text()
    for _ in range(2):
        again = train_method(prepared_acdc, "voxelmorph", "weighted", 0, run, cfg(1), lam=0.01)
        assert again["wall_s"] == first["wall_s"] and again["epochs_done"] == 1
        assert read_json(run / "summary.json")["wall_s"] == first["wall_s"]
    assert (run / "train_log.csv").read_text() == log


def test_a_run_killed_after_its_last_checkpoint_keeps_the_checkpoint_time(prepared_acdc, tmp_path):
    run = tmp_path / "run"
    train_method(prepared_acdc, "voxelmorph", "weighted", 0, run, cfg(1), lam=0.01)
    (run / "summary.json").unlink()  # as if killed before the final steps
    checkpoint_wall = float(checkpoints.load(run / "last.pt")["wall_s"])
    again = train_method(prepared_acdc, "voxelmorph", "weighted", 0, run, cfg(1), lam=0.01)
    assert again["wall_s"] == checkpoint_wall  # last.pt's time; the final steps were lost, no start-up added


def test_a_tuning_trial_costs_its_training_time(prepared_acdc, tmp_path):
    """The tuning cost sums trials' wall_s in the same scope as a training run's."""
    from baselines import tuning

    trial_cfg = load_config(None, {**{k: v for k, v in cfg(1).items() if k != "tune"},
                                   "tune": {"heartbeat_s": 0.2, "stale_after_s": 5.0}})
    out = tmp_path / "tune"
    info = tuning.tune(str(prepared_acdc), "voxelmorph", 1, str(tmp_path / "s.log"), "s", 0, str(out), trial_cfg)
    trials = pd.read_csv(out / "trials.csv")
    summary = read_json(out / "trials" / "trial_0000" / "summary.json")
    assert trials["wall_s"].tolist() == [pytest.approx(summary["wall_s"], rel=1e-12)]  # as read back from the CSV
    assert info["total_wall_s"] == pytest.approx(summary["wall_s"], rel=1e-12)
