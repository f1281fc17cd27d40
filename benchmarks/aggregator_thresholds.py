"""How many parameter tensors fall under torchjd's absolute thresholds in a training step.

UPGrad, DualProj and CAGrad divide each group's Gramian by its trace |g_sim|^2 + |g_reg|^2,
but set it to zero where the trace is below norm_eps = 1e-4 (torchjd's default): there
UPGrad and DualProj give the mean (g_sim + g_reg) / 2 and CAGrad a zero update. Per
parameter tensor, gradients are small, so this decides what those modes do. This script
counts, over the first steps of the workflow's training (a prepared folder, the default
config), the tensors whose trace is below 1e-4, and does the same for the whole network.

Usage: python benchmarks/aggregator_thresholds.py PREPARED [--steps 5] [--out FILE]
(PREPARED: e.g. aggregators/prepared/acdc after the aggregators config ran). Writes one
Markdown table: step, tensors under the threshold / all, smallest and median trace,
the whole network's trace.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
import yaml

from gsmorph import aggregators
from gsmorph.code_version import ROOT
from gsmorph.config import load_config
from gsmorph.networks import warp_image
from gsmorph.training import Trainer
from gsmorph.training.steps import epoch_batches


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prepared", type=Path)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    method_cfg = yaml.safe_load((ROOT / "config.yaml").read_text())["method"]
    cfg = load_config(None, {**method_cfg, "device": "cpu", "num_threads": 1})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(args.prepared, "voxelmorph", "upgrad", 0, Path(tmp) / "run", cfg)
        trainer.initialize()
        params = trainer.surgery.params
        lines = ["| step | tensors with trace < 1e-4 | smallest trace | median trace | network trace |",
                 "|---|---|---|---|---|"]
        batches = [(trainer.train_data[b]["moving"][idx], trainer.train_data[b]["fixed"][idx])
                   for b, idx in epoch_batches(trainer.data.train, int(cfg["batch_size"]), trainer.shuffle_gen)]  # one epoch, in the training's order
        for step, (moving, fixed) in enumerate(batches, start=1):
            disp, field = trainer.model(torch.cat([moving, fixed], dim=1), with_velocity=True)
            sim = trainer.sim_loss(warp_image(moving, disp), fixed)
            reg = trainer.reg_loss(field)
            g_sim = torch.autograd.grad(sim, params, retain_graph=True, allow_unused=True)
            g_reg = torch.autograd.grad(reg, params, allow_unused=True)
            traces = [float((0 if s is None else s.square().sum()) + (0 if r is None else r.square().sum()))
                      for s, r in zip(g_sim, g_reg)]
            under = sum(t < aggregators.NORM_EPS for t in traces)
            lines.append(f"| {step} | {under} / {len(traces)} | {min(traces):.2e} | {statistics.median(traces):.2e} "
                         f"| {sum(traces):.2e} |")
            trainer.optimizer.zero_grad(set_to_none=True)
            trainer.train_step(moving, fixed)
            trainer.optimizer.step()
            if step >= args.steps:
                break
    text = (f"# Parameter tensors under torchjd's norm_eps ({aggregators.NORM_EPS:g})\n\n"
            f"UPGrad on VoxelMorph {cfg['backbones']['voxelmorph']}, config.yaml's method settings, "
            f"prepared data {args.prepared.name}, seed 0, the first {args.steps} training steps "
            "(trace = |g_sim|^2 + |g_reg|^2 of a tensor).\n\n" + "\n".join(lines) + "\n")
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
