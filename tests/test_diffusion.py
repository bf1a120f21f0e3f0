import math

import pytest
import torch
from torch import nn

from genzoo.diffusion import (
    Schedule,
    ancestral_sample,
    cosine_betas,
    ddim_sample,
    ddim_timesteps,
    extract,
    linear_betas,
    make_schedule,
    predict_x0_eps,
    q_sample,
    x0_bound,
)


def test_linear_schedule_endpoints_as_ho_et_al():
    betas = linear_betas(1000)
    assert betas.shape == (1000,)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert torch.all(betas[1:] > betas[:-1])


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_alphas_cumprod_strictly_decreasing_in_unit_interval(name):
    s = make_schedule(name, 1000)
    a = s.alphas_cumprod
    assert torch.all((a > 0) & (a < 1)) and torch.all(a[1:] < a[:-1])
    torch.testing.assert_close(a, torch.cumprod(1 - s.betas, 0))


def test_cosine_schedule_closed_form():
    T, s = 1000, 0.008
    a = Schedule.from_betas(cosine_betas(T, s)).alphas_cumprod
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 10, 500, 900):
        assert a[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)


def test_posterior_variance_closed_form():
    s = make_schedule("linear", 100)
    t = 50
    expected = s.betas[t] * (1 - s.alphas_cumprod[t - 1]) / (1 - s.alphas_cumprod[t])
    assert s.posterior_variance[t].item() == pytest.approx(expected.item())
    assert s.posterior_variance[0].item() == 0.0


def test_q_sample_mean_and_variance():
    s = make_schedule("linear", 1000)
    x0 = torch.full((200_000, 1, 1, 1), 0.7)
    t = torch.full((200_000,), 300, dtype=torch.long)
    xt = q_sample(s, x0, t, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)))
    a = s.alphas_cumprod[300].item()
    assert xt.mean().item() == pytest.approx(math.sqrt(a) * 0.7, abs=5e-3)
    assert xt.var().item() == pytest.approx(1 - a, rel=1e-2)


def test_bad_schedules_are_rejected():
    with pytest.raises(ValueError, match="unknown noise schedule 'sigmoid'"):
        make_schedule("sigmoid", 10)
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        linear_betas(0)
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        Schedule.from_betas(torch.tensor([0.1, 1.0]))


class ToyNet(nn.Module):
    """eps_hat(x, t) = w * x + b * t / 1000: simple enough to compute a step by hand."""

    def __init__(self, w=0.3, b=0.1):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))
        self.b = b

    def forward(self, x, t):
        return self.w * x + self.b * t.float().view(-1, 1, 1, 1) / 1000


def test_one_ancestral_step_by_hand():
    s = make_schedule("linear", 1)  # T = 1: a single step, no noise after it
    gen = torch.Generator().manual_seed(3)
    x1 = torch.randn((2, 1, 2, 2), generator=torch.Generator().manual_seed(3))
    out = ancestral_sample(ToyNet(), s, (2, 1, 2, 2), generator=gen, clip_x0=False)
    beta = s.betas[0].item()
    a = 1 - beta
    eps = 0.3 * x1
    x0 = (x1 - math.sqrt(1 - a) * eps) / math.sqrt(a)
    # At t = 0: alphas_cumprod_prev = 1, so the posterior mean is x0 itself.
    torch.testing.assert_close(out, x0)


def test_ancestral_step_at_t_by_hand():
    s = make_schedule("linear", 3)
    net = ToyNet(w=0.0, b=0.0)  # predicts eps = 0, so x0 = x_t / sqrt(a_t)
    x = torch.randn((1, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    out = ancestral_sample(net, s, (1, 1, 1, 1), generator=torch.Generator().manual_seed(0), clip_x0=False)
    noise = torch.Generator().manual_seed(0)
    torch.randn((1, 1, 1, 1), generator=noise)  # x_T
    for t in (2, 1, 0):
        a, ap, b = (v[t].item() for v in (s.alphas_cumprod, s.alphas_cumprod_prev, s.betas))
        x0 = x / math.sqrt(a)
        x = math.sqrt(ap) * b / (1 - a) * x0 + math.sqrt(1 - b) * (1 - ap) / (1 - a) * x
        if t > 0:
            x = x + math.sqrt(s.posterior_variance[t].item()) * torch.randn((1, 1, 1, 1), generator=noise)
    torch.testing.assert_close(out, x)


def test_ddim_eta0_is_deterministic_for_a_seed():
    s = make_schedule("linear", 1000)
    run = lambda seed: ddim_sample(ToyNet(), s, (3, 1, 4, 4), steps=20, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_ddim_with_all_steps_and_eta1_is_the_ancestral_sampler(prediction):
    s = make_schedule("cosine", 50)
    shape = (4, 1, 3, 3)
    a = ancestral_sample(ToyNet(), s, shape, generator=torch.Generator().manual_seed(5), prediction=prediction)
    d = ddim_sample(ToyNet(), s, shape, steps=50, eta=1.0, generator=torch.Generator().manual_seed(5), prediction=prediction)
    torch.testing.assert_close(a, d, atol=1e-5, rtol=1e-5)


def test_v_prediction_round_trip():
    s = make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand((5, 1, 2, 2), generator=g) * 2 - 1, torch.randn((5, 1, 2, 2), generator=g)
    t = torch.tensor([0, 10, 200, 700, 999])
    xt = q_sample(s, x0, t, eps)
    a = s.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    for pred, out in (("eps", eps), ("v", v)):
        x0_hat, eps_hat = predict_x0_eps(out, xt, t, s, pred, clip_x0=False)
        torch.testing.assert_close(x0_hat, x0, atol=2e-3, rtol=0)
        torch.testing.assert_close(eps_hat[1:], eps[1:], atol=2e-3, rtol=0)


def test_ddim_step_count_checks():
    assert ddim_timesteps(1000, 50)[0] == 999 and ddim_timesteps(1000, 50)[-1] == 0 and len(ddim_timesteps(1000, 50)) == 50
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))
    with pytest.raises(ValueError, match=r"DDIM steps must be in \[1, 1000\]"):
        ddim_timesteps(1000, 1001)
    with pytest.raises(ValueError, match="eta must be >= 0"):
        ddim_sample(ToyNet(), make_schedule("linear", 10), (1, 1, 1, 1), steps=5, eta=-1)


def test_x0_is_clipped_to_the_bound_clip_x0_names():
    s = make_schedule("linear", 1000)
    t = torch.tensor([999, 999])
    x_t, eps_out = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)  # x0 = -sqrt(1 - a) / sqrt(a), about -160 at t = T
    assert [x0_bound(c) for c in (True, False, None, 2.5)] == [1.0, None, None, 2.5]
    for clip, bound in ((True, 1.0), (2.5, 2.5)):
        x0, eps = predict_x0_eps(eps_out, x_t, t, s, "eps", clip)
        assert torch.allclose(x0, torch.full_like(x0, -bound))
        assert torch.allclose(extract(s.sqrt_alphas_cumprod, t, 4) * x0 + extract(s.sqrt_one_minus_alphas_cumprod, t, 4) * eps, x_t)
    assert predict_x0_eps(eps_out, x_t, t, s, "eps", None)[0].max() < -2.5
    with pytest.raises(ValueError, match="clip_x0 must be true, false/null or a positive bound, got 0"):
        x0_bound(0.0)
