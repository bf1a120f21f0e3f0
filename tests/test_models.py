from functools import partial

import pytest
import torch

from genzoo.models import VAE, Autoencoder


@pytest.fixture(scope="module")
def batch(data_root):
    from genzoo.data import ImageDataModule

    dm = ImageDataModule("fashion_mnist", root=str(data_root), n_test=64)
    dm.setup()
    return dm.test_set.__getitems__(list(range(64)))


def _adam(lr=2e-3):
    return partial(torch.optim.Adam, lr=lr)


def _fit_fixed_batch(model, batch, steps):
    opt = model.configure_optimizers()
    losses = []
    for i in range(steps):
        opt.zero_grad()
        loss = model.training_step(batch, i)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.fixture(autouse=True)
def _no_lightning_logging(monkeypatch):
    # training_step calls self.log, which needs a Trainer; these tests drive steps by hand.
    for cls in (VAE, Autoencoder):
        monkeypatch.setattr(cls, "log", lambda *a, **k: None)
        monkeypatch.setattr(cls, "log_dict", lambda *a, **k: None)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_vae_loss_falls_on_a_fixed_batch(batch, likelihood):
    torch.manual_seed(0)
    model = VAE((1, 28, 28), _adam(), likelihood=likelihood)
    losses = _fit_fixed_batch(model, batch, 40)
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_autoencoder_loss_falls_on_a_fixed_batch(batch):
    torch.manual_seed(0)
    model = Autoencoder((1, 28, 28), _adam())
    losses = _fit_fixed_batch(model, batch, 40)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_vae_elbo_is_a_bound_on_a_log_probability(batch):
    # The discretised likelihood is a probability of 8-bit data, so log p(x|z) <= 0, and KL >= 0.
    torch.manual_seed(0)
    model = VAE((1, 28, 28), _adam())
    rec, kl, mean = model.elbo_terms(batch[0])
    assert rec.shape == kl.shape == (64,) and mean.shape == (64, 16)
    assert torch.all(rec <= 0) and torch.all(kl >= 0)


def test_iwae_bound_is_the_elbo_at_k1_and_tightens_with_k(batch):
    torch.manual_seed(0)
    model = VAE((1, 28, 28), _adam())
    _fit_fixed_batch(model, batch, 20)
    x = batch[0][:16]
    with torch.no_grad():
        elbos = torch.stack([(lambda r, k, _: r - k)(*model.elbo_terms(x)) for _ in range(200)]).mean(0)
        k1 = torch.stack([model.iwae_bound(x, 1) for _ in range(200)]).mean(0)
        k64 = model.iwae_bound(x, 64)
    # k = 1 is the ELBO's Monte Carlo estimate with the reparameterised sample: the same expectation
    assert torch.allclose(k1, elbos, rtol=0, atol=0.02 * elbos.abs().mean().item())
    assert (k64 > elbos).float().mean() > 0.9 and torch.all(k64 < 0)  # a tighter bound on log P(x) <= 0
    with pytest.raises(ValueError, match="iwae_k must be positive"):
        VAE((1, 28, 28), _adam(), iwae_k=0)


@pytest.mark.parametrize("cls", [VAE, Autoencoder])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_sample_shape_range_and_seed(cls, shape):
    torch.manual_seed(0)
    model = cls(shape, _adam())
    a = model.sample(10, generator=torch.Generator().manual_seed(7))
    b = model.sample(10, generator=torch.Generator().manual_seed(7))
    c = model.sample(10, generator=torch.Generator().manual_seed(8))
    assert a.shape == (10, *shape) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_autoencoder_fits_the_latent_gaussian_of_the_epoch():
    model = Autoencoder((1, 28, 28), _adam(), latent_dim=3)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(500, 3, generator=g) @ torch.tensor([[2.0, 0, 0], [0.5, 1, 0], [0, 0, 0.1]]) + torch.tensor([1.0, -2, 0])
    model.on_train_epoch_start()
    for chunk in z.split(128):
        model._accumulate(chunk)
    model.on_train_epoch_end()
    torch.testing.assert_close(model.latent_mean, z.mean(0))
    torch.testing.assert_close(model.latent_cov, torch.cov(z.T, correction=0), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kwargs,match", [
    ({"latent_dim": 0}, "latent_dim must be positive"),
    ({"beta": -1.0}, "beta must be >= 0"),
    ({"likelihood": "laplace"}, "unknown likelihood 'laplace'"),
])
def test_vae_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VAE((1, 28, 28), _adam(), **kwargs)
