"""The flags several verbs share, defined once so that they mean the same everywhere:

--split    train | val | test | all (default test): the subjects registered or evaluated
--config   a YAML config (method keys at top level or under `method:`)
--set      JSON overrides of config keys, checked against the same schema as the workflow's
--workers  processes (default: every core this process may use)
--seed     a non-negative integer (default 0)
--device   auto | cpu | cuda | cuda:N (default auto: CUDA when torch sees it)
--pairs-out (train, tune) also register a split's pairs with the finished model, as
           `gsmorph infer` does, in the same process (with --split and --nifti)
--nifti    also write the registered pairs as NIfTI (moved image, moved labels,
           displacement) in <pairs folder>/nifti/, for a viewer
"""
from __future__ import annotations

import argparse
import os

SPLITS = ("train", "val", "test", "all")


def available_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _split(parser):
    parser.add_argument("--split", default="test", choices=SPLITS, help="subjects to register (default test)")


def _config(parser):
    parser.add_argument("--config", default=None, help="YAML config (method keys at top level or under 'method:')")
    parser.add_argument("--set", dest="overrides", default=None, metavar="JSON",
                        help="JSON object overriding config keys, e.g. '{\"epochs\": 3}'")


def _workers(parser):
    parser.add_argument("--workers", type=_positive, default=None,
                        help=f"parallel processes (default: every usable core, {available_cores()} here)")


def _seed(parser):
    parser.add_argument("--seed", type=_non_negative, default=0, help="random seed (default 0)")


def _required_seed(parser):
    parser.add_argument("--seed", type=_non_negative, required=True, help="random seed")


def _device(parser):
    parser.add_argument("--device", default=None,
                        help="auto | cpu | cuda | cuda:N (default: the config's `device`, auto: CUDA when available)")


def _pairs_out(parser):
    parser.add_argument("--pairs-out", default=None, metavar="DIR",
                        help="when training is done, also register the --split pairs with the model into this "
                             "pairs folder, as `gsmorph infer` does (one process instead of two)")
    _split(parser)
    _nifti(parser)


def _nifti(parser):
    parser.add_argument("--nifti", action="store_true",
                        help="also write the pairs as NIfTI (moved image, moved labels, displacement in mm, on the "
                             "prepared fixed frame's grid and affine) in <pairs folder>/nifti/, for a viewer")


def check_pairs_out(pairs_out: str | None, prepared: str, *inputs) -> None:
    """Refuse a --pairs-out inside an input or the run folder before any training starts."""
    if pairs_out:
        from gsmorph.io import check_not_input

        check_not_input(pairs_out, [prepared, *inputs])


def infer_if_asked(args: argparse.Namespace, pairs_out: str | None, run_dir, method_name: str) -> None:
    """With a pairs folder (--pairs-out): register the --split pairs of --prepared with the
    run in `run_dir` into it (gsmorph infer)."""
    if pairs_out:
        from gsmorph.inference import infer_split

        out = infer_split(run_dir, args.prepared, args.split, pairs_out, method_name=method_name,
                          device=args.device or "auto", nifti=bool(getattr(args, "nifti", False)))
        print(f"pairs: {out}")


ADDERS = {"split": _split, "pairs_out": _pairs_out, "config": _config, "workers": _workers, "seed": _seed, "required_seed": _required_seed,
          "device": _device, "nifti": _nifti}


def add_common(parser: argparse.ArgumentParser, *names: str) -> None:
    """Add the shared flags `names` (keys of ADDERS) to a verb's parser."""
    for name in names:
        ADDERS[name](parser)


def workers(value: int | None) -> int:
    return value or available_cores()
