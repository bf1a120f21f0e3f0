"""Annealed importance sampling (Neal 2001): an estimate of log Z for an energy-based model.

An EBM defines p(x) = exp(-E(x)) / Z with Z = ∫ exp(-E(x)) dx unknown. AIS anneals from a
base density whose normaliser is known, here the uniform density on the box [-a, a]^D
(f_0 = 1, Z_0 = (2a)^D), to the model's, through f_k(x) = exp(-beta_k E(x)) on the box with
0 = beta_0 < beta_1 < ... < beta_K = 1 (linear). Each chain starts at a draw from the base
and accumulates the log weight

    log w = sum_k (beta_{k-1} - beta_k) E(x_{k-1}),   x_k ~ T_k(x_{k-1}, .),

where T_k is one Metropolis-adjusted Langevin step (MALA; Roberts & Tweedie 1996) that leaves
f_k invariant on the box. Its Gaussian proposal is reflected at the box's faces, and the
acceptance test uses the reflected proposal's density (the direct term and the one image
through each face: the next images are exp(-(4a)^2 / (4h)) smaller, nothing at the step
sizes used). Images put many pixels on the faces (a Fashion-MNIST background is -1); a
proposal that left the box would be rejected whenever any of 784 pixels stepped outside. Then E[w] = Z / Z_0, so
Z_hat = Z_0 * mean(w) is unbiased for Z and log Z_hat is, by Jensen's inequality, a
stochastic lower bound on log Z: a log-likelihood log p(x) = -E(x) - log Z_hat built on it
leans high. It is an estimate, reported with its spread across independent groups of chains.
"""

import math

import torch

from genzoo.energy.langevin import energy_and_grad


def ais_log_z(
    energy_fn,
    shape,
    chains: int,
    steps: int,
    step_size: float,
    half_width: float = 1.0,
    groups: int = 4,
    generator: torch.Generator | None = None,
    device="cpu",
) -> dict:
    """log Z of exp(-E(x)) on the box [-half_width, half_width]^D, x of `shape` (C, H, W) or (D,).

    Args:
        energy_fn: E, (B, *shape) -> (B,) energies in nats.
        chains: independent AIS chains (>= groups), each a full annealing run.
        steps: K, the annealing steps (>= 1); a chain costs K energy-and-gradient evaluations.
        step_size: h of the MALA proposal y = x - h beta ∇E(x) + sqrt(2h) z (> 0).
        half_width: a, the box's half-width; images in [-1, 1] with uniform dequantisation
            live on a = 1 + 1/255 (the union of their 8-bit bins).
        groups: the chains are also split into this many groups (torch.chunk: equal but
            perhaps the last), each an independent estimate; their standard deviation is the
            spread reported (nan for one group; the pooled estimate, over all chains, is more
            precise than one group's).
        generator: CPU torch.Generator for the base draws, proposals and accept tests.
        device: where the energies are computed.
    Returns:
        {"log_z": pooled estimate (nats), "log_z_group_std": std of the groups' estimates,
        "log_z_groups": the groups' estimates, "log_z_base": D log(2a), "ess": effective sample
        size of the weights (sum w)^2 / sum w^2, "acceptance": mean MALA acceptance rate,
        "chains", "steps", "step_size", "groups", "nfe_per_chain"}.
    Raises:
        ValueError: chains < groups, groups < 1, steps < 1, step_size <= 0 or half_width <= 0.
    """
    if groups < 1 or chains < groups or steps < 1 or step_size <= 0 or half_width <= 0:
        raise ValueError(f"AIS needs groups >= 1, chains >= groups, steps >= 1, step_size > 0 and half_width > 0; "
                         f"got groups={groups}, chains={chains}, steps={steps}, step_size={step_size}, half_width={half_width}")
    shape = tuple(shape)
    dims = math.prod(shape)
    betas = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    x = ((torch.rand((chains, *shape), generator=generator) * 2 - 1) * half_width).to(device)
    energy, grad = energy_and_grad(energy_fn, x)
    log_w = torch.zeros(chains, dtype=torch.float64)
    accepted = 0.0
    for k in range(1, steps + 1):
        log_w -= (betas[k] - betas[k - 1]).item() * energy.double().cpu()
        if k < steps:  # the last transition would not change any weight
            x, energy, grad, rate = _mala_step(energy_fn, x, energy, grad, betas[k].item(), step_size, half_width, generator)
            accepted += rate
    log_z_base = dims * math.log(2 * half_width)
    per_group = torch.stack([_log_mean_exp(g) for g in log_w.chunk(groups)]) + log_z_base
    weights = torch.softmax(log_w, 0)
    return {
        "log_z": (_log_mean_exp(log_w) + log_z_base).item(),
        "log_z_group_std": per_group.std().item() if groups > 1 else float("nan"),
        "log_z_groups": per_group.tolist(),
        "log_z_base": log_z_base,
        "ess": (1 / (weights**2).sum()).item(),
        "acceptance": accepted / max(1, steps - 1),
        "chains": chains,
        "steps": steps,
        "step_size": step_size,
        "groups": groups,
        "nfe_per_chain": steps,
    }


def _mala_step(energy_fn, x, energy, grad, beta: float, h: float, half_width: float, generator):
    """One MALA step targeting exp(-beta E) on the box, its proposal reflected into the box; returns (x, E(x), ∇E(x), acceptance rate)."""
    std = math.sqrt(2 * h)
    mean_x = x - h * beta * grad
    noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    y = reflect(mean_x + std * noise, half_width)
    energy_y, grad_y = energy_and_grad(energy_fn, y)
    log_q_forward = reflected_normal_log_density(y, mean_x, std, half_width)  # log q(y | x)
    log_q_backward = reflected_normal_log_density(x, y - h * beta * grad_y, std, half_width)  # log q(x | y)
    log_alpha = beta * (energy - energy_y) + log_q_backward - log_q_forward
    u = torch.rand(len(x), generator=generator).to(x.device)
    accept = torch.log(u) < log_alpha
    mask = accept.view(-1, *[1] * (x.dim() - 1))
    return torch.where(mask, y, x), torch.where(accept, energy_y, energy), torch.where(mask, grad_y, grad), accept.float().mean().item()


def reflect(y: torch.Tensor, half_width: float) -> torch.Tensor:
    """y folded into [-a, a] by reflection at the faces (any distance out: the fold has period 4a)."""
    t = torch.remainder(y + half_width, 4 * half_width)
    return torch.where(t <= 2 * half_width, t, 4 * half_width - t) - half_width


def reflected_normal_log_density(y: torch.Tensor, mean: torch.Tensor, std: float, half_width: float) -> torch.Tensor:
    """log density (B,) at y in [-a, a]^D of N(mean, std^2 I) reflected into the box, summed over the D coordinates.

    Per coordinate, the direct term and its images through the two faces (2a - y and -2a - y);
    the further images are negligible while std << a. In float64.
    """
    y, mean = y.double().flatten(1), mean.double().flatten(1)
    terms = torch.stack([y - mean, 2 * half_width - y - mean, -2 * half_width - y - mean])
    per_coordinate = torch.logsumexp(-(terms**2) / (2 * std**2), 0) - math.log(std * math.sqrt(2 * math.pi))
    return per_coordinate.sum(1).to(y.device)


def _log_mean_exp(v: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(v, 0) - math.log(len(v))
