"""HyperMorph's network: an MLP of lambda that generates the U-Net's convolution weights.

    embedding e(lam) = MLP(lam): `layers` x [Linear(hidden), ReLU]          (hidden,)
    every U-Net convolution l: [kernel_l, bias_l] = A_l e + b_l             (per-layer linear map)
    U-Net (VoxelMorph style, the voxelmorph backbone's level features f_0..f_{L-1}):
      encoder: conv(2 -> f_0); then per level: max-pool 2, conv(f_{i-1} -> f_i)
      decoder: per level: up-sample x2, concatenate the encoder skip, conv(f_{i+1} + f_i -> f_i)
      each conv 3x3(x3), LeakyReLU 0.2, no normalisation (as in HyperMorph)
      flow head: an ordinary conv(f_0 -> ndim), weights N(0, 1e-5), bias 0
Input (B, 2, *S) moving+fixed and one lambda per forward (a float or 0-d tensor, shared by
the batch); output (B, ndim, *S) displacement in voxels. Any spatial size (zero-padded to
a multiple of 2^(L-1), cropped back).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gsmorph.networks.layers import crop_to, flow_head, pad_to_multiple


class HyperConv(nn.Module):
    """A convolution whose kernel and bias are a linear map of the hypernetwork embedding.

    At initialisation b_l is a standard (Kaiming-uniform) kernel and A_l is small, so the
    generated kernel starts close to an ordinary convolution and moves with lambda as A_l
    learns.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, embed: int, kernel: int = 3):
        super().__init__()
        self.spatial_dims = spatial_dims
        self.shape = (out_channels, in_channels) + (kernel,) * spatial_dims
        self.n_weight = math.prod(self.shape)
        self.generate = nn.Linear(embed, self.n_weight + out_channels)
        fan_in = in_channels * kernel ** spatial_dims
        bound = math.sqrt(6.0 / ((1 + 0.2 ** 2) * fan_in))  # Kaiming-uniform for LeakyReLU(0.2)
        with torch.no_grad():
            self.generate.bias[: self.n_weight].uniform_(-bound, bound)
            self.generate.bias[self.n_weight:].zero_()
            self.generate.weight.normal_(0.0, bound / (2.0 * math.sqrt(embed)))
        self.conv = F.conv2d if spatial_dims == 2 else F.conv3d

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        params = self.generate(embedding)
        weight = params[: self.n_weight].view(self.shape)
        bias = params[self.n_weight:]
        return F.leaky_relu(self.conv(x, weight, bias, padding=self.shape[-1] // 2), 0.2)


class HyperUNet(nn.Module):
    """(B, 2, *S), lambda -> (B, ndim, *S) displacement; see the module docstring."""

    def __init__(self, spatial_dims: int, features: Sequence[int] = (16, 32, 64, 128, 256), hidden: int = 128,
                 layers: int = 4, upsample: str = "linear"):
        super().__init__()
        features = [int(f) for f in features]
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if len(features) < 2 or min(features) < 1:
            raise ValueError(f"hypermorph features need at least 2 positive levels, got {features}")
        if int(layers) < 1 or int(hidden) < 1:
            raise ValueError(f"hypermorph needs layers >= 1 and hidden >= 1, got {layers}, {hidden}")
        if upsample not in ("linear", "nearest"):
            raise ValueError(f"hypermorph upsample must be 'linear' or 'nearest', got '{upsample}'")
        self.spatial_dims = spatial_dims
        self.features = features
        mlp: list[nn.Module] = []
        width = 1
        for _ in range(int(layers)):
            mlp += [nn.Linear(width, int(hidden)), nn.ReLU()]
            width = int(hidden)
        self.mlp = nn.Sequential(*mlp)
        self.encoder = nn.ModuleList(
            HyperConv(spatial_dims, 2 if i == 0 else features[i - 1], f, hidden) for i, f in enumerate(features))
        self.decoder = nn.ModuleList(
            HyperConv(spatial_dims, features[i + 1] + features[i], features[i], hidden)
            for i in reversed(range(len(features) - 1)))
        self.flow = flow_head(spatial_dims, features[0])
        self.pool = nn.MaxPool2d(2) if spatial_dims == 2 else nn.MaxPool3d(2)
        self.up_mode = ("bilinear" if spatial_dims == 2 else "trilinear") if upsample == "linear" else "nearest"
        self.multiple = 2 ** (len(features) - 1)

    def embed(self, lam: float | torch.Tensor) -> torch.Tensor:
        """lambda (float or 0-d tensor) -> (hidden,) embedding."""
        ref = self.flow.weight
        lam = torch.as_tensor(lam, dtype=ref.dtype, device=ref.device).reshape(1)
        return self.mlp(lam)

    def forward(self, x: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
        spatial = tuple(x.shape[2:])
        e = self.embed(lam)
        h = pad_to_multiple(x, self.multiple)
        skips = []
        for i, conv in enumerate(self.encoder):
            if i > 0:
                h = self.pool(h)
            h = conv(h, e)
            skips.append(h)
        for conv, skip in zip(self.decoder, reversed(skips[:-1])):
            up_kwargs = {} if self.up_mode == "nearest" else {"align_corners": False}
            h = F.interpolate(h, size=skip.shape[2:], mode=self.up_mode, **up_kwargs)
            h = conv(torch.cat([h, skip], dim=1), e)
        return crop_to(self.flow(h), spatial)

    def hyper_parameters(self) -> list[nn.Parameter]:
        """Parameters of the MLP (the hypernetwork proper)."""
        return list(self.mlp.parameters())
