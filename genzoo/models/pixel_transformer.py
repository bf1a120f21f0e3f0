"""Pixel transformer: an autoregressive causal transformer over the raster sequence of 8-bit pixels (Parmar et al. 2018; Chen et al. 2020)."""

import torch

from genzoo.distributions import categorical_pixel_log_likelihood
from genzoo.models.exact_likelihood import ExactLikelihoodModel
from genzoo.nets.transformer import CausalTransformer

LEVELS = 256  # 8-bit pixel values, the output vocabulary


class PixelTransformer(ExactLikelihoodModel):
    """p(x) = prod_i p(x_i | x_<i) over the D = C * H * W pixels in raster order (channel last), each a 256-way softmax.

    The sequence the transformer reads is a start token, then the pixels' levels 0..255
    shifted right by one, so position i predicts pixel i from pixels < i (iGPT on raw 8-bit
    pixels, with the whole image as context, as the Image Transformer's unconditional model).
    Training minimises the exact negative log-likelihood (nats per dimension); the test
    metric is the exact nll of 8-bit test images, `nll_nats` per image and `bits_per_dim`.
    Sampling draws the D pixels one at a time; with `kv_cache` (default) every step runs the
    transformer on the one new position against cached keys and values; without, on the
    whole prefix again (the same pixels under a seed, at O(D^2) instead of O(D) positions).

    Args:
        image_shape: (C, H, W); the sequence has C * H * W positions.
        optimizer: partial optimiser.
        d_model, n_layers, n_heads, mlp_ratio, dropout: the transformer (genzoo/nets/transformer.py).
        kv_cache: sample with the key/value cache.
        conditional: class-conditional p(x | y): the start token is the class's own token
            (a class token prefix); num_classes: K (the runner passes the data's).
    Raises:
        ValueError: sizes the transformer rejects, or a conditional model with fewer than 2 classes.
    """

    family = "pixel_transformer"
    def __init__(self, image_shape, optimizer, d_model: int = 64, n_layers: int = 4, n_heads: int = 4, mlp_ratio: int = 4,
                 dropout: float = 0.0, kv_cache: bool = True, conditional: bool = False, num_classes: int = 0):
        super().__init__(image_shape, optimizer)
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self._set_conditional(conditional, num_classes)
        self.kv_cache = kv_cache
        # tokens: 0..255 the pixel levels, 256 the start token, 257.. one per class
        self.net = CausalTransformer(LEVELS + 1 + self.num_classes, LEVELS, self.num_dims, d_model, n_layers, n_heads, mlp_ratio, dropout)

    def start_tokens(self, n: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The first input token of n sequences (n, 1): the start token, or each image's class token when conditional."""
        if self.conditional:
            return (LEVELS + 1 + labels).view(-1, 1).long().to(self.device)
        return torch.full((n, 1), LEVELS, dtype=torch.long, device=self.device)

    def logits(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, 256, C, H, W) of every pixel given those before it; x (B, C, H, W) in [-1, 1] on the 256-level grid."""
        levels = torch.round((x + 1) * 127.5).long().clamp(0, LEVELS - 1)
        seq = levels.permute(0, 2, 3, 1).flatten(1)  # raster order, channels of a pixel last: (B, D)
        tokens = torch.cat([self.start_tokens(len(x), labels), seq[:, :-1]], 1)
        c, h, w = self.image_shape
        return self.net(tokens).view(len(x), h, w, c, LEVELS).permute(0, 4, 3, 1, 2)

    def log_prob(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(x) (log p(x | y) when conditional) per image in nats: x (B, C, H, W) in [-1, 1] -> (B,)."""
        return categorical_pixel_log_likelihood(x, self.logits(x, labels if self.conditional else None)).flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None, kv_cache: bool | None = None) -> torch.Tensor:
        """n images (n, C, H, W) in [-1, 1] on the 256-level grid, drawn pixel by pixel in raster order.

        kv_cache: None takes the model's setting. A conditional model draws image i of class
        labels[i] (default i mod num_classes). Draws use `generator` on the CPU, so a seed gives
        the same images on every device, with or without the cache (up to float rounding in
        the logits). Raises ValueError for labels on an unconditional model, or of the wrong shape or range.
        """
        labels = self.sample_labels(n, labels)
        use_cache = self.kv_cache if kv_cache is None else kv_cache
        was_training = self.training
        self.eval()
        tokens = self.net.generate(self.start_tokens(n, labels), self.num_dims, generator, use_cache)
        self.train(was_training)
        c, h, w = self.image_shape
        return (tokens[:, 1:].view(n, h, w, c).permute(0, 3, 1, 2).float() / 127.5 - 1).contiguous()

    @property
    def nfe_per_sample(self) -> int:
        """Transformer calls per image: one per pixel (C * H * W), with or without the cache (without, each runs the whole prefix)."""
        return self.num_dims

    def protocol(self) -> dict:
        return {
            "sampler": f"ancestral, pixel by pixel in raster order ({self.num_dims} transformer calls, "
            + ("key/value cache: one new position each)" if self.kv_cache else "no cache: the whole prefix each)"),
            "nll_nats": "exact negative log-likelihood per 8-bit test image, 256-way softmax per pixel",
            "bits_per_dim": f"nll_nats / ({self.num_dims} * ln 2), exact (no bound)"
            + ("; conditional: -log p(x | y) with the true labels" if self.conditional else ""),
        }
