"""The interface every family implements, so the runner and the metrics never look inside."""

import lightning as L
import torch


class GenerativeModel(L.LightningModule):
    """Base LightningModule of every family.

    A family sets `family` (its config name), builds its nets in `__init__`, and implements
    `sample`. `test_step` logs the family's test metrics under the names metrics.json
    uses (test_recon_mse, elbo_nats, bits_per_dim, ...).

    Args:
        image_shape: (C, H, W) of the data.
        optimizer: a partial optimiser (Hydra `_partial_: true`) taking the parameters.
    """

    family: str = ""
    checkpoint_monitor: str | None = "val/loss"  # what "best" checkpoints minimise; None: keep only last

    def __init__(self, image_shape, optimizer):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.optimizer = optimizer

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw n images: (n, C, H, W) float in [-1, 1], on the model's device.

        `generator` is a CPU torch.Generator; noise is drawn on the CPU and moved, so a seed
        gives the same images on every device.
        """
        raise NotImplementedError

    @property
    def nfe_per_sample(self) -> int:
        """Network evaluations `sample` makes per image (1 for a single decoder/generator pass)."""
        return 1

    def protocol(self) -> dict:
        """How this family's metrics were computed, for the protocol card (override to add)."""
        return {}

    def trainable_parameters(self):
        """The parameters the optimiser updates (and `params` in metrics.json counts)."""
        return self.parameters()

    def configure_optimizers(self):
        return self.optimizer(self.trainable_parameters())

    def randn(self, *shape: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard normal noise of `shape` on the model's device, drawn from a CPU generator."""
        return torch.randn(shape, generator=generator).to(self.device)

    @property
    def num_dims(self) -> int:
        """D = C * H * W, the number of dimensions bits/dim divides by."""
        c, h, w = self.image_shape
        return c * h * w
