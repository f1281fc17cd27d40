"""`gsmorph register-pair`: register your own moving/fixed NIfTI pair with a trained run
(--run) or a non-learned method (--method), writing NIfTI outputs (gsmorph/register_images.py)."""
from __future__ import annotations

import argparse

from gsmorph.cli_options import add_common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--moving", required=True, help="moving image (NIfTI, 2D or 3D)")
    parser.add_argument("--fixed", required=True, help="fixed image (NIfTI, on the moving image's grid)")
    parser.add_argument("--moving-label", default=None, help="labels of the moving image, warped too (optional)")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--run", help="a run folder made by gsmorph train (or tune's best/)")
    how.add_argument("--method", help="a non-learned method: initial, demons, syn")
    parser.add_argument("--out", required=True,
                        help="output folder: moved_image.nii.gz, disp.nii.gz (mm, world axes, DISPVECT), "
                             "moved_label.nii.gz, registration.json")
    parser.add_argument("--intensity", default="percentile", choices=("percentile", "minmax"),
                        help="how the pair is scaled to [0, 1] for registration, as gsmorph prepare (default percentile)")
    add_common(parser, "config", "device", "seed")


def run(args: argparse.Namespace) -> int:
    from gsmorph.config import load_config
    from gsmorph.register_images import register_images

    cfg = load_config(args.config, args.overrides, device=args.device)
    out = register_images(args.moving, args.fixed, args.out, run=args.run, method=args.method,
                          moving_label=args.moving_label, cfg=cfg, device=args.device or cfg.get("device", "auto"),
                          intensity=args.intensity, seed=args.seed)
    print(f"gsmorph register-pair: wrote {out}")
    return 0
