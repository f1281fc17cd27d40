"""How much model selection moves test Dice: every run of a finished study, its best.pt
(the selection rule the study used) against its last.pt (the last epoch's weights: the
`last` rule, no selection on validation), both evaluated on the test split.

Usage:
  python benchmarks/selection_effect.py --study study --out benchmarks/results/selection_effect
      [--methods weighted-m gsmorph ...]

For every run folder study/runs/<dataset>/<backbone>/<method>/seed<k>/ with a summary.json
(HyperMorph excluded: its lambda is chosen with the best weights), it registers the test
pairs with the last weights (`gsmorph infer --weights last`'s code) and scores them with
`gsmorph evaluate`'s code. The best weights' scores are read from the study's own
results/<dataset>/metrics.csv. Test Dice of a run: `run_dice` (Table 1's pooling).

Writes <out>.csv (dataset, backbone, method, seed, best_epoch, last_epoch, dice_best,
dice_last, last_minus_best; Dice in %) and <out>.md (per method: mean over seeds of
last - best, its range, and how often last is better).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd

SKIP = ("hypermorph",)


def run_dice(metrics: pd.DataFrame) -> pd.Series:
    """Test Dice (%) of each (dataset, backbone, method, seed) of a long metrics table,
    pooled as Table 1 and the frontier pool it (gsmorph.stats.seed_subject_values: a pair's
    mean over structures, a subject's mean over slices, then the mean over subjects)."""
    from gsmorph.stats import seed_subject_values

    values = seed_subject_values(metrics[metrics.metric == "dice"])
    dice = values[values.structure == "mean"]
    return 100.0 * dice.groupby(["dataset", "backbone", "method", "seed"])["value"].mean()


def last_weights_dice(run: Path, prepared: Path, work: Path) -> float:
    from gsmorph.evaluate import evaluate
    from gsmorph.inference import infer_split

    out = infer_split(run, prepared, "test", work / "pairs", device="cpu", weights="last")
    return float(run_dice(evaluate([out], split="test")).iloc[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, required=True, help="the study's output_dir")
    parser.add_argument("--out", type=Path, required=True, help="output path without suffix")
    parser.add_argument("--methods", nargs="*", default=None)
    args = parser.parse_args(argv)

    best = pd.concat([run_dice(pd.read_csv(p)) for p in sorted(args.study.glob("results/*/metrics.csv"))])
    rows = []
    for summary in sorted(args.study.glob("runs/*/*/*/seed*/summary.json")):
        run = summary.parent
        dataset, backbone, method = run.parts[-4], run.parts[-3], run.parts[-2]
        if method in SKIP or (args.methods and method not in args.methods):
            continue
        seed = int(run.name.removeprefix("seed"))
        info = json.loads(summary.read_text())
        with tempfile.TemporaryDirectory() as work:
            last = last_weights_dice(run, args.study / "prepared" / dataset, Path(work))
        dice_best = float(best.loc[(dataset, backbone, method, seed)])
        rows.append({"dataset": dataset, "backbone": backbone, "method": method, "seed": seed,
                     "best_epoch": info.get("best_epoch"), "last_epoch": info.get("epochs_done"),
                     "dice_best": dice_best, "dice_last": last, "last_minus_best": last - dice_best})
        print(f"{dataset} {method} seed{seed}: best {dice_best:.2f} last {last:.2f}", flush=True)
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out.with_suffix(".csv"), index=False)
    lines = ["| data | method | runs | last - best, mean (points) | range | last better |", "|---|---|---|---|---|---|"]
    for (dataset, method), g in table.groupby(["dataset", "method"], sort=True):
        d = g.last_minus_best
        lines.append(f"| {dataset} | {method} | {len(g)} | {d.mean():+.2f} | {d.min():+.2f} to {d.max():+.2f} | "
                     f"{int((d > 0).sum())} of {len(g)} |")
    d = table.last_minus_best
    lines.append(f"| all | all | {len(table)} | {d.mean():+.2f} | {d.min():+.2f} to {d.max():+.2f} | "
                 f"{int((d > 0).sum())} of {len(table)} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
