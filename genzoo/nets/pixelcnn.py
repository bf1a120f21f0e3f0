"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders"): a vertical and a horizontal stack of gated convolutions, no blind spot.

Causality comes from padding and shifts rather than weight masks:
- the vertical stack convolves a (k//2 + 1) x k window ending at the current row, so its
  output at row i sees input rows <= i; it reaches the horizontal stack shifted down one
  row, so there only rows < i are seen;
- the horizontal stack convolves a 1 x (k//2 + 1) window ending at the current column; in
  the first layer (mask type A) its input is shifted right one column, so pixel (i, j)
  never sees itself; later layers (type B) see column j of features that themselves only
  saw columns < j of the image.
Output (i, j) therefore depends on input pixels strictly before (i, j) in raster order
(tests check the gradient). Single-channel images: with C > 1 the channels of one pixel
would also need ordering, which this net does not do.
"""

import torch
import torch.nn.functional as F
from torch import nn


def shift_down(x: torch.Tensor) -> torch.Tensor:
    """Move every row down one (row 0 becomes zeros): (B, C, H, W) -> same shape."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def shift_right(x: torch.Tensor) -> torch.Tensor:
    """Move every column right one (column 0 becomes zeros): (B, C, H, W) -> same shape."""
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


class GatedLayer(nn.Module):
    """One gated layer: tanh(f) * sigmoid(g) in both stacks, v -> h link, h residual (type B).

    Args:
        channels: p, features per stack.
        kernel: k, odd, >= 3.
        first: mask type A (the first layer: no residual, the horizontal input shifted right).
        num_classes: > 0 adds a class embedding to every gate's pre-activation (conditional PixelCNN).
    """

    def __init__(self, channels: int, kernel: int, first: bool, num_classes: int = 0):
        super().__init__()
        self.first, self.half = first, kernel // 2
        self.v_conv = nn.Conv2d(channels, 2 * channels, (self.half + 1, kernel))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_conv = nn.Conv2d(channels, 2 * channels, (1, self.half + 1))
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.embed = nn.Embedding(num_classes, 2 * channels) if num_classes else None

    def forward(self, v: torch.Tensor, h: torch.Tensor, labels: torch.Tensor | None = None):
        v_pre = self.v_conv(F.pad(v, (self.half, self.half, self.half, 0)))  # rows i-k//2..i, cols j-k//2..j+k//2
        h_in = shift_right(h) if self.first else h
        h_pre = self.h_conv(F.pad(h_in, (self.half, 0, 0, 0))) + self.v_to_h(shift_down(v_pre))
        if self.embed is not None:
            bias = self.embed(labels)[:, :, None, None]
            v_pre, h_pre = v_pre + bias, h_pre + bias
        v_out = _gate(v_pre)
        h_out = self.h_out(_gate(h_pre))
        return v_out, h_out if self.first else h + h_out


def _gate(x: torch.Tensor) -> torch.Tensor:
    f, g = x.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class GatedPixelCNN(nn.Module):
    """x (B, 1, H, W) in [-1, 1] -> per-pixel distribution parameters (B, out_channels, H, W).

    Args:
        out_channels: 256 (softmax logits) or 3 * mixtures (logistic mixture).
        channels: features per stack; layers: gated layers (the first is type A); kernel: k (odd).
        num_classes: > 0 for the class-conditional net; forward then needs labels (B,).
    Raises ValueError for an even or < 3 kernel, or layers < 1.
    """

    def __init__(self, out_channels: int, channels: int = 64, layers: int = 7, kernel: int = 5, num_classes: int = 0):
        super().__init__()
        if kernel < 3 or kernel % 2 == 0 or layers < 1:
            raise ValueError(f"PixelCNN needs an odd kernel >= 3 and layers >= 1, got kernel={kernel}, layers={layers}")
        self.input = nn.Conv2d(1, channels, 1)  # per-pixel embedding: mixes nothing across pixels
        self.layers = nn.ModuleList(GatedLayer(channels, kernel, first=i == 0, num_classes=num_classes) for i in range(layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, out_channels, 1))
        self.num_classes = num_classes
        # rows above row i that its outputs can depend on: k//2 per vertical layer, plus the shift down
        self.receptive_rows = layers * (kernel // 2) + 1

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes and labels is None:
            raise ValueError("this PixelCNN is class-conditional: pass labels (B,)")
        v = h = self.input(x)
        for layer in self.layers:
            v, h = layer(v, h, labels)
        return self.head(h)
