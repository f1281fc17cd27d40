"""Timing of training-step variants, shared by surgery_overhead.py and aggregator_cost.py.

The networks timed (CASES), a smooth random batch, one step of a variant on its own copy of
the network, the interleaved timing of all variants, and the header facts (device, commit).
A step = forward + gradients + AdamW step; only how the gradients are made differs.
"""
from __future__ import annotations

import copy
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

import gsmorph
from gsmorph.networks import warp_image

# name -> (title, backbone, build kwargs, batch): the networks of the GPU measurements, 2D
CASES = {
    "voxelmorph-8": ("VoxelMorph (paper)", "voxelmorph", {"preset": "paper"}, 8),
    "voxelmorph-32": ("VoxelMorph (paper)", "voxelmorph", {"preset": "paper"}, 32),
    "transmorph-s-32": ("TransMorph-S", "transmorph", {"preset": "small", "window_size": 4}, 32),
}


def make_batch(batch: int, size: int, device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random (moving, fixed) images (B, 1, size, size) in [0, 1]; fixed is moving shifted."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(batch, 1, size + 8, size + 8, generator=gen)
    smooth = F.avg_pool2d(noise, 9, stride=1)
    smooth = (smooth - smooth.amin()) / (smooth.amax() - smooth.amin())
    return smooth.to(device), torch.roll(smooth, shifts=(2, -1), dims=(2, 3)).to(device)


def losses(net, moving, fixed, reg_loss):
    """(similarity MSE of the warped moving image to fixed, smoothness reg_loss of the field)."""
    disp = net(torch.cat([moving, fixed], dim=1))
    return F.mse_loss(warp_image(moving, disp), fixed), reg_loss(disp)


def variant_step(net0, moving, fixed, reg_loss, backward: Callable) -> Callable[[], None]:
    """One variant's training step on its own copy of net0 (AdamW, lr 1e-4):
    backward(net, params, sim, reg, state) sets the gradients of `params` (the copy's
    trainable tensors) from the two losses; `state` is a dict it keeps between steps."""
    net = copy.deepcopy(net0)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    params = [p for p in net.parameters() if p.requires_grad]
    state: dict = {}

    def step():
        opt.zero_grad(set_to_none=True)
        sim, reg = losses(net, moving, fixed, reg_loss)
        backward(net, params, sim, reg, state)
        opt.step()

    return step


def time_steps(steps: dict, rounds: int, warmup: int, device) -> dict[str, dict[str, list[float]]]:
    """clock -> variant -> step times (s), variants interleaved round by round."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(warmup + rounds):
        for name, step in steps.items():  # interleaved: load drift hits every variant alike
            sync()
            w0, c0 = time.perf_counter(), time.process_time()
            step()
            sync()
            if r >= warmup:
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
    return {"wall": wall, "process CPU": cpu} if device.type == "cpu" else {"wall": wall}


def device_name(device) -> str:
    """The GPU's name and CUDA version, or the CPU's model name and core count."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    model = platform.processor() or "CPU"
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"


def commit() -> str:
    """Short hash of the checkout the gsmorph package is imported from (+ a mark if it has
    changes): run with PYTHONPATH=<other checkout> to time another version of the engine."""
    here = Path(gsmorph.__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" with uncommitted changes" if dirty else "")
