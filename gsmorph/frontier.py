"""The weighted loss's accuracy-smoothness frontier on test, and GSMorph's gap to it.

Points: every weighted-loss run (fixed lambdas, lambda-sweep methods, the tuned one's
best), one per dataset x backbone x method x seed: its test Dice (% , mean over LV, Myo,
RV, then over subjects) and NJD (%, mean over subjects). The frontier of one seed is the
set of its points no other point beats on both (higher Dice and lower NJD). Its Dice at
an NJD x: linear interpolation between the frontier points around x (monotone: Dice
rises with NJD along it); above its largest NJD the frontier's best Dice (a weighted run
at most as folded as x reaches it); below its smallest NJD undefined (NaN, `where`
"below": nothing as smooth was trained). GSMorph's gap = its Dice minus that, per seed;
over seeds the mean with a Student-t 95% CI (a training run is the unit).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from gsmorph import methods
from gsmorph.stats import mean_ci

POINT_COLUMNS = ["dataset", "backbone", "method", "seed", "lam", "dice_pct", "njd_pct", "on_frontier"]
GAP_COLUMNS = ["dataset", "backbone", "seed", "gsmorph_dice_pct", "gsmorph_njd_pct", "frontier_dice_pct",
               "where", "gap_dice_pct", "n_points", "n_seeds", "ci_low", "ci_high"]


is_weighted_loss = methods.is_weighted_loss  # which runs are points (gsmorph/methods.py)


def pareto_mask(njd, dice) -> np.ndarray:
    """True for the points no other point dominates (NJD <= and Dice >=, one strictly)."""
    njd, dice = np.asarray(njd, float), np.asarray(dice, float)
    better = (njd[None, :] <= njd[:, None]) & (dice[None, :] >= dice[:, None]) \
        & ((njd[None, :] < njd[:, None]) | (dice[None, :] > dice[:, None]))
    return ~better.any(axis=1)


def dice_at(front_njd, front_dice, x: float) -> tuple[float, str]:
    """(the frontier's Dice at NJD x, 'inside' | 'above' | 'below' its NJD range)."""
    order = np.argsort(front_njd)
    njd, dice = np.asarray(front_njd, float)[order], np.asarray(front_dice, float)[order]
    if len(njd) == 0 or not np.isfinite(x):
        return float("nan"), "none"
    if x < njd[0]:
        return float("nan"), "below"
    if x > njd[-1]:
        return float(dice.max()), "above"
    return float(np.interp(x, njd, dice)), "inside"


def test_points(seed_values: pd.DataFrame, lams: dict | None = None) -> pd.DataFrame:
    """POINT_COLUMNS of every weighted-loss run and GSMorph (on_frontier False for it).
    seed_values: stats.seed_subject_values; lams: {(dataset, backbone, method, seed): lambda}."""
    lams = lams or {}
    dice = seed_values[(seed_values.metric == "dice") & (seed_values.structure == "mean")]
    njd = seed_values[(seed_values.metric == "njd_pct") & (seed_values.structure == "")]
    keys = ["dataset", "backbone", "method", "seed"]
    d = dice.groupby(keys)["value"].mean() * 100
    n = njd.groupby(keys)["value"].mean()
    if d.empty or n.empty:
        return pd.DataFrame(columns=POINT_COLUMNS)
    both = pd.concat({"dice_pct": d, "njd_pct": n}, axis=1).dropna().reset_index()
    both = both[both.method.map(is_weighted_loss) | (both.method == methods.REFERENCE)].copy()
    both["lam"] = [lams.get(tuple(k), np.nan) for k in both[keys].itertuples(index=False)]
    both["on_frontier"] = False
    for _, idx in both[both.method != methods.REFERENCE].groupby(["dataset", "backbone", "seed"]).groups.items():
        part = both.loc[idx]
        both.loc[idx, "on_frontier"] = pareto_mask(part.njd_pct, part.dice_pct)
    return both[POINT_COLUMNS].reset_index(drop=True)


def gaps(points: pd.DataFrame, reference: str = methods.REFERENCE) -> pd.DataFrame:
    """GAP_COLUMNS: one row per dataset x backbone x seed of the reference, then one with
    seed 'all' (mean gap over the seeds where it is defined, its t CI with >= 2)."""
    rows = []
    for (dataset, backbone), part in points.groupby(["dataset", "backbone"], sort=True):
        per_seed = []
        for seed, ref in part[part.method == reference].groupby("seed"):
            front = part[(part.seed == seed) & part.on_frontier]
            x, y = float(ref.njd_pct.iloc[0]), float(ref.dice_pct.iloc[0])
            at, where = dice_at(front.njd_pct, front.dice_pct, x)
            per_seed.append(y - at)
            rows.append({"dataset": dataset, "backbone": backbone, "seed": str(seed), "gsmorph_dice_pct": y,
                         "gsmorph_njd_pct": x, "frontier_dice_pct": at, "where": where, "gap_dice_pct": y - at,
                         "n_points": int((part.seed == seed).sum() - 1), "n_seeds": 1})
        finite = np.array([g for g in per_seed if np.isfinite(g)])
        low, high = mean_ci(finite) if len(finite) >= 2 else (np.nan, np.nan)
        if per_seed:
            rows.append({"dataset": dataset, "backbone": backbone, "seed": "all",
                         "gap_dice_pct": float(finite.mean()) if len(finite) else np.nan,
                         "where": ";".join(sorted({r["where"] for r in rows[-len(per_seed):]})),
                         "n_seeds": len(finite), "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=GAP_COLUMNS)


def lambdas(summaries: pd.DataFrame, studies: pd.DataFrame) -> dict:
    """{(dataset, backbone, method, seed): lambda} from summary.json `lam` and, for the tuned
    method, study.json `best_lam`."""
    out = {}
    for frame, column in ((summaries, "lam"), (studies, "best_lam")):
        if frame is None or frame.empty or column not in frame.columns:
            continue
        for r in frame.dropna(subset=[column]).itertuples():
            out.setdefault((r.dataset, r.backbone, r.method, int(r.seed)), float(getattr(r, column)))
    return out


def gap_text(gap: pd.DataFrame, backbones: list[str]) -> str:
    """' GSMorph's gap to the weighted loss's frontier on test ...' for a table caption
    ("" when there is none)."""
    from gsmorph.report import names

    every = gap[(gap.seed.astype(str) == "all") & gap.backbone.isin(list(backbones))] if not gap.empty else gap
    parts = []
    for r in every.itertuples():
        if not np.isfinite(r.gap_dice_pct):
            parts.append(f"{names.dataset_name(r.dataset)}, {names.backbone_name(r.backbone)}: undefined "
                         f"({r.where})")
            continue
        ci = f", 95% CI {r.ci_low:+.2f} to {r.ci_high:+.2f}" if np.isfinite(r.ci_low) else ", no CI"
        parts.append(f"{names.dataset_name(r.dataset)}, {names.backbone_name(r.backbone)}: "
                     f"{r.gap_dice_pct:+.2f} ({int(r.n_seeds)} seed(s){ci})")
    if not parts:
        return ""
    return (" GSMorph's gap to the weighted loss's accuracy-smoothness frontier on test (its Dice minus the "
            "frontier's at its NJD, Dice points; stats/frontier_gap.csv): " + "; ".join(parts) + ".")
