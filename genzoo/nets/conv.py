"""Convolutional encoder and decoder for small images (28x28x1, 32x32x3).

Each stage halves (encoder) or doubles (decoder) the side with a 4x4 stride-2
convolution, as in DCGAN (Radford et al. 2016); a linear layer maps between the last
feature map and a flat vector. Imports only torch.
"""

import torch
from torch import nn


def _base_side(image_shape, channels) -> int:
    """Side of the smallest feature map; raises ValueError if the image cannot be halved that often."""
    c, h, w = image_shape
    stages = len(channels)
    if h != w or h % (2**stages):
        raise ValueError(
            f"conv net with channels={list(channels)} ({stages} stride-2 stages) needs a square image whose "
            f"side is divisible by {2**stages}, got {h}x{w}; use fewer channels entries or model.net=mlp"
        )
    return h // 2**stages


class ConvEncoder(nn.Module):
    """(B, C, H, W) image in [-1, 1] -> (B, out_features) vector.

    Args:
        image_shape: (C, H, W); H == W and divisible by 2**len(channels).
        out_features: size of the output vector.
        channels: output channels of each stride-2 stage.
        hidden_dim: width of the linear layer after the convolutions.
    Raises:
        ValueError: the image shape does not fit the stages.
    """

    def __init__(self, image_shape, out_features: int, channels=(32, 64), hidden_dim: int = 256):
        super().__init__()
        side = _base_side(image_shape, channels)
        layers, c_in = [], image_shape[0]
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Sequential(nn.Linear(c_in * side * side, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ConvDecoder(nn.Module):
    """(B, in_features) vector -> (B, out_channels, H, W) map (unbounded: a mean or logits).

    Args:
        image_shape: (C, H, W) of the images; H == W and divisible by 2**len(channels).
        in_features: size of the input vector (the latent).
        out_channels: channels of the output map (C for a mean or logits).
        channels: channels of each stage, listed as in the encoder (used in reverse).
        hidden_dim: width of the first linear layer.
    Raises:
        ValueError: the image shape does not fit the stages.
    """

    def __init__(self, image_shape, in_features: int, out_channels: int, channels=(32, 64), hidden_dim: int = 256):
        super().__init__()
        side = _base_side(image_shape, channels)
        rev = list(channels)[::-1]
        self.head = nn.Sequential(
            nn.Linear(in_features, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, rev[0] * side * side), nn.SiLU()
        )
        self.unflatten = nn.Unflatten(1, (rev[0], side, side))
        layers = []
        for c_in, c_out in zip(rev, rev[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
        layers.append(nn.ConvTranspose2d(rev[-1], out_channels, 4, stride=2, padding=1))
        self.features = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.features(self.unflatten(self.head(z)))
