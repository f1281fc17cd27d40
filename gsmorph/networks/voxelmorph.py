"""VoxelMorph backbone: MONAI's VoxelMorphUNet with a near-zero flow head, any input size.

Presets:
* ``paper``: GSMorph's 2D setting: a symmetric U-Net with features 16, 32, 64, 128, 256
  (encoder 16-32-64-128, bottleneck 256, decoder 128-64-32-16), conv + BatchNorm +
  LeakyReLU blocks, max-pool down, linear up-sampling;
* ``voxelmorph``: the VoxelMorph default (MONAI's example): channels 16, 32, 32, 32, 32,
  32, final convolutions 16, 16, no normalisation, nearest up-sampling.
"""
from __future__ import annotations

from typing import Sequence

import torch
from monai.networks.nets import VoxelMorphUNet
from torch import nn

from gsmorph.networks.layers import crop_to, flow_head, pad_to_multiple

PRESETS = {
    "paper": {"features": (16, 32, 64, 128, 256), "norm": "batch", "upsample": "linear"},
    "voxelmorph": {"channels": (16, 32, 32, 32, 32, 32), "unet_out_channels": 32,
                   "final_conv_channels": (16, 16), "norm": None, "upsample": "nearest"},
}


def symmetric_channels(features: Sequence[int]) -> tuple[int, ...]:
    """MONAI VoxelMorphUNet `channels` of a symmetric U-Net with these level features.

    (16, 32, 64, 128, 256) -> (16, 32, 32, 64, 64, 128, 128, 256): encoder 16..128, bottleneck
    256, each decoder level back to its encoder's width.
    """
    features = [int(f) for f in features]
    if len(features) < 2:
        raise ValueError(f"voxelmorph features need at least 2 levels, got {features}")
    return tuple([features[0]] + [f for f in features[1:-1] for _ in (0, 1)] + [features[-1]])


class VoxelMorph(nn.Module):
    """(B, 2, *S) moving+fixed -> (B, ndim, *S) displacement (voxels), any spatial size.

    spatial_dims: 2 or 3. preset: a key of PRESETS. features: level widths of a symmetric
    U-Net (overrides the preset's layout). norm: "batch", "instance" or None. upsample:
    "linear" or "nearest". negative_slope: LeakyReLU slope.
    """

    def __init__(self, spatial_dims: int, preset: str = "paper", features: Sequence[int] | None = None,
                 norm: str | None = "preset", upsample: str = "preset", negative_slope: float = 0.2):
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"unknown voxelmorph preset '{preset}' (choose from {', '.join(PRESETS)})")
        cfg = dict(PRESETS[preset])
        if features is not None:
            cfg = {"features": tuple(features), "norm": cfg["norm"], "upsample": cfg["upsample"]}
        if "features" in cfg:
            channels = symmetric_channels(cfg["features"])
            unet_out, final = channels[0], ()
        else:
            channels, unet_out, final = cfg["channels"], cfg["unet_out_channels"], cfg["final_conv_channels"]
        norm = cfg["norm"] if norm == "preset" else norm
        upsample = cfg["upsample"] if upsample == "preset" else upsample
        if upsample not in ("linear", "nearest"):
            raise ValueError(f"voxelmorph upsample must be 'linear' or 'nearest', got '{upsample}'")
        act = ("leakyrelu", {"negative_slope": negative_slope, "inplace": True})
        unet = VoxelMorphUNet(spatial_dims=spatial_dims, in_channels=2, unet_out_channels=unet_out,
                              channels=channels, final_conv_channels=final, act=act, final_conv_act=act,
                              norm=norm)
        # the last convolution becomes a plain, near-zero flow head (no norm after it)
        unet.net[1].final_conv_out = flow_head(spatial_dims, final[-1] if final else unet_out)
        if upsample == "linear":
            for module in unet.modules():
                if isinstance(module, nn.Upsample):
                    module.mode = "bilinear" if spatial_dims == 2 else "trilinear"
                    module.align_corners = False
        self.unet = unet
        self.spatial_dims = spatial_dims
        self.multiple = 2 ** (len(channels) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = tuple(x.shape[2:])
        return crop_to(self.unet(pad_to_multiple(x, self.multiple)), spatial)
