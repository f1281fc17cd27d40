"""Model selection and early stopping: which checkpoint of a run becomes best.pt, and when
training stops before its epoch budget.

Config keys (gsmorph/config.py DEFAULTS):
  selection         best     the check with the highest validation Dice (the paper's)
                    smoothed the check ending the `selection_window` consecutive checks with
                             the highest mean validation Dice (a moving mean: one lucky
                             check cannot win alone); fewer checks so far: the mean of those
                    last     the weights of the last check (no selection on validation)
  selection_window  checks in the smoothed rule's mean (>= 1; 1 is `best`)
  patience          early stopping: stop after this many consecutive checks without a new
                    highest score (null: off). The score is the rule's: the check's Dice
                    (best, last) or the moving mean (smoothed).

Each rule is a function of the validation history alone (the (epoch, Dice) of every check
so far), so the trainer applies it check by check, and a resumed run, whose history comes
back from last.pt, continues exactly as an uninterrupted one. Ties keep the earlier check.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

RULES = ("best", "smoothed", "last")

History = list[tuple[int, float]]  # (epoch, validation Dice) of every check, in order


def score(history: History, rule: str, window: int) -> float:
    """The selection score of the latest check of `history`."""
    if rule == "smoothed":
        tail = [d for _, d in history[-int(window):]]
        return sum(tail) / len(tail)
    return history[-1][1]


def is_better(new: float, best: float) -> bool:
    """A score beats the best so far (NaN: no best yet); ties keep the earlier check."""
    return math.isnan(best) or new > best


@dataclass
class Tracker:
    """The rule's state between checks (saved in last.pt): the highest score so far and the
    checks since it was reached."""

    rule: str
    window: int
    patience: int | None = None
    best_score: float = math.nan
    since_best: int = 0

    def update(self, history: History) -> tuple[bool, float]:
        """Take the latest check of `history`: (whether it becomes the selected checkpoint,
        its score)."""
        s = score(history, self.rule, self.window)
        better = is_better(s, self.best_score)
        if better:
            self.best_score, self.since_best = s, 0
        else:
            self.since_best += 1
        return (self.rule == "last" or better), s

    def should_stop(self) -> bool:
        """Patience is spent: `patience` checks in a row without a new highest score."""
        return self.patience is not None and self.since_best >= int(self.patience)

    def state(self) -> dict:
        return {"best_score": self.best_score, "since_best": self.since_best}

    def load(self, state: dict) -> None:
        self.best_score, self.since_best = float(state["best_score"]), int(state["since_best"])


def replay(history: History, rule: str, window: int, patience: int | None = None) -> dict:
    """The rule applied check by check over a whole history, as training applies it:
    {"epoch": the selected check's epoch, "score": its score, "best_score": the highest
    score, "stop_epoch": the check at which patience stops training (None: never)}."""
    tracker = Tracker(rule, window, patience)
    out = {"epoch": None, "score": math.nan, "best_score": math.nan, "stop_epoch": None}
    for i in range(len(history)):
        selected, s = tracker.update(history[:i + 1])
        if selected:
            out["epoch"], out["score"] = history[i][0], s
        if tracker.should_stop():
            out["stop_epoch"] = history[i][0]
            break
    out["best_score"] = tracker.best_score
    return out
