"""The diffusion families' noise (or score) predictor, chosen by config: the U-Net or the DiT.

`model.net=unet` (default; genzoo/nets/unet.py) or `model.net=dit` (genzoo/nets/dit.py, with
`model.patch_size` and a named size `model.dit_size`) for the DDPM, the score model and
latent diffusion. Both take net(x (B, C, H, W), t (B,), labels (B,) or None) -> (B, C, H, W).
"""

from torch import nn

from genzoo.nets.dit import SIZES, DiT
from genzoo.nets.unet import UNet

NETS = ("unet", "dit")


def build_denoiser(net: str, shape, num_classes: int = 0, *, base_channels=64, channel_mults=(1, 2, 2), num_res_blocks=2,
                   attention_levels=(2,), dropout=0.1, patch_size: int = 2, dit_size: str = "cpu") -> nn.Module:
    """The net `net` ("unet" or "dit") for inputs of `shape` (C, H, W); the U-Net's sizes or the DiT's patch size and named size.

    Raises ValueError for an unknown net or DiT size, and for sizes the chosen net rejects.
    """
    if net == "unet":
        return UNet(shape, base_channels, tuple(channel_mults), num_res_blocks, tuple(attention_levels), dropout, num_classes)
    if net == "dit":
        if dit_size not in SIZES:
            raise ValueError(f"unknown dit_size '{dit_size}': choose one of {', '.join(SIZES)}")
        hidden, depth, heads = SIZES[dit_size]
        return DiT(shape, patch_size, hidden, depth, heads, num_classes=num_classes)
    raise ValueError(f"unknown net '{net}': choose one of {', '.join(NETS)}")
