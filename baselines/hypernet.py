"""HyperMorph's network: an MLP of lambda that generates the U-Net's convolution weights.

    input code c(t) of the hypernetwork input t in [0, 1] (`encoding`):
      lambda:  c = [t]                                   (Hoopes et al.)
      cos-sin: c = [cos(pi t / 2), sin(pi t / 2)]        (constant norm; Ortiz et al., ICLR 2024)
    embedding e = MLP(c): `layers` x [Linear(hidden), ReLU]                    (hidden,)
      (Hoopes et al. and voxelmorph's HyperVxmDense: 6 x Dense(128, ReLU))
    every U-Net convolution l: [kernel_l, bias_l] generated from e (`parametrisation`):
      scaled: b_l + A_l e / hidden, A_l = 0 and b_l an ordinary convolution's Kaiming-uniform
              initialisation at the start (the lambda-dependent part learns ~hidden x slower)
      dense:  A_l e + b_l, A_l Glorot-uniform and b_l = 0 (voxelmorph's Dense generation: a
              Keras Dense layer's initialisation, no offset, no scaling)
      offset: theta_l + A_l e, theta_l Kaiming-normal (an ordinary network's weights), A_l
              Kaiming-normal over its outputs (fan-out) for the kernel and 0 for the bias
              (Ortiz et al.'s additive offset to the base weights)
    or, `film`, an ordinary convolution whose output channels are modulated by e (feature-
    wise linear modulation, Perez et al., AAAI 2018; the conditioning of cLapIRN, Mok and
    Chung, MICCAI 2021, without its instance normalisation):
      film:   h = conv_l(x) * (1 + gamma_l) + beta_l, [gamma_l, beta_l] = M_l e / sqrt(hidden),
              conv_l Kaiming-uniform with zero bias, M_l = 0 at the start (an ordinary U-Net
              at every lambda); one kernel for the whole batch, one (gamma, beta) per sample
    U-Net (VoxelMorph style, the voxelmorph backbone's level features f_0..f_{L-1}):
      encoder: conv(2 -> f_0); then per level: max-pool 2, conv(f_{i-1} -> f_i)
      decoder: per level: up-sample x2, concatenate the encoder skip, conv(f_{i+1} + f_i -> f_i)
      each conv 3x3(x3), LeakyReLU 0.2, no normalisation (as in HyperMorph)
      flow head: an ordinary conv(f_0 -> ndim), weights N(0, 1e-5), bias 0
Input (B, 2, *S) moving+fixed and t: a float or 0-d tensor (one network for the whole
batch) or a (B,) tensor (one t per sample, as HyperMorph trains: each sample's
convolutions get their own generated kernels, run as one grouped convolution); output
(B, ndim, *S) displacement in voxels. Any spatial size (zero-padded to a multiple of
2^(L-1), cropped back). What t means (lambda itself, or a coordinate of the loss's weight)
is the trainer's (baselines/hypermorph.py).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gsmorph.networks.layers import crop_to, flow_head, pad_to_multiple

PARAMETRISATIONS = ("scaled", "dense", "offset", "film")
ENCODINGS = ("lambda", "cos-sin")


def encode(t: torch.Tensor, encoding: str) -> torch.Tensor:
    """(N, 1) hypernetwork inputs in [0, 1] -> (N, 1) or (N, 2) input code."""
    if encoding == "lambda":
        return t
    if encoding == "cos-sin":
        angle = t * (math.pi / 2)
        return torch.cat([torch.cos(angle), torch.sin(angle)], dim=1)
    raise ValueError(f"unknown encoding '{encoding}' (choose from {', '.join(ENCODINGS)})")


class HyperConv(nn.Module):
    """A convolution whose kernel and bias are a linear map of the hypernetwork embedding:
    [kernel, bias] = b + A e (/ embed for `scaled`), `generate.bias` b, `generate.weight` A.

    scaled (the default): at initialisation b is a standard (Kaiming-uniform) kernel and A
    is zero, so the network starts as an ordinary U-Net at every lambda; dividing A e by the
    embedding width makes an Adam step of about lr on each entry of A move the generated
    kernel by about lr x the embedding's mean magnitude, as for an ordinary convolution's
    weights, instead of `embed` times that. dense and offset: see the module docstring.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, embed: int, kernel: int = 3,
                 parametrisation: str = "scaled"):
        super().__init__()
        if parametrisation not in PARAMETRISATIONS:
            raise ValueError(f"unknown parametrisation '{parametrisation}' (choose from {', '.join(PARAMETRISATIONS)})")
        self.spatial_dims = spatial_dims
        self.parametrisation = parametrisation
        self.shape = (out_channels, in_channels) + (kernel,) * spatial_dims
        self.n_weight = math.prod(self.shape)
        self.embed = int(embed)
        self.conv = F.conv2d if spatial_dims == 2 else F.conv3d
        fan_in = in_channels * kernel ** spatial_dims
        gain = math.sqrt(2.0 / (1 + 0.2 ** 2))  # LeakyReLU(0.2)
        if parametrisation == "film":
            bound = gain * math.sqrt(3.0 / fan_in)  # Kaiming-uniform
            self.weight = nn.Parameter(torch.empty(self.shape).uniform_(-bound, bound))
            self.bias = nn.Parameter(torch.zeros(out_channels))
            self.generate = nn.Linear(embed, 2 * out_channels)  # gamma, beta
            nn.init.zeros_(self.generate.weight)
            nn.init.zeros_(self.generate.bias)
            return
        self.generate = nn.Linear(embed, self.n_weight + out_channels)
        w, b = self.generate.weight, self.generate.bias
        with torch.no_grad():
            if parametrisation == "scaled":
                bound = gain * math.sqrt(3.0 / fan_in)  # Kaiming-uniform
                b[: self.n_weight].uniform_(-bound, bound)
                b[self.n_weight:].zero_()
                w.zero_()
            elif parametrisation == "dense":
                nn.init.xavier_uniform_(w)  # over the whole output, as one Dense layer
                b.zero_()
            else:
                b[: self.n_weight].normal_(0.0, gain / math.sqrt(fan_in))  # Kaiming-normal
                b[self.n_weight:].zero_()
                w[: self.n_weight].normal_(0.0, math.sqrt(2.0 / self.n_weight))  # fan-out (ReLU embedding)
                w[self.n_weight:].zero_()

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, *S); embedding (hidden,) or (1, hidden): one kernel for the batch, or
        (B, hidden): one kernel per sample."""
        pad = self.shape[-1] // 2
        if self.parametrisation == "film":
            mod = self.generate(embedding.reshape(-1, self.embed)) / math.sqrt(self.embed)  # (1 or B, 2 C)
            if mod.shape[0] not in (1, x.shape[0]):
                raise ValueError(f"{mod.shape[0]} lambdas for a batch of {x.shape[0]}")
            view = (mod.shape[0], self.shape[0]) + (1,) * self.spatial_dims
            gamma, beta = mod[:, : self.shape[0]].reshape(view), mod[:, self.shape[0]:].reshape(view)
            return F.leaky_relu(self.conv(x, self.weight, self.bias, padding=pad) * (1 + gamma) + beta, 0.2)
        params = F.linear(embedding, self.generate.weight)
        if self.parametrisation == "scaled":
            params = params / self.embed
        params = params + self.generate.bias
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
    """(B, 2, *S), t -> (B, ndim, *S) displacement; see the module docstring."""

    def __init__(self, spatial_dims: int, features: Sequence[int] = (16, 32, 64, 128, 256), hidden: int = 128,
                 layers: int = 6, upsample: str = "linear", parametrisation: str = "scaled",
                 encoding: str = "lambda"):
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
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding '{encoding}' (choose from {', '.join(ENCODINGS)})")
        self.spatial_dims = spatial_dims
        self.features = features
        self.encoding = encoding
        mlp: list[nn.Module] = []
        width = 1 if encoding == "lambda" else 2
        for _ in range(int(layers)):
            mlp += [nn.Linear(width, int(hidden)), nn.ReLU()]
            width = int(hidden)
        self.mlp = nn.Sequential(*mlp)
        for layer in self.mlp:
            if isinstance(layer, nn.Linear) and parametrisation == "offset":
                # Ortiz et al.'s (hyperlight's) MLP: Kaiming-normal over the outputs, zero biases
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(layer.bias)
            elif isinstance(layer, nn.Linear):
                # He-uniform weights keep the embedding's scale, and its variation with lambda,
                # through the ReLUs (torch's default shrinks it about 3x per layer); torch's
                # default (non-zero) biases keep that variation centred, so that the kernels'
                # lambda-dependent part learns the difference between small and large lambdas
                # rather than repeating what the lambda-independent part learns
                nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
        convs = dict(embed=hidden, parametrisation=parametrisation)
        self.encoder = nn.ModuleList(
            HyperConv(spatial_dims, 2 if i == 0 else features[i - 1], f, **convs) for i, f in enumerate(features))
        self.decoder = nn.ModuleList(
            HyperConv(spatial_dims, features[i + 1] + features[i], features[i], **convs)
            for i in reversed(range(len(features) - 1)))
        self.flow = flow_head(spatial_dims, features[0])
        self.pool = nn.MaxPool2d(2) if spatial_dims == 2 else nn.MaxPool3d(2)
        self.up_mode = ("bilinear" if spatial_dims == 2 else "trilinear") if upsample == "linear" else "nearest"
        self.multiple = 2 ** (len(features) - 1)

    def embed(self, t: float | torch.Tensor) -> torch.Tensor:
        """t (float or 0-d tensor) -> (1, hidden) embedding; (B,) values -> (B, hidden)."""
        ref = self.flow.weight
        t = torch.as_tensor(t, dtype=ref.dtype, device=ref.device).reshape(-1, 1)
        return self.mlp(encode(t, self.encoding))

    def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        spatial = tuple(x.shape[2:])
        e = self.embed(t)
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
