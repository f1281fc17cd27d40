"""The `gsmorph` command: one verb per step of the data flow.

Each verb lives in `gsmorph/commands/<verb>.py` (or `baselines/...`) and exposes
`add_arguments(parser)` and `run(args) -> int`. Verbs are imported lazily so that
light verbs (synth, prepare, evaluate, report) never pay for importing torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from gsmorph.errors import GSMorphError

# verb -> (module, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "synth": ("gsmorph.commands.synth", "write a synthetic cine-MRI phantom in the raw ACDC or M&Ms-1 layout"),
    "prepare": ("gsmorph.commands.prepare", "turn a raw ACDC / M&Ms-1 download (or phantom) into prepared ED/ES pairs"),
    "train": ("gsmorph.commands.train", "train a learned registration method (GSMorph, GS ablations, weighted, HyperMorph)"),
    "infer": ("gsmorph.commands.infer", "register the pairs of a split with a trained run and write per-pair outputs"),
    "tune": ("baselines.commands.tune", "tune the weighted-loss lambda with an Optuna study"),
    "register": ("baselines.commands.register", "register a split with a classical method (demons, syn) or identity"),
    "register-pair": ("gsmorph.commands.register_pair", "register your own moving/fixed NIfTI pair with a trained "
                      "run or a non-learned method; NIfTI outputs"),
    "evaluate": ("gsmorph.commands.evaluate", "compute metrics of per-pair outputs into a long-format CSV"),
    "report": ("gsmorph.commands.report", "statistics, LaTeX/Markdown tables and figures from metrics"),
}


def version() -> str:
    import importlib.metadata as md

    from gsmorph.provenance import git_commit

    try:
        number = md.version("gsmorph-bench")
    except md.PackageNotFoundError:
        number = "unknown"
    commit = git_commit()
    return f"gsmorph {number}" + (f" (git {commit})" if commit else "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gsmorph", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=version())
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, (module, help_text) in VERBS.items():
        sub.add_parser(verb, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in VERBS:
        build_parser().parse_args(argv)  # prints help, the version or a clear "invalid choice" error, exits
        return 2
    verb, rest = argv[0], argv[1:]
    try:
        module = importlib.import_module(VERBS[verb][0])
        parser = argparse.ArgumentParser(prog=f"gsmorph {verb}", description=VERBS[verb][1])
        module.add_arguments(parser)
        args = parser.parse_args(rest)
        return int(module.run(args) or 0)
    except GSMorphError as err:
        print(f"gsmorph {verb}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # disk full, permission, read-only folder: the path and the reason
        where = f"{err.filename}: " if err.filename else ""
        print(f"gsmorph {verb}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
