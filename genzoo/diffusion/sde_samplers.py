"""Samplers of a score SDE, as plain functions of (score function, SDE, shape, generator).

`score_fn(x, t)` returns the score of p_t at x (B, ...) for times t (B,) in (0, 1]. Noise is
drawn from a CPU `generator` and moved to x's device, so a seed gives the same samples on
every device. Each sampler returns (samples, NFE per sample): the score evaluations each
sample cost. The probability-flow ODE sampler is in genzoo.diffusion.probability_flow.
"""

import torch

from genzoo.diffusion.sde import SDE, VESDE, VPSDE, _bcast

PREDICTORS = ("reverse_diffusion", "euler_maruyama")
CORRECTORS = ("langevin", "none")


def _noise(like: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator).to(like.device)


def _per_sample_norm(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1)


def langevin_correct(score_fn, sde: SDE, x: torch.Tensor, t: torch.Tensor, snr: float, steps: int, generator=None):
    """`steps` Langevin MCMC steps at time t with the step size set by the signal-to-noise ratio `snr`
    (Song et al. 2021, Algorithm 4 and app. G): eps_i = 2 alpha_i (snr ||z|| / ||score||)^2,
    x <- x + eps_i score + sqrt(2 eps_i) z. alpha_i is 1 - beta_i for VP and sub-VP, 1 for VE.

    The norms are averaged over the batch, as in the reference code: one step size per batch
    (per-sample norms make the step explode in low dimensions, wherever a score is near 0).
    The step is capped at 2 alpha_i std(t)^2, its value at snr 1 for the score of pure
    N(mean, std(t)^2) noise, so a near-zero score (an untrained net) cannot blow it up.
    Returns (x, x_mean): after the last step, and before its noise.
    """
    alpha = sde.alpha(t) if isinstance(sde, VPSDE) else torch.ones_like(t)
    cap = 2 * alpha * sde.marginal_prob(x, t)[1] ** 2
    x_mean = x
    for _ in range(steps):
        grad, z = score_fn(x, t), _noise(x, generator)
        step = 2 * alpha * (snr * _per_sample_norm(z).mean() / _per_sample_norm(grad).mean().clamp_min(1e-30)) ** 2
        step = torch.minimum(step, cap)
        x_mean = x + _bcast(step, x) * grad
        x = x_mean + _bcast((2 * step).sqrt(), x) * z
    return x, x_mean


@torch.inference_mode()
def pc_sample(score_fn, sde: SDE, shape, generator=None, steps: int | None = None, predictor: str = "reverse_diffusion",
              corrector: str = "langevin", snr: float = 0.16, corrector_steps: int = 1, eps: float = 1e-3,
              denoise: bool = True, x_T: torch.Tensor | None = None, device=None):
    """Predictor-corrector sampling (Song et al. 2021, Algorithm 1) from the prior at t = 1 down to t = eps.

    At each of `steps` times, evenly spaced from 1 to eps: `corrector_steps` Langevin steps
    at signal-to-noise ratio `snr` (corrector "langevin"; "none" for the predictor alone), then
    one predictor step of the reverse SDE: "reverse_diffusion" (the SDE's own discretisation
    with the score, eq. 46; ancestral-like for VP) or "euler_maruyama" (dt = -(1 - eps) / steps).

    Args:
        score_fn: (x, t) -> score, see the module docstring.
        sde: the forward SDE; its N is the default `steps` (it is discretised in `steps`).
        shape: (N, ...) of the batch.
        generator: CPU torch.Generator, or None for the global RNG.
        denoise: return the last predictor step's mean (no noise at the end), as Song et al. do.
        x_T: the starting point (default: a prior draw from `generator`).
        device: where to sample when x_T is None (default CPU).
    Returns:
        (samples `shape`, NFE per sample = steps * (1 + corrector_steps) with the corrector).
    Raises:
        ValueError: an unknown predictor or corrector, steps < 1, snr <= 0, or eps outside (0, 1).
    """
    steps = sde.N if steps is None else steps
    if predictor not in PREDICTORS or corrector not in CORRECTORS:
        raise ValueError(f"predictor must be one of {PREDICTORS} and corrector one of {CORRECTORS}, got {predictor!r} and {corrector!r}")
    if steps < 1 or snr <= 0 or not 0 < eps < 1:
        raise ValueError(f"PC sampling needs steps >= 1, snr > 0 and eps in (0, 1), got {steps}, {snr} and {eps}")
    sde = sde.with_steps(steps)  # the reverse-diffusion step and the corrector's alpha follow the step count
    x = sde.prior_sampling(shape, generator).to(device) if x_T is None else x_T
    rsde = sde.reverse(score_fn)
    times = torch.linspace(sde.T, eps, steps, dtype=torch.float64)
    dt = (eps - sde.T) / steps
    n_corr = corrector_steps if corrector == "langevin" else 0
    x_mean = x
    for time in times.tolist():
        t = torch.full((shape[0],), time, device=x.device)
        if n_corr:
            x, x_mean = langevin_correct(score_fn, sde, x, t, snr, n_corr, generator)
        if predictor == "reverse_diffusion":
            f, G = rsde.discretize(x, t)
            x_mean = x - f
            x = x_mean + _bcast(G, x) * _noise(x, generator)
        else:
            drift, diffusion = rsde.sde(x, t)
            x_mean = x + drift * dt
            x = x_mean + _bcast(diffusion, x) * (-dt) ** 0.5 * _noise(x, generator)
    return (x_mean if denoise else x), steps * (1 + n_corr)


@torch.inference_mode()
def annealed_langevin_sample(score_fn, sde: VESDE, shape, generator=None, levels: int = 100, steps_per_level: int = 5,
                             step_lr: float = 2e-5, denoise: bool = True, x_T: torch.Tensor | None = None, device=None):
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) over `levels` noise scales of a VE SDE.

    sigma_1 = sigma_max > ... > sigma_L = sigma_min, geometric; at each, `steps_per_level`
    steps x <- x + (a_i / 2) score(x, sigma_i) + sqrt(a_i) z with a_i = step_lr sigma_i^2 / sigma_L^2.
    With `denoise`, a last Tweedie step x + sigma_L^2 score(x, sigma_L) (Song & Ermon 2020;
    Jolicoeur-Martineau et al. 2021) removes the remaining sigma_L noise (one more evaluation).

    Args:
        score_fn, shape, generator, x_T, device: as in pc_sample.
        sde: a VESDE (its noise scales and times).
    Returns:
        (samples `shape`, NFE per sample = levels * steps_per_level (+1 with denoise)).
    Raises:
        ValueError: an SDE that is not VE, or levels < 2, steps_per_level < 1, step_lr <= 0.
    """
    if not isinstance(sde, VESDE):
        raise ValueError(f"annealed Langevin dynamics anneals the noise levels of a VE SDE (NCSN), got {type(sde).__name__}: use model.sde=ve")
    if levels < 2 or steps_per_level < 1 or step_lr <= 0:
        raise ValueError(f"annealed Langevin needs levels >= 2, steps_per_level >= 1 and step_lr > 0, got {levels}, {steps_per_level}, {step_lr}")
    x = sde.prior_sampling(shape, generator).to(device) if x_T is None else x_T
    sigmas = torch.exp(torch.linspace(torch.log(torch.tensor(sde.sigma_max)), torch.log(torch.tensor(sde.sigma_min)), levels))
    for sigma in sigmas.tolist():
        t = sde.time_of(torch.full((shape[0],), sigma, device=x.device))
        a = step_lr * (sigma / sde.sigma_min) ** 2
        for _ in range(steps_per_level):
            x = x + 0.5 * a * score_fn(x, t) + a**0.5 * _noise(x, generator)
    nfe = levels * steps_per_level
    if denoise:
        x = x + sde.sigma_min**2 * score_fn(x, torch.zeros(shape[0], device=x.device))
        nfe += 1
    return x, nfe
