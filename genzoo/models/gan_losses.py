"""Adversarial losses as plain functions of discriminator logits.

- "ns": the non-saturating loss of Goodfellow et al. 2014 (sec. 3): D minimises
  softplus(-D(x)) + softplus(D(G(z))), G minimises softplus(-D(G(z))).
- "hinge": Lim & Ye 2017 / Miyato et al. 2018: D minimises relu(1 - D(x)) + relu(1 + D(G(z))),
  G minimises -D(G(z)).
- "wgan-gp": Gulrajani et al. 2017: the critic minimises D(G(z)) - D(x) + lambda * GP,
  G minimises -D(G(z)).
Each loss is a mean over the batch.
"""

import torch
import torch.nn.functional as F

GAN_LOSSES = ("ns", "hinge", "wgan-gp")


def discriminator_loss(loss: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's (critic's) loss, a scalar, from (B,) logits on real and fake images.

    Raises ValueError for a loss not in GAN_LOSSES.
    """
    if loss == "ns":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if loss == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    if loss == "wgan-gp":
        return fake_logits.mean() - real_logits.mean()
    raise ValueError(f"unknown GAN loss '{loss}': choose one of {', '.join(GAN_LOSSES)}")


def generator_loss(loss: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's loss, a scalar, from (B,) discriminator logits on its images.

    Raises ValueError for a loss not in GAN_LOSSES.
    """
    if loss == "ns":
        return F.softplus(-fake_logits).mean()
    if loss in ("hinge", "wgan-gp"):
        return -fake_logits.mean()
    raise ValueError(f"unknown GAN loss '{loss}': choose one of {', '.join(GAN_LOSSES)}")


def gradient_penalty(discriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat uniform on segments real-fake (Gulrajani et al. 2017).

    real, fake: (B, C, H, W). Returns a scalar that keeps the graph (create_graph=True), so
    its gradient reaches the discriminator's weights. The mixing weights come from the
    global torch RNG on the images' device.
    """
    mix = torch.rand(len(real), *([1] * (real.ndim - 1)), device=real.device, dtype=real.dtype)
    x_hat = (mix * real + (1 - mix) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def mode_seeking_ratio(images: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """mean |x_a - x_b| / mean |z_a - z_b| over pairs of draws: MSGAN's ratio (Mao et al. 2019, eq. 3).

    images: (B, ...) generator outputs, B >= 2; z: (B, latent_dim) their codes. The pairs are
    the first B // 2 draws against the last B // 2 (for a conditional G, give each pair one
    label: `mode_seeking_labels`). Returns a scalar that keeps the graph; the generator
    minimises 1 / (ratio + eps), so two codes that land on one image (a collapsed mode)
    cost most. Raises ValueError for B < 2 or a batch size that differs between images and z.
    """
    if len(images) < 2 or len(images) != len(z):
        raise ValueError(f"the mode-seeking ratio needs >= 2 images and one code per image, got {len(images)} images and {len(z)} codes")
    half = len(images) // 2
    image_distance = (images[:half] - images[len(images) - half:]).abs().mean()
    z_distance = (z[:half] - z[len(z) - half:]).abs().mean()
    return image_distance / z_distance


def mode_seeking_labels(labels: torch.Tensor) -> torch.Tensor:
    """(B,) labels rearranged so that draw i and draw B - B // 2 + i share one: the first B - B // 2 labels, then the first B // 2 again."""
    return torch.cat([labels[:len(labels) - len(labels) // 2], labels[:len(labels) // 2]])
