"""Cost of gradient surgery per training step, against the weighted loss, in one run.

Same network, batch and device for every variant; variants are interleaved round by
round (so a change of machine load hits all of them alike) and the median step time is
reported. A step = forward + gradients + AdamW step. Variants:

* weighted   : one backward of sim + lam * reg (the baseline every ratio refers to)
* two-vjp    : two torch.autograd.grad calls, gradients summed, no surgery: the lower
               bound of any exact surgery (forward + two backward passes)
* engine     : gsmorph.surgery.GradientSurgery (mode layerwise unless --mode)
* engine-bvjp: the same with one batched VJP (is_grads_batched); --no-batched-vjp skips it
* engine-graph: the engine with its surgery captured in a CUDA graph (--cuda-graph, CUDA only)
* public-code: the paper's public-code approach re-implemented: both gradients flattened
               and concatenated over the whole network, then per parameter tensor a
               slice, an inner product read back with .item(), the projection, a copy back

Cases (--case, repeatable; step_timing.CASES, the networks of the GPU measurements, 2D, 128 x 128):
  voxelmorph-8, voxelmorph-32   build("voxelmorph", 2, preset="paper"), batch 8 / 32
  transmorph-s-32               build("transmorph", 2, preset="small", window_size=4)
                                (TransMorph-S of workflow/configs/paper.yaml), batch 32
--batch and --size override a case's batch and image size (e.g. a smaller CPU run).
The header names the commit of the gsmorph package imported, so PYTHONPATH=<checkout>
times another version of the engine with this same script.

Usage: python benchmarks/surgery_overhead.py [--case NAME ...] [--size 128] [--batch N]
       [--rounds 15] [--warmup 2] [--device cpu|cuda] [--threads N] [--mode layerwise]
       [--no-batched-vjp] [--cuda-graph] [--out FILE]
Prints a header naming the device, torch version, load and commit; per case one table of
every variant per clock (wall; on CPU also process CPU time, which a shared machine
disturbs far less), the ratio to one extra backward taken from medians and from
per-round differences (load drifting between rounds cancels); then per clock one
summary table, one row per case:
| network, batch, size | weighted (ms/step) | two-VJP bound | engine | public-code style |
(engine - weighted) / one extra backward | (and the same ratio for engine-graph if run).
--out FILE appends the same Markdown to FILE.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
from pathlib import Path

import torch

from gsmorph.losses import GradientL1Loss
from gsmorph.networks import build
from gsmorph.surgery import GS_MODES, GradientSurgery
from step_timing import CASES, commit, device_name, make_batch, time_steps, variant_step

SUMMARY = ("weighted", "two-vjp", "engine", "public-code")


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


def make_steps(net0, moving, fixed, lam: float, mode: str, batched: bool, graph: bool = False):
    """name -> step function; each variant trains its own copy of the network."""
    reg_loss = GradientL1Loss()
    variants = {}

    def add(name, backward):
        variants[name] = variant_step(net0, moving, fixed, reg_loss, backward)

    def weighted(net, params, sim, reg, state):
        (sim + lam * reg).backward()

    def two_vjp(net, params, sim, reg, state):
        g1 = torch.autograd.grad(sim, params, retain_graph=True)
        g2 = torch.autograd.grad(reg, params)
        for p, a, b in zip(params, g1, g2):
            p.grad = a + b

    def engine(batched_vjp, cuda_graph=False):
        def backward(net, params, sim, reg, state):
            if "engine" not in state:
                extra = {"cuda_graph": True} if cuda_graph else {}  # older engines lack the option
                state["engine"] = GradientSurgery(net, mode=mode, batched_vjp=batched_vjp, **extra)
            state["engine"].backward(sim, reg)
        return backward

    def public(net, params, sim, reg, state):
        public_code_backward(params, sim, reg)

    add("weighted", weighted)
    add("two-vjp", two_vjp)
    add("engine", engine(False))
    if batched:
        add("engine-bvjp", engine(True))
    if graph:
        add("engine-graph", engine(False, cuda_graph=True))
    add("public-code", public)
    return variants


def ratio(med: dict[str, float], name: str) -> float:
    """(variant - weighted) / (one extra backward = two-vjp - weighted)."""
    extra = med["two-vjp"] - med["weighted"]
    return (med[name] - med["weighted"]) / extra if extra > 0 else float("nan")


def paired_ratio(times: dict[str, list[float]], name: str) -> float:
    """As `ratio`, from the medians of per-round differences to the weighted step of the
    same round (load that drifts between rounds cancels)."""
    def over(variant):
        return statistics.median(a - b for a, b in zip(times[variant], times["weighted"]))
    extra = over("two-vjp")
    return over(name) / extra if extra > 0 else float("nan")


def detail_table(times: dict[str, list[float]]) -> list[str]:
    """Markdown rows: every variant's median and minimum step time and its ratios."""
    med = {name: statistics.median(ts) for name, ts in times.items()}
    lines = ["| variant | median (ms) | min (ms) | / weighted | (variant - weighted) / one extra backward "
             "| same, paired by round |", "|---|---|---|---|---|---|"]
    for name, m in med.items():
        lines.append(f"| {name} | {1e3 * m:.1f} | {1e3 * min(times[name]):.1f} | "
                     f"{m / med['weighted']:.3f} | {ratio(med, name):.3f} | {paired_ratio(times, name):.3f} |")
    return lines


def summary_row(label: str, times: dict[str, list[float]]) -> str:
    """One Markdown row in the layout of the GPU measurements (medians, ms per step)."""
    med = {name: statistics.median(ts) for name, ts in times.items()}
    cells = " | ".join(f"{1e3 * med[name]:.1f}" for name in SUMMARY)
    graph = f" {ratio(med, 'engine-graph'):.3f} |" if "engine-graph" in med else ""
    return f"| {label} | {cells} | {ratio(med, 'engine'):.3f} |{graph}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="repeatable; default voxelmorph-8")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=None, help="overrides the case's batch")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--mode", default="layerwise", choices=GS_MODES, help="the engine's surgery mode")
    ap.add_argument("--no-batched-vjp", action="store_true", help="skip the engine-bvjp variant")
    ap.add_argument("--cuda-graph", action="store_true", help="add the engine-graph variant (CUDA only)")
    ap.add_argument("--lam", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="append the Markdown to this file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.cuda_graph and device.type != "cuda":
        ap.error("--cuda-graph needs --device cuda")
    cases = args.case or ["voxelmorph-8"]
    lines = [f"Device {device.type} ({device_name(device)}), torch {torch.__version__}, "
             f"threads {torch.get_num_threads()}; commit {commit()}; "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; engine mode {args.mode}; "
             f"{args.rounds} interleaved rounds after {args.warmup} warm-up; medians.", ""]
    emit(lines, args.out)
    summary: dict[str, list[str]] = {}
    for name in cases:
        title, backbone, kwargs, batch = CASES[name]
        batch = args.batch or batch
        torch.manual_seed(args.seed)
        net = build(backbone, 2, **kwargs).to(device)
        moving, fixed = make_batch(batch, args.size, device, args.seed)
        steps = make_steps(net, moving, fixed, args.lam, args.mode, not args.no_batched_vjp, args.cuda_graph)
        load_start = os.getloadavg()[0]
        clocks = time_steps(steps, args.rounds, args.warmup, device)
        n_params = sum(p.numel() for p in net.parameters())
        n_tensors = sum(1 for _ in net.parameters())
        label = f"{title}, {batch}"
        out = [f"### {title}: {n_params:,} parameters in {n_tensors} tensors, batch {batch} x {args.size} x "
               f"{args.size}; load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end", ""]
        for clock, times in clocks.items():
            out += [f"{clock} time per step:", ""] + detail_table(times) + [""]
            summary.setdefault(clock, []).append(summary_row(label, times))
        emit(out, args.out)
        del steps, net
    out = []
    for clock, rows in summary.items():
        out += [f"Summary, {clock} time (ms per step, medians), {args.size} x {args.size}:", "",
                "| network, batch | weighted | two-VJP bound | engine | public-code style | "
                "(engine - weighted) / one extra backward |" + (" same, engine-graph |" if args.cuda_graph else ""),
                "|---|---|---|---|---|---|" + ("---|" if args.cuda_graph else "")] + rows + [""]
    emit(out, args.out)
    return 0


def emit(lines: list[str], out: Path | None) -> None:
    """Prints Markdown lines and appends them to `out` if given."""
    text = "\n".join(lines) + "\n"
    print(text, end="", flush=True)
    if out is not None:
        with out.open("a") as f:
            f.write(text)


if __name__ == "__main__":
    raise SystemExit(main())
