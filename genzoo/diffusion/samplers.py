"""Reverse-process samplers as plain functions of (net, schedule, shape, generator).

`net(x_t, t)` returns the model output for x_t (B, C, H, W) at integer steps t (B,): the
noise eps, or v = sqrt(a) eps - sqrt(1 - a) x0 (Salimans & Ho 2022), as `prediction` says.
Noise is drawn from a CPU `generator` and moved to the net's device, so a seed gives the
same images on every device; a step draws noise only when its noise std is positive.
"""

import torch

from genzoo.diffusion.schedules import Schedule, extract

PREDICTIONS = ("eps", "v")


def x0_bound(clip_x0) -> float | None:
    """The bound b the samplers clip x0 predictions (and the final sample) to, |x0| <= b.

    clip_x0: True (images in [-1, 1]: b = 1), False or None (no clipping: None), or a
    positive number b (latents scaled to unit variance: a bound in units of their std).
    Raises ValueError for a number <= 0.
    """
    if clip_x0 is True:
        return 1.0
    if clip_x0 is False or clip_x0 is None:
        return None
    if not clip_x0 > 0:
        raise ValueError(f"clip_x0 must be true, false/null or a positive bound, got {clip_x0}")
    return float(clip_x0)


def predict_x0_eps(output, x_t, t, schedule: Schedule, prediction: str = "eps", clip_x0: bool | float = True):
    """(x0, eps) implied by the net's output at x_t; x0 clipped to [-b, b], b = x0_bound(clip_x0), when clipping.

    After clipping, eps is recomputed from x0 and x_t so the two stay consistent.
    Raises ValueError for an unknown prediction type.
    """
    sqrt_a = extract(schedule.sqrt_alphas_cumprod, t, x_t.ndim)
    sqrt_1ma = extract(schedule.sqrt_one_minus_alphas_cumprod, t, x_t.ndim)
    if prediction == "eps":
        x0 = (x_t - sqrt_1ma * output) / sqrt_a
    elif prediction == "v":
        x0 = sqrt_a * x_t - sqrt_1ma * output
    else:
        raise ValueError(f"unknown prediction '{prediction}': choose one of {', '.join(PREDICTIONS)}")
    bound = x0_bound(clip_x0)
    if bound is not None:
        x0 = x0.clamp(-bound, bound)
    eps = (x_t - sqrt_a * x0) / sqrt_1ma
    return x0, eps


def _clip(x: torch.Tensor, clip_x0) -> torch.Tensor:
    bound = x0_bound(clip_x0)
    return x if bound is None else x.clamp(-bound, bound)


def _noise(shape, generator, device):
    return torch.randn(shape, generator=generator).to(device)


def _device(net) -> torch.device:
    return next(net.parameters()).device


@torch.inference_mode()
def ancestral_sample(net, schedule: Schedule, shape, generator=None, prediction="eps", clip_x0=True) -> torch.Tensor:
    """DDPM ancestral sampling over all T steps (Ho et al. 2020, Algorithm 2).

    Each step draws x_{t-1} ~ N(mu~(x_t, x0), beta~_t I), the posterior q(x_{t-1} | x_t, x0)
    at the predicted x0 (eq. 7; "fixed small" variance), with no noise at the last step.

    Args:
        net: callable (x_t, t) -> output, see the module docstring.
        schedule: the training schedule.
        shape: (N, C, H, W) of the batch to draw.
        generator: CPU torch.Generator, or None for the global RNG.
        prediction: what the net predicts, one of PREDICTIONS.
        clip_x0: True, False/None or a positive bound on |x0| (see x0_bound).
    Returns:
        (N, C, H, W) float32, in [-b, b] when clipping (b = x0_bound(clip_x0): 1 for True).
    """
    device = _device(net)
    x = _noise(shape, generator, device)
    for step in reversed(range(schedule.num_steps)):
        t = torch.full((shape[0],), step, device=device, dtype=torch.long)
        x0, _ = predict_x0_eps(net(x, t), x, t, schedule, prediction, clip_x0)
        x = posterior_mean(schedule, x0, x, t)
        if step > 0:
            x = x + extract(schedule.posterior_variance, t, x.ndim).sqrt() * _noise(shape, generator, device)
    return _clip(x, clip_x0)


def posterior_mean(schedule: Schedule, x0, x_t, t) -> torch.Tensor:
    """Mean of q(x_{t-1} | x_t, x0) (Ho et al. 2020, eq. 7), shaped like x_t."""
    return extract(schedule.posterior_mean_coef1, t, x_t.ndim) * x0 + extract(schedule.posterior_mean_coef2, t, x_t.ndim) * x_t


def ddim_timesteps(num_train_steps: int, steps: int) -> list[int]:
    """`steps` training steps, evenly spaced from T-1 down to 0 ("uniform" spacing).

    Raises ValueError unless 1 <= steps <= T.
    """
    if not 1 <= steps <= num_train_steps:
        raise ValueError(f"DDIM steps must be in [1, {num_train_steps}] (the training T), got {steps}")
    grid = torch.linspace(0, num_train_steps - 1, steps).round().long().tolist()
    return sorted(set(grid), reverse=True)


@torch.inference_mode()
def ddim_sample(net, schedule: Schedule, shape, steps=50, eta=0.0, generator=None, prediction="eps", clip_x0=True,
                x_T: torch.Tensor | None = None) -> torch.Tensor:
    """DDIM sampling (Song et al. 2021, eq. 12) over `steps` of the T training steps.

    x_{t'} = sqrt(a_{t'}) x0 + sqrt(1 - a_{t'} - sigma^2) eps + sigma z, with
    sigma = eta * sqrt((1 - a_{t'}) / (1 - a_t)) * sqrt(1 - a_t / a_{t'}) (eq. 16): eta = 0 is
    deterministic given x_T; eta = 1 with steps = T is the ancestral sampler.

    Args:
        net, schedule, shape, generator, prediction, clip_x0: as in ancestral_sample.
        steps: number of net evaluations, 1 <= steps <= T.
        eta: noise scale, >= 0.
        x_T: the starting noise, `shape`, on the net's device; None draws it from `generator`.
            With eta = 0 the sample is a deterministic function of x_T (DDIM's latent code).
    Returns:
        (N, C, H, W) float32, in [-b, b] when clipping (b = x0_bound(clip_x0): 1 for True).
    Raises:
        ValueError: steps outside [1, T] or eta < 0.
    """
    if eta < 0:
        raise ValueError(f"DDIM eta must be >= 0, got {eta}")
    device = _device(net)
    times = ddim_timesteps(schedule.num_steps, steps)
    x = _noise(shape, generator, device) if x_T is None else x_T
    for i, step in enumerate(times):
        t = torch.full((shape[0],), step, device=device, dtype=torch.long)
        x0, eps = predict_x0_eps(net(x, t), x, t, schedule, prediction, clip_x0)
        a_t = schedule.alphas_cumprod[step].item()
        a_prev = schedule.alphas_cumprod[times[i + 1]].item() if i + 1 < len(times) else 1.0
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
        x = a_prev**0.5 * x0 + max(1 - a_prev - sigma**2, 0.0) ** 0.5 * eps
        if sigma > 0:
            x = x + sigma * _noise(shape, generator, device)
    return _clip(x, clip_x0)
