"""Variational autoencoder (Kingma & Welling 2013) with a discrete-data decoder likelihood."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.distributions import (
    bernoulli_log_likelihood,
    bits_per_dim,
    discretized_gaussian_log_likelihood,
    standard_normal_kl,
)
from genzoo.models.base import GenerativeModel
from genzoo.nets import build_decoder, build_encoder

LIKELIHOODS = ("gaussian", "bernoulli")


class VAE(GenerativeModel):
    """VAE: Gaussian posterior q(z|x), prior N(0, I), reparameterised single-sample ELBO.

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || N(0, I)), in nats per image; training
    minimises -E_q[log p(x|z)] + beta * KL (beta = 1 is the ELBO; beta-VAE after Higgins
    et al. 2017), and validation, checkpoint selection and the test report use beta = 1.

    Decoder likelihoods (`likelihood`):
      - "gaussian": a Gaussian discretised to the 256 levels of 8-bit data, with a learned
        per-channel scale (as the calibrated decoders of Rybkin et al. 2021). The ELBO is a
        bound on log P of the 8-bit image, comparable in bits/dim with DDPM and PixelCNN.
      - "bernoulli": pixels binarised at mid-grey (x > 0 in [-1, 1]); the ELBO is a bound on
        the binarised image and its bits/dim are per binary pixel, not comparable with 8-bit.

    Args:
        image_shape: (C, H, W).
        optimizer: partial optimiser.
        latent_dim: size of z, > 0.
        beta: weight of the KL term in the training loss, >= 0.
        likelihood: "gaussian" or "bernoulli".
        net: "conv" or "mlp"; channels, hidden_dim: their widths.
        iwae_k: importance samples of the test-set IWAE bound (iwae_nats, iwae_bits_per_dim), >= 1.
        conditional: a conditional VAE (Sohn et al. 2015) of p(x | y): the one-hot label is
            appended to the encoder's input as K constant planes and to the decoder's input z,
            so q(z | x, y) and p(x | z, y); the prior stays N(0, I) and the bounds are on
            log p(x | y). num_classes: K (the runner passes the data's).
    Raises:
        ValueError: latent_dim <= 0, beta < 0, iwae_k < 1, an unknown likelihood or net, an image
        shape the net cannot take, or a conditional model with num_classes < 2.
    """

    family = "vae"
    latent_space = "encoder"

    def __init__(
        self,
        image_shape,
        optimizer,
        latent_dim: int = 16,
        beta: float = 1.0,
        likelihood: str = "gaussian",
        net: str = "conv",
        channels=(32, 64),
        hidden_dim: int = 256,
        iwae_k: int = 64,
        conditional: bool = False,
        num_classes: int = 0,
    ):
        super().__init__(image_shape, optimizer)
        if latent_dim <= 0:
            raise ValueError(f"latent_dim must be positive, got {latent_dim}")
        if iwae_k < 1:
            raise ValueError(f"iwae_k must be positive, got {iwae_k}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood '{likelihood}': choose one of {', '.join(LIKELIHOODS)}")
        self.save_hyperparameters(ignore=["optimizer"], logger=False)  # the optimiser is in config.yaml
        self.latent_dim, self.beta, self.likelihood, self.iwae_k = latent_dim, beta, likelihood, iwae_k
        self._set_conditional(conditional, num_classes)
        c, h, w = image_shape
        k = self.num_classes
        self.encoder = build_encoder(net, (c + k, h, w), 2 * latent_dim, channels, hidden_dim)
        self.decoder = build_decoder(net, image_shape, latent_dim + k, c, channels, hidden_dim)
        # Learned log standard deviation of the Gaussian decoder, one per channel; it starts
        # at sigma = e^-1 ~ 0.37 rather than 1, so early
        # steps are not spent shrinking it.
        self.log_scale = nn.Parameter(torch.full((1, c, 1, 1), -1.0)) if likelihood == "gaussian" else None

    def _one_hot(self, labels: torch.Tensor | None, n: int) -> torch.Tensor | None:
        """(n, K) one-hot labels of a conditional model, None for an unconditional one; raises ValueError if missing."""
        if not self.conditional:
            return None
        if labels is None or labels.shape != (n,):
            raise ValueError(f"a conditional VAE needs labels of shape ({n},), got {None if labels is None else tuple(labels.shape)}")
        return F.one_hot(labels.long(), self.num_classes).float()

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters (mean, logvar), each (B, latent_dim), for x (B, C, H, W) in [-1, 1].

        labels (B,): the classes, needed by (only by) a conditional model.
        """
        y = self._one_hot(labels, len(x))
        if y is not None:
            x = torch.cat([x, y[:, :, None, None].expand(-1, -1, *x.shape[2:]).to(x.dtype)], dim=1)
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def _decoder_out(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Raw decoder output (B, C, H, W) (means or logits) for z (B, latent_dim) and, if conditional, labels (B,)."""
        y = self._one_hot(labels, len(z))
        return self.decoder(z if y is None else torch.cat([z, y.to(z.dtype)], dim=1))

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Expected image (B, C, H, W) in [-1, 1] for latents z (B, latent_dim) (and labels (B,) if conditional)."""
        out = self._decoder_out(z, labels)
        return out.clamp(-1, 1) if self.likelihood == "gaussian" else torch.sigmoid(out) * 2 - 1

    def log_px_given_z(self, x: torch.Tensor, decoder_out: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per image (B,), in nats, from the raw decoder output."""
        if self.likelihood == "gaussian":
            log_scale = self.log_scale.clamp(-7.0, 2.0)
            ll = discretized_gaussian_log_likelihood(x, decoder_out, log_scale)
        else:
            ll = bernoulli_log_likelihood((x > 0).float(), decoder_out)
        return ll.flatten(1).sum(1)

    def elbo_terms(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log p(x|z), KL, posterior mean) per image with one reparameterised z ~ q(z|x) (q(z|x, y) if conditional).

        Returns log p(x|z) (B,) and KL (B,) in nats, and the posterior mean (B, latent_dim).
        """
        mean, logvar = self.encode(x, labels)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        rec = self.log_px_given_z(x, self._decoder_out(z, labels))
        kl = standard_normal_kl(mean.float(), logvar.float()).sum(1)
        return rec, kl, mean

    @torch.no_grad()
    def iwae_bound(self, x: torch.Tensor, k: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Importance-weighted bound log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x) (Burda et al. 2016).

        x: (B, C, H, W) in [-1, 1] (labels (B,) if conditional). Returns (B,) in nats: a lower
        bound on log p(x) (log p(x | y)) that is >= the ELBO in expectation and tightens as k
        grows (k = 1 is the ELBO).
        """
        mean, logvar = self.encode(x, labels)
        log_w = []
        for _ in range(k):
            eps = torch.randn_like(mean)
            z = mean + torch.exp(0.5 * logvar) * eps
            log_q = (-0.5 * (eps**2 + logvar + math.log(2 * math.pi))).sum(1)
            log_prior = (-0.5 * (z**2 + math.log(2 * math.pi))).sum(1)
            log_w.append(self.log_px_given_z(x, self._decoder_out(z, labels)) + log_prior - log_q)
        return torch.logsumexp(torch.stack(log_w, dim=1), dim=1) - math.log(k)

    def training_step(self, batch, batch_idx):
        x, labels = batch
        rec, kl, _ = self.elbo_terms(x, labels)
        loss = (-rec + self.beta * kl).mean()
        self.log_dict({"train/loss": loss, "train/kl": kl.mean(), "train/rec_nats": -rec.mean()}, prog_bar=False, batch_size=len(x))
        self.log("train/neg_elbo", (kl - rec).mean(), prog_bar=True, batch_size=len(x))
        return loss

    def validation_step(self, batch, batch_idx):
        x, labels = batch
        rec, kl, _ = self.elbo_terms(x, labels)
        self.log("val/loss", (kl - rec).mean(), prog_bar=True, batch_size=len(x), sync_dist=True)  # -ELBO, nats/image

    def test_step(self, batch, batch_idx):
        x, labels = batch
        rec, kl, mean = self.elbo_terms(x, labels)
        elbo = (rec - kl).mean()
        iwae = self.iwae_bound(x, self.iwae_k, labels).mean()
        self.log_dict(
            {
                "elbo_nats": elbo,
                "bits_per_dim": bits_per_dim(-elbo, self.num_dims),
                "iwae_nats": iwae,
                "iwae_bits_per_dim": bits_per_dim(-iwae, self.num_dims),
                "kl_nats": kl.mean(),
                "test_recon_mse": F.mse_loss(self.decode(mean, labels), x),
            },
            batch_size=len(x),
            sync_dist=True,  # under DDP: the mean over every rank's test images
        )

    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Decoded posterior mean of x, (B, C, H, W) in [-1, 1], for pictures (labels (B,) if conditional)."""
        return self.decode(self.encode(x, labels)[0], labels)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder means at n prior draws z ~ N(0, I): (n, C, H, W) in [-1, 1].

        The mean image, not a draw from p(x|z): pixel noise would only add grain. A
        conditional model draws image i of class labels[i] (default i mod num_classes).
        Raises ValueError for labels of the wrong shape or range, or given to an unconditional model.
        """
        return self.decode_latents(self.prior_latents(n, generator), self.sample_labels(n, labels))

    def prior_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n prior draws z ~ N(0, I), (n, latent_dim)."""
        return self.randn(n, self.latent_dim, generator=generator)

    def encode_latents(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior means (B, latent_dim) of images x (B, C, H, W) in [-1, 1] (labels (B,) if conditional)."""
        return self.encode(x, labels)[0]

    def decode_latents(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder means (B, C, H, W) in [-1, 1] of z (B, latent_dim) (labels (B,) if conditional)."""
        return self.decode(z, labels)

    def protocol(self) -> dict:
        data = "8-bit images, 256 levels" if self.likelihood == "gaussian" else "images binarised at x > 0"
        return {
            "elbo": f"single-sample reparameterised ELBO per test image, {self.likelihood} decoder on {data}, beta=1",
            "bits_per_dim": f"-elbo_nats / ({self.num_dims} * ln 2)",
            "iwae": f"importance-weighted bound (Burda et al. 2016), k={self.iwae_k} posterior samples per test image; "
            "iwae_bits_per_dim = -iwae_nats / (D ln 2)",
            "test_recon_mse": "mean squared error per element on [-1, 1], decoder mean at the posterior mean",
            "sampler": "z ~ N(0, I), one decoder pass, decoder mean"
            + ("; class-conditional (one-hot label to encoder and decoder), balanced labels, bounds on log p(x | y)" if self.conditional else ""),
        }
