"""The VQ-VAE's convolutional encoder and decoder (van den Oord et al. 2017, sec. 4.1, at a CPU's scale).

Encoder: stride-2 4x4 convolutions, one per entry of `channels` (28 -> 14 -> 7 with two), a
3x3 convolution, residual blocks (ReLU, 3x3, ReLU, 1x1), then a 1x1 convolution to the code
dimension: a (B, code_dim, H / 2^s, W / 2^s) map. The decoder mirrors it with transposed
convolutions. Imports only torch.
"""

import torch
from torch import nn


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def grid_shape(image_shape, channels) -> tuple[int, int]:
    """The code grid (h, w) for images of image_shape (C, H, W) after len(channels) halvings.

    Raises ValueError when H or W is not divisible by 2^len(channels).
    """
    _, h, w = image_shape
    f = 2 ** len(channels)
    if not channels or h % f or w % f:
        raise ValueError(f"the VQ-VAE halves the image {len(channels)} times (channels={list(channels)}): "
                         f"{h}x{w} must be divisible by {f} and channels non-empty")
    return h // f, w // f


class VQEncoder(nn.Module):
    """(B, C, H, W) image in [-1, 1] -> (B, code_dim, H / 2^s, W / 2^s), s = len(channels)."""

    def __init__(self, image_shape, code_dim: int, channels=(32, 64), res_blocks: int = 2):
        super().__init__()
        grid_shape(image_shape, channels)
        layers, c_in = [], image_shape[0]
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
            c_in = c_out
        layers += [nn.Conv2d(c_in, c_in, 3, padding=1), *[_Residual(c_in) for _ in range(res_blocks)], nn.ReLU(), nn.Conv2d(c_in, code_dim, 1)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class VQDecoder(nn.Module):
    """(B, code_dim, h, w) codebook entries -> (B, C, h 2^s, w 2^s) image, unclamped (the encoder's mirror)."""

    def __init__(self, image_shape, code_dim: int, channels=(32, 64), res_blocks: int = 2):
        super().__init__()
        grid_shape(image_shape, channels)
        widths = list(reversed(channels))
        layers = [nn.Conv2d(code_dim, widths[0], 3, padding=1), *[_Residual(widths[0]) for _ in range(res_blocks)], nn.ReLU()]
        pairs = list(zip(widths, widths[1:] + [image_shape[0]]))
        for i, (c_in, c_out) in enumerate(pairs):
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
            if i < len(pairs) - 1:
                layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)
