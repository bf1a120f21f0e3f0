"""Noise schedules of the DDPM forward process, as pure functions.

q(x_t | x_0) = N(sqrt(alphas_cumprod[t]) x_0, (1 - alphas_cumprod[t]) I), t = 0..T-1
(index t here is step t+1 of Ho et al. 2020).
"""

import math
from dataclasses import dataclass

import torch


def linear_betas(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Betas rising linearly from beta_start to beta_end: float64 (T,) (Ho et al. 2020, sec. 4).

    Ho et al. use T = 1000 with these endpoints; a much smaller T leaves x_T far from pure
    noise unless the endpoints are raised. Raises ValueError if num_steps < 1.
    """
    _check_steps(num_steps)
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Betas of the cosine schedule: float64 (T,) (Nichol & Dhariwal 2021, eq. 17).

    alphas_cumprod(t) = f(t) / f(0), f(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2); betas are
    1 - alphas_cumprod(t) / alphas_cumprod(t - 1), clipped at max_beta to avoid the
    singularity at t = T. Raises ValueError if num_steps < 1.
    """
    _check_steps(num_steps)
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alphas_cumprod = f / f[0]
    return (1 - alphas_cumprod[1:] / alphas_cumprod[:-1]).clamp(max=max_beta)


@dataclass(frozen=True)
class Schedule:
    """Quantities derived from betas (T,), all float64 tensors of shape (T,).

    Square roots and coefficients are computed here in float64: 1 - alphas_cumprod taken
    in float32 near t = 0 (alphas_cumprod ~ 0.9999) would lose three digits.
    Build with `Schedule.from_betas(linear_betas(1000))`.
    """

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor  # alphas_cumprod[t-1], with 1 at t = 0
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    posterior_variance: torch.Tensor  # variance of q(x_{t-1} | x_t, x_0) (Ho et al. eq. 7)
    posterior_log_variance_clipped: torch.Tensor  # its log, with t = 0 taken from t = 1 (the variance is 0 there)
    posterior_mean_coef1: torch.Tensor  # posterior mean = coef1 * x0 + coef2 * x_t (eq. 7)
    posterior_mean_coef2: torch.Tensor

    @property
    def num_steps(self) -> int:
        return len(self.betas)

    @classmethod
    def from_betas(cls, betas: torch.Tensor) -> "Schedule":
        """Derive the schedule; raises ValueError unless every beta lies in (0, 1)."""
        betas = betas.double()
        if betas.ndim != 1 or not torch.all((betas > 0) & (betas < 1)):
            raise ValueError("betas must be a 1-D tensor with every value in (0, 1)")
        alphas_cumprod = torch.cumprod(1 - betas, 0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        post_var = betas * (1 - prev) / (1 - alphas_cumprod)
        post_log_var = torch.log(torch.cat([post_var[1:2], post_var[1:]])) if len(betas) > 1 else torch.log(betas)
        return cls(
            betas=betas,
            alphas_cumprod=alphas_cumprod,
            alphas_cumprod_prev=prev,
            sqrt_alphas_cumprod=alphas_cumprod.sqrt(),
            sqrt_one_minus_alphas_cumprod=(1 - alphas_cumprod).sqrt(),
            posterior_variance=post_var,
            posterior_log_variance_clipped=post_log_var,
            posterior_mean_coef1=prev.sqrt() * betas / (1 - alphas_cumprod),
            posterior_mean_coef2=(1 - betas).sqrt() * (1 - prev) / (1 - alphas_cumprod),
        )


def make_schedule(name: str, num_steps: int) -> Schedule:
    """Schedule by name: "linear" or "cosine"; raises ValueError for another name."""
    makers = {"linear": linear_betas, "cosine": cosine_betas}
    if name not in makers:
        raise ValueError(f"unknown noise schedule '{name}': choose one of {', '.join(makers)}")
    return Schedule.from_betas(makers[name](num_steps))


def extract(values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """values[t] as float32 on t's device, shaped (B, 1, ..., 1) to broadcast over ndim dims."""
    out = values.to(t.device)[t].float()
    return out.view(-1, *([1] * (ndim - 1)))


def q_sample(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Draw x_t ~ q(x_t | x_0): sqrt(alphas_cumprod[t]) x0 + sqrt(1 - alphas_cumprod[t]) eps.

    x0, eps: (B, C, H, W); t: int64 (B,) in [0, T). Returns (B, C, H, W).
    """
    return extract(schedule.sqrt_alphas_cumprod, t, x0.ndim) * x0 + extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * eps


def _check_steps(num_steps: int) -> None:
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
