"""The optimiser of config `optim.<backbone>` (gsmorph.config.optim_settings) and its lr
schedule: before every step each parameter group's lr is set to its initial lr x
`lr_factor` (linear warm-up over `warmup_epochs`, step by step; `schedule` poly:
(1 - (epoch - 1) / epochs)^poly_power)."""
from __future__ import annotations

import torch

from gsmorph.errors import GSMorphError

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def build_optimizer(parameters, settings: dict, backbone: str) -> torch.optim.Optimizer:
    """The optimiser `settings["optimizer"]` over `parameters` with the settings' lr,
    weight decay and amsgrad (GSMorphError naming config `optim.<backbone>` otherwise)."""
    s = settings
    if s["optimizer"] not in OPTIMIZERS:
        raise GSMorphError(f"config key 'optim.{backbone}.optimizer': unknown '{s['optimizer']}', "
                           f"expected one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[s["optimizer"]](parameters, lr=float(s["lr"]), weight_decay=float(s["weight_decay"]),
                                      amsgrad=bool(s["amsgrad"]))


def lr_factor(optim: dict, epoch: int, epochs: int, step: int, steps_per_epoch: int) -> float:
    """The factor on the initial lr at step `step` (0-based) of epoch `epoch` (1-based) of
    `epochs`: linear warm-up over the first `warmup_epochs` epochs, step by step (1/n at the
    first step of n warm-up steps, 1 from the last), times the poly schedule's
    (1 - (epoch - 1) / epochs)^poly_power (constant schedule: 1)."""
    factor = 1.0
    warmup = int(optim.get("warmup_epochs") or 0) * int(steps_per_epoch)
    if warmup > 0:
        factor = min(1.0, ((epoch - 1) * int(steps_per_epoch) + step + 1) / warmup)
    if optim.get("schedule", "constant") == "poly":
        factor *= (1.0 - (epoch - 1) / max(int(epochs), 1)) ** float(optim.get("poly_power", 0.9))
    return factor


class LrSchedule:
    """Sets the lr of every parameter group of `optimizer` before each step: the lr it
    was built with (read here, before any resume) times `lr_factor`."""

    def __init__(self, optimizer: torch.optim.Optimizer, settings: dict, epochs: int):
        self.optimizer, self.settings, self.epochs = optimizer, settings, int(epochs)
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]

    def before_step(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        """Step `step` (0-based) of epoch `epoch` (1-based), of `steps_per_epoch`."""
        factor = lr_factor(self.settings, epoch, self.epochs, step, steps_per_epoch)
        groups = self.optimizer.param_groups
        if factor != 1.0 or any(g["lr"] != lr for g, lr in zip(groups, self.base_lrs)):
            for group, lr in zip(groups, self.base_lrs):
                group["lr"] = lr * factor
