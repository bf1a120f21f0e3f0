"""Diffusion transformer (DiT, Peebles & Xie 2023): patchify, transformer blocks with adaLN-Zero, unpatchify.

The noise predictor as a plain ViT over p x p patches: each patch a token (a linear
embedding plus fixed 2-D sine-cosine position embeddings), N blocks of self-attention and an
MLP whose LayerNorms are modulated by the conditioning c = embed(t) (+ embed(label)): each
block regresses a shift, a scale and a gate per sub-layer from c, the gates initialised to
zero, so a fresh block is the identity (adaLN-Zero); a final adaptive LayerNorm and a
linear layer (zero-initialised) give p x p x C values per token, put back in place
(unpatchify). Images whose sides the patch size does not divide are padded (replicate
padding) and the output cropped back, e.g. 28x28 -> 32x32 for p = 4. Same call as the
U-Net: net(x (B, C, H, W), t (B,), labels (B,) or None) -> (B, C, H, W). Imports only torch.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.nets.unet import timestep_embedding

# Named sizes (hidden size, depth, heads), by the name `model.dit_size` takes (the config schema reads this table,
# so a new size needs only a line here). "cpu": 1.07 M parameters at patch size 2 on 1 x 28 x 28, matched to the
# DDPM's default U-Net (1.11 M), so model.net=unet against model.net=dit compares backbones at about equal size;
# trains in minutes on 2 CPU cores. "S", "B": DiT-S and DiT-B (Peebles & Xie 2023, table 1).
SIZES = {"cpu": (96, 6, 4), "S": (384, 12, 6), "B": (768, 12, 12)}


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/p * W/p, p * p * C) tokens in raster order of the patches; H and W divisible by p."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(tokens: torch.Tensor, p: int, c: int, h: int, w: int) -> torch.Tensor:
    """The inverse of patchify: (B, H/p * W/p, p * p * C) -> (B, C, H, W)."""
    b = tokens.shape[0]
    return tokens.reshape(b, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)


def sincos_position_embedding(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine embeddings (grid_h * grid_w, dim): half the channels for the row, half for the column (MAE/DiT)."""
    def one_axis(positions, d):
        omega = 1.0 / 10_000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2))
        angles = positions.double()[:, None] * omega[None]
        return torch.cat([torch.sin(angles), torch.cos(angles)], 1)

    rows, cols = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    return torch.cat([one_axis(rows.flatten(), dim // 2), one_axis(cols.flatten(), dim // 2)], 1).float()


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """x + gate_a * attention(adaLN(x)), then x + gate_m * MLP(adaLN(x)); shifts, scales and gates regressed from c, zero at init."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(hidden, int(hidden * mlp_ratio)), nn.GELU(approximate="tanh"), nn.Linear(int(hidden * mlp_ratio), hidden))
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))
        nn.init.zeros_(self.adaLN[-1].weight)  # adaLN-Zero: every gate starts at 0, the block at the identity
        nn.init.zeros_(self.adaLN[-1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN(c).chunk(6, dim=1)
        b, n, d = x.shape
        q, k, v = self.qkv(_modulate(self.norm1(x), shift_a, scale_a)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + gate_a[:, None] * self.proj(attn)
        return x + gate_m[:, None] * self.mlp(_modulate(self.norm2(x), shift_m, scale_m))


class DiT(nn.Module):
    """DiT noise predictor: (B, C, H, W), t (B,), labels (B,) or None -> (B, C, H, W).

    Args:
        image_shape: (C, H, W) of what it denoises (images or latents).
        patch_size: p; sides not divisible by p are padded up to the next multiple (and cropped).
        hidden_size, depth, num_heads: the transformer (hidden_size divisible by num_heads and even twice over).
        mlp_ratio: the MLP's width over hidden_size.
        num_classes: > 0 adds a label embedding (num_classes + 1 rows: the last is "no label", for
            classifier-free guidance) to the time embedding, as the U-Net does.
    Raises:
        ValueError: a non-positive size, hidden_size not divisible by num_heads or by 4.
    """

    def __init__(self, image_shape, patch_size: int = 2, hidden_size: int = 128, depth: int = 6, num_heads: int = 4,
                 mlp_ratio: float = 4.0, num_classes: int = 0):
        super().__init__()
        if min(patch_size, hidden_size, depth, num_heads) < 1 or hidden_size % num_heads or hidden_size % 4:
            raise ValueError(f"DiT needs positive sizes, hidden_size divisible by num_heads and by 4; got patch_size={patch_size}, "
                             f"hidden_size={hidden_size}, depth={depth}, num_heads={num_heads}")
        c, h, w = image_shape
        self.image_shape, self.patch_size, self.hidden_size = tuple(image_shape), patch_size, hidden_size
        self.padded = (math.ceil(h / patch_size) * patch_size, math.ceil(w / patch_size) * patch_size)
        grid = (self.padded[0] // patch_size, self.padded[1] // patch_size)
        self.patch_embed = nn.Linear(patch_size * patch_size * c, hidden_size)
        self.register_buffer("pos_embed", sincos_position_embedding(hidden_size, *grid), persistent=False)
        self.time_mlp = nn.Sequential(nn.Linear(256, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))
        self.num_classes = num_classes
        self.label_embed = nn.Embedding(num_classes + 1, hidden_size) if num_classes else None
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.norm_out = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.adaLN_out = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.out = nn.Linear(hidden_size, patch_size * patch_size * c)
        for module in (self.adaLN_out[-1], self.out):  # the output starts at zero, as the U-Net's
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        c, h, w = self.image_shape
        ph, pw = self.padded
        if (ph, pw) != (h, w):
            x = F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
        tokens = self.patch_embed(patchify(x, self.patch_size)) + self.pos_embed
        cond = self.time_mlp(timestep_embedding(t, 256).to(x.dtype))
        if self.label_embed is not None:  # labels (B,) in 0..num_classes; None or num_classes: unconditional
            if labels is None:
                labels = torch.full((len(x),), self.num_classes, dtype=torch.long, device=x.device)
            cond = cond + self.label_embed(labels)
        for block in self.blocks:
            tokens = block(tokens, cond)
        shift, scale = self.adaLN_out(cond).chunk(2, dim=1)
        out = unpatchify(self.out(_modulate(self.norm_out(tokens), shift, scale)), self.patch_size, c, ph, pw)
        return out[:, :, :h, :w]
