"""Registration losses: image similarity and displacement smoothness.

Every loss maps tensors to a scalar (mean over the batch):
- similarity(moved (B, 1, *S), fixed (B, 1, *S)); lower is better
  mse:  mean squared error (torch.nn.MSELoss);
  lncc: MONAI LocalNormalizedCrossCorrelationLoss (-1 at perfect local correlation).
- smoothness(field (B, ndim, *S), voxel units); zero for a constant field
  l1:      mean absolute forward difference, averaged over the ndim directions
           (the paper's "Grad" loss; MONAI has only the l2 form);
  l2:      MONAI DiffusionLoss (squared central differences);
  bending: MONAI BendingEnergyLoss (squared second derivatives).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from gsmorph.errors import GSMorphError

SIMILARITIES = ("mse", "lncc")
SMOOTHNESSES = ("l1", "l2", "bending")

Loss = Callable[..., torch.Tensor]


class GradientL1Loss(nn.Module):
    """Mean |u(x + e_d) - u(x)| over batch, channels and voxels, averaged over directions d.

    field: (B, ndim, *S). A constant field gives 0; u = a * x_d gives |a| / ndim
    (only direction d changes, by |a| per voxel, in every channel that carries it).
    """

    def forward(self, field: torch.Tensor) -> torch.Tensor:
        ndim = field.ndim - 2
        if ndim < 1:
            raise ValueError(f"expected a (B, ndim, *S) field, got shape {tuple(field.shape)}")
        total = field.new_zeros(())
        for axis in range(2, field.ndim):
            total = total + torch.diff(field, dim=axis).abs().mean()
        return total / ndim


def similarity_loss(name: str, spatial_dims: int, lncc_kernel: int = 9) -> nn.Module:
    """The similarity loss called `name` (config key `similarity`)."""
    if name == "mse":
        return nn.MSELoss()
    if name == "lncc":
        from monai.losses import LocalNormalizedCrossCorrelationLoss

        return LocalNormalizedCrossCorrelationLoss(spatial_dims=spatial_dims, kernel_size=int(lncc_kernel))
    raise GSMorphError(f"config key 'similarity': unknown '{name}', expected one of {', '.join(SIMILARITIES)}")


def smoothness_loss(name: str) -> nn.Module:
    """The smoothness loss called `name` (config key `smoothness`)."""
    if name == "l1":
        return GradientL1Loss()
    if name == "l2":
        from monai.losses import DiffusionLoss

        return DiffusionLoss()
    if name == "bending":
        from monai.losses import BendingEnergyLoss

        return BendingEnergyLoss()
    raise GSMorphError(f"config key 'smoothness': unknown '{name}', expected one of {', '.join(SMOOTHNESSES)}")


def build_losses(cfg: dict, spatial_dims: int) -> tuple[nn.Module, nn.Module]:
    """(similarity, smoothness) losses from a method config (see gsmorph.config)."""
    return (
        similarity_loss(cfg["similarity"], spatial_dims, cfg.get("lncc_kernel", 9)),
        smoothness_loss(cfg["smoothness"]),
    )
