"""Which trials of a study count toward its target number (see study.py)."""
from __future__ import annotations

import optuna
from optuna.trial import TrialState

from baselines.tuning.liveness import NOT_COUNTED


def retried_numbers(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    """Numbers of trials Optuna failed as stale and queued again (their retries say so)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def trials_and_retried(study: optuna.Study) -> tuple[list[optuna.trial.FrozenTrial], set[int]]:
    """One snapshot of the study's trials and the numbers among them Optuna retried."""
    trials = study.get_trials(deepcopy=False)
    return trials, retried_numbers(trials)


def is_counted(trial: optuna.trial.FrozenTrial, retried: set[int] = frozenset()) -> bool:
    """COMPLETE and PRUNED trials always count (even if a worker that wrongly took their
    owner for dead tagged them); FAIL and RUNNING ones unless tagged `not_counted` or
    retried by Optuna."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return (trial.state in (TrialState.FAIL, TrialState.RUNNING) and not trial.user_attrs.get(NOT_COUNTED)
            and trial.number not in retried)


def is_finished(trial: optuna.trial.FrozenTrial, retried: set[int] = frozenset()) -> bool:
    return is_counted(trial, retried) and trial.state != TrialState.RUNNING


def counted(study: optuna.Study, below: int | None = None) -> int:
    """Counted trials of the study (with a number below `below`, if given)."""
    trials, retried = trials_and_retried(study)
    return sum(is_counted(t, retried) for t in trials if below is None or t.number < below)
