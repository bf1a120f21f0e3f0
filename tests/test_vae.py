"""The VAE (genzoo/models/vae.py): its loss, the ELBO and IWAE bounds, bad arguments."""

from functools import partial

import pytest
import torch

from genzoo.models.vae import VAE


def _adam(lr=2e-3):
    return partial(torch.optim.Adam, lr=lr)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_vae_loss_falls_on_a_fixed_batch(fixed_batch, fit_fixed_batch, likelihood):
    torch.manual_seed(0)
    model = VAE((1, 28, 28), _adam(), likelihood=likelihood)
    losses = fit_fixed_batch(model, fixed_batch, 40)
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_vae_elbo_is_a_bound_on_a_log_probability(fixed_batch):
    # The discretised likelihood is a probability of 8-bit data, so log p(x|z) <= 0, and KL >= 0.
    torch.manual_seed(0)
    model = VAE((1, 28, 28), _adam())
    rec, kl, mean = model.elbo_terms(fixed_batch[0])
    assert rec.shape == kl.shape == (64,) and mean.shape == (64, 16)
    assert torch.all(rec <= 0) and torch.all(kl >= 0)


def test_iwae_bound_is_the_elbo_at_k1_and_tightens_with_k(fixed_batch, fit_fixed_batch):
    torch.manual_seed(0)
    model = VAE((1, 28, 28), _adam())
    fit_fixed_batch(model, fixed_batch, 20)
    x = fixed_batch[0][:16]
    with torch.no_grad():
        elbos = torch.stack([(lambda r, k, _: r - k)(*model.elbo_terms(x)) for _ in range(200)]).mean(0)
        k1 = torch.stack([model.iwae_bound(x, 1) for _ in range(200)]).mean(0)
        k64 = model.iwae_bound(x, 64)
    # k = 1 is the ELBO's Monte Carlo estimate with the reparameterised sample: the same expectation
    assert torch.allclose(k1, elbos, rtol=0, atol=0.02 * elbos.abs().mean().item())
    assert (k64 > elbos).float().mean() > 0.9 and torch.all(k64 < 0)  # a tighter bound on log P(x) <= 0
    with pytest.raises(ValueError, match="iwae_k must be positive"):
        VAE((1, 28, 28), _adam(), iwae_k=0)


@pytest.mark.parametrize("kwargs,match", [
    ({"latent_dim": 0}, "latent_dim must be positive"),
    ({"beta": -1.0}, "beta must be >= 0"),
    ({"likelihood": "laplace"}, "unknown likelihood 'laplace'"),
])
def test_vae_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VAE((1, 28, 28), _adam(), **kwargs)


def test_vae_samples_rgb_images_of_the_data_shape():
    torch.manual_seed(0)
    x = VAE((3, 32, 32), _adam()).sample(10, generator=torch.Generator().manual_seed(7))
    assert x.shape == (10, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
