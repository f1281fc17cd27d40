"""Training-step cost of every general gradient-aggregation mode against GSMorph's and the
weighted loss's, as ratios in one run.

Same network, batch and device for every variant; variants interleaved round by round (a
change of machine load hits all of them alike); medians of wall and (on CPU) process CPU
time. A step = forward + gradients + AdamW step. Variants: ``weighted`` (one backward of
sim + lam reg), ``gsmorph`` (GradientSurgery mode layerwise), and every mode of
gsmorph.aggregators (per tensor and -network), each through GradientSurgery. With torchjd
installed, also ``torchjd-upgrad-per-tensor``: the surgery done by calling torchjd's UPGrad
once per parameter tensor, the cost the batched rules avoid.

Usage: python benchmarks/aggregator_cost.py [--case voxelmorph-8] [--size 64] [--batch 8]
       [--rounds 7] [--warmup 1] [--device cpu|cuda] [--threads 1] [--out FILE]
Prints a header (device, torch, commit) and one Markdown table: per variant the median
ms/step per clock and the ratios to gsmorph and to weighted. --out writes it to FILE.
"""
from __future__ import annotations

import argparse
import datetime
import statistics
from pathlib import Path

import torch

from gsmorph import aggregators
from gsmorph.losses import GradientL1Loss
from gsmorph.networks import build
from gsmorph.surgery import GradientSurgery
from step_timing import CASES, commit, device_name, make_batch, time_steps, variant_step


def make_steps(net0, moving, fixed, lam: float, modes: list[str], with_torchjd: bool) -> dict:
    """name -> step function; each variant trains its own copy of the network."""
    reg_loss = GradientL1Loss()
    steps = {}

    def add(name, backward):
        steps[name] = variant_step(net0, moving, fixed, reg_loss, backward)

    def weighted(net, params, sim, reg, engine):
        (sim + lam * reg).backward()

    def surgery(mode):
        def backward(net, params, sim, reg, engine):
            if "e" not in engine:
                engine["e"] = GradientSurgery(net, mode=mode)
            engine["e"].backward(sim, reg)
        return backward

    def torchjd_per_tensor(net, params, sim, reg, engine):
        if "agg" not in engine:
            engine["agg"] = aggregators.oracle("upgrad")
        g_sim = torch.autograd.grad(sim, params, retain_graph=True)
        g_reg = torch.autograd.grad(reg, params)
        for p, s, r in zip(params, g_sim, g_reg):
            p.grad = engine["agg"](torch.stack([s.flatten(), r.flatten()])).view_as(p)

    add("weighted", weighted)
    add("gsmorph", surgery("layerwise"))
    for mode in modes:
        add(mode, surgery(mode))
    if with_torchjd:
        add("torchjd-upgrad-per-tensor", torchjd_per_tensor)
    return steps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="voxelmorph-8", choices=sorted(CASES))
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=None, help="default: the case's")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lam", type=float, default=0.01)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    label, backbone, kwargs, batch = CASES[args.case]
    batch = args.batch or batch
    torch.manual_seed(0)
    net = build(backbone, 2, **kwargs).to(device)
    n_tensors = sum(1 for p in net.parameters() if p.requires_grad)
    moving, fixed = make_batch(batch, args.size, device)
    try:
        import torchjd  # noqa: F401
        with_torchjd = True
    except ImportError:
        with_torchjd = False
    steps = make_steps(net, moving, fixed, args.lam, list(aggregators.MODES), with_torchjd)
    times = time_steps(steps, args.rounds, args.warmup, device)
    clocks = list(times)
    lines = [f"# Training-step cost of the aggregation modes ({datetime.date.today()})", "",
             f"{label} ({n_tensors} parameter tensors), batch {batch}, {args.size} x {args.size}, "
             f"{device_name(device)}, {args.threads} thread(s), torch {torch.__version__}, commit {commit()}; "
             f"median of {args.rounds} interleaved rounds after {args.warmup} warm-up.", "",
             "| variant | " + " | ".join(f"{c} ms/step" for c in clocks)
             + " | " + " | ".join(f"{c} / gsmorph | {c} / weighted" for c in clocks) + " |",
             "|---|" + "---|" * (3 * len(clocks))]
    med = {c: {name: statistics.median(v) for name, v in times[c].items()} for c in clocks}
    for name in steps:
        cells = [f"{1000 * med[c][name]:.1f}" for c in clocks]
        cells += [f"{med[c][name] / med[c]['gsmorph']:.2f} | {med[c][name] / med[c]['weighted']:.2f}" for c in clocks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
