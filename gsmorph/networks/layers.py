"""Pieces shared by the backbones: padding to a size multiple, the flow head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pads (B, C, *S) at the end of each spatial axis up to a multiple of `multiple`."""
    pad: list[int] = []
    for size in reversed(x.shape[2:]):
        pad += [0, (-size) % multiple]
    return F.pad(x, pad) if any(pad) else x


def crop_to(x: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
    """Crops (B, C, *S') to the leading `spatial` sizes of each axis."""
    return x[(slice(None), slice(None)) + tuple(slice(0, s) for s in spatial)]


def flow_head(spatial_dims: int, in_channels: int) -> nn.Module:
    """3x3(x3) convolution to ndim displacement channels; weights N(0, 1e-5), bias 0."""
    conv = (nn.Conv2d if spatial_dims == 2 else nn.Conv3d)(in_channels, spatial_dims, 3, padding=1)
    nn.init.normal_(conv.weight, mean=0.0, std=1e-5)
    nn.init.zeros_(conv.bias)
    return conv
