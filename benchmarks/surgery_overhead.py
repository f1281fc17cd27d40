"""Cost of gradient surgery per training step, against the weighted loss, in one run.

Same network, batch and device for every variant; variants are interleaved round by
round (so a change of machine load hits all of them alike) and the median step time is
reported. A step = forward + gradients + AdamW step. Variants:

* weighted   : one backward of sim + lam * reg (the baseline every ratio refers to)
* two-vjp    : two torch.autograd.grad calls, gradients summed, no surgery: the lower
               bound of any exact surgery (forward + two backward passes)
* engine     : gsmorph.surgery.GradientSurgery, mode layerwise
* engine-bvjp: the same with one batched VJP (is_grads_batched)
* public-code: the paper's public-code approach re-implemented: both gradients flattened
               and concatenated over the whole network, then per parameter tensor a
               slice, an inner product read back with .item(), the projection, a copy back

Usage: python benchmarks/surgery_overhead.py [--size 128] [--batch 8] [--preset paper]
       [--rounds 15] [--device cpu|cuda] [--threads N]
Prints Markdown tables (wall time and, on CPU, process CPU time, which a shared,
oversubscribed machine disturbs far less) and the ratios; writes nothing.
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from gsmorph.losses import GradientL1Loss
from gsmorph.networks import build, warp_image
from gsmorph.surgery import GradientSurgery


def make_batch(batch: int, size: int, device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random (moving, fixed) images (B, 1, size, size) in [0, 1]; fixed is moving shifted."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(batch, 1, size + 8, size + 8, generator=gen)
    smooth = F.avg_pool2d(noise, 9, stride=1)
    smooth = (smooth - smooth.amin()) / (smooth.amax() - smooth.amin())
    return smooth.to(device), torch.roll(smooth, shifts=(2, -1), dims=(2, 3)).to(device)


def losses(net, moving, fixed, reg_loss):
    disp = net(torch.cat([moving, fixed], dim=1))
    return F.mse_loss(warp_image(moving, disp), fixed), reg_loss(disp)


def public_code_backward(params, sim, reg) -> None:
    """Layer-wise surgery the way the public code does it: flatten + concat, .item() per tensor."""
    g_sim = torch.autograd.grad(sim, params, retain_graph=True)
    g_reg = torch.autograd.grad(reg, params)
    flat_sim = torch.cat([g.reshape(-1) for g in g_sim])
    flat_reg = torch.cat([g.reshape(-1) for g in g_reg])
    start = 0
    for p in params:
        n = p.numel()
        s, r = flat_sim[start:start + n], flat_reg[start:start + n]
        dot = torch.dot(s, r).item()
        if dot < 0:
            s = s - dot / torch.dot(r, r).item() * r
        p.grad = s.view_as(p).clone()
        start += n


def make_steps(net0, moving, fixed, lam: float):
    """name -> (model, optimizer, step function); each variant trains its own copy."""
    reg_loss = GradientL1Loss()
    variants = {}

    def add(name, backward):
        net = copy.deepcopy(net0)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        params = list(net.parameters())
        state = {"engine": None}

        def step():
            opt.zero_grad(set_to_none=True)
            sim, reg = losses(net, moving, fixed, reg_loss)
            backward(net, params, sim, reg, state)
            opt.step()

        variants[name] = step

    def weighted(net, params, sim, reg, state):
        (sim + lam * reg).backward()

    def two_vjp(net, params, sim, reg, state):
        g1 = torch.autograd.grad(sim, params, retain_graph=True)
        g2 = torch.autograd.grad(reg, params)
        for p, a, b in zip(params, g1, g2):
            p.grad = a + b

    def engine(batched):
        def backward(net, params, sim, reg, state):
            if state["engine"] is None:
                state["engine"] = GradientSurgery(net, mode="layerwise", batched_vjp=batched)
            state["engine"].backward(sim, reg)
        return backward

    def public(net, params, sim, reg, state):
        public_code_backward(params, sim, reg)

    add("weighted", weighted)
    add("two-vjp", two_vjp)
    add("engine", engine(False))
    add("engine-bvjp", engine(True))
    add("public-code", public)
    return variants


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--backbone", default="voxelmorph")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--lam", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    net = build(args.backbone, 2, preset=args.preset).to(device)
    moving, fixed = make_batch(args.batch, args.size, device, args.seed)
    steps = make_steps(net, moving, fixed, args.lam)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    load_start = os.getloadavg()[0]
    for r in range(args.warmup + args.rounds):
        for name, step in steps.items():  # interleaved: load drift hits every variant alike
            sync()
            w0, c0 = time.perf_counter(), time.process_time()
            step()
            sync()
            if r >= args.warmup:
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
    n_params = sum(p.numel() for p in net.parameters())
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"{args.backbone} ({args.preset}, {n_params:,} parameters), {args.batch} x {args.size} x {args.size}, "
          f"device {device.type} ({where}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{args.rounds} interleaved rounds after {args.warmup} warm-up; load average "
          f"{load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end, on {os.cpu_count()} cores")
    clocks = [("wall", wall)] + ([("process CPU", cpu)] if device.type == "cpu" else [])
    for clock, times in clocks:
        report(clock, times)
    return 0


def report(clock: str, times: dict[str, list[float]]) -> None:
    """A Markdown table of median step times and the ratios the goal refers to."""
    med = {name: statistics.median(ts) for name, ts in times.items()}
    base = med["weighted"]
    extra_backward = med["two-vjp"] - base
    print()
    print(f"{clock} time per step:")
    print()
    print("| variant | median (ms) | min (ms) | / weighted | (variant - weighted) / one extra backward |")
    print("|---|---|---|---|---|")
    for name, m in med.items():
        over = (m - base) / extra_backward if extra_backward > 0 else float("nan")
        print(f"| {name} | {1e3 * m:.1f} | {1e3 * min(times[name]):.1f} | {m / base:.3f} | {over:.3f} |")
    print()
    engine_over = (med["engine"] - base) / extra_backward if extra_backward > 0 else float("nan")
    print(f"{clock}: engine / weighted = {med['engine'] / base:.3f}; (engine - weighted) / (one extra "
          f"backward) = {engine_over:.3f} (goal <= 1.05); engine / public-code = "
          f"{med['engine'] / med['public-code']:.3f} (goal <= 1)")


if __name__ == "__main__":
    raise SystemExit(main())
