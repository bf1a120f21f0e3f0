"""Forward SDEs dx = f(x, t) dt + g(t) dw on t in [0, T = 1], and their reverses (Song et al. 2021).

"Score-Based Generative Modeling through Stochastic Differential Equations" (ICLR 2021),
sec. 3 and app. B-C. Each SDE is a small class:

    sde(x, t)            -> (drift f(x, t) shaped like x, diffusion g(t) of shape (B,))
    marginal_prob(x0, t) -> (mean, std (B,)) of the perturbation kernel p_0t(x_t | x_0)
    prior_sampling(shape, generator), prior_logp(z)   the prior p_T the reverse process starts from
    discretize(x, t)     -> (f_i, G_i): one step of the discretised forward process
    reverse(score_fn, probability_flow)               the reverse SDE, or the probability-flow ODE

x is (B, C, H, W) (or (B, D)) float32, t (B,) float in [0, 1]. Times near 0 are avoided
(the score blows up there): training draws t in [eps, 1], samplers stop at eps.
"""

import copy
import math

import torch

SDES = ("vp", "subvp", "ve")


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) to broadcast over x."""
    return v.view(-1, *([1] * (x.ndim - 1)))


def _standard_normal_logp(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per sample: (B,) in nats."""
    d = z[0].numel()
    return -0.5 * d * math.log(2 * math.pi) - 0.5 * z.flatten(1).pow(2).sum(1)


class SDE:
    """Base class: a forward SDE on [0, T] with N discretisation steps for the samplers.

    Subclasses define `sde`, `marginal_prob`, `prior_sampling` and `prior_logp`; `discretize`
    defaults to Euler-Maruyama (f dt, g sqrt(dt)) with dt = T / N.
    Raises ValueError for N < 1.
    """

    T = 1.0

    def __init__(self, N: int = 1000):
        if N < 1:
            raise ValueError(f"the SDE needs N >= 1 discretisation steps, got {N}")
        self.N = N

    def sde(self, x: torch.Tensor, t: torch.Tensor):
        raise NotImplementedError

    def marginal_prob(self, x0: torch.Tensor, t: torch.Tensor):
        raise NotImplementedError

    def prior_sampling(self, shape, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draws of p_T, `shape`, on the CPU (the caller moves them)."""
        raise NotImplementedError

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """log p_T(z) per sample, (B,) in nats."""
        raise NotImplementedError

    def discretize(self, x: torch.Tensor, t: torch.Tensor):
        """(f_i (like x), G_i (B,)) with x_{i+1} = x_i + f_i + G_i z_i: Euler-Maruyama by default."""
        dt = self.T / self.N
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * math.sqrt(dt)

    def with_steps(self, N: int) -> "SDE":
        """The same SDE discretised in N steps (the samplers' step count); raises ValueError for N < 1."""
        if N < 1:
            raise ValueError(f"the SDE needs N >= 1 discretisation steps, got {N}")
        other = copy.copy(self)
        other.N = N
        return other

    def reverse(self, score_fn, probability_flow: bool = False) -> "ReverseSDE":
        """The reverse-time SDE (Anderson 1982; Song et al. eq. 6), or with `probability_flow` the ODE of eq. 13."""
        return ReverseSDE(self, score_fn, probability_flow)


class ReverseSDE:
    """dx = [f - g^2 score] dt + g dw_bar (run from T to 0), or the probability-flow ODE
    dx = [f - g^2 score / 2] dt when `probability_flow` (same marginals, no noise).

    score_fn(x, t) -> score of p_t at x, shaped like x.
    """

    def __init__(self, forward: SDE, score_fn, probability_flow: bool = False):
        self.forward, self.score_fn, self.probability_flow = forward, score_fn, probability_flow
        self.N, self.T = forward.N, forward.T

    def sde(self, x: torch.Tensor, t: torch.Tensor):
        """(drift, diffusion (B,)) of the reverse process at x, t (time runs backwards: dt < 0)."""
        drift, diffusion = self.forward.sde(x, t)
        scale = 0.5 if self.probability_flow else 1.0
        drift = drift - _bcast(diffusion**2, x) * self.score_fn(x, t) * scale
        return drift, torch.zeros_like(diffusion) if self.probability_flow else diffusion

    def discretize(self, x: torch.Tensor, t: torch.Tensor):
        """(f_i, G_i) of one reverse step: x_{i-1} = x_i - f_i + G_i z (the reverse-diffusion predictor, Song et al. eq. 46)."""
        f, G = self.forward.discretize(x, t)
        scale = 0.5 if self.probability_flow else 1.0
        rev_f = f - _bcast(G**2, x) * self.score_fn(x, t) * scale
        return rev_f, torch.zeros_like(G) if self.probability_flow else G


class VPSDE(SDE):
    """Variance preserving: dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw, beta(t) = beta_min + t (beta_max - beta_min).

    The continuous limit of the DDPM (Song et al. eq. 11): DDPM's linear betas from
    beta_start to beta_end over N steps are beta_min = N beta_start, beta_max = N beta_end
    (1e-4 and 0.02 over 1000: 0.1 and 20). Marginal: mean exp(m(t)) x0, std sqrt(1 - exp(2 m(t))),
    m(t) = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2 (eq. 29). Prior N(0, I).
    Raises ValueError unless 0 < beta_min < beta_max.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000):
        super().__init__(N)
        if not 0 < beta_min < beta_max:
            raise ValueError(f"VP SDE needs 0 < beta_min < beta_max, got {beta_min} and {beta_max}")
        self.beta_min, self.beta_max = beta_min, beta_max

    @property
    def discrete_betas(self) -> torch.Tensor:
        """DDPM's betas (Ho et al.) of the N-step discretisation: beta(t_i) / N, (N,)."""
        return torch.linspace(self.beta_min / self.N, self.beta_max / self.N, self.N)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_mean_coeff(self, t: torch.Tensor) -> torch.Tensor:
        """m(t) = -int_0^t beta(s) ds / 2: the log of the marginal's mean coefficient."""
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def sde(self, x, t):
        beta = self.beta(t)
        return -0.5 * _bcast(beta, x) * x, beta.sqrt()

    def marginal_prob(self, x0, t):
        m = self.log_mean_coeff(t)
        return _bcast(m.exp(), x0) * x0, (-torch.expm1(2 * m)).sqrt()  # expm1: 1 - e^{2m} without cancellation at small t

    def prior_sampling(self, shape, generator=None):
        return torch.randn(shape, generator=generator)

    def prior_logp(self, z):
        return _standard_normal_logp(z)

    def step_beta(self, t: torch.Tensor) -> torch.Tensor:
        """beta_i of the N-step discretisation ending at t, (B,): 1 - abar(t) / abar(t - 1/N), exact for any N.

        For N = 1000 it is DDPM's beta_i ~ beta(t) / N (`discrete_betas`); for small N it stays
        below 1, where beta(t) / N would not (a 4-step sampler would take square roots of negatives).
        """
        prev = (t - self.T / self.N).clamp_min(0)
        return -torch.expm1(2 * (self.log_mean_coeff(t) - self.log_mean_coeff(prev)))

    def discretize(self, x, t):
        """DDPM's step x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z, beta_i = `step_beta(t)` (Song et al. eq. 46)."""
        beta = self.step_beta(t)
        return _bcast((1 - beta).sqrt() - 1, x) * x, beta.sqrt()

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """1 - beta_i of the step ending at t, (B,): the Langevin corrector's step scale (Song et al. app. G)."""
        return 1 - self.step_beta(t)


class SubVPSDE(VPSDE):
    """Sub-VP: the VP drift with diffusion sqrt(beta(t) (1 - exp(-2 int_0^t beta))) (Song et al. eq. 17).

    Its marginal variance (1 - exp(2 m(t)))^2 lies below the VP's at every t; same mean and prior.
    Sampling discretises it by Euler-Maruyama.
    """

    def sde(self, x, t):
        beta = self.beta(t)
        discount = -torch.expm1(4 * self.log_mean_coeff(t))  # 1 - exp(-2 int_0^t beta)
        return -0.5 * _bcast(beta, x) * x, (beta * discount).sqrt()

    def marginal_prob(self, x0, t):
        m = self.log_mean_coeff(t)
        return _bcast(m.exp(), x0) * x0, -torch.expm1(2 * m)

    discretize = SDE.discretize


class VESDE(SDE):
    """Variance exploding: dx = sqrt(d sigma^2(t) / dt) dw, sigma(t) = sigma_min (sigma_max / sigma_min)^t.

    The continuous limit of SMLD / NCSN (Song & Ermon 2019; Song et al. eq. 9). Marginal:
    mean x0, std sigma(t) (eq. 31, the data taken as already perturbed by sigma_min).
    Prior N(0, sigma_max^2 I). Song & Ermon (2020, technique 1) set sigma_max to the largest
    pairwise distance of the training images, so the prior covers the data.
    Raises ValueError unless 0 < sigma_min < sigma_max.
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000):
        super().__init__(N)
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"VE SDE needs 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    @property
    def discrete_sigmas(self) -> torch.Tensor:
        """SMLD's N noise levels, geometric from sigma_min to sigma_max, (N,)."""
        return torch.exp(torch.linspace(math.log(self.sigma_min), math.log(self.sigma_max), self.N))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def time_of(self, sigma: torch.Tensor) -> torch.Tensor:
        """The t with sigma(t) = sigma: log(sigma / sigma_min) / log(sigma_max / sigma_min)."""
        return torch.log(sigma / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)

    def sde(self, x, t):
        diffusion = self.sigma(t) * math.sqrt(2 * (math.log(self.sigma_max) - math.log(self.sigma_min)))
        return torch.zeros_like(x), diffusion

    def marginal_prob(self, x0, t):
        return x0, self.sigma(t)

    def prior_sampling(self, shape, generator=None):
        return torch.randn(shape, generator=generator) * self.sigma_max

    def prior_logp(self, z):
        d = z[0].numel()
        return -0.5 * d * math.log(2 * math.pi * self.sigma_max**2) - z.flatten(1).pow(2).sum(1) / (2 * self.sigma_max**2)

    def discretize(self, x, t):
        """SMLD's step x_i = x_{i-1} + sqrt(sigma_i^2 - sigma_{i-1}^2) z at the nearest of the N noise levels."""
        i = (t * (self.N - 1) / self.T).round().long().clamp(0, self.N - 1)
        sigmas = self.discrete_sigmas.to(x.device)
        adjacent = torch.where(i == 0, torch.zeros_like(t), sigmas[(i - 1).clamp(min=0)])
        return torch.zeros_like(x), (sigmas[i] ** 2 - adjacent**2).sqrt()


def make_sde(name: str, N: int = 1000, beta_min: float = 0.1, beta_max: float = 20.0, sigma_min: float = 0.01,
             sigma_max: float = 50.0) -> SDE:
    """The SDE called `name` ("vp", "subvp" or "ve"); raises ValueError for another name."""
    if name == "vp":
        return VPSDE(beta_min, beta_max, N)
    if name == "subvp":
        return SubVPSDE(beta_min, beta_max, N)
    if name == "ve":
        return VESDE(sigma_min, sigma_max, N)
    raise ValueError(f"unknown SDE '{name}': choose one of {', '.join(SDES)}")


def max_pairwise_distance(x: torch.Tensor, chunk: int = 1024) -> float:
    """The largest Euclidean distance between two rows of x (B, ...) flattened: VE's sigma_max (Song & Ermon 2020).

    Computed in chunks of `chunk` rows (memory O(chunk * B)). Raises ValueError for fewer than 2 images.
    """
    if len(x) < 2:
        raise ValueError(f"the largest pairwise distance needs at least 2 images, got {len(x)}")
    flat = x.flatten(1).float()
    return max(torch.cdist(flat[i:i + chunk], flat).max().item() for i in range(0, len(flat), chunk))


def score_from_eps(eps_fn, sde: SDE):
    """The score (x, t) -> -eps_fn(x, t) / std(t) of a noise predictor (Song et al. 2021, app. C: score = -eps / sigma_t).

    eps_fn(x, t) predicts the standard normal noise z in x = mean(t) + std(t) z, x (B, ...), t (B,) in (0, 1].
    """

    def score(x, t):
        _, std = sde.marginal_prob(x, t)
        return -eps_fn(x, t) / _bcast(std, x)

    return score
