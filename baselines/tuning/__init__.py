"""Optuna tuning of a weighted loss's lambda: the "Tuned" baseline and its compute cost.

By concern: storage.py (where a study lives), liveness.py (which workers are alive, the
heartbeat), counting.py (which trials count), study.py (one worker: trials, sampling,
pruning), outputs.py (trials.csv, study.json, best/).
"""
from baselines.tuning.counting import counted, is_counted, is_finished, retried_numbers
from baselines.tuning.liveness import NOT_COUNTED, fail_dead_trials, worker_is_dead
from baselines.tuning.outputs import choose_best, trials_frame, write_outputs
from baselines.tuning.storage import resolve_storage
from baselines.tuning.study import (
    OBJECTIVES, TrialFailed, TrialSeededTPE, check_tune_config, open_study, run_trial, study_settings, tune, warmup_epochs,
)

__all__ = ["NOT_COUNTED", "OBJECTIVES", "TrialFailed", "TrialSeededTPE", "check_tune_config", "choose_best", "counted",
           "fail_dead_trials", "is_counted", "is_finished", "open_study", "resolve_storage", "retried_numbers", "run_trial",
           "study_settings", "trials_frame", "tune", "warmup_epochs", "worker_is_dead", "write_outputs"]
