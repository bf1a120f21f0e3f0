"""DCGAN generator and discriminator (Radford et al. 2016) for 28x28 and 32x32 images.

The generator projects z to a small square map (7x7 for side 28, 4x4 for side 32) and
doubles it with 4x4 stride-2 transposed convolutions, BatchNorm and ReLU, ending in tanh.
The discriminator mirrors it with strided convolutions and LeakyReLU(0.2) and returns one
logit per image. Imports only torch.
"""

import torch
from torch import nn

NORMS = ("batch", "layer", "none")


def dcgan_stages(image_shape) -> tuple[int, int]:
    """(number of stride-2 stages, side of the smallest map) for a square image.

    The side is halved while it is even and above 4: 28 -> 7 (2 stages), 32 -> 4 (3), 64 -> 4 (4).
    Raises ValueError for a non-square image or one that cannot be halved at least once.
    """
    _, h, w = image_shape
    side, stages = h, 0
    while side % 2 == 0 and side > 4:
        side, stages = side // 2, stages + 1
    if h != w or stages == 0:
        raise ValueError(f"the DCGAN nets need a square image with an even side above 4 (28 or 32), got {h}x{w}")
    return stages, side


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # per-sample, as the WGAN-GP critic needs (Gulrajani et al. 2017)
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}': choose one of {', '.join(NORMS)}")


class DCGANGenerator(nn.Module):
    """(B, latent_dim) noise -> (B, C, H, W) image in [-1, 1].

    Args:
        image_shape: (C, H, W), square with an even side (28, 32, 64, ...).
        latent_dim: size of z.
        base_channels: channels of the last hidden map; each earlier stage doubles them.
    Raises:
        ValueError: an image shape the stages cannot build.
    """

    def __init__(self, image_shape, latent_dim: int = 64, base_channels: int = 64):
        super().__init__()
        stages, side = dcgan_stages(image_shape)
        widths = [base_channels * 2**i for i in reversed(range(stages))]  # e.g. [256, 128, 64]
        self.project = nn.Sequential(
            nn.Linear(latent_dim, widths[0] * side * side, bias=False),
            nn.Unflatten(1, (widths[0], side, side)),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        layers = []
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        layers += [nn.ConvTranspose2d(widths[-1], image_shape[0], 4, stride=2, padding=1), nn.Tanh()]
        self.upsample = nn.Sequential(*layers)
        self.apply(_dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.project(z))


class DCGANDiscriminator(nn.Module):
    """(B, C, H, W) image in [-1, 1] -> (B,) logit (real > fake); a critic for WGAN-GP.

    Args:
        image_shape: (C, H, W), square with an even side (28, 32, 64, ...).
        base_channels: channels of the first stage; each later stage doubles them.
        norm: "batch" (DCGAN), "layer" (per-sample; needed by the gradient penalty) or "none".
    Raises:
        ValueError: an image shape the stages cannot take, or an unknown norm.
    """

    def __init__(self, image_shape, base_channels: int = 64, norm: str = "batch"):
        super().__init__()
        stages, side = dcgan_stages(image_shape)
        widths = [base_channels * 2**i for i in range(stages)]  # e.g. [64, 128, 256]
        layers = [nn.Conv2d(image_shape[0], widths[0], 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=norm == "none"), _norm(norm, c_out), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(widths[-1] * side * side, 1)
        self.apply(_dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


def _dcgan_init(module: nn.Module) -> None:
    """Weights N(0, 0.02), norm scales N(1, 0.02), as Radford et al. 2016."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
