"""TransMorph backbone: a Swin-transformer encoder (MONAI's Swin stages), a convolutional
decoder with skips, and a near-zero registration head; 2D or 3D, any input size.

Layout (TransMorph, Chen et al. 2022), C = embed_dim, patch 4:
* encoder: patch embedding (stride 4), four Swin stages at strides 4, 8, 16, 32 with C, 2C,
  4C, 8C channels (patch merging between stages), each stage output layer-normalised;
* two convolutional skips: the average-pooled input -> C/2 channels (stride 2), and the
  full-resolution input -> `reg_channels` channels;
* decoder: five blocks, each up-samples x2 (linear), concatenates a skip and applies two
  [conv without bias, InstanceNorm, LeakyReLU 0.01]: 8C -> 4C -> 2C -> C -> C/2 -> reg_channels;
* head: 3x3(x3) conv to ndim channels, N(0, 1e-5) weights, zero bias.
Inputs are zero-padded to a multiple of 32 and the field cropped back.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from monai.networks.blocks import Convolution
from monai.networks.nets.swin_unetr import SwinTransformer
from torch import nn

from gsmorph.networks.layers import crop_to, flow_head, pad_to_multiple

# sizes of the TransMorph paper (window given for 3D; 2D uses `window_2d`), plus a
# small configuration that trains on a CPU at 64 x 64
PRESETS = {
    "transmorph": {"embed_dim": 96, "depths": (2, 2, 4, 2), "num_heads": (4, 4, 8, 8)},
    "small": {"embed_dim": 48, "depths": (2, 2, 4, 2), "num_heads": (4, 4, 8, 8)},
    "large": {"embed_dim": 128, "depths": (2, 2, 12, 2), "num_heads": (4, 4, 8, 16)},
    "cpu": {"embed_dim": 24, "depths": (1, 1, 2, 1), "num_heads": (2, 2, 4, 4), "window_size": 4},
}
DEFAULT_WINDOW = {2: (8, 8), 3: (5, 6, 7)}


def _conv_block(spatial_dims: int, in_ch: int, out_ch: int) -> nn.Module:
    """conv 3x3 without bias -> InstanceNorm -> LeakyReLU(0.01)."""
    return Convolution(spatial_dims, in_ch, out_ch, kernel_size=3, bias=False, norm="instance",
                       act=("leakyrelu", {"negative_slope": 0.01, "inplace": True}))


class _DecoderBlock(nn.Module):
    """Up-sample x2, concatenate the skip, two conv blocks."""

    def __init__(self, spatial_dims: int, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self.conv1 = _conv_block(spatial_dims, in_ch + skip_ch, out_ch)
        self.conv2 = _conv_block(spatial_dims, out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[2:], mode=self.mode, align_corners=False)
        return self.conv2(self.conv1(torch.cat([x, skip], dim=1)))


class TransMorph(nn.Module):
    """(B, 2, *S) moving+fixed -> (B, ndim, *S) displacement (voxels), any spatial size.

    preset: a key of PRESETS; embed_dim, depths (4 stages), num_heads, window_size (int or
    per-axis) override it. mlp_ratio, drop_path_rate (stochastic depth), qkv_bias as in
    TransMorph (4, 0.3, False). reg_channels: width of the full-resolution skip and last
    decoder block (16).
    """

    def __init__(self, spatial_dims: int, preset: str = "small", embed_dim: int | None = None,
                 depths: Sequence[int] | None = None, num_heads: Sequence[int] | None = None,
                 window_size: int | Sequence[int] | None = None, mlp_ratio: float = 4.0,
                 drop_path_rate: float = 0.3, qkv_bias: bool = False, reg_channels: int = 16):
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"unknown transmorph preset '{preset}' (choose from {', '.join(PRESETS)})")
        cfg = dict(PRESETS[preset])
        embed_dim = int(embed_dim if embed_dim is not None else cfg["embed_dim"])
        depths = tuple(depths if depths is not None else cfg["depths"])
        num_heads = tuple(num_heads if num_heads is not None else cfg["num_heads"])
        window = window_size if window_size is not None else cfg.get("window_size", DEFAULT_WINDOW[spatial_dims])
        window = (int(window),) * spatial_dims if isinstance(window, int) else tuple(int(w) for w in window)
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError(f"transmorph needs 4 stages: depths {depths}, num_heads {num_heads}")
        if len(window) != spatial_dims:
            raise ValueError(f"transmorph window_size {window} does not match spatial_dims {spatial_dims}")
        for i, heads in enumerate(num_heads):
            if (embed_dim * 2**i) % heads:
                raise ValueError(f"transmorph stage {i}: {embed_dim * 2**i} channels not divisible by {heads} heads")
        if embed_dim % 2:
            raise ValueError(f"transmorph embed_dim must be even, got {embed_dim}")
        swin = SwinTransformer(in_chans=2, embed_dim=embed_dim, window_size=window, patch_size=(4,) * spatial_dims,
                               depths=depths, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                               drop_path_rate=drop_path_rate, patch_norm=True, spatial_dims=spatial_dims)
        # MONAI's stages end with patch merging; TransMorph's skips are the stage outputs
        # before merging, and the last stage has none: keep the pieces and run them in order
        stages = [swin.layers1[0], swin.layers2[0], swin.layers3[0], swin.layers4[0]]
        self.merges = nn.ModuleList([stage.downsample for stage in stages[:3]])
        for stage in stages:
            stage.downsample = None
        self.patch_embed = swin.patch_embed
        self.pos_drop = swin.pos_drop
        self.stages = nn.ModuleList(stages)
        self.stage_norms = nn.ModuleList([nn.LayerNorm(embed_dim * 2**i) for i in range(4)])

        c = embed_dim
        self.skip_half = _conv_block(spatial_dims, 2, c // 2)      # avg-pooled input, stride 2
        self.skip_full = _conv_block(spatial_dims, 2, reg_channels)  # full resolution
        self.up = nn.ModuleList([
            _DecoderBlock(spatial_dims, 8 * c, 4 * c, 4 * c),
            _DecoderBlock(spatial_dims, 4 * c, 2 * c, 2 * c),
            _DecoderBlock(spatial_dims, 2 * c, c, c),
            _DecoderBlock(spatial_dims, c, c // 2, c // 2),
            _DecoderBlock(spatial_dims, c // 2, reg_channels, reg_channels),
        ])
        self.head = flow_head(spatial_dims, reg_channels)
        self.spatial_dims = spatial_dims
        self.multiple = 32

    def _channels_last(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b c h w -> b h w c") if self.spatial_dims == 2 else rearrange(x, "b c d h w -> b d h w c")

    def _channels_first(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b h w c -> b c h w") if self.spatial_dims == 2 else rearrange(x, "b d h w c -> b c d h w")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = tuple(x.shape[2:])
        x = pad_to_multiple(x, self.multiple)
        pool = F.avg_pool2d if self.spatial_dims == 2 else F.avg_pool3d
        skips = [self.skip_full(x), self.skip_half(pool(x, 2))]
        h = self.pos_drop(self.patch_embed(x))
        feats = []
        for i, stage in enumerate(self.stages):
            h = self._channels_last(stage(h.contiguous()))
            feats.append(self._channels_first(self.stage_norms[i](h)))
            if i < 3:
                h = self._channels_first(self.merges[i](h))
        y = feats[3]
        for block, skip in zip(self.up, [feats[2], feats[1], feats[0], skips[1], skips[0]]):
            y = block(y, skip)
        return crop_to(self.head(y), spatial)
