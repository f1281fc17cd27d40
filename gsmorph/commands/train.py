"""`gsmorph train`: train learned registration methods (the trained family of
gsmorph/methods.py) into run folders, with the trainer the method table names.

Several --method values train one after another in this one process (sparing the start-up,
importing torch and MONAI, per run); --out and --pairs-out then name each run's folder
with `{method}`, e.g. --out runs/acdc/voxelmorph/{method}/seed0.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from gsmorph import backbones, methods
from gsmorph.cli_options import add_common, check_pairs_out, infer_if_asked
from gsmorph.errors import GSMorphError

PLACEHOLDER = "{method}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prepared", required=True, help="prepared folder (gsmorph prepare)")
    parser.add_argument("--backbone", required=True, choices=backbones.names(), help="network")
    parser.add_argument("--method", required=True, nargs="+", choices=methods.ids("trained", None),
                        help="method(s); several train one after another in this process")
    parser.add_argument("--lam", type=float, default=None,
                        help="smoothness weight (only for methods that take one: "
                             f"{', '.join(m.id for m in methods.METHODS if m.takes_lam)})")
    add_common(parser, "required_seed")
    parser.add_argument("--out", required=True,
                        help="run folder; an existing one is resumed from last.pt (with several methods: "
                             f"a path holding {PLACEHOLDER})")
    parser.add_argument("--fresh-if-changed", action="store_true",
                        help="start afresh (removing the run's files) when the folder holds a run made with "
                             "another config, code, data or thread count, instead of refusing")
    add_common(parser, "config", "device", "pairs_out")


def folders(args: argparse.Namespace) -> list[tuple[str, str, str | None]]:
    """(method, run folder, pairs folder or None) of every --method, checked before any training."""
    several = len(args.method) > 1
    if len(set(args.method)) < len(args.method):
        raise GSMorphError(f"--method: {' '.join(args.method)} names a method twice")
    if several and args.lam is not None:
        raise GSMorphError("--lam: give one --method with it, not several")
    for flag, value in (("--out", args.out), ("--pairs-out", args.pairs_out)):
        if several and value is not None and PLACEHOLDER not in value:
            raise GSMorphError(f"{flag} {value}: with several methods it must hold {PLACEHOLDER}")
    return [(method, args.out.replace(PLACEHOLDER, method),
             args.pairs_out.replace(PLACEHOLDER, method) if args.pairs_out else None) for method in args.method]


def run(args: argparse.Namespace) -> int:
    from gsmorph.config import load_config
    from gsmorph.device import apply_threads
    from gsmorph.training import train_method

    runs = folders(args)
    for _, out, pairs_out in runs:
        check_pairs_out(pairs_out, args.prepared, out)
    cfg = load_config(args.config, args.overrides, device=args.device)
    apply_threads(cfg)
    print(f"training {int(cfg['epochs'])} epochs ({epochs_source(args)})", flush=True)
    for method, out, pairs_out in runs:
        summary = train_method(args.prepared, args.backbone, method, args.seed, out, cfg, lam=args.lam,
                               fresh_if_changed=args.fresh_if_changed)
        print(json.dumps(summary, indent=2, sort_keys=True, default=str))
        infer_if_asked(args, pairs_out, out, method)
    return 0


def epochs_source(args: argparse.Namespace) -> str:
    """Where the number of epochs came from: --set, the --config file, or the default."""
    from gsmorph.config import DEFAULTS

    overrides = json.loads(args.overrides) if isinstance(args.overrides, str) else (args.overrides or {})
    if "epochs" in overrides:
        return "from --set"
    if args.config is not None:
        import yaml

        data = yaml.safe_load(Path(args.config).read_text()) or {}  # a mapping: load_config checked it
        if "epochs" in (data.get("method", data) or {}):
            return f"from {args.config}"
    return (f"the default, the paper's {DEFAULTS['epochs']}; set another with --set '{{\"epochs\": N}}' "
            "or --config")
