"""Warping and integration of displacement fields (MONAI Warp / DVF2DDF).

Convention: a displacement ``disp`` has shape (B, ndim, *S), voxel units, channel i along
array axis i; the warped image is the input sampled at x + disp(x).
"""
from __future__ import annotations

import warnings

import torch
from monai.networks.blocks import DVF2DDF, Warp


def _warp(mode: str, padding_mode: str) -> Warp:
    # a fresh module per call: MONAI's Warp caches its grid by shape only (not device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*native grid_sample.*")
        return Warp(mode=mode, padding_mode=padding_mode)


def _check(x: torch.Tensor, disp: torch.Tensor, what: str) -> None:
    ndim = x.dim() - 2
    if ndim not in (2, 3) or disp.shape != (x.shape[0], ndim, *x.shape[2:]):
        raise ValueError(f"{what} {tuple(x.shape)} and displacement {tuple(disp.shape)}: "
                         f"expected (B, C, *S) and (B, ndim, *S) with ndim 2 or 3")


def warp_image(img: torch.Tensor, disp: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Bilinear (trilinear) warp: img (B, C, *S) float, disp (B, ndim, *S) voxels -> (B, C, *S)."""
    _check(img, disp, "image")
    return _warp("bilinear", padding_mode)(img, disp.to(img.dtype))


def warp_label(lbl: torch.Tensor, disp: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Nearest-neighbour warp of an integer label map (B, 1, *S); same dtype out."""
    _check(lbl, disp, "label map")
    disp = disp if disp.is_floating_point() else disp.float()
    moved = _warp("nearest", padding_mode)(lbl.to(disp.dtype), disp)
    return moved.round().to(lbl.dtype)


def integrate(velocity: torch.Tensor, steps: int) -> torch.Tensor:
    """Displacement exp(velocity) by scaling and squaring in `steps` steps (MONAI DVF2DDF).

    velocity: (B, ndim, *S) stationary velocity field, voxel units. steps=0 returns it as is.
    """
    if steps < 0:
        raise ValueError(f"integration steps must be >= 0, got {steps}")
    if steps == 0:
        return velocity
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*native grid_sample.*")
        layer = DVF2DDF(num_steps=steps)
    return layer(velocity)
