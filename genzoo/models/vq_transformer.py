"""Token transformer: a causal transformer over a VQ-VAE's token grid, prompted by text (DALL-E's two stages in miniature)."""

import torch
import torch.nn.functional as F

from genzoo.data.prompts import PAD, PromptVocabulary
from genzoo.data.sources import dataset_spec
from genzoo.distributions import bits_per_dim
from genzoo.models import first_stage as stages
from genzoo.models.base import GenerativeModel
from genzoo.nets.transformer import CausalTransformer

FIRST_STAGE = "vqvae"  # the family whose runs are this family's first stage


class VQTransformer(GenerativeModel):
    """p(codes | prompt) = prod_i p(code_i | code_<i, prompt) over a VQ-VAE's h x w token grid in raster order.

    Stage one, a trained VQ-VAE (`first_stage`, frozen: its encoder turns training images
    into token grids, its decoder turns drawn grids into images). Stage two, this model: a
    decoder-only causal transformer (genzoo/nets/transformer.py) over the sequence

        prefix, code_1, ..., code_{L-1}   ->   predicts code_1, ..., code_L   (L = h * w)

    trained by the exact negative log-likelihood of the codes (cross-entropy, nats per
    token). Unconditional, the prefix is one start token. Conditional (`conditional=true`,
    van den Oord et al. 2017's second stage; Ramesh et al. 2021, "DALL-E", at this data's
    scale), the prefix is the prompt's word tokens (left-padded to the longest class name,
    genzoo.data.prompts) then the start token: training prompts each image with its class
    name ("Ankle boot"); `sample(n, prompts=[...])` takes any prompt made of those words,
    and `sample(n, labels=...)` prompts with the labels' class names.

    Sampling draws the L codes one at a time (with `kv_cache`, one new position per
    transformer call) and decodes them in one decoder pass: L + 1 network evaluations per
    image, against 784 for the pixel transformer on 28x28 images.

    Test metrics: `token_nll_nats` (the exact -log p(codes | prompt) of the test images'
    token grids, per image) and `bits_per_token`. They are the likelihood of the codes, not
    of the images (the decoder is deterministic), so the family reports no image likelihood.

    Args:
        image_shape: (C, H, W), the first stage's.
        optimizer: partial optimiser (it updates the transformer only).
        first_stage: a finished VQ-VAE run directory (the runner sets it: see `prepare_run`);
            None builds an untrained VQ-VAE of `first_stage_overrides` (tests only).
        first_stage_overrides: {model key: value} of the VQ-VAE trained when first_stage is
            null (e.g. {num_codes: 256}); its config's defaults otherwise.
        d_model, n_layers, n_heads, mlp_ratio, dropout: the transformer.
        kv_cache: sample with the key/value cache.
        conditional: prompted p(codes | prompt); num_classes: K (the runner passes the data's).
        prompt_vocabulary: the dataset whose class names make the prompts' words (the config
            sets the run's data), needed when conditional.
    Raises:
        ValueError: sizes the transformer rejects, a conditional model without a dataset of
            class names; ConfigError: a first_stage that is not a finished VQ-VAE run of these images.
    """

    family = "vq_transformer"

    def __init__(self, image_shape, optimizer, first_stage: str | None = None, first_stage_overrides: dict | None = None,
                 d_model: int = 128, n_layers: int = 4, n_heads: int = 4, mlp_ratio: int = 4, dropout: float = 0.0,
                 kv_cache: bool = True, conditional: bool = False, num_classes: int = 0, prompt_vocabulary: str | None = None):
        super().__init__(image_shape, optimizer)
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self._set_conditional(conditional, num_classes)
        vqvae, self.first_stage_record = stages.obtain(first_stage, FIRST_STAGE, image_shape, first_stage_overrides)
        # the first stage's nets as children of their own (frozen, always in eval mode): sampling calls the decoder directly
        self.encoder, self.quantizer, self.decoder = vqvae.encoder, vqvae.quantizer, vqvae.decoder
        for p in (*self.encoder.parameters(), *self.quantizer.parameters(), *self.decoder.parameters()):
            p.requires_grad_(False)
        self.grid = vqvae.grid
        self.num_codes = self.quantizer.num_codes
        self.kv_cache = kv_cache
        self.vocabulary = None
        if self.conditional:
            names = dataset_spec(prompt_vocabulary).class_names if prompt_vocabulary else ()
            if len(names) != num_classes:
                raise ValueError(f"a conditional vq_transformer needs model.prompt_vocabulary=<a dataset with {num_classes} class names>, "
                                 f"got {prompt_vocabulary!r}")
            self.vocabulary = PromptVocabulary(names)
        # tokens: 0..K-1 codes, K padding, K + 1 start, K + 2 .. the prompt words
        self.pad_token, self.start_token = self.num_codes, self.num_codes + 1
        self.prefix_len = 1 + (self.vocabulary.max_words if self.conditional else 0)
        vocab = self.num_codes + 2 + (len(self.vocabulary) if self.conditional else 0)
        self.seq_len = self.grid[0] * self.grid[1]
        self.net = CausalTransformer(vocab, self.num_codes, self.prefix_len + self.seq_len - 1, d_model, n_layers, n_heads, mlp_ratio, dropout)

    @classmethod
    def prepare_run(cls, cfg, run_dir) -> dict:
        """The run's first stage: model.first_stage if given, else a VQ-VAE trained (or reused) in <run dir>/first_stage/; returns its training, which the run counts as its own."""
        return stages.prepare(cfg, run_dir, FIRST_STAGE, cfg.model.get("first_stage_overrides"))

    def train(self, mode: bool = True):
        """Train or eval mode for the transformer; the frozen first stage stays in eval mode (no codebook updates)."""
        super().train(mode)
        for net in (self.encoder, self.quantizer, self.decoder):
            net.eval()
        return self

    def trainable_parameters(self):
        return self.net.parameters()

    @torch.no_grad()
    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        """The first stage's token sequences (B, L) int64, raster order, of images x (B, C, H, W) in [-1, 1]."""
        return self.quantizer.codes(self.encoder(x)).flatten(1)

    def prefix(self, n: int, prompts=None) -> torch.Tensor:
        """The prefix tokens (n, prefix_len): the prompts' words (left-padded) then the start token; the start token alone when unconditional."""
        start = torch.full((n, 1), self.start_token, dtype=torch.long)
        if not self.conditional:
            return start.to(self.device)
        ids = self.vocabulary.encode(prompts)
        words = torch.where(ids == PAD, self.pad_token, self.num_codes + 2 + ids)
        return torch.cat([words, start], 1).to(self.device)

    def _prompts(self, n: int, labels=None, prompts=None) -> list[str] | None:
        """The n prompts to draw or score with: given ones, else the class names of the labels (balanced by default); None when unconditional."""
        if prompts is not None:
            if not self.conditional:
                raise ValueError("prompts need a conditional model: train with model.conditional=true")
            if labels is not None:
                raise ValueError("pass prompts or labels, not both")
            prompts = [prompts] if isinstance(prompts, str) else list(prompts)
            if len(prompts) != n:
                raise ValueError(f"{len(prompts)} prompts for {n} images: give one prompt per image")
            return prompts
        labels = self.sample_labels(n, labels)
        return self.vocabulary.class_prompts(labels.tolist()) if self.conditional else None

    def logits(self, codes: torch.Tensor, prompts=None) -> torch.Tensor:
        """Logits (B, L, K) of each code given the prefix and the codes before it; codes (B, L) int64."""
        tokens = torch.cat([self.prefix(len(codes), prompts), codes[:, :-1]], 1)
        return self.net(tokens)[:, self.prefix_len - 1 :]

    def token_nll(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Exact -log p(codes(x) | prompt) per image in nats (B,), the prompt the labels' class names when conditional."""
        codes = self.encode_codes(x)
        prompts = self.vocabulary.class_prompts(labels.tolist()) if self.conditional else None
        nll = F.cross_entropy(self.logits(codes, prompts).transpose(1, 2), codes, reduction="none")
        return nll.sum(1)

    def training_step(self, batch, batch_idx):
        nll = self.token_nll(*batch[:2])
        loss = nll.mean() / self.seq_len
        self.log("train/loss", loss, prog_bar=True, batch_size=len(nll))
        return loss

    def validation_step(self, batch, batch_idx):
        nll = self.token_nll(*batch[:2])
        self.log("val/loss", bits_per_dim(nll.mean(), self.seq_len), prog_bar=True, batch_size=len(nll), sync_dist=True)

    def test_step(self, batch, batch_idx):
        nll = self.token_nll(*batch[:2])
        self.log_dict({"token_nll_nats": nll.mean(), "bits_per_token": bits_per_dim(nll.mean(), self.seq_len)},
                      batch_size=len(nll), sync_dist=True)

    @torch.no_grad()
    def sample_codes(self, n: int, generator: torch.Generator | None = None, labels=None, prompts=None,
                     kv_cache: bool | None = None) -> torch.Tensor:
        """n token grids (n, h, w) int64 drawn code by code in raster order (see `sample` for the arguments)."""
        prefix = self.prefix(n, self._prompts(n, labels, prompts))
        use_cache = self.kv_cache if kv_cache is None else kv_cache
        was_training = self.training
        self.eval()
        tokens = self.net.generate(prefix, self.seq_len, generator, use_cache)
        self.train(was_training)
        return tokens[:, self.prefix_len :].view(n, *self.grid)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, labels=None, prompts=None, kv_cache: bool | None = None) -> torch.Tensor:
        """n images (n, C, H, W) in [-1, 1]: token grids drawn by the transformer, decoded by the first stage.

        labels: (n,) classes (conditional: prompted with their class names; default i mod K).
        prompts: n strings of the class names' words, e.g. ["ankle boot", "bag"] (conditional
        only; instead of labels). kv_cache: None takes the model's setting. Draws use
        `generator` on the CPU: a seed gives the same images with or without the cache.
        Raises ValueError for prompts with unknown words, prompts or labels on an
        unconditional model, or labels of the wrong shape or range.
        """
        codes = self.sample_codes(n, generator, labels, prompts, kv_cache)
        return self.decoder(self.quantizer.embed(codes)).clamp(-1, 1)

    @property
    def nfe_per_sample(self) -> int:
        """Network calls per image: L = h * w transformer calls and one decoder pass."""
        return self.seq_len + 1

    def protocol(self) -> dict:
        h, w = self.grid
        return {
            "sampler": f"ancestral, code by code in raster order over the {h}x{w} grid ({self.seq_len} transformer calls, "
            + ("key/value cache" if self.kv_cache else "no cache") + "), then one decoder pass"
            + (f"; prompted with the class names' words ({len(self.vocabulary)} words)" if self.conditional else ""),
            "first_stage": stages.describe(self.hparams.first_stage, FIRST_STAGE, self.first_stage_record) + f" ({self.num_codes} codes)",
            "token_nll_nats": f"exact -log p(codes | prompt) of the test images' {self.seq_len} tokens per image, nats: "
            "a likelihood of the codes, not of the images",
            "bits_per_token": f"token_nll_nats / ({self.seq_len} * ln 2)",
        }
