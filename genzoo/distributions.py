"""Log-likelihoods and KL divergences shared by the likelihood-based families.

Everything is in nats and elementwise (no reduction), computed in float32 whatever the
autocast precision, because bin widths of 2/255 are below bf16's resolution near 1.
"""

import torch
import torch.nn.functional as F
from torch.special import log_ndtr, ndtr

HALF_BIN = 1.0 / 255.0  # half the spacing of the 256 levels of x / 127.5 - 1 in [-1, 1]


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) per element, in nats.

    Closed form for diagonal Gaussians; broadcasts its arguments.
    """
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def standard_normal_kl(mean, logvar) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per element, in nats (Kingma & Welling 2013, app. B)."""
    return 0.5 * (mean**2 + torch.exp(logvar) - 1.0 - logvar)


def discretized_gaussian_log_likelihood(x, mean, log_scale) -> torch.Tensor:
    """log P(x) per element of 8-bit data under a Gaussian discretised to 256 bins, in nats.

    Each x in [-1, 1] is one of 256 levels (x / 127.5 - 1); its bin is [x - 1/255, x + 1/255],
    widened to -inf at x = -1 and +inf at x = 1, so the 256 probabilities sum to 1 and the
    result is a true log-probability of the discrete image (as in Ho et al. 2020, sec. 3.3).

    Args:
        x: data in [-1, 1] on the 256-level grid, any shape.
        mean, log_scale: Gaussian mean and log standard deviation, broadcastable to x.
    Returns:
        float32 tensor of x's shape, values <= 0.
    """
    x, mean, log_scale = x.float(), mean.float(), log_scale.float()
    inv_scale = torch.exp(-log_scale)
    upper = (x - mean + HALF_BIN) * inv_scale
    lower = (x - mean - HALF_BIN) * inv_scale
    log_cdf_upper = log_ndtr(upper)  # log P(X <= upper), for the bottom bin
    log_sf_lower = log_ndtr(-lower)  # log P(X > lower), for the top bin
    # Interior bins: a difference of CDFs taken on the side of the mean where it is not
    # a difference of two numbers near 1 (ndtr(-a) - ndtr(-b) == ndtr(b) - ndtr(a)).
    right = lower > 0
    delta = torch.where(right, ndtr(-lower) - ndtr(-upper), ndtr(upper) - ndtr(lower))
    log_mid = torch.log(delta.clamp_min(1e-12))
    return torch.where(x < -1 + 1e-3, log_cdf_upper, torch.where(x > 1 - 1e-3, log_sf_lower, log_mid))


def bernoulli_log_likelihood(x01, logits) -> torch.Tensor:
    """log P(x) per element for binary x in {0, 1} under Bernoulli(sigmoid(logits)), in nats."""
    return -F.binary_cross_entropy_with_logits(logits.float(), x01.float(), reduction="none")

