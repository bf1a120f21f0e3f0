"""The autoencoder (genzoo/models/autoencoder.py): its loss and the Gaussian it samples from."""

from functools import partial

import torch

from genzoo.models.autoencoder import Autoencoder


def _adam(lr=2e-3):
    return partial(torch.optim.Adam, lr=lr)


def test_autoencoder_loss_falls_on_a_fixed_batch(fixed_batch, fit_fixed_batch):
    torch.manual_seed(0)
    model = Autoencoder((1, 28, 28), _adam())
    losses = fit_fixed_batch(model, fixed_batch, 40)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


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


def test_autoencoder_samples_rgb_images_of_the_data_shape():
    torch.manual_seed(0)
    x = Autoencoder((3, 32, 32), _adam()).sample(10, generator=torch.Generator().manual_seed(7))
    assert x.shape == (10, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
