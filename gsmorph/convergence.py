"""Convergence diagnostics of a training run, from its train_log.csv rows.

The rule (thresholds: config `convergence`, gsmorph/config.py DEFAULTS):

* Training losses. For every logged loss (columns `loss_*`), a least-squares line through
  (epoch, loss) over the last `loss_fraction` of the epochs logged (at least 3 epochs); its
  relative change is the line's rise from the window's first to its last epoch divided by
  the mean |loss| of the window. A loss is flat when |relative change| <= `loss_tol`.
* Validation Dice. A least-squares line through (epoch, val Dice) of the last `val_checks`
  validation checks (at least 3): its slope (Dice per epoch), the slope's standard error,
  the one-sided p-value of "slope > 0" (t with n - 2 degrees of freedom) and its rise (slope
  x epochs spanned). The Dice is still rising when rise > `dice_tol` and p < `alpha`.
* A run has reached a plateau (`converged` true) when every loss is flat and the Dice is not
  still rising; `converged` false when a loss is not flat or the Dice still rises; null
  (undecided) with fewer than 3 epochs or 3 validation checks. A run that is not true gets
  a caveat (Trainer.caveat: summary.json `caveat`, the report's captions).
* Also recorded: whether the best validation check is the last one (`best_is_last`).

Every diagnostic is a flat key of summary.json (prefix `conv_`), so the report reads it as
one column of its runs table (stats/convergence.csv).
"""
from __future__ import annotations

import math

import numpy as np

MIN_POINTS = 3  # epochs of the loss window and validation checks a line needs


def loss_relative_change(epochs: np.ndarray, values: np.ndarray) -> float:
    """(fit(last) - fit(first)) / mean |value| of a least-squares line through the points."""
    slope = np.polyfit(epochs.astype(float), values.astype(float), 1)[0]
    scale = float(np.mean(np.abs(values)))
    return float(slope * (epochs[-1] - epochs[0]) / scale) if scale > 0 else 0.0


def dice_trend(epochs: np.ndarray, dice: np.ndarray) -> dict[str, float]:
    """Slope (Dice per epoch), its standard error, one-sided p of slope > 0 and rise over
    the span of a least-squares line through (epochs, dice); n >= 3 points."""
    from scipy import stats

    fit = stats.linregress(epochs.astype(float), dice.astype(float))
    n = len(epochs)
    if fit.stderr > 0:
        p = float(stats.t.sf(fit.slope / fit.stderr, n - 2))
    else:  # points exactly on a line: the sign of the slope decides
        p = 0.0 if fit.slope > 0 else 1.0
    return {"slope": float(fit.slope), "slope_se": float(fit.stderr), "slope_p": p,
            "rise": float(fit.slope * (epochs[-1] - epochs[0]))}


def diagnose(log_rows: list[dict], best_epoch: int, settings: dict) -> dict:
    """summary.json's convergence keys of a run whose train_log rows are `log_rows` (dicts
    with `epoch`, `loss_*` and `val_dice`, None where not validated); settings: config
    `convergence`. Returns {"converged": bool | None, "conv_*": ..., "conv_reasons": str}."""
    out: dict = {}
    reasons, undecided = [], []
    epochs = np.array([int(r["epoch"]) for r in log_rows], dtype=int)
    loss_keys = list(dict.fromkeys(k for r in log_rows for k in r if k.startswith("loss_")))
    window = max(MIN_POINTS, math.ceil(len(epochs) * float(settings["loss_fraction"])))
    out["conv_loss_epochs"] = min(window, len(epochs))
    if len(epochs) < MIN_POINTS:
        undecided.append(f"{len(epochs)} epoch(s) logged ({MIN_POINTS} needed)")
    for key in loss_keys:
        tail = [(int(r["epoch"]), r.get(key)) for r in log_rows[-window:]]
        tail = [(e, v) for e, v in tail if v is not None and math.isfinite(float(v))]
        change = None
        if len(tail) >= MIN_POINTS:
            e, v = (np.array(x, dtype=float) for x in zip(*tail))
            change = loss_relative_change(e, v)
            if abs(change) > float(settings["loss_tol"]):
                reasons.append(f"{key} changed {change:+.1%} over the last {int(e[-1] - e[0]) + 1} epochs")
        out[f"conv_rel_change_{key}"] = change

    checks = [(int(r["epoch"]), float(r["val_dice"])) for r in log_rows
              if r.get("val_dice") is not None and math.isfinite(float(r["val_dice"]))]
    last = checks[-int(settings["val_checks"]):]
    out["conv_val_checks"] = len(last)
    trend = {"slope": None, "slope_se": None, "slope_p": None, "rise": None}
    if len(last) >= MIN_POINTS:
        e, d = (np.array(x, dtype=float) for x in zip(*last))
        trend = dice_trend(e, d)
        if trend["rise"] > float(settings["dice_tol"]) and trend["slope_p"] < float(settings["alpha"]):
            reasons.append(f"validation Dice rising {trend['rise'] * 100:+.1f} points over the last {len(last)} "
                           f"checks (one-sided p {trend['slope_p']:.2g})")
    else:
        undecided.append(f"{len(checks)} validation check(s) ({MIN_POINTS} needed)")
    out.update({f"conv_val_dice_{k}": v for k, v in trend.items()})
    out["conv_best_is_last"] = bool(checks) and int(best_epoch) == checks[-1][0]
    out["converged"] = False if reasons else (None if undecided else True)
    out["conv_reasons"] = "; ".join(reasons or undecided)
    return out


def caveat(diagnostics: dict) -> str:
    """The run's convergence caveat ("" when it reached a plateau)."""
    if diagnostics.get("converged") is True:
        return ""
    if diagnostics.get("converged") is None:
        return f"convergence not judged: {diagnostics['conv_reasons']}"
    return f"not converged: {diagnostics['conv_reasons']}"
