"""Classifier-free guidance (Ho & Salimans 2022): one conditional net, steered at sampling time.

The net is trained with the label replaced by a "no label" token with probability
p_uncond, so it predicts both eps(x_t, t, y) and eps(x_t, t, ∅). Guided sampling uses

    eps_w = (1 + w) eps(x_t, t, y) - w eps(x_t, t, ∅)

w = 0 is the plain conditional model; larger w trades diversity (FID) for fidelity to
the class (classifier accuracy). Each guided evaluation costs two net passes (batched).
"""

import torch
from torch import nn


class Guided(nn.Module):
    """The samplers' net(x_t, t) for a conditional net, fixed labels and guidance scale w.

    Args:
        net: a net called as net(x, t, labels), with `num_classes` (the "no label" index).
        labels: (B,) int64 class of each image being sampled.
        guidance_scale: w >= 0.
    Raises ValueError for w < 0.
    """

    def __init__(self, net: nn.Module, labels: torch.Tensor, guidance_scale: float):
        super().__init__()
        if guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale}")
        self.net, self.labels, self.w = net, labels, float(guidance_scale)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.w == 0:
            return self.net(x, t, self.labels)
        null = torch.full_like(self.labels, self.net.num_classes)
        both = self.net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([self.labels, null]))
        cond, uncond = both.chunk(2)
        return (1 + self.w) * cond - self.w * uncond


def drop_labels(labels: torch.Tensor, p_uncond: float, num_classes: int) -> torch.Tensor:
    """Classifier-free guidance training: each label (B,) becomes the "no label" index num_classes with probability p_uncond."""
    dropped = torch.rand(len(labels), device=labels.device) < p_uncond
    return torch.where(dropped, torch.full_like(labels, num_classes), labels)
