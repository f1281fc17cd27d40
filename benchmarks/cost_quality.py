"""paper_cost.py --quality: validation Dice of short runs, fp32 against the fast option sets."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from cost_measure import prepare_phantoms
from cost_tables import OPTION_SETS, method_config, write_csv


# ============================================================================= quality
def run_quality(args, config: dict, work: Path) -> list[dict]:
    from gsmorph.device import resolve_device
    from gsmorph.training import train_method

    device = resolve_device(args.device)
    dataset = (args.time_datasets or args.datasets or list(config["datasets"]))[0]
    prepared = prepare_phantoms(config, [dataset], work, args.size)[dataset]
    rows = []
    for backbone, epochs in zip(args.quality_backbones, args.quality_epochs):
        for options in ["fp32"] + [o for o in args.quality_options if o != "fp32"]:
            for seed in range(args.quality_seeds):
                cfg = method_config(config, device=str(device), epochs=epochs,
                                    val_every=max(1, epochs // 5), **OPTION_SETS[options])
                out = Path(tempfile.mkdtemp(prefix="quality-", dir=work))
                start = time.perf_counter()
                try:
                    summary = train_method(prepared, backbone, "gsmorph", args.seed + seed, out / "run", cfg)
                except Exception as err:  # one failing option must not lose the others
                    print(f"quality {backbone} {options} seed {args.seed + seed}: FAILED "
                          f"({type(err).__name__}: {err})", flush=True)
                    continue
                rows.append({"dataset": dataset, "backbone": backbone, "method": "gsmorph", "options": options,
                             "seed": args.seed + seed, "epochs": epochs, "best_val_dice": summary["best_val_dice"],
                             "val_njd_pct": summary["val_njd_pct"], "wall_s": round(time.perf_counter() - start, 1)})
                print(f"quality {backbone} {options} seed {args.seed + seed}: val Dice "
                      f"{summary['best_val_dice']:.4f} ({rows[-1]['wall_s']} s)", flush=True)
                write_csv(Path(args.out_dir) / "quality.csv", rows, list(rows[0]))
    return rows


def quality_markdown(rows: list[dict]) -> str:
    lines = ["## Validation Dice, fp32 and the fast options (GSMorph, short runs)", "",
             "| backbone | epochs | options | seeds | best val Dice (each seed) | mean | fp32 spread | "
             "mean - fp32's |", "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["backbone"], r["epochs"], r["options"]), []).append(r)
    for (backbone, epochs, options), rs in groups.items():
        ref = groups.get((backbone, epochs, "fp32"), rs)
        dice = [float(r["best_val_dice"]) for r in rs]
        ref_dice = [float(r["best_val_dice"]) for r in ref]
        lines.append(f"| {backbone} | {epochs} | {options} | {len(rs)} | {', '.join(f'{d:.4f}' for d in dice)} | "
                     f"{statistics.mean(dice):.4f} | {max(ref_dice) - min(ref_dice):.4f} | "
                     f"{statistics.mean(dice) - statistics.mean(ref_dice):+.4f} |")
    return "\n".join(lines) + "\n"
