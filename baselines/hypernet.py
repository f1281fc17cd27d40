"""HyperMorph's network: an MLP of lambda that generates the U-Net's convolution weights.

    embedding e(lam) = MLP(lam): `layers` x [Linear(hidden), ReLU]          (hidden,)
      (Hoopes et al. and voxelmorph's HyperVxmDense: 6 x Dense(128, ReLU))
    every U-Net convolution l: [kernel_l, bias_l] = b_l + A_l e / hidden    (per-layer linear map;
      A_l starts at zero, b_l at an ordinary convolution's initialisation: see HyperConv)
    U-Net (VoxelMorph style, the voxelmorph backbone's level features f_0..f_{L-1}):
      encoder: conv(2 -> f_0); then per level: max-pool 2, conv(f_{i-1} -> f_i)
      decoder: per level: up-sample x2, concatenate the encoder skip, conv(f_{i+1} + f_i -> f_i)
      each conv 3x3(x3), LeakyReLU 0.2, no normalisation (as in HyperMorph)
      flow head: an ordinary conv(f_0 -> ndim), weights N(0, 1e-5), bias 0
Input (B, 2, *S) moving+fixed and lambda: a float or 0-d tensor (one network for the whole
batch) or a (B,) tensor (one lambda per sample, as HyperMorph trains: each sample's
convolutions get their own generated kernels, run as one grouped convolution); output
(B, ndim, *S) displacement in voxels. Any spatial size (zero-padded to a multiple of
2^(L-1), cropped back).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gsmorph.networks.layers import crop_to, flow_head, pad_to_multiple


class HyperConv(nn.Module):
    """A convolution whose kernel and bias are a linear map of the hypernetwork embedding:
    [kernel, bias] = b + A e / embed (`generate.bias` b, `generate.weight` A).

    At initialisation b is a standard (Kaiming-uniform) kernel and A is zero: the network
    starts as an ordinary U-Net at every lambda and learns how its kernels move with lambda.
    Dividing A e by the embedding width makes an optimiser step of about lr on each entry of
    A (Adam's) move the generated kernel by about lr x the embedding's mean magnitude, as
    for an ordinary convolution's weights, instead of `embed` times that (which, at the
    backbones' lr, blows the generated kernels up or drives the embedding's ReLUs to zero,
    leaving a network that ignores lambda).
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, embed: int, kernel: int = 3):
        super().__init__()
        self.spatial_dims = spatial_dims
        self.shape = (out_channels, in_channels) + (kernel,) * spatial_dims
        self.n_weight = math.prod(self.shape)
        self.embed = int(embed)
        self.generate = nn.Linear(embed, self.n_weight + out_channels)
        fan_in = in_channels * kernel ** spatial_dims
        bound = math.sqrt(6.0 / ((1 + 0.2 ** 2) * fan_in))  # Kaiming-uniform for LeakyReLU(0.2)
        with torch.no_grad():
            self.generate.bias[: self.n_weight].uniform_(-bound, bound)
            self.generate.bias[self.n_weight:].zero_()
            self.generate.weight.zero_()
        self.conv = F.conv2d if spatial_dims == 2 else F.conv3d

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, *S); embedding (hidden,) or (1, hidden): one kernel for the batch, or
        (B, hidden): one kernel per sample."""
        params = F.linear(embedding, self.generate.weight) / self.embed + self.generate.bias
        pad = self.shape[-1] // 2
        if params.ndim == 1 or params.shape[0] == 1:
            params = params.reshape(-1)
            weight = params[: self.n_weight].view(self.shape)
            bias = params[self.n_weight:]
            return F.leaky_relu(self.conv(x, weight, bias, padding=pad), 0.2)
        batch = x.shape[0]
        if params.shape[0] != batch:
            raise ValueError(f"{params.shape[0]} lambdas for a batch of {batch}")
        weight = params[:, : self.n_weight].reshape((batch * self.shape[0],) + self.shape[1:])
        bias = params[:, self.n_weight:].reshape(-1)
        out = self.conv(x.reshape((1, -1) + tuple(x.shape[2:])), weight, bias, padding=pad, groups=batch)
        return F.leaky_relu(out.view((batch, self.shape[0]) + tuple(out.shape[2:])), 0.2)


class HyperUNet(nn.Module):
    """(B, 2, *S), lambda -> (B, ndim, *S) displacement; see the module docstring."""

    def __init__(self, spatial_dims: int, features: Sequence[int] = (16, 32, 64, 128, 256), hidden: int = 128,
                 layers: int = 6, upsample: str = "linear"):
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
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                # He-uniform weights keep the embedding's scale, and its variation with lambda,
                # through the ReLUs (torch's default shrinks it about 3x per layer); torch's
                # default (non-zero) biases keep that variation centred, so that the kernels'
                # lambda-dependent part learns the difference between small and large lambdas
                # rather than repeating what the lambda-independent part learns
                nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
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
        """lambda (float or 0-d tensor) -> (1, hidden) embedding; (B,) lambdas -> (B, hidden)."""
        ref = self.flow.weight
        lam = torch.as_tensor(lam, dtype=ref.dtype, device=ref.device).reshape(-1, 1)
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
