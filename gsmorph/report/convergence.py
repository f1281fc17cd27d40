"""The convergence table of the report: one row per trained run, from the diagnostics its
summary.json holds (gsmorph/convergence.py; the rule is that module's docstring).

stats/convergence.csv holds every column; tables/convergence.md the readable subset.
"""
from __future__ import annotations

import pandas as pd

from gsmorph.report import names

CAPTION = ("Convergence of every trained run (gsmorph/convergence.py): relative change (%) of each training "
           "loss over the last fifth of the epochs (a least-squares line); rise of the validation Dice (points) "
           "over the last checks (a line; one-sided p of a positive slope); plateau: yes, no (the reason "
           "follows) or undecided (too few epochs or checks); such runs carry a caveat in Table 1's caption.")
KEYS = ["dataset", "backbone", "method", "seed"]
COLUMNS = ["epochs_done", "best_epoch", "conv_best_is_last", "selection", "stopped_early", "conv_loss_epochs",
           "conv_rel_change_loss_sim", "conv_rel_change_loss_reg", "conv_val_checks", "conv_val_dice_slope",
           "conv_val_dice_slope_se", "conv_val_dice_slope_p", "conv_val_dice_rise", "converged", "conv_reasons"]


def table(summaries: pd.DataFrame) -> pd.DataFrame:
    """The runs with convergence diagnostics, in table order (empty with KEYS + COLUMNS
    when none has them, e.g. runs made before the diagnostics existed)."""
    if summaries.empty or "converged" not in summaries.columns:
        return pd.DataFrame(columns=KEYS + COLUMNS)
    runs = summaries[summaries["conv_loss_epochs"].notna()] if "conv_loss_epochs" in summaries else summaries
    runs = runs.reindex(columns=KEYS + COLUMNS)
    runs = runs.assign(rank=runs["method"].map(names.method_rank))
    return runs.sort_values(["dataset", "backbone", "rank", "seed"]).drop(columns="rank").reset_index(drop=True)


def _percent(value, digits: int = 1) -> str:
    return "" if pd.isna(value) else f"{float(value) * 100:+.{digits}f}"


def to_markdown(frame: pd.DataFrame) -> str:
    """A Markdown table: the run, its epochs, the losses' relative change (%) over the last
    fifth, the validation Dice's rise (points) over the last checks with its slope's
    one-sided p, whether the best check is the last, and the verdict."""
    head = ("| Data | Backbone | Method | Seed | Epochs | Best epoch (last?) | loss_sim change (%) "
            "| loss_reg change (%) | val Dice rise (points, p) | Plateau |")
    lines = [CAPTION, "", head, "|" + "---|" * (head.count("|") - 1)]
    for r in frame.itertuples(index=False):
        verdict = {True: "yes", False: "no"}.get(r.converged, "undecided")
        if verdict != "yes" and isinstance(r.conv_reasons, str) and r.conv_reasons:
            verdict += f": {r.conv_reasons}"
        rise = "" if pd.isna(r.conv_val_dice_rise) else \
            f"{float(r.conv_val_dice_rise) * 100:+.1f} (p {float(r.conv_val_dice_slope_p):.2g})"
        best = f"{int(r.best_epoch)}" + (" (last)" if r.conv_best_is_last is True else "") \
            if not pd.isna(r.best_epoch) else ""
        lines.append(f"| {names.dataset_name(r.dataset)} | {names.backbone_name(r.backbone)} "
                     f"| {names.method_name(r.method, r.backbone)} | {r.seed} | {int(r.epochs_done)} | {best} "
                     f"| {_percent(r.conv_rel_change_loss_sim)} | {_percent(r.conv_rel_change_loss_reg)} "
                     f"| {rise} | {verdict} |")
    return "\n".join(lines) + "\n"
