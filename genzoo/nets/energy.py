"""A small convolutional energy net for images: Swish activations, optional spectral normalisation.

As the energy nets of Du & Mordatch (2019) in miniature: a 3x3 convolution, then stride-2
3x3 convolutions halving the side (28 -> 14 -> 7 -> 4), Swish (SiLU) after each (smooth, so
Langevin dynamics sees a smooth gradient; ReLU's is piecewise constant), then a linear head.
Imports only torch.
"""

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm


class EnergyNet(nn.Module):
    """(B, C, H, W) image in [-1, 1] -> (B, out_features) outputs.

    An unconditional EBM reads out_features = 1 as its energy E(x); JEM (Grathwohl et al.
    2020) reads out_features = K as class logits f(x), with E(x, y) = -f(x)[y] and
    E(x) = -logsumexp_y f(x)[y].

    Args:
        image_shape: (C, H, W), any side >= 1.
        out_features: outputs per image (>= 1).
        channels: output channels of each convolution; the first keeps the side, each next one halves it (rounding up).
        spectral_norm: wrap every convolution and linear layer in spectral normalisation
            (Miyato et al. 2018): its weight divided by its largest singular value, estimated by
            one power iteration per training forward pass, so each layer is 1-Lipschitz.
    Raises:
        ValueError: empty channels, a non-positive channel count or out_features < 1.
    """

    def __init__(self, image_shape, out_features: int = 1, channels=(16, 32, 64, 64), spectral_norm: bool = False):
        super().__init__()
        c, h, w = image_shape
        channels = tuple(channels)
        if not channels or min(channels) < 1 or out_features < 1:
            raise ValueError(f"the energy net needs channels of positive counts and out_features >= 1, got {list(channels)} and {out_features}")
        wrap = _spectral_norm if spectral_norm else (lambda layer: layer)
        layers, c_in = [], c
        for i, c_out in enumerate(channels):
            stride = 1 if i == 0 else 2
            layers += [wrap(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)), nn.SiLU()]
            c_in = c_out
            if stride == 2:
                h, w = (h + 1) // 2, (w + 1) // 2
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Sequential(wrap(nn.Linear(c_in * h * w, 2 * c_in)), nn.SiLU(), wrap(nn.Linear(2 * c_in, out_features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
