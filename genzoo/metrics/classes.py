"""Metrics on a classifier's predictions for generated images: Inception Score and class coverage."""

import math

import torch


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """IS (Salimans et al. 2016) = exp(E_x KL(p(y|x) || p(y))), as (mean, std) over `splits` chunks.

    logits: (N, K) class logits of N generated images. Values lie in [1, K]. Computed in
    float64, chunks in order (as torch-fidelity). Raises ValueError unless 1 <= splits <= N.
    """
    if not 1 <= splits <= len(logits):
        raise ValueError(f"splits must be in [1, N={len(logits)}], got {splits}")
    log_p = torch.log_softmax(logits.double(), dim=1)
    scores = []
    for chunk in log_p.chunk(splits):
        log_marginal = torch.logsumexp(chunk, dim=0) - math.log(len(chunk))
        kl = (chunk.exp() * (chunk - log_marginal)).sum(1).mean()
        scores.append(kl.exp().item())
    scores = torch.tensor(scores, dtype=torch.float64)
    return scores.mean().item(), (scores.std().item() if splits > 1 else 0.0)


def class_coverage(logits: torch.Tensor) -> tuple[float, float]:
    """(coverage, kl_to_uniform) of the predicted-class histogram of N generated images.

    logits: (N, K). coverage: share of the K classes whose predicted count is at least
    half the uniform share N / K, in [0, 1] (1: no class dropped; mode collapse lowers it).
    kl_to_uniform: KL(histogram || uniform) in nats, 0 for a perfectly balanced set, at most log K.
    """
    n, k = logits.shape
    counts = torch.bincount(logits.argmax(1), minlength=k).double()
    coverage = (counts >= 0.5 * n / k).double().mean().item()
    p = counts / n
    kl = (p[p > 0] * (p[p > 0] * k).log()).sum().item()
    return coverage, kl
