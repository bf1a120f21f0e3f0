"""Log-likelihoods, KL divergences and bits/dim, shared by the likelihood-based families.

Everything is in nats and elementwise (no reduction), computed in float32 whatever the
autocast precision, because bin widths of 2/255 are below bf16's resolution near 1.
"""

import math

import torch
import torch.nn.functional as F
from torch.special import log_ndtr, ndtr

HALF_BIN = 1.0 / 255.0  # half the spacing of the 256 levels of x / 127.5 - 1 in [-1, 1]
LEVEL_WIDTH = 2 * HALF_BIN  # one 8-bit level's width on [-1, 1]


def dequantize(x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, float]:
    """Uniform dequantisation of 8-bit images x (B, C, H, W) in [-1, 1] (Theis et al. 2016).

    Returns (x + (u - 1/2) * LEVEL_WIDTH with u ~ U[0, 1) drawn from `generator` on the CPU,
    D log(1 / LEVEL_WIDTH) in nats): a density p of the moved point gives the discrete
    probability's bound -log P(x) <= -log p(x + noise) + D log(1 / LEVEL_WIDTH), in expectation.
    """
    u = torch.rand(x.shape, generator=generator).to(x.device, x.dtype)
    return x + (u - 0.5) * LEVEL_WIDTH, x[0].numel() * math.log(1 / LEVEL_WIDTH)


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



def categorical_pixel_log_likelihood(x, logits) -> torch.Tensor:
    """log P(x) per element of 8-bit data under a 256-way softmax, in nats.

    Args:
        x: (B, C, H, W) in [-1, 1] on the 256-level grid.
        logits: (B, 256, C, H, W) or, for C = 1, (B, 256, H, W).
    Returns:
        float32 (B, C, H, W), values <= 0.
    """
    target = torch.round((x.float() + 1) * 127.5).long().clamp(0, 255)
    if logits.ndim == 4:
        logits = logits.unsqueeze(2)
    return -F.cross_entropy(logits.float(), target, reduction="none")


def discretized_logistic_mixture_log_likelihood(x, params) -> torch.Tensor:
    """log P(x) per pixel of single-channel 8-bit data under a discretised mixture of K logistics, in nats.

    Salimans et al. 2017 (PixelCNN++), for one channel: each component's mass on the bin
    [x - 1/255, x + 1/255], the edge bins widened to -inf and +inf, so the 256
    probabilities sum to 1; where a bin's mass underflows, the density at the bin centre
    times its width stands in.

    Args:
        x: (B, 1, H, W) in [-1, 1] on the 256-level grid.
        params: (B, 3K, H, W): K mixture logits, K means, K log scales (clamped at -7).
    Returns:
        float32 (B, 1, H, W), values <= 0.
    """
    logit_probs, means, log_scales = params.float().chunk(3, dim=1)
    log_scales = log_scales.clamp(min=-7.0)
    centered = x.float() - means  # broadcasts (B, 1, H, W) against (B, K, H, W)
    inv_scale = torch.exp(-log_scales)
    plus_in = inv_scale * (centered + HALF_BIN)
    min_in = inv_scale * (centered - HALF_BIN)
    log_cdf_plus = plus_in - F.softplus(plus_in)  # log sigmoid(plus_in): the bottom bin
    log_sf_min = -F.softplus(min_in)  # log (1 - sigmoid(min_in)): the top bin
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    mid_in = inv_scale * centered
    log_pdf_mid = mid_in - log_scales - 2.0 * F.softplus(mid_in)  # log density at the centre
    log_mid = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp_min(1e-12)), log_pdf_mid - math.log(127.5))
    log_probs = torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_sf_min, log_mid))
    return torch.logsumexp(log_probs + F.log_softmax(logit_probs, dim=1), dim=1, keepdim=True)


def sample_logistic_mixture(params, generator=None) -> torch.Tensor:
    """One 8-bit draw per pixel from the mixture of discretized_logistic_mixture_log_likelihood: (B, 3K, H, W) -> (B, 1, H, W) in [-1, 1].

    Noise comes from `generator` on the CPU (device-independent draws).
    """
    logit_probs, means, log_scales = params.float().cpu().chunk(3, dim=1)
    b, k, h, w = logit_probs.shape
    probs = torch.softmax(logit_probs, dim=1).permute(0, 2, 3, 1).reshape(-1, k)
    component = torch.multinomial(probs, 1, generator=generator).reshape(b, 1, h, w)
    mean = means.gather(1, component)
    log_scale = log_scales.clamp(min=-7.0).gather(1, component)
    u = torch.rand(mean.shape, generator=generator).clamp(1e-5, 1 - 1e-5)
    x = (mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))).clamp(-1, 1)
    return (torch.round((x + 1) * 127.5) / 127.5 - 1).to(params.device)


def bits_per_dim(nll_nats, num_dims: int):
    """Negative log-likelihood per image in nats -> bits per dimension.

    bits/dim = nll / (D ln 2) with D = C * H * W (e.g. 784 for 28x28x1). Works on floats
    and tensors. For 8-bit images, 8 bits/dim is the cost of a uniform model.

    Raises ValueError if num_dims <= 0.
    """
    if num_dims <= 0:
        raise ValueError(f"num_dims must be positive, got {num_dims}")
    return nll_nats / (num_dims * math.log(2.0))
