"""PixelCNN: an autoregressive model of the pixels in raster order (van den Oord et al. 2016)."""

import torch

from genzoo.distributions import (
    categorical_pixel_log_likelihood,
    discretized_logistic_mixture_log_likelihood,
    sample_logistic_mixture,
)
from genzoo.models.exact_likelihood import ExactLikelihoodModel
from genzoo.nets.pixelcnn import GatedPixelCNN

LIKELIHOODS = ("softmax", "logistic_mixture")


class PixelCNN(ExactLikelihoodModel):
    """Gated PixelCNN: p(x) = prod_i p(x_i | x_<i), each factor a distribution over 256 levels.

    Training maximises the exact log-likelihood (the loss is nats per dimension); the test
    metric is the exact negative log-likelihood of 8-bit test images, as `nll_nats` per
    image and `bits_per_dim` = nll / (D ln 2). Sampling draws the H * W pixels one at a
    time in raster order, each from the net's distribution given the pixels drawn so far:
    H * W network passes per batch.

    Args:
        image_shape: (1, H, W): single-channel images (the net does not order colour channels).
        optimizer: partial optimiser.
        likelihood: "softmax" (256-way categorical per pixel, van den Oord et al. 2016) or
            "logistic_mixture" (discretised mixture of `mixtures` logistics, Salimans et al. 2017).
        mixtures: K, components of the logistic mixture.
        features, layers, kernel: channels per stack, gated layers and kernel size of the gated PixelCNN
            (genzoo/nets/pixelcnn.py).
        conditional: class-conditional p(x | y): a class embedding biases every gate (van den Oord
            et al. 2016, sec. 2.3); num_classes: classes of the data (the runner passes it).
    Raises:
        ValueError: more than one channel, an unknown likelihood, mixtures < 1, a bad kernel or depth.
    """

    family = "pixelcnn"
    def __init__(self, image_shape, optimizer, likelihood: str = "softmax", mixtures: int = 5, features: int = 32,
                 layers: int = 7, kernel: int = 3, conditional: bool = False, num_classes: int = 0):
        super().__init__(image_shape, optimizer)
        if self.image_shape[0] != 1:
            raise ValueError(f"pixelcnn models single-channel images, got {self.image_shape[0]} channels: use data=fashion_mnist or data=mnist")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood '{likelihood}': choose one of {', '.join(LIKELIHOODS)}")
        if mixtures < 1:
            raise ValueError(f"mixtures must be >= 1, got {mixtures}")
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self.likelihood = likelihood
        self._set_conditional(conditional, num_classes)
        out_channels = 256 if likelihood == "softmax" else 3 * mixtures
        self.net = GatedPixelCNN(out_channels, features, layers, kernel, self.num_classes)

    def uncompiled_nets(self) -> dict[str, str]:
        return {"net": "sampling runs the net on a crop that changes shape at every row, a recompilation each"}

    def log_prob(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(x) (log p(x | y) when conditional) per image in nats: x (B, 1, H, W) in [-1, 1] -> (B,)."""
        out = self.net(x, labels if self.conditional else None)
        if self.likelihood == "softmax":
            per_pixel = categorical_pixel_log_likelihood(x, out)
        else:
            per_pixel = discretized_logistic_mixture_log_likelihood(x, out)
        return per_pixel.flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        """n images (n, 1, H, W) in [-1, 1] on the 256-level grid, drawn pixel by pixel in raster order.

        A conditional model draws image i of class labels[i] (default i mod num_classes).
        Raises ValueError for labels on an unconditional model, or of the wrong shape or range.

        Pixels not yet drawn hold 0; by causality they do not influence the pixel being drawn.
        Each pass runs the net on rows i - receptive_rows .. i only: row i's outputs depend on
        no row above that window (equal to a full pass up to float rounding; tests compare them).
        Draws use `generator` on the CPU, so a seed gives the same images on every device.
        """
        labels = self.sample_labels(n, labels)
        was_training = self.training
        self.eval()
        _, height, width = self.image_shape
        x = torch.zeros(n, *self.image_shape, device=self.device)
        for i in range(height):
            top = max(0, i - self.net.receptive_rows)
            for j in range(width):
                out = self.net(x[:, :, top : i + 1], labels)[:, :, -1:, j : j + 1]
                x[:, :, i : i + 1, j : j + 1] = self._draw(out, generator)
        self.train(was_training)
        return x

    def _draw(self, out: torch.Tensor, generator) -> torch.Tensor:
        if self.likelihood == "logistic_mixture":
            return sample_logistic_mixture(out, generator)
        probs = torch.softmax(out.float().cpu().flatten(1), dim=1)  # (n, 256)
        level = torch.multinomial(probs, 1, generator=generator)
        return (level.float() / 127.5 - 1).reshape(-1, 1, 1, 1).to(out.device)

    @property
    def nfe_per_sample(self) -> int:
        return self.image_shape[1] * self.image_shape[2]

    def protocol(self) -> dict:
        _, height, width = self.image_shape
        model = "256-way softmax per pixel" if self.likelihood == "softmax" else f"discretised mixture of {self.hparams.mixtures} logistics per pixel"
        return {
            "sampler": f"ancestral, pixel by pixel in raster order ({height * width} net passes)",
            "nll_nats": f"exact negative log-likelihood per 8-bit test image, {model}",
            "bits_per_dim": f"nll_nats / ({self.num_dims} * ln 2), exact (no bound)"
            + ("; conditional: -log p(x | y) with the true labels" if self.conditional else ""),
        }
