"""U-Net noise predictor for DDPM (Ho et al. 2020, app. B; layout as in Nichol & Dhariwal 2021).

Sinusoidal time embedding, residual blocks with GroupNorm, self-attention at chosen
levels and in the middle, stride-2 downsampling and nearest-neighbour upsampling, skip
connections concatenated on the way up. Imports only torch.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding (B, dim) of steps t (B,) as in Vaswani et al. 2017 (cos | sin halves)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time embedding added in between, plus a (1x1) skip."""

    def __init__(self, c_in: int, c_out: int, time_dim: int, dropout: float):
        super().__init__()
        self.block1 = nn.Sequential(_norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, c_out))
        self.block2 = nn.Sequential(_norm(c_out), nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(c_out, c_out, 3, padding=1))
        nn.init.zeros_(self.block2[-1].weight)  # each block starts as the identity
        nn.init.zeros_(self.block2[-1].bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
        h = self.block1(x) + self.time(emb)[:, :, None, None]
        return self.skip(x) + self.block2(h)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions, residual."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x, emb=None):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C/heads)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """eps (or v) prediction: (x_t (B, C, H, W), t (B,) int) -> (B, C, H, W).

    Args:
        image_shape: (C, H, W); H and W divisible by 2**(len(channel_mults) - 1).
        base_channels: channels at full resolution; level i has base * channel_mults[i].
        channel_mults: one entry per resolution level (each after the first halves the side).
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attention_levels: levels (0 = full resolution) with self-attention after each block;
            the middle block always has one.
        dropout: dropout in the residual blocks.
        num_classes: > 0 makes the net class-conditional: forward(x, t, labels) adds a learnt
            embedding of the label (0..num_classes - 1, or num_classes for "no label") to the
            time embedding, as in classifier-free guidance (Ho & Salimans 2022).
    Raises:
        ValueError: an image side the levels cannot halve, or channels not divisible by 4 heads.
    """

    def __init__(self, image_shape, base_channels=64, channel_mults=(1, 2, 2), num_res_blocks=2, attention_levels=(2,), dropout=0.1,
                 num_classes: int = 0):
        super().__init__()
        c_img, h, w = image_shape
        factor = 2 ** (len(channel_mults) - 1)
        if h % factor or w % factor:
            raise ValueError(
                f"U-Net with {len(channel_mults)} levels needs image sides divisible by {factor}, got {h}x{w}; "
                f"use fewer channel_mults entries"
            )
        if base_channels % 4:
            raise ValueError(f"U-Net base_channels must be divisible by 4 (attention heads), got {base_channels}")
        time_dim = 4 * base_channels
        self.base_channels = base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        # class-conditional: one embedding per class plus a "no label" one (index num_classes), added to the time embedding
        self.num_classes = num_classes
        self.label_embed = nn.Embedding(num_classes + 1, time_dim) if num_classes else None
        self.stem = nn.Conv2d(c_img, base_channels, 3, padding=1)

        self.down, skips, ch = nn.ModuleList(), [base_channels], base_channels
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                self.down.append(self._stage(ch, base_channels * mult, time_dim, dropout, level in attention_levels))
                ch = base_channels * mult
                skips.append(ch)
            if level < len(channel_mults) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.middle = nn.ModuleList([ResBlock(ch, ch, time_dim, dropout), SelfAttention(ch), ResBlock(ch, ch, time_dim, dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                self.up.append(self._stage(ch + skips.pop(), base_channels * mult, time_dim, dropout, level in attention_levels))
                ch = base_channels * mult
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)))
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, c_img, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    @staticmethod
    def _stage(c_in, c_out, time_dim, dropout, attention):
        blocks = [ResBlock(c_in, c_out, time_dim, dropout)] + ([SelfAttention(c_out)] if attention else [])
        return nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.base_channels).to(x.dtype))
        if self.label_embed is not None:  # labels (B,) in 0..num_classes; None or num_classes: unconditional
            if labels is None:
                labels = torch.full((len(x),), self.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.label_embed(labels)
        h = self.stem(x)
        hs = [h]
        for layer in self.down:
            h = self._run_layer(layer, h, emb)
            hs.append(h)
        for layer in self.middle:
            h = layer(h, emb)
        for layer in self.up:
            if isinstance(layer, nn.ModuleList):
                h = self._run_layer(layer, torch.cat([h, hs.pop()], dim=1), emb)
            else:
                h = layer(h)
        return self.out(h)

    @staticmethod
    def _run_layer(layer, h, emb):
        if isinstance(layer, nn.ModuleList):
            for block in layer:
                h = block(h, emb)
            return h
        return layer(h)
