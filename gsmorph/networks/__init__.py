"""Registration backbones by name: (B, 2, *S) moving+fixed -> (B, ndim, *S) displacement.

>>> net = build("voxelmorph", spatial_dims=2, preset="paper")
>>> disp = net(torch.cat([moving, fixed], dim=1))      # voxel units, channel i = axis i

With ``diffeomorphic=True`` the backbone's output is read as a stationary velocity and
integrated by scaling and squaring (``int_steps`` steps) into the displacement.
"""
from __future__ import annotations

import torch
from torch import nn

from gsmorph.networks.warp import integrate, warp_image, warp_label

__all__ = ["available", "build", "Diffeomorphic", "integrate", "warp_image", "warp_label"]


def _voxelmorph(spatial_dims, **kwargs):
    from gsmorph.networks.voxelmorph import VoxelMorph

    return VoxelMorph(spatial_dims, **kwargs)


def _transmorph(spatial_dims, **kwargs):
    from gsmorph.networks.transmorph import TransMorph

    return TransMorph(spatial_dims, **kwargs)


_REGISTRY = {"voxelmorph": _voxelmorph, "transmorph": _transmorph}


class Diffeomorphic(nn.Module):
    """Wraps a backbone: its output is a velocity, integrated into a displacement."""

    def __init__(self, backbone: nn.Module, int_steps: int):
        super().__init__()
        self.backbone = backbone
        self.int_steps = int_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return integrate(self.backbone(x), self.int_steps)


def available() -> list[str]:
    """Backbone names `build` accepts."""
    return sorted(_REGISTRY)


def build(name: str, spatial_dims: int, diffeomorphic: bool = False, int_steps: int = 7, **kwargs) -> nn.Module:
    """The backbone `name` for 2D or 3D inputs; kwargs go to its class (see its docstring)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone '{name}' (available: {', '.join(available())})")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    try:
        net = _REGISTRY[name](spatial_dims, **kwargs)
    except TypeError as err:
        raise ValueError(f"backbone '{name}': bad keyword arguments ({err})") from None
    return Diffeomorphic(net, int_steps) if diffeomorphic else net
