"""VQ-VAE (van den Oord et al. 2017): an autoencoder whose code is a grid of discrete tokens from a learned codebook."""

import torch
import torch.nn.functional as F

from genzoo.models.base import GenerativeModel
from genzoo.nets.codebook import VectorQuantizer
from genzoo.nets.vqvae import VQDecoder, VQEncoder, grid_shape


class VQVAE(GenerativeModel):
    """Encoder -> nearest codebook entries (a grid of K-way tokens) -> decoder, trained by

        loss = |x - decoder(z_q)|^2 + beta |z_e - sg(e)|^2 (+ |sg(z_e) - e|^2 with update "loss"),

    the reconstruction error per element on [-1, 1] images plus the codebook's losses
    (genzoo/nets/codebook.py: EMA or loss updates, straight-through gradients, dead-code restarts).

    A VQ-VAE has no prior of its own: the paper trains a PixelCNN on the token grids, and
    genzoo's token transformer (`model=vq_transformer`) is that second stage. So that the
    VQ-VAE is sampled and scored like every family, it fits the simplest prior: each grid
    position's token frequencies over the training images of the last epoch, add-one
    (Laplace) smoothed, drawn independently per position (a baseline, as the AE's fitted Gaussian).

    Test metrics: test_recon_mse, codebook_usage (the share of the K entries that code at
    least one test vector) and codebook_perplexity (exp of the entropy of the test codes'
    frequencies: K for uniform use, 1 for one entry).

    Args:
        image_shape: (C, H, W), H and W divisible by 2^len(channels).
        optimizer: partial optimiser.
        num_codes, code_dim: K entries of dimension D.
        channels, res_blocks: the encoder's and decoder's widths (one halving each) and residual blocks.
        update, beta, decay, dead_threshold: the codebook (genzoo/nets/codebook.py).
    Raises:
        ValueError: an image shape the nets cannot take, or bad codebook settings.
    """

    family = "vqvae"
    latent_space = "encoder"

    def __init__(self, image_shape, optimizer, num_codes: int = 128, code_dim: int = 16, channels=(32, 64), res_blocks: int = 2,
                 update: str = "ema", beta: float = 0.25, decay: float = 0.99, dead_threshold: float = 1e-3):
        super().__init__(image_shape, optimizer)
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self.grid = grid_shape(image_shape, tuple(channels))
        self.encoder = VQEncoder(image_shape, code_dim, tuple(channels), res_blocks)
        self.quantizer = VectorQuantizer(num_codes, code_dim, update, beta, decay, dead_threshold)
        self.decoder = VQDecoder(image_shape, code_dim, tuple(channels), res_blocks)
        # the fitted prior: token counts per grid position (saved in checkpoints), and this epoch's running counts
        self.register_buffer("prior_counts", torch.zeros(*self.grid, num_codes))
        self._counts = None
        self._test_counts = None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(reconstruction (B, C, H, W) unclamped, codes (B, h, w), the quantiser's losses) of images x in [-1, 1]."""
        z_q, codes, losses = self.quantizer(self.encoder(x))
        return self.decoder(z_q), codes, losses

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of x clamped to [-1, 1], for pictures."""
        return self(x)[0].clamp(-1, 1)

    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        """The token grid (B, h, w) int64 of images x (B, C, H, W) in [-1, 1]."""
        return self.quantizer.codes(self.encoder(x))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) clamped to [-1, 1] of token grids (B, h, w)."""
        return self.decoder(self.quantizer.embed(codes)).clamp(-1, 1)

    def training_step(self, batch, batch_idx):
        x = batch[0]
        recon, codes, losses = self(x)
        mse = F.mse_loss(recon, x)
        loss = mse + losses["commitment"] + losses["codebook"]
        self._count(codes)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(x))
        self.log_dict({"train/recon_mse": mse, "train/perplexity": losses["perplexity"]}, batch_size=len(x))
        return loss

    def validation_step(self, batch, batch_idx):
        x = batch[0]
        self.log("val/loss", F.mse_loss(self(x)[0], x), prog_bar=True, batch_size=len(x), sync_dist=True)

    def on_test_epoch_start(self):
        self._test_counts = torch.zeros(self.quantizer.num_codes, dtype=torch.float64, device=self.device)

    def test_step(self, batch, batch_idx):
        x = batch[0]
        recon, codes, _ = self(x)
        self._test_counts += torch.bincount(codes.flatten(), minlength=self.quantizer.num_codes).double()
        self.log("test_recon_mse", F.mse_loss(recon, x), batch_size=len(x), sync_dist=True)

    def on_test_epoch_end(self):
        counts = self.trainer.strategy.reduce(self._test_counts, reduce_op="sum") if self.trainer.world_size > 1 else self._test_counts
        freq = counts / counts.sum()
        self.log_dict({"codebook_usage": (counts > 0).double().mean().item(),
                       "codebook_perplexity": torch.exp(-(freq * torch.log(freq.clamp_min(1e-300))).sum()).item()})

    def on_train_epoch_start(self):
        self._counts = None

    def on_train_epoch_end(self):
        if self._counts is not None:
            self.prior_counts.copy_(self._counts.float())

    def on_save_checkpoint(self, checkpoint):
        checkpoint["prior_running_counts"] = self._counts  # mid-epoch: this epoch's counts so far (exact resume)

    def on_load_checkpoint(self, checkpoint):
        self._counts = checkpoint.get("prior_running_counts")

    def _count(self, codes: torch.Tensor) -> None:
        one_hot = F.one_hot(codes.detach(), self.quantizer.num_codes).sum(0).double()  # (h, w, K)
        self._counts = one_hot if self._counts is None else self._counts + one_hot

    def sample_codes(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n token grids (n, h, w) drawn position by position, independently, from the fitted frequencies (counts + 1, normalised)."""
        smoothed = self.prior_counts + 1  # Laplace: every token keeps a chance (uniform before any training)
        probs = (smoothed / smoothed.sum(-1, keepdim=True)).flatten(0, 1).cpu()  # (h * w, K)
        draws = torch.multinomial(probs, n, replacement=True, generator=generator)  # (h * w, n)
        return draws.T.reshape(n, *self.grid).to(self.device)

    def prior_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codebook-entry maps (n, D, h, w) of token grids drawn from the fitted prior."""
        return self.quantizer.embed(self.sample_codes(n, generator))

    def prior_mode(self) -> None:
        """None: the prior draws codebook vectors per position, with no mode in the maps' space to move codes towards."""
        return None

    def encode_latents(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        """The encoder's continuous maps z_e (B, D, h, w) of images x in [-1, 1] (quantised on decoding)."""
        return self.encoder(x)

    def decode_latents(self, z: torch.Tensor, labels=None) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] of maps z (B, D, h, w), each vector snapped to its nearest entry first."""
        return self.decode_codes(self.quantizer.codes(z))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, C, H, W) in [-1, 1]: token grids from the fitted per-position frequencies, decoded."""
        return self.decode_codes(self.sample_codes(n, generator))

    def protocol(self) -> dict:
        h, w = self.grid
        q = self.quantizer
        return {
            "codebook": f"{q.num_codes} entries of dimension {q.code_dim} on a {h}x{w} grid, "
            + ("EMA updates (decay " + f"{q.decay:g})" if q.update == "ema" else "codebook loss") + f", commitment beta {q.beta:g}, "
            + (f"dead entries (EMA count < {q.dead_threshold:g}) restarted on batch vectors" if q.dead_threshold else "no restarts"),
            "sampler": "tokens drawn independently per position from the training codes' frequencies (last epoch, add-one smoothed), decoded: "
            "a baseline prior (model=vq_transformer learns one)",
            "test_recon_mse": "mean squared error per element on [-1, 1] images",
            "codebook_usage": "share of the codebook's entries coding at least one test vector",
            "codebook_perplexity": "exp(entropy) of the test codes' frequencies",
        }
