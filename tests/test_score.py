"""The score-based family: SDEs against closed forms, samplers and the ODE likelihood on a Gaussian
whose score is known exactly, the training loss, and the model's own contract beyond the family test."""

import math
from functools import partial

import lightning as L
import pytest
import torch

from genzoo.diffusion.probability_flow import ode_likelihood, ode_nll_nats, ode_sample
from genzoo.diffusion.schedules import Schedule, linear_betas
from genzoo.diffusion.sde import VESDE, VPSDE, SubVPSDE, make_sde, max_pairwise_distance
from genzoo.diffusion.sde_samplers import annealed_langevin_sample, pc_sample
from genzoo.models.ddpm import DDPM
from genzoo.models.score import ScoreSDE

SMALL = dict(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,), dropout=0.0)

# The toy: 2-D Gaussian data N(MU, COV); every SDE here keeps p_t Gaussian, so its score is exact.
MU = torch.tensor([1.0, -0.5], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)


def gaussian_score(sde):
    """The exact score of p_t for data N(MU, COV): p_t = N(a MU, a^2 COV + std^2 I), a the mean coefficient."""
    evals, evecs = torch.linalg.eigh(COV)

    def score(x, t):
        a = sde.marginal_prob(torch.ones(len(x), 1, dtype=torch.float64), t.double())[0]  # (B, 1)
        _, std = sde.marginal_prob(x, t.double())
        inv = 1 / (a**2 * evals + std[:, None] ** 2)  # (B, 2): eigenvalues of the inverse covariance
        d = (x.double() - a * MU) @ evecs
        return (-(d * inv) @ evecs.T).to(x.dtype)

    return score


def _toy_sdes():
    return [VPSDE(), SubVPSDE(), VESDE(0.01, 20.0)]


def _moments(x):
    return x.mean(0), torch.cov(x.T)


# ---- SDEs against closed forms -----------------------------------------------------------------


def test_vp_marginal_matches_the_ddpm_schedule_it_is_the_limit_of():
    sched, sde = Schedule.from_betas(linear_betas(1000)), VPSDE(0.1, 20.0, 1000)
    t = (torch.arange(1000, dtype=torch.float64) + 1) / 1000  # DDPM step i is time (i + 1) / T
    mean, std = sde.marginal_prob(torch.ones(1000, 1, dtype=torch.float64), t)
    assert torch.allclose(mean[:, 0], sched.sqrt_alphas_cumprod, atol=4e-3)
    assert torch.allclose(std, sched.sqrt_one_minus_alphas_cumprod, atol=4e-3)
    assert torch.allclose(sde.discrete_betas.double(), sched.betas, rtol=1e-5)
    # the reverse-diffusion step's beta_i from the marginals: DDPM's betas at N = 1000, still below 1 at N = 4
    assert torch.allclose(sde.step_beta(t), sched.betas, rtol=0, atol=2.5e-4)  # half a step apart: 1% of beta_max / N
    coarse = VPSDE(0.1, 20.0, 4).step_beta(torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    assert ((coarse > 0) & (coarse < 1)).all()


def test_subvp_and_ve_marginals_are_their_closed_forms():
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    x = torch.ones(3, 1, dtype=torch.float64)
    vp_mean, vp_std = VPSDE().marginal_prob(x, t)
    sub_mean, sub_std = SubVPSDE().marginal_prob(x, t)
    assert torch.allclose(sub_mean, vp_mean) and torch.allclose(sub_std, vp_std**2)  # variance (1 - e^{2m})^2
    assert (sub_std[1:] < vp_std[1:]).all()
    ve_mean, ve_std = VESDE(0.01, 50.0).marginal_prob(x, t)
    assert torch.equal(ve_mean, x)
    assert torch.allclose(ve_std, torch.tensor([0.01, 0.01 * 5000**0.3, 50.0], dtype=torch.float64))


@pytest.mark.parametrize("sde", _toy_sdes(), ids=lambda s: type(s).__name__)
def test_the_drift_and_diffusion_move_the_marginal_as_the_closed_form_says(sde):
    # linear drift f = c(t) x: the mean coefficient a obeys da/dt = c a, the variance v = std^2 obeys dv/dt = 2 c v + g^2
    t, h = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64), 1e-6
    one = torch.ones(3, 1, dtype=torch.float64)
    a, std = sde.marginal_prob(one, t)
    a_next, std_next = sde.marginal_prob(one, t + h)
    a_prev, std_prev = sde.marginal_prob(one, t - h)
    drift, g = sde.sde(one, t)
    c = drift[:, 0]  # f(1, t) = c(t)
    assert torch.allclose((a_next - a_prev)[:, 0] / (2 * h), c * a[:, 0], rtol=1e-5, atol=1e-8)
    assert torch.allclose((std_next**2 - std_prev**2) / (2 * h), 2 * c * std**2 + g**2, rtol=1e-5)


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VPSDE(1e-3, 0.2, 10)], ids=["vp", "subvp", "vp_short_schedule"])
def test_float32_std_at_the_smallest_times_is_the_float64_value_not_zero(sde):
    # 1 - e^{2m} cancels to 0 in float32 at t = 1e-5 for small beta_min (a 10-step DDPM's VP view): the score -eps / std was inf
    t = torch.tensor([1e-5, 1e-3, 0.5])
    _, std32 = sde.marginal_prob(torch.ones(3, 1), t)
    _, std64 = sde.marginal_prob(torch.ones(3, 1, dtype=torch.float64), t.double())
    assert (std32 > 0).all() and torch.allclose(std32.double(), std64, rtol=1e-5)


def test_prior_logp_is_the_normal_log_density():
    z = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    normal = torch.distributions.Normal(0.0, 1.0).log_prob(z).flatten(1).sum(1)
    assert torch.allclose(VPSDE().prior_logp(z), normal, atol=1e-5)
    assert torch.allclose(SubVPSDE().prior_logp(z), normal, atol=1e-5)
    wide = torch.distributions.Normal(0.0, 7.0).log_prob(7 * z).flatten(1).sum(1)
    assert torch.allclose(VESDE(0.01, 7.0).prior_logp(7 * z), wide, atol=1e-4)


def test_bad_sde_settings_are_refused_in_one_line():
    with pytest.raises(ValueError, match="unknown SDE 'vpp'"):
        make_sde("vpp")
    with pytest.raises(ValueError, match="0 < beta_min < beta_max"):
        VPSDE(20.0, 0.1)
    with pytest.raises(ValueError, match="0 < sigma_min < sigma_max"):
        VESDE(1.0, 0.5)
    with pytest.raises(ValueError, match="at least 2 images"):
        max_pairwise_distance(torch.zeros(1, 4))


def test_max_pairwise_distance_finds_the_farthest_pair_across_chunks():
    x = torch.zeros(5, 2)
    x[1] = torch.tensor([3.0, 4.0])
    x[4] = torch.tensor([-3.0, -4.0])
    assert max_pairwise_distance(x, chunk=2) == pytest.approx(10.0)


# ---- samplers and the likelihood on the Gaussian toy ---------------------------------------------


@pytest.mark.parametrize("sde", _toy_sdes(), ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("predictor,corrector", [("reverse_diffusion", "langevin"), ("euler_maruyama", "none")])
def test_pc_sampling_with_the_exact_score_reproduces_the_data_moments(sde, predictor, corrector):
    x, nfe = pc_sample(gaussian_score(sde), sde, (4000, 2), torch.Generator().manual_seed(0), steps=200,
                       predictor=predictor, corrector=corrector)
    mean, cov = _moments(x.double())
    # 4,000 draws: the sample mean's std is ~0.016, the covariance entries' ~0.02-0.03
    assert torch.allclose(mean, MU, atol=0.06) and torch.allclose(cov, COV, atol=0.1)
    assert nfe == 200 * (2 if corrector == "langevin" else 1)


@pytest.mark.parametrize("sde", _toy_sdes(), ids=lambda s: type(s).__name__)
def test_the_probability_flow_ode_with_the_exact_score_reproduces_the_data_moments(sde):
    x, nfe = ode_sample(gaussian_score(sde), sde, (4000, 2), torch.Generator().manual_seed(0), rtol=1e-5, atol=1e-5)
    mean, cov = _moments(x.double())
    assert torch.allclose(mean, MU, atol=0.06) and torch.allclose(cov, COV, atol=0.1)
    assert 10 < nfe < 500  # adaptive: the solver's own count


def test_annealed_langevin_with_the_exact_score_reproduces_the_data_moments():
    sde = VESDE(0.01, 20.0)
    # step_lr 1e-4: a step as large as the noise variance at every level (a_i / sigma_i^2 = step_lr / sigma_min^2 = 1), so each
    # level mixes in a few steps; with the paper's 2e-5 the chain freezes at sigma ~ 0.5 and the covariance comes out ~0.5 too wide
    x, nfe = annealed_langevin_sample(gaussian_score(sde), sde, (4000, 2), torch.Generator().manual_seed(0), levels=100, steps_per_level=5, step_lr=1e-4)
    mean, cov = _moments(x.double())
    assert torch.allclose(mean, MU, atol=0.06) and torch.allclose(cov, COV, atol=0.1)
    assert nfe == 100 * 5 + 1


def test_annealed_langevin_refuses_an_sde_without_noise_levels():
    with pytest.raises(ValueError, match="use model.sde=ve"):
        annealed_langevin_sample(gaussian_score(VPSDE()), VPSDE(), (2, 2))


POINTS = torch.tensor([[1.0, -0.5], [0.0, 0.0], [2.0, 1.0]], dtype=torch.float64)


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE(0.01, 100.0)], ids=lambda s: type(s).__name__)
def test_the_ode_likelihood_with_the_exact_trace_is_the_closed_form_log_density(sde):
    truth = torch.distributions.MultivariateNormal(MU, COV).log_prob(POINTS)
    logp, z, nfe = ode_likelihood(gaussian_score(sde), sde, POINTS, exact_trace=True)
    # p_1 is not exactly the prior (VP: mean e^{-5} MU; VE: sigma_max 100 against a spread of ~1): a few 0.01 nats
    assert torch.allclose(logp, truth, atol=0.05), (logp, truth)
    assert z.shape == POINTS.shape and nfe > 0


def test_hutchinson_probes_average_to_the_exact_trace():
    sde = VPSDE()
    exact, _, _ = ode_likelihood(gaussian_score(sde), sde, POINTS, exact_trace=True)
    # each point 2,000 times with one probe each (one solve): in 2-D a Rademacher probe's error is v1 v2 times the integral
    # of J_12 + J_21 (about 1 here), so the mean of 2,000 is within ~0.02 of the exact value; 0.1 is five of those
    many, _, _ = ode_likelihood(gaussian_score(sde), sde, POINTS.repeat(2000, 1), torch.Generator().manual_seed(0), probes=1)
    estimate = many.view(2000, 3).mean(0)
    assert torch.allclose(estimate, exact, atol=0.1) and not torch.allclose(many[:3], exact, atol=1e-3)  # one probe alone is noisy
    one, _, _ = ode_likelihood(gaussian_score(sde), sde, POINTS, torch.Generator().manual_seed(0), probes=1)
    again, _, _ = ode_likelihood(gaussian_score(sde), sde, POINTS, torch.Generator().manual_seed(0), probes=1)
    assert torch.equal(one, again)  # deterministic under a seed


def test_dequantized_nll_adds_the_level_width():
    # a density constant over the data's levels: the dequantized nll is -log p + D log 127.5, whatever the draw
    sde = VESDE(0.01, 1e4)
    x = torch.zeros(2, 1, 1, 2, dtype=torch.float64)
    nll, _ = ode_nll_nats(lambda x, t: torch.zeros_like(x), sde, x, torch.Generator().manual_seed(0), eps=1e-3, rtol=1e-6, atol=1e-6)
    # zero score: the ODE does not move x, log p_eps(x) = prior_logp(x) ~ -D/2 log(2 pi 1e8)
    expected = 0.5 * 2 * math.log(2 * math.pi * 1e8) + 2 * math.log(127.5)
    assert torch.allclose(nll, torch.full((2,), expected, dtype=torch.float64), atol=1e-6)


def test_bad_solver_settings_are_refused():
    with pytest.raises(ValueError, match="rtol > 0"):
        ode_sample(gaussian_score(VPSDE()), VPSDE(), (2, 2), rtol=0)
    with pytest.raises(ValueError, match="probes >= 1"):
        ode_likelihood(gaussian_score(VPSDE()), VPSDE(), POINTS, probes=0)
    with pytest.raises(ValueError, match="predictor must be one of"):
        pc_sample(gaussian_score(VPSDE()), VPSDE(), (2, 2), predictor="heun")


def test_a_score_that_turns_nan_stops_the_ode_solve_in_one_line():
    # the adaptive solver shrinks its step without end on a NaN drift (the suite once hung on it): it must fail at once
    def nan_below_half(x, t):
        return torch.where((t < 0.5)[:, None], torch.full_like(x, float("nan")), -x)

    with pytest.raises(RuntimeError, match=r"drift is not finite at t=0\.[0-4]"):
        ode_sample(nan_below_half, VPSDE(), (2, 2), generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="drift is not finite at t=1e-05"):
        ode_likelihood(nan_below_half, VPSDE(), POINTS)


# ---- the model ---------------------------------------------------------------------------------


def _model(**kw):
    return ScoreSDE((1, 28, 28), partial(torch.optim.Adam, lr=2e-3), **{**SMALL, "sample_steps": 3, **kw})


@pytest.fixture()
def batch(data_root):
    from genzoo.data import ImageDataModule

    dm = ImageDataModule("fashion_mnist", root=str(data_root), n_test=32)
    dm.setup()
    return dm.test_set.__getitems__(list(range(32)))[0]


@pytest.mark.parametrize("sde,weighting", [("vp", "standard"), ("subvp", "standard"), ("ve", "standard"), ("vp", "likelihood")])
def test_the_denoising_score_matching_loss_falls_on_a_fixed_batch(batch, sde, weighting):
    torch.manual_seed(0)
    model = _model(sde=sde, weighting=weighting, sigma_max=30.0)
    opt = model.configure_optimizers()
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-8:]) / 8 < 0.7 * sum(losses[:8]) / 8


def test_the_likelihood_weighting_draws_t_with_density_g2_over_std2():
    model = _model(sde="vp", weighting="likelihood")
    torch.manual_seed(0)
    t = model.train_times(200_000).double()
    sde = model.sde
    grid = torch.linspace(1e-5, 1, 200_001, dtype=torch.float64)
    w = sde.sde(torch.zeros(len(grid), 1, dtype=torch.float64), grid)[1] ** 2 / sde.marginal_prob(torch.zeros(len(grid), 1, dtype=torch.float64), grid)[1] ** 2
    # P(t < 0.01) under density w / int w, by a Riemann sum on a fine grid (w ~ 1/t near 0: most mass is small t)
    below = (w[grid < 0.01].sum() / w.sum()).item()
    assert (t < 0.01).double().mean().item() == pytest.approx(below, abs=0.01)
    assert t.min() >= 1e-5 and t.max() <= 1
    ve = _model(sde="ve", weighting="likelihood", sigma_max=30.0).train_times(100_000)
    assert ve.mean().item() == pytest.approx(0.5, abs=0.01)  # VE: g^2 / std^2 is constant, so t is uniform


def test_the_score_is_minus_the_predicted_noise_over_std():
    model = _model(sde="vp")
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([0.1, 0.7])
    eps = model.ema.module(x, t * 999)
    std = model.sde.marginal_prob(x, t)[1]
    assert torch.allclose(model.score_fn(model.ema.module)(x, t), -eps / std[:, None, None, None])


def test_the_model_refuses_bad_settings_in_one_line():
    with pytest.raises(ValueError, match="use model.sde=ve"):
        _model(sde="vp", sampler="langevin")
    with pytest.raises(ValueError, match="unknown sde 'vee'"):
        _model(sde="vee")
    with pytest.raises(ValueError, match="sigma_max must be above"):
        _model(sde="ve", sigma_max=0.001)
    with pytest.raises(RuntimeError, match="VE sigma_max is not set"):
        _model(sde="ve").sample(1)


def test_a_ve_model_takes_sigma_max_from_the_training_images_and_keeps_it(data_root, tmp_path):
    from genzoo.data import ImageDataModule
    from genzoo.data.device import to_unit_range

    data = ImageDataModule("fashion_mnist", root=str(data_root), batch_size=8, n_test=8)
    model = _model(sde="ve", sigma_max_images=500)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    expected = max_pairwise_distance(to_unit_range(data.train_set.images[:500]))
    assert model.sigma_max.item() == pytest.approx(expected) and 10 < expected < 60  # in [-1, 1], D = 784: at most 56
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    loaded = _model(sde="ve", sigma_max_images=500)
    loaded.load_state_dict(torch.load(tmp_path / "last.ckpt", weights_only=False)["state_dict"])
    assert loaded.sde.sigma_max == pytest.approx(expected)
    assert "largest pairwise distance" in loaded.protocol()["sde"]


@pytest.mark.parametrize("sampler", ["pc", "ode", "langevin"])
def test_each_sampler_counts_its_net_evaluations(sampler):
    model = _model(sde="ve", sigma_max=30.0, sampler=sampler, langevin_levels=3, langevin_steps=2, ode_rtol=1e-3, ode_atol=1e-3).eval()
    calls = []
    hook = model.ema.module.register_forward_hook(lambda m, a, out: calls.append(1))
    x = model.sample(2, generator=torch.Generator().manual_seed(0))
    hook.remove()
    assert x.shape == (2, 1, 28, 28) and len(calls) == model.nfe_per_sample
    assert len(calls) == {"pc": 6, "langevin": 7}.get(sampler, len(calls))


def test_the_ddpm_vp_view_is_the_vp_sde_of_its_schedule_and_scores_an_ode_likelihood(batch):
    ddpm = DDPM((1, 28, 28), partial(torch.optim.Adam, lr=1e-3), num_steps=1000, **SMALL)
    sde = ddpm.vp_sde()
    assert (sde.beta_min, sde.beta_max, sde.N) == pytest.approx((0.1, 20.0, 1000))
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([0.3, 0.8])
    eps = ddpm.ema.module(x, t * 999)
    assert torch.allclose(ddpm.vp_score_fn(ddpm.ema.module, sde)(x, t), -eps / sde.marginal_prob(x, t)[1][:, None, None, None])
    nll = ddpm.ode_nll_nats(batch[:2], generator=torch.Generator().manual_seed(0))
    # an untrained net predicts eps = 0 (its last layer starts at zero): the flow is dx/dt = -beta x / 2, so x(1) = e^m x
    # with m = m(1) - m(1e-5), the density is N(0, e^{-2m} I): nll = D/2 log(2 pi) + e^{2m} |x|^2 / 2 - D m, plus D log 127.5
    d = 784
    m = (sde.log_mean_coeff(torch.tensor(1.0)) - sde.log_mean_coeff(torch.tensor(1e-5))).item()
    expected = 0.5 * d * math.log(2 * math.pi) + 0.5 * math.exp(2 * m) * batch[:2].flatten(1).pow(2).sum(1) - d * m + d * math.log(127.5)
    assert torch.allclose(nll.double(), expected.double(), rtol=1e-4)
    with pytest.raises(ValueError, match="schedule=linear"):
        DDPM((1, 28, 28), partial(torch.optim.Adam), schedule="cosine", num_steps=10, sample_steps=5, **SMALL).vp_sde()


def test_equal_time_samplers_cost_the_same_nfe_and_a_reference_ode_row_is_scored(data_root, domain_classifier):
    from genzoo import load_config
    from genzoo.data import ImageDataModule
    from genzoo.evaluation import comparison
    from genzoo.metrics.harness import generate

    model = _model(sample_steps=4, ode_rtol=1e-3, ode_atol=1e-3).eval()
    options = model.sampler_options()
    assert list(options) == ["pc-2 + langevin", "pc-4, no corrector"]
    nfes = []
    for settings in options.values():
        with model.sampling_with(settings):
            nfes.append(model.nfe_per_sample)
    assert nfes == [4, 4]  # 2 predictor + 2 corrector steps, or 4 predictor steps: the configured sample_steps
    assert (model.sample_steps, model.corrector, model.nfe_per_sample) == (4, "langevin", 8)  # restored after each block
    with pytest.raises(ZeroDivisionError), model.sampling_with({"sample_steps": 1}):
        raise ZeroDivisionError
    assert model.sample_steps == 4  # restored on an error too
    data = ImageDataModule("fashion_mnist", root=str(data_root))
    data.setup()
    eval_cfg = load_config(["budget=equal_time"]).eval
    choice = comparison.choose_sampler(model, data, eval_cfg, n=32, seed=0)
    assert choice["chosen"] == min(choice["scores"], key=lambda k: choice["scores"][k]["fid_classifier"])
    assert model.sample_steps == options[choice["chosen"]]["sample_steps"]  # the choice stays applied
    assert model.sampler_options() == options and choice["settings"] == options[choice["chosen"]]  # the same names after it (a run once failed on it)
    rows = comparison.reference_rows(model, data, eval_cfg, 8, generate(model.sample, 8, 8, 1), seed=0)
    assert list(rows) == ["ode"] and rows["ode"]["n"] == 8 and rows["ode"]["nfe_per_sample"] > 0
    assert model.sampler == "pc"
    assert _model(sampler="ode").sampler_options() == {} and _model(sampler="ode").reference_samplers() == {}
