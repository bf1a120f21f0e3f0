"""Langevin dynamics on an energy E(x): the sampler of energy-based models.

Unadjusted Langevin dynamics (Welling & Teh 2011, stochastic gradient Langevin dynamics) targets
p(x) ∝ exp(-E(x)) with

    x_{k+1} = x_k - step_size * ∇E(x_k) + noise_scale * z_k,   z_k ~ N(0, I),

which samples p exactly in the limit step_size -> 0 when noise_scale = sqrt(2 * step_size).
Image EBMs (Du & Mordatch 2019; Nijkamp et al. 2019; Grathwohl et al. 2020) run short chains
with the two decoupled (a large step, little noise: a cold, fast chain) and clip each pixel's
gradient; `langevin_chain` takes both settings as given and says nothing about which is right.
"""

import torch


def energy_and_grad(energy_fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E(x) (B,) and ∇_x E(x) (B, ...) of points x (B, ...), detached; works inside torch.no_grad / inference_mode.

    Only x's gradient is computed: a net's parameters get none (their .grad stays as it was).
    """
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        energy = energy_fn(x)
        (grad,) = torch.autograd.grad(energy.sum(), x)
    return energy.detach(), grad


def langevin_chain(
    energy_fn,
    x: torch.Tensor,
    steps: int,
    step_size: float,
    noise_scale: float,
    generator: torch.Generator | None = None,
    grad_clip: float | None = None,
    bounds: tuple[float, float] | None = (-1.0, 1.0),
    keep_every: int = 0,
) -> tuple[torch.Tensor, int, list[torch.Tensor]]:
    """Run `steps` Langevin steps from x (B, ...): x <- clamp(x - step_size * clip(∇E(x)) + noise_scale * z).

    Args:
        energy_fn: E, (B, ...) -> (B,) energies (nats: p ∝ exp(-E)).
        x: the chains' starting points (B, ...), float.
        steps: number of steps (>= 0); each costs one forward and one backward pass of E.
        step_size: the gradient step (> 0); noise_scale: the standard deviation of the added
            Gaussian noise (>= 0). sqrt(2 * step_size) is the exact Langevin scale.
        generator: CPU torch.Generator for the noise (drawn on the CPU and moved, so a seed
            gives the same chains on every device); None uses the global RNG on x's device.
        grad_clip: clamp each element of ∇E to [-grad_clip, grad_clip] (Du & Mordatch 2019); None: off.
        bounds: clamp x to [low, high] after each step (images: [-1, 1]); None: unbounded.
        keep_every: > 0 keeps x every that many steps (and the start) for pictures of the chain.
    Returns:
        (x after the last step (B, ...), NFE = steps energy-gradient evaluations per chain,
        the kept states: a list of (B, ...) tensors, empty when keep_every is 0).
    Raises:
        ValueError: steps < 0, step_size <= 0, noise_scale < 0 or grad_clip <= 0.
    """
    if steps < 0 or step_size <= 0 or noise_scale < 0 or (grad_clip is not None and grad_clip <= 0):
        raise ValueError(f"Langevin needs steps >= 0, step_size > 0, noise_scale >= 0 and grad_clip > 0 or None; "
                         f"got {steps}, {step_size}, {noise_scale}, {grad_clip}")
    x = x.detach()
    kept = [x.clone()] if keep_every else []
    for k in range(steps):
        _, grad = energy_and_grad(energy_fn, x)
        if grad_clip is not None:
            grad = grad.clamp(-grad_clip, grad_clip)
        noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype) if generator is not None else torch.randn_like(x)
        x = x - step_size * grad + noise_scale * noise
        if bounds is not None:
            x = x.clamp(*bounds)
        if keep_every and (k + 1) % keep_every == 0:
            kept.append(x.clone())
    return x, steps, kept

