"""The toy method's trainer (the weighted loss with lambda 0.05 and plain SGD) and a toy
backbone: two convolutions from (B, 2, *S) to a (B, ndim, *S) displacement."""
import torch
from torch import nn

from gsmorph.training import Trainer


class ToyTrainer(Trainer):
    def lambda_for(self, lam):
        return 0.05

    def build_optimizer(self):
        return torch.optim.SGD(self.model.parameters(), lr=0.1)


class TinyNet(nn.Module):
    def __init__(self, spatial_dims: int, width: int = 4):
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.body = nn.Sequential(conv(2, width, 3, padding=1), nn.LeakyReLU(0.2), conv(width, spatial_dims, 3, padding=1))

    def forward(self, x):
        return self.body(x)
