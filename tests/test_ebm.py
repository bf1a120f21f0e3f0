"""The energy-based family: Langevin dynamics on a quadratic energy against its Gaussian, AIS against a
closed-form log Z, the contrastive-divergence gradient, spectral normalisation, the replay buffer,
the divergence sign, and a run end to end."""

import json
import math
from functools import partial

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from genzoo.energy.ais import ais_log_z
from genzoo.energy.langevin import energy_and_grad, langevin_chain
from genzoo.energy.replay_buffer import ReplayBuffer
from genzoo.models.ebm import EBM
from genzoo.nets.energy import EnergyNet
from genzoo.training.callbacks import DivergenceMonitor, TrainingDiverged

TINY = dict(channels=(8, 8), langevin_steps=2, sample_steps=3, buffer_size=32, ais_chains=8, ais_steps=4, ais_groups=2)


def _ebm(**kw):
    return EBM((1, 28, 28), partial(torch.optim.Adam, lr=1e-3, betas=(0.0, 0.999)), **{**TINY, **kw})


def quadratic(mean: torch.Tensor, std: float):
    """E(x) = |x - mean|^2 / (2 std^2): exp(-E) is N(mean, std^2 I) up to its normaliser (2 pi std^2)^(D/2)."""
    return lambda x: ((x - mean) ** 2).flatten(1).sum(1) / (2 * std**2)


# ---- Langevin dynamics ---------------------------------------------------------------------------


def test_langevin_on_a_quadratic_energy_samples_its_gaussian():
    # Unadjusted Langevin with step h and noise sqrt(2h) on N(m, s^2): an AR(1) chain whose stationary
    # variance is s^2 / (1 - h / (2 s^2)), 1.3% above s^2 here; 4,000 chains give the variance to ~2%.
    mean, std, h = torch.tensor([0.3, -0.2]), 0.2, 1e-3
    x0 = torch.rand(4000, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x, nfe, _ = langevin_chain(quadratic(mean, std), x0, 400, h, math.sqrt(2 * h), generator=torch.Generator().manual_seed(1), bounds=None)
    assert nfe == 400
    assert torch.allclose(x.mean(0), mean, atol=0.02)  # 0.02 is over 6 standard errors (0.2 / sqrt(4000))
    assert torch.allclose(x.var(0), torch.full((2,), std**2), rtol=0.08)


def test_langevin_clamps_to_its_bounds_clips_gradients_and_keeps_states():
    steep = quadratic(torch.full((1, 4), 5.0), 0.01)  # a minimum far outside the box: every step pushes out
    x, _, kept = langevin_chain(steep, torch.zeros(3, 4), 6, step_size=1.0, noise_scale=0.0, grad_clip=0.1, keep_every=2)
    assert len(kept) == 4 and torch.equal(kept[0], torch.zeros(3, 4))
    assert torch.allclose(kept[1], torch.full((3, 4), 0.2))  # two steps of the clipped gradient 0.1
    assert torch.allclose(x, torch.full((3, 4), 0.6))  # six steps of 0.1
    x, _, _ = langevin_chain(steep, torch.zeros(3, 4), 20, step_size=1.0, noise_scale=0.0, grad_clip=0.1)
    assert torch.equal(x, torch.ones(3, 4))


def test_energy_and_grad_works_inside_inference_mode_and_leaves_parameters_alone():
    net = EnergyNet((1, 8, 8), channels=(4, 4))
    with torch.inference_mode():
        x = torch.rand(2, 1, 8, 8)
        energy, grad = energy_and_grad(lambda v: net(v)[:, 0], x)
    assert energy.shape == (2,) and grad.shape == x.shape and torch.isfinite(grad).all()
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("kw", [{"steps": -1}, {"step_size": 0.0}, {"noise_scale": -1.0}, {"grad_clip": 0.0}])
def test_langevin_rejects_bad_settings(kw):
    args = {"steps": 1, "step_size": 0.1, "noise_scale": 0.01, **kw}
    with pytest.raises(ValueError, match="Langevin needs"):
        langevin_chain(quadratic(torch.zeros(1, 2), 1.0), torch.zeros(1, 2), **args)


# ---- annealed importance sampling ---------------------------------------------------------------


def test_ais_recovers_log_z_of_a_gaussian_energy_in_a_box():
    # exp(-|x|^2 / (2 s^2)) on [-1, 1]^4: log Z = 4 (log sqrt(2 pi s^2) + log erf(1 / (s sqrt 2))), here -3.25.
    dims, s = 4, 0.3
    exact = dims * (0.5 * math.log(2 * math.pi * s**2) + math.log(math.erf(1 / (s * math.sqrt(2)))))
    est = ais_log_z(quadratic(torch.zeros(1, dims), s), (dims,), chains=256, steps=200, step_size=0.01, groups=4,
                    generator=torch.Generator().manual_seed(0))
    assert abs(est["log_z"] - exact) < 0.1, (est["log_z"], exact)  # the base's log Z is 4 log 2 = 2.77: 6 nats away
    assert 0.3 < est["acceptance"] < 1 and 1 < est["ess"] <= 256
    assert len(est["log_z_groups"]) == 4 and est["log_z_group_std"] > 0
    assert est["nfe_per_chain"] == 200 and est["log_z_base"] == pytest.approx(dims * math.log(2))


def test_ais_recovers_log_z_when_the_mass_lies_on_the_boxs_faces():
    # a Gaussian centred on the corner (1, ..., 1): half of each coordinate's mass is against a face, as an
    # image's saturated pixels are; the reflected proposals keep the chains moving there.
    dims, s = 4, 0.3
    exact = dims * (0.5 * math.log(2 * math.pi * s**2) + math.log(0.5 * math.erf(2 / (s * math.sqrt(2)))))
    est = ais_log_z(quadratic(torch.ones(1, dims), s), (dims,), chains=512, steps=1000, step_size=0.05, groups=4,
                    generator=torch.Generator().manual_seed(0))
    assert abs(est["log_z"] - exact) < 0.15, (est["log_z"], exact)
    assert est["acceptance"] > 0.8


def test_the_reflected_proposal_density_integrates_to_one_and_folds_into_the_box():
    from genzoo.energy.ais import reflect, reflected_normal_log_density

    ys = torch.linspace(-1, 1, 20001).view(-1, 1)
    for mean in (0.0, 0.95, 1.02):  # inside, near a face, past it
        density = reflected_normal_log_density(ys, torch.full_like(ys, mean), 0.05, 1.0).exp()
        assert torch.trapezoid(density, ys[:, 0]).item() == pytest.approx(1.0, abs=1e-4)
    assert torch.allclose(reflect(torch.tensor([0.5, 1.25, -1.5, 3.5, -4.0]), 1.0), torch.tensor([0.5, 0.75, -0.5, -0.5, 0.0]))


def test_ais_of_a_constant_energy_is_exact_and_gives_the_uniform_model_8_bits_per_dim():
    est = ais_log_z(lambda x: 0 * x.flatten(1).sum(1), (3, 2, 2), chains=8, steps=5, step_size=0.01, half_width=1.5, groups=2)
    assert est["log_z"] == pytest.approx(12 * math.log(3.0)) and est["ess"] == pytest.approx(8) and est["log_z_group_std"] == 0
    model = _ebm()
    for p in model.net.head[-1].parameters():  # the last layer's weights and bias at zero: E(x) = 0 everywhere
        torch.nn.init.zeros_(p)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    images = torch.randint(0, 256, (6, 1, 28, 28)).float() / 127.5 - 1
    metrics = trainer.test(model, DataLoader(TensorDataset(images, torch.zeros(6, dtype=torch.long)), batch_size=3), verbose=False)[0]
    assert metrics["bits_per_dim"] == pytest.approx(8.0, abs=1e-5)  # the uniform density on the 8-bit bins: log2(256)


@pytest.mark.parametrize("kw", [{"chains": 2, "groups": 4}, {"steps": 0}, {"step_size": 0.0}, {"half_width": -1.0}])
def test_ais_rejects_bad_settings(kw):
    args = {"chains": 8, "steps": 2, "step_size": 0.01, **kw}
    with pytest.raises(ValueError, match="AIS needs"):
        ais_log_z(quadratic(torch.zeros(1, 2), 1.0), (2,), **args)


# ---- the energy net and the replay buffer --------------------------------------------------------


def test_spectral_normalisation_bounds_each_layers_largest_singular_value():
    net = EnergyNet((1, 28, 28), channels=(8, 16), spectral_norm=True).train()
    layers = [m for m in net.modules() if hasattr(m, "parametrizations")]
    assert len(layers) == 4  # two convolutions, two linear layers
    with torch.no_grad():
        for layer in layers:
            layer.parametrizations.weight.original.mul_(10)  # unnormalised, these are far from 1-Lipschitz
        for _ in range(30):  # power iterations: one per training forward pass
            net(torch.rand(2, 1, 28, 28))
    for layer in layers:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=1e-2)
        assert torch.linalg.matrix_norm(layer.parametrizations.weight.original.detach().flatten(1), ord=2) > 2


def test_the_replay_buffer_reinitialises_the_configured_fraction():
    buffer = ReplayBuffer(1000, (1, 2, 2), reinit_prob=0.05)
    buffer.images.fill_(5.0)  # a value fresh uniform noise in [-1, 1] never takes
    x, slots = buffer.draw(20000, generator=torch.Generator().manual_seed(0))
    fresh = (x != 5.0).flatten(1).all(1).float().mean().item()
    assert abs(fresh - 0.05) < 0.006  # 4 standard errors of a binomial share over 20,000 draws
    assert x[x != 5.0].abs().max() <= 1 and slots.min() >= 0 and slots.max() < 1000
    buffer.push(slots[:3], torch.zeros(3, 1, 2, 2))
    assert (buffer.images[slots[:3]] == 0).all()
    drawn = buffer.draw(100, reinit_prob=0.0)[0]
    assert ((drawn == 5) | (drawn == 0)).all()  # stored images only: none fresh
    with pytest.raises(ValueError, match="reinit_prob in"):
        ReplayBuffer(10, (1, 2, 2), reinit_prob=1.5)


# ---- the model -------------------------------------------------------------------------------------


def test_the_contrastive_divergence_gradient_is_data_minus_samples():
    torch.manual_seed(0)
    model = _ebm(energy_l2=0.0)
    x_pos, x_neg = torch.rand(8, 1, 28, 28) * 2 - 1, torch.rand(8, 1, 28, 28) * 2 - 1
    loss, _ = model.loss(x_pos, x_neg)
    grads = torch.autograd.grad(loss, list(model.net.parameters()))
    want_pos = torch.autograd.grad(model.energy(x_pos).mean(), list(model.net.parameters()))
    want_neg = torch.autograd.grad(model.energy(x_neg).mean(), list(model.net.parameters()))
    for g, gp, gn in zip(grads, want_pos, want_neg):
        assert torch.allclose(g, gp - gn, atol=1e-6)


def test_descending_the_loss_lowers_data_energies_and_raises_sample_energies():
    torch.manual_seed(0)
    model = _ebm()
    x_pos = torch.rand(16, 1, 28, 28) * 0.2 - 0.9  # dark images
    x_neg = torch.rand(16, 1, 28, 28) * 2 - 1  # noise
    with torch.no_grad():
        before = model.energy(x_pos).mean(), model.energy(x_neg).mean()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(20):
        opt.zero_grad()
        model.loss(x_pos, x_neg)[0].backward()
        opt.step()
    with torch.no_grad():
        after = model.energy(x_pos).mean(), model.energy(x_neg).mean()
    assert after[0] < before[0] - 0.1 and after[1] > before[1] + 0.1


def test_jem_energies_are_the_logits_and_their_log_sum_exp():
    model = _ebm(conditional=True, num_classes=10)
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        logits, per_class = model.net(x), torch.stack([model.energy(x, torch.full((4,), y)) for y in range(10)], 1)
        assert torch.allclose(per_class, -logits)
        assert torch.allclose(torch.exp(-model.energy(x)), torch.exp(-per_class).sum(1), rtol=1e-5)
    loss, logs = model.loss(x, torch.rand(4, 1, 28, 28) * 2 - 1, torch.tensor([0, 1, 2, 3]))
    assert "cross_entropy" in logs and torch.isfinite(loss)


def _fit(model, batches: int, callbacks=()):
    images = torch.rand(16 * batches, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    loader = DataLoader(TensorDataset(images, torch.zeros(len(images), dtype=torch.long)), batch_size=16)
    trainer = L.Trainer(max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", callbacks=list(callbacks))
    trainer.fit(model, loader)
    return trainer


def test_training_moves_chain_ends_into_the_buffer_and_logs_finite_energies():
    torch.manual_seed(0)
    model = _ebm(buffer_size=16, buffer_reinit=0.0)
    before = model.buffer.images.clone()
    trainer = _fit(model, batches=2)
    assert (model.buffer.images != before).flatten(1).any(1).sum() > 0
    for key in ("train/loss", "train/cd", "train/energy_data", "train/energy_samples", "train/energy_abs_max"):
        assert torch.isfinite(trainer.callback_metrics[key]), key


def test_exploding_energies_stop_the_run_as_diverged():
    torch.manual_seed(0)
    model = _ebm(max_energy=1e-9)  # any energy at all counts as exploded
    with pytest.raises(TrainingDiverged) as info:
        _fit(model, batches=3, callbacks=[DivergenceMonitor()])
    assert info.value.details["metric"] == "train/energy_abs_max" and info.value.details["step"] == 1


def test_samples_fresh_chains_and_the_buffer_and_counts_their_cost():
    model = _ebm(sample_steps=5).eval()
    x = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 28, 28) and x.abs().max() <= 1 and model.nfe_per_sample == 5
    assert torch.equal(model.sample(3, sampler="buffer", generator=torch.Generator().manual_seed(0)),
                       model.buffer.images[torch.randint(32, (3,), generator=torch.Generator().manual_seed(0))])
    assert model.reference_samplers() == {"replay buffer": {"sampler": "buffer"}}
    with model.sampling_with({"sampler": "buffer"}):
        assert model.nfe_per_sample is None
    assert _ebm(buffer_size=0).reference_samplers() == {}


@pytest.mark.parametrize("kw, match", [
    ({"sampler": "mcmc"}, "unknown sampler"),
    ({"sampler": "buffer", "buffer_size": 0}, "set model.buffer_size > 0"),
    ({"langevin_steps": 0}, "langevin_steps and sample_steps"),
    ({"buffer_reinit": 2.0}, "buffer_reinit in"),
    ({"energy_l2": -1.0}, "energy_l2 and data_noise"),
    ({"ais_chains": 1, "ais_groups": 2}, "AIS needs"),
])
def test_ebm_rejects_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        _ebm(**kw)


def test_ebm_run_end_to_end(data_root, tmp_path):
    from genzoo import load_config, run

    cfg = load_config([
        "model=ebm", "model.channels=[8,8]", "model.langevin_steps=3", "model.sample_steps=4", "model.buffer_size=64",
        "model.ais_chains=8", "model.ais_steps=5", "model.ais_groups=2", f"data.root={data_root}", "hardware=cpu", "budget=smoke",
        "budget.limit_train_batches=3", "budget.limit_val_batches=1", "budget.n_test=32", "progress_bar=false",
        "logger=none", "eval=none", f"output_dir={tmp_path}",
    ])
    payload = run(cfg)
    assert payload == json.loads((tmp_path / "metrics.json").read_text())
    metrics = payload["metrics"]
    assert payload["model"] == "ebm" and math.isfinite(metrics["bits_per_dim"]) and metrics["bits_per_dim"] > 0
    assert {"ais_log_z", "ais_log_z_group_std", "ais_ess", "ais_acceptance"} <= set(metrics)
    assert "an estimate" in payload["protocol"]["family"]["likelihood"]
    assert payload["resources"]["nfe_per_sample"] == 4 and (tmp_path / "samples.png").is_file()
    assert not list((tmp_path / "checkpoints").glob("best*"))  # no held-out loss to pick a best EBM by
