"""The training, validation and test steps of a family with an exact log-likelihood, shared by the autoregressive families."""

from genzoo.distributions import bits_per_dim
from genzoo.models.base import GenerativeModel


class ExactLikelihoodModel(GenerativeModel):
    """A GenerativeModel whose `log_prob(x, labels)` is the exact log p(x) (log p(x | y) when conditional) in nats, (B,).

    Training minimises the negative log-likelihood in nats per dimension (a scale that does
    not depend on the image size), logged as train/loss with train/bits_per_dim;
    validation logs val/loss in bits/dim (what "best" checkpoints minimise); the test logs
    `nll_nats` per image and `bits_per_dim` = nll / (D ln 2) of the 8-bit test images.
    Subclasses (PixelCNN, the pixel transformer) implement `log_prob` and `sample`.
    """

    checkpoint_monitor = "val/loss"

    def log_prob(self, x, labels=None):
        """Exact log p(x) per image in nats: x (B, C, H, W) in [-1, 1] on the 256-level grid -> (B,)."""
        raise NotImplementedError

    def training_step(self, batch, batch_idx):
        nll = -self.log_prob(*batch)
        loss = nll.mean() / self.num_dims
        self.log("train/loss", loss, prog_bar=True, batch_size=len(nll))
        self.log("train/bits_per_dim", bits_per_dim(nll.mean(), self.num_dims), batch_size=len(nll))
        return loss

    def validation_step(self, batch, batch_idx):
        nll = -self.log_prob(*batch)
        self.log("val/loss", bits_per_dim(nll.mean(), self.num_dims), prog_bar=True, batch_size=len(nll), sync_dist=True)

    def test_step(self, batch, batch_idx):
        nll = -self.log_prob(*batch)
        self.log_dict({"nll_nats": nll.mean(), "bits_per_dim": bits_per_dim(nll.mean(), self.num_dims)}, batch_size=len(nll), sync_dist=True)
