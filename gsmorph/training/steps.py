"""One epoch of training steps and one validation pass, as functions of what they use.

Tensors: images (B, 1, *S) float32 in [0, 1], labels (B, 1, *S) uint8, displacement
(B, ndim, *S) in voxels.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from gsmorph.errors import GSMorphError
from gsmorph.training.optim import LrSchedule

Step = Callable[[torch.Tensor, torch.Tensor], dict]          # fills .grad, returns the losses
Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def epoch_batches(buckets: list[dict], batch_size: int, generator: torch.Generator) -> list[tuple[int, torch.Tensor]]:
    """(bucket index, pair indices) of one epoch's batches, shuffled by `generator`: each
    bucket's pairs permuted and cut into batches; with several buckets the batches permuted."""
    batches = []
    for b, bucket in enumerate(buckets):
        perm = torch.randperm(bucket["moving"].shape[0], generator=generator)
        batches += [(b, perm[i:i + batch_size]) for i in range(0, len(perm), batch_size)]
    if len(buckets) > 1:
        order = torch.randperm(len(batches), generator=generator)
        batches = [batches[i] for i in order]
    return batches


def drop_gradients_unless(optimizer: torch.optim.Optimizer, finite: torch.Tensor) -> None:
    """Zero every gradient when a loss is non-finite, without a host sync (CUDA), so the
    weights stay finite until the epoch's end reports the failure."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                p.grad = torch.where(finite, p.grad, torch.zeros((), dtype=p.grad.dtype, device=p.grad.device))


def weights_finite(model: torch.nn.Module) -> bool:
    return bool(torch.stack([p.detach().isfinite().all() for p in model.parameters()]).all())


def train_epoch(step: Step, buckets: list[dict], batches: list[tuple[int, torch.Tensor]], model: torch.nn.Module,
                optimizer: torch.optim.Optimizer, schedule: LrSchedule, epoch: int, grad_clip: float | None,
                device: torch.device, stopped: Callable[[str], str]) -> dict[str, float]:
    """Epoch `epoch` (1-based) over `batches`: zero the gradients, `step`, clip them to
    `grad_clip` (global L2 norm), set the lr, update; return the mean of each loss. On a
    CPU a non-finite loss ends the epoch before its update and non-finite weights raise
    GSMorphError (its message made by `stopped`); on CUDA such a step's gradients are zeroed."""
    sums: dict[str, torch.Tensor] = {}
    steps = 0
    for b, idx in batches:
        bucket = buckets[b]
        idx = idx.to(device)
        optimizer.zero_grad(set_to_none=True)
        logs = {k: torch.as_tensor(v).detach().float() for k, v in step(bucket["moving"][idx], bucket["fixed"][idx]).items()}
        for key, value in logs.items():
            sums[key] = sums[key] + value if key in sums else value
        steps += 1
        finite = torch.stack([v.reshape(()) for v in logs.values()]).isfinite().all()
        if device.type == "cpu":
            if not bool(finite):  # free on CPU (no queue to wait for): stop before the update
                break
        else:
            drop_gradients_unless(optimizer, finite)
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(grad_clip))
        schedule.before_step(epoch, steps - 1, len(batches))
        optimizer.step()
        if device.type == "cpu" and not weights_finite(model):  # free on CPU: stop before the next step
            raise GSMorphError(stopped(f"non-finite weights after step {steps} of epoch {epoch} (is the "
                                       "learning rate too large?)"))
    keys = list(sums)
    values = (torch.stack([sums[k] for k in keys]) / steps).cpu().tolist()  # the epoch's one sync
    return dict(zip(keys, values))


def check_finite(epoch: int, losses: dict[str, float], stopped: Callable[[str], str]) -> None:
    """GSMorphError naming the non-finite losses of epoch `epoch`, if any."""
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        raise GSMorphError(stopped(f"non-finite loss at epoch {epoch} "
                                   f"({', '.join(f'{k}={v}' for k, v in bad.items())})"))


@torch.no_grad()
def evaluate(model: torch.nn.Module, buckets: list[dict], predict: Predictor, batch_size: int) -> tuple[float, float]:
    """Mean Dice over LV/Myo/RV of warped moving labels vs fixed labels (per-pair mean of
    the structures both frames have, then mean over pairs; gsmorph.metrics, as in
    evaluation: a structure the warp erased counts 0) and NJD % of `predict` on `buckets`,
    `model` in eval mode meanwhile."""
    from gsmorph.metrics import dice_torch, njd_percent_torch
    from gsmorph.networks import warp_label

    was_training = model.training
    model.eval()
    dices, njds = [], []
    for bucket in buckets:
        for i in range(0, bucket["moving"].shape[0], batch_size):
            sl = slice(i, i + batch_size)
            disp = predict(bucket["moving"][sl], bucket["fixed"][sl])
            moved = warp_label(bucket["moving_label"][sl], disp)
            dices.append(dice_torch(moved.round().long(), bucket["fixed_label"][sl].long(),
                                    bucket["moving_label"][sl].long()))
            njds.append(njd_percent_torch(disp.float()))
    model.train(was_training)
    per_pair = torch.nanmean(torch.cat(dices), dim=1)
    result = torch.stack([torch.nanmean(per_pair), torch.cat(njds).mean()]).cpu()
    return float(result[0]), float(result[1])
