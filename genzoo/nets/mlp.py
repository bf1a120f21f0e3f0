"""Fully connected encoder and decoder: any image shape, no spatial prior. Imports only torch."""

import math

import torch
from torch import nn


def _mlp(sizes) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """(B, C, H, W) image -> (B, out_features) vector through hidden layers of `hidden_dims`."""

    def __init__(self, image_shape, out_features: int, hidden_dims=(512, 256)):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), _mlp([math.prod(image_shape), *hidden_dims, out_features]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    """(B, in_features) vector -> (B, out_channels, H, W) map through `hidden_dims` (reversed)."""

    def __init__(self, image_shape, in_features: int, out_channels: int, hidden_dims=(512, 256)):
        super().__init__()
        _, h, w = image_shape
        self.net = nn.Sequential(
            _mlp([in_features, *list(hidden_dims)[::-1], out_channels * h * w]), nn.Unflatten(1, (out_channels, h, w))
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
