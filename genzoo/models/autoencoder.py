"""Deterministic autoencoder with an ex-post Gaussian density on its latents for sampling."""

import torch
import torch.nn.functional as F

from genzoo.models.base import GenerativeModel
from genzoo.nets import build_decoder, build_encoder


class Autoencoder(GenerativeModel):
    """Autoencoder trained by mean squared reconstruction error on [-1, 1] images.

    An autoencoder has no prior to sample from. Following Ghosh et al. 2020 ("From
    variational to deterministic autoencoders", ex-post density estimation), it fits a
    full-covariance Gaussian to the latent codes of the training images seen in the last
    training epoch and decodes draws from it.

    Args:
        image_shape: (C, H, W).
        optimizer: partial optimiser.
        latent_dim: size of the code, > 0.
        net: "conv" or "mlp".
        channels: conv stage widths; hidden_dim: width of the dense layers.
    Raises:
        ValueError: latent_dim <= 0, unknown net, or an image shape the net cannot take.
    """

    family = "ae"
    latent_space = "encoder"

    def __init__(self, image_shape, optimizer, latent_dim: int = 16, net: str = "conv", channels=(32, 64), hidden_dim: int = 256):
        super().__init__(image_shape, optimizer)
        if latent_dim <= 0:
            raise ValueError(f"latent_dim must be positive, got {latent_dim}")
        self.save_hyperparameters(ignore=["optimizer"], logger=False)  # the optimiser is in config.yaml
        self.encoder = build_encoder(net, image_shape, latent_dim, channels, hidden_dim)
        self.decoder = build_decoder(net, image_shape, latent_dim, image_shape[0], channels, hidden_dim)
        # The fitted latent Gaussian (saved in checkpoints) and the float64 sums it comes from.
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_cov", torch.eye(latent_dim))
        self._sums = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction (B, C, H, W), unclamped, of images x (B, C, H, W) in [-1, 1]."""
        return self.decoder(self.encoder(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of x clamped to [-1, 1], for pictures."""
        return self(x).clamp(-1, 1)

    def training_step(self, batch, batch_idx):
        x, _ = batch
        z = self.encoder(x)
        loss = F.mse_loss(self.decoder(z), x)
        self._accumulate(z.detach())
        self.log("train/loss", loss, prog_bar=True, batch_size=len(x))
        return loss

    def validation_step(self, batch, batch_idx):
        x, _ = batch
        self.log("val/loss", F.mse_loss(self(x), x), prog_bar=True, batch_size=len(x), sync_dist=True)

    def test_step(self, batch, batch_idx):
        x, _ = batch
        self.log("test_recon_mse", F.mse_loss(self(x), x), batch_size=len(x), sync_dist=True)

    def on_train_epoch_start(self):
        self._sums = None

    def on_train_epoch_end(self):
        if self._sums is None:
            return
        n, s, ss = self._sums
        mean = s / n
        cov = ss / n - torch.outer(mean, mean)
        self.latent_mean.copy_(mean.float())
        self.latent_cov.copy_(cov.float())

    def on_save_checkpoint(self, checkpoint):
        checkpoint["latent_sums"] = self._sums  # mid-epoch: the running sums of this epoch's latents (exact resume)

    def on_load_checkpoint(self, checkpoint):
        self._sums = checkpoint.get("latent_sums")

    def _accumulate(self, z: torch.Tensor):
        z = z.double()
        stats = (len(z), z.sum(0), z.T @ z)
        self._sums = stats if self._sums is None else tuple(a + b for a, b in zip(self._sums, stats))

    def prior_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws (n, latent_dim) from the fitted latent Gaussian N(latent_mean, latent_cov)."""
        eye = torch.eye(len(self.latent_mean), device=self.device)
        chol = torch.linalg.cholesky(self.latent_cov + 1e-5 * eye)
        return self.latent_mean + self.randn(n, len(self.latent_mean), generator=generator) @ chol.T

    def prior_mode(self) -> torch.Tensor:
        """The fitted latent Gaussian's mean (latent_dim,): its mode."""
        return self.latent_mean

    def encode_latents(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        """Codes (B, latent_dim) of images x (B, C, H, W) in [-1, 1]."""
        return self.encoder(x)

    def decode_latents(self, z: torch.Tensor, labels=None) -> torch.Tensor:
        """Decoded images (B, C, H, W) clamped to [-1, 1] of codes z (B, latent_dim)."""
        return self.decoder(z).clamp(-1, 1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n decoded draws from the fitted latent Gaussian: (n, C, H, W) in [-1, 1]."""
        return self.decode_latents(self.prior_latents(n, generator))

    def protocol(self) -> dict:
        return {
            "sampler": "full-covariance Gaussian fitted to the training latents of the last epoch (Ghosh et al. 2020)",
            "test_recon_mse": "mean squared error per element on [-1, 1] images",
        }
