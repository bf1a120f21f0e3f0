"""The probability-flow ODE of a score SDE: deterministic sampling and the exact log-likelihood.

dx/dt = f(x, t) - g(t)^2 score(x, t) / 2 (Song et al. 2021, eq. 13) has the SDE's marginals
p_t at every t, so it maps data to the prior and back one-to-one. Solved by scipy's
adaptive `solve_ivp` (RK45 by default) on float64 state; the score runs in the net's dtype.
The NFE (score evaluations) is what the solver reports, per sample.

The log-likelihood follows the instantaneous change of variables (Chen et al. 2018):
log p_0(x(0)) = log p_T(x(T)) + int_0^T div f~(x(t), t) dt, with the divergence estimated by
Hutchinson-Skilling's trace estimator E[v^T (df~/dx) v] (one Rademacher v per sample, fixed
for the solve as in FFJORD, Grathwohl et al. 2019), or exactly for small dimensions.
"""


import numpy as np
import torch
from scipy.integrate import solve_ivp

from genzoo.diffusion.sde import SDE
from genzoo.distributions import dequantize


def _drift_fn(score_fn, sde: SDE):
    rsde = sde.reverse(score_fn, probability_flow=True)
    return lambda x, t: rsde.sde(x, t)[0]


def _finite(values: np.ndarray, time: float) -> np.ndarray:
    """values, or RuntimeError when any is NaN or infinite: an adaptive solver would otherwise shrink its step forever."""
    if not np.isfinite(values).all():
        raise RuntimeError(f"the probability-flow ODE's drift is not finite at t={time:.3g}: the score net returned NaN or inf "
                           "there (an untrained or diverged net, or an SDE whose std(t) is 0 at that t)")
    return values


def _check_tolerances(rtol: float, atol: float, eps: float) -> None:
    if rtol <= 0 or atol <= 0 or not 0 < eps < 1:
        raise ValueError(f"the ODE solve needs rtol > 0, atol > 0 and eps in (0, 1), got {rtol}, {atol} and {eps}")


@torch.inference_mode()
def ode_sample(score_fn, sde: SDE, shape, generator=None, rtol: float = 1e-5, atol: float = 1e-5, method: str = "RK45",
               eps: float = 1e-3, x_T: torch.Tensor | None = None, device=None):
    """Samples by solving the probability-flow ODE from a prior draw at t = 1 to t = eps (Song et al. sec. 4.3).

    Args:
        score_fn: (x, t) -> score, x (B, ...) and t (B,).
        sde: the forward SDE.
        shape: (N, ...) of the batch.
        generator: CPU torch.Generator for the prior draw (the solve itself is deterministic).
        rtol, atol, method: scipy.integrate.solve_ivp's tolerances and method.
        eps: the end time (the score is unreliable nearer 0).
        x_T: the starting point, `shape` (the latent code); default a prior draw.
        device: where to sample when x_T is None (default CPU).
    Returns:
        (samples `shape` float32, NFE per sample: the solver's score evaluations).
    Raises:
        ValueError: non-positive tolerances or eps outside (0, 1).
        RuntimeError: the solver failed (its message), or the drift was not finite.
    """
    _check_tolerances(rtol, atol, eps)
    x = sde.prior_sampling(shape, generator).to(device) if x_T is None else x_T
    dtype, dev, drift = x.dtype, x.device, _drift_fn(score_fn, sde)

    def f(time, y):
        xt = torch.from_numpy(y).to(dev, dtype).reshape(shape)
        return _finite(drift(xt, torch.full((shape[0],), time, device=dev, dtype=dtype)).double().cpu().numpy().ravel(), time)

    sol = solve_ivp(f, (sde.T, eps), x.double().cpu().numpy().ravel(), rtol=rtol, atol=atol, method=method)
    if not sol.success:
        raise RuntimeError(f"the probability-flow ODE solve failed: {sol.message}")
    return torch.from_numpy(sol.y[:, -1]).to(dev, dtype).reshape(shape), sol.nfev


def _divergence(drift, x: torch.Tensor, t: torch.Tensor, probes: torch.Tensor | None):
    """(drift at x, its divergence per sample (B,)): exact (probes None) or v^T J v averaged over probes (K, *x.shape)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = drift(x, t)
        if not out.requires_grad:  # a drift that does not depend on x (e.g. VE with a zero score)
            return out.detach(), torch.zeros(len(x), dtype=x.dtype, device=x.device)
        if probes is None:  # exact: one backward pass per dimension
            flat = out.flatten(1)
            div = sum(torch.autograd.grad(flat[:, i].sum(), x, retain_graph=True)[0].flatten(1)[:, i] for i in range(flat.shape[1]))
        else:
            div = 0
            for k, v in enumerate(probes):
                (vjp,) = torch.autograd.grad(out, x, v, retain_graph=k + 1 < len(probes))
                div = div + (vjp * v).flatten(1).sum(1)
            div = div / len(probes)
    return out.detach(), div.detach()


def ode_likelihood(score_fn, sde: SDE, x: torch.Tensor, generator=None, probes: int = 1, exact_trace: bool = False,
                   rtol: float = 1e-5, atol: float = 1e-5, method: str = "RK45", eps: float = 1e-5):
    """log p_eps(x) per sample, in nats, by the probability-flow ODE from t = eps to t = 1 (Song et al. app. D.2).

    The score must allow autograd through it (a net under torch.enable_grad; this function
    turns gradients on for its own steps, but an inference-mode tensor x cannot take part:
    pass a normal tensor).

    Args:
        score_fn: (x, t) -> score.
        sde: the forward SDE (its prior_logp ends the sum).
        x: (B, ...) data points (already dequantised, in the model's data space).
        generator: CPU torch.Generator for the Rademacher probes.
        probes: Hutchinson probes per evaluation (their mean estimates the trace; unbiased).
        exact_trace: the exact divergence, one backward pass per dimension (for small D: toys, tests).
        rtol, atol, method: solve_ivp's; eps: the start time.
    Returns:
        (log p (B,) float64 in nats, z = x(1) (B, ...) the latent code, NFE: the solver's drift evaluations).
    Raises:
        ValueError: non-positive tolerances, probes < 1, or eps outside (0, 1).
        RuntimeError: the solver failed, or the drift was not finite.
    """
    _check_tolerances(rtol, atol, eps)
    if probes < 1:
        raise ValueError(f"the Hutchinson estimator needs probes >= 1, got {probes}")
    shape, dev, dtype, n = tuple(x.shape), x.device, x.dtype, x[0].numel() * len(x)
    drift = _drift_fn(score_fn, sde)
    vs = None if exact_trace else (torch.randint(0, 2, (probes, *shape), generator=generator) * 2 - 1).to(dev, dtype)

    def f(time, y):
        xt = torch.from_numpy(y[:n]).to(dev, dtype).reshape(shape)
        out, div = _divergence(drift, xt, torch.full((shape[0],), time, device=dev, dtype=dtype), vs)
        return _finite(np.concatenate([out.double().cpu().numpy().ravel(), div.double().cpu().numpy()]), time)

    y0 = np.concatenate([x.detach().double().cpu().numpy().ravel(), np.zeros(shape[0])])
    sol = solve_ivp(f, (eps, sde.T), y0, rtol=rtol, atol=atol, method=method)
    if not sol.success:
        raise RuntimeError(f"the probability-flow ODE solve failed: {sol.message}")
    z = torch.from_numpy(sol.y[:n, -1]).reshape(shape)
    delta = torch.from_numpy(sol.y[n:, -1])
    return sde.prior_logp(z) + delta, z.to(dev, dtype), sol.nfev



def ode_nll_nats(score_fn, sde: SDE, x: torch.Tensor, generator=None, probes: int = 1, **solve):
    """-log P(x) of 8-bit images x (B, C, H, W) in [-1, 1], in nats per image (B,), through uniform dequantization.

    Each image is moved uniformly within its level (x + (u - 1/2) / 127.5, u ~ U[0, 1)) and the
    probability-flow ODE gives log p of that point; -log p + D log(127.5) bounds -log P(x)
    from above (Theis et al. 2016; Song et al. 2021, app. D.2), and is estimated without bias
    (one dequantization draw and Hutchinson `probes`). `solve` goes to ode_likelihood
    (rtol, atol, method, eps). Returns (nll (B,) float64 on the CPU, NFE).
    """
    moved, bin_nats = dequantize(x, generator)
    logp, _, nfe = ode_likelihood(score_fn, sde, moved, generator, probes, **solve)
    return -logp + bin_nats, nfe
