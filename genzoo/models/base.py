"""The interface every family implements, so the runner and the metrics never look inside."""

from contextlib import contextmanager
from functools import partial

import lightning as L
import torch
from torch.optim.swa_utils import AveragedModel


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
    conditional: bool = False  # class-conditional (model.conditional=true): `sample` takes labels
    num_classes: int = 0  # classes a conditional model draws (0 when unconditional)
    # What genzoo/evaluation/latent.py can do with the family's latent code (see prior_latents / decode_latents):
    # "encoder": codes of images and of the prior (AE, VAE); "prior": codes of the prior only (GAN,
    # DDPM's x_T); None: no latent code (PixelCNN).
    latent_space: str | None = None
    channels_last: bool = False  # batches arrive in channels_last memory format (set by speed_up)
    # DDP: True when a training step leaves some parameters without a gradient (e.g. one of two nets)
    ddp_find_unused_parameters: bool = False

    def __init__(self, image_shape, optimizer):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.optimizer = optimizer

    @classmethod
    def resolved_args(cls, args: dict) -> dict:
        """The constructor arguments `args` ({name: value}) with each null the family decides spelled out (override).

        Two configs whose resolved arguments are equal build the same model and train it the
        same way: genzoo.models.build.model_recipe compares runs by them (an old record's
        `spectral_norm: null` and today's `false` on an unconditional GAN are one recipe).
        A family whose constructor turns None into a value (a default that depends on
        another argument) overrides this and uses it in its constructor, so the two cannot
        drift apart. Default: `args` unchanged (a copy).
        """
        return dict(args)

    @classmethod
    def prepare_run(cls, cfg, run_dir) -> dict | None:
        """Before the runner builds the model: make what the constructor needs from other runs (override).

        Called by genzoo.training.runner with the run's config (an OmegaConf DictConfig,
        changed in place: what is decided here is written into cfg.model, so config.yaml
        records it) and the run directory (a Path). A two-stage family trains or finds its
        first stage here (genzoo.models.first_stage.prepare) and returns its training
        ({"run", "train_seconds", "train_images", "train_flops"}), which the runner counts
        as part of the run's (its clock, time budget and FLOPs start from it). Default:
        nothing, None.
        """
        return None

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw n images: (n, C, H, W) float in [-1, 1], on the model's device.

        `generator` is a CPU torch.Generator; noise is drawn on the CPU and moved, so a seed
        gives the same images on every device.
        """
        raise NotImplementedError

    def _set_conditional(self, conditional: bool, num_classes: int) -> None:
        """Record whether the model is class-conditional; raises ValueError for one with fewer than 2 classes."""
        if conditional and num_classes < 2:
            raise ValueError(f"a conditional {self.family} needs num_classes >= 2, got {num_classes}")
        self.conditional, self.num_classes = bool(conditional), num_classes if conditional else 0

    def sample_labels(self, n: int, labels=None) -> torch.Tensor | None:
        """The classes `sample` draws: (n,) int64 on the model's device, or None for an unconditional model.

        labels: None (balanced: image i gets class i mod num_classes) or n classes in 0..num_classes-1.
        Raises ValueError for labels of the wrong shape or range, or labels given to an
        unconditional model.
        """
        if not self.conditional:
            if labels is not None:
                raise ValueError("labels need a conditional model: train with model.conditional=true")
            return None
        labels = torch.arange(n) % self.num_classes if labels is None else torch.as_tensor(labels)
        if labels.shape != (n,) or labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"labels must be (n,) = ({n},) classes in 0..{self.num_classes - 1}, got shape {tuple(labels.shape)}")
        return labels.long().to(self.device)

    def prior_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws (n, *latent shape) of the latent code `sample` decodes, on the model's device."""
        raise NotImplementedError(f"{self.family} has no latent code")

    def prior_mode(self) -> torch.Tensor | None:
        """The mode of the prior `prior_latents` draws from, broadcastable to its codes, or None where there is none to move codes towards.

        Default: 0 for a family with a latent code (a prior N(0, s^2 I): the GAN's and VAE's
        z, the x_T of the DDPM, latent diffusion and the score model), None without one. A
        family whose prior is centred elsewhere overrides it (the AE's fitted Gaussian: its
        mean; the VQ-VAE's codebook vectors: None).
        """
        return None if self.latent_space is None else torch.zeros((), device=self.device)

    def truncate_latents(self, z: torch.Tensor, psi: float) -> torch.Tensor:
        """Prior codes z (n, *latent shape) moved towards the prior's mode m: m + psi * (z - m), same shape.

        psi in (0, 1) is the truncation trick in its linear form (StyleGAN's psi, Karras et al.
        2019, applied to the prior's code): samples nearer the prior's mode, more typical and
        less diverse; psi > 1 pushes codes out; psi = 1 returns z. Kynkaanniemi et al. 2019
        (sec. 5) trace precision and recall over it.

        Raises ValueError for psi <= 0, or where the prior has no mode (`prior_mode` None).
        """
        if not psi > 0:
            raise ValueError(f"psi must be above 0 (1 leaves the codes as drawn), got {psi}")
        mode = self.prior_mode()
        if mode is None:
            raise ValueError(f"{self.family}'s prior has no mode to move codes towards, so truncation is not defined for it")
        return mode + psi * (z - mode)

    def decode_latents(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images (n, C, H, W) in [-1, 1] that latents z decode to, deterministically (labels (n,) if conditional)."""
        raise NotImplementedError(f"{self.family} has no latent code")

    def encode_latents(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Latent codes (n, *latent shape) of images x (n, C, H, W) in [-1, 1] (families with latent_space "encoder")."""
        raise NotImplementedError(f"{self.family} has no encoder")

    @property
    def nfe_per_sample(self) -> int:
        """Network evaluations `sample` makes per image (1 for a single decoder/generator pass)."""
        return 1

    def protocol(self) -> dict:
        """How this family's metrics were computed, for the protocol card (override to add)."""
        return {}

    def divergence(self) -> tuple[str, float] | None:
        """The family's own sign that training has diverged while its loss is still finite (override).

        Checked after every training batch by genzoo.training.callbacks.DivergenceMonitor,
        which stops the run as "diverged" on (metric name, value), e.g. the EBM's exploding
        energies; None (the default): nothing beyond the monitor's non-finite checks.
        """
        return None

    def sampler_options(self) -> dict[str, dict]:
        """Named sampler settings of equal cost (network evaluations) to choose between (override).

        Each is {attribute: value} of the model's sampling attributes (what `sample` reads by
        default, e.g. the DDPM's {"eta": 0.0}). With budget.sampler_selection_samples > 0 the
        runner scores each on validation images and applies the best with `use_sampler`
        (genzoo.evaluation.comparison). {}: nothing to choose.
        """
        return {}

    def reference_samplers(self) -> dict[str, dict]:
        """Named sampler settings (as in `sampler_options`) of a costlier reference sampler, scored on a subset beside the main one (override)."""
        return {}

    def use_sampler(self, settings: dict) -> dict:
        """Make `settings` (one of `sampler_options()`) the default of `sample`: each key is set as an attribute.

        Returns the values they replaced ({attribute: old value}), for `sampling_with`.
        Raises AttributeError for a key that is not a sampling attribute of this model.
        """
        for key in settings:
            if not hasattr(self, key):
                raise AttributeError(f"{self.family} has no sampler setting {key!r}")
        replaced = {key: getattr(self, key) for key in settings}
        for key, value in settings.items():
            setattr(self, key, value)
        return replaced

    @contextmanager
    def sampling_with(self, settings: dict):
        """`settings` (as in `use_sampler`) in force inside the block, the previous values restored after it (also on error)."""
        replaced = self.use_sampler(settings)
        try:
            yield self
        finally:
            self.use_sampler(replaced)

    def uncompiled_nets(self) -> dict[str, str]:
        """Child nets that `speed_up(compile=True)` leaves in eager mode, each with the reason (override)."""
        return {}

    def speed_up(self, compile: bool = False, channels_last: bool = False, fused_optimizer: bool = False) -> dict:
        """Apply a hardware preset's speed options before training; returns what was done, for the protocol card.

        compile: torch.compile each child net in place (nn.Module.compile: checkpoints keep their
            keys; an EMA copy's inner net is compiled too, so sampling runs compiled), except
            those `uncompiled_nets` names. channels_last: parameters and batches in NHWC order
            (faster convolutions on tensor cores). fused_optimizer: the optimiser's fused
            kernel (torch's `fused=True`, CUDA and CPU for Adam/AdamW/SGD).
        """
        done = {"compiled": [], "left_eager": {}, "channels_last": channels_last, "fused_optimizer": fused_optimizer}
        if compile:
            left = self.uncompiled_nets()
            for name, child in self.named_children():
                if name in left:
                    done["left_eager"][name] = left[name]
                elif any(True for _ in child.parameters()):
                    (child.module if isinstance(child, AveragedModel) else child).compile()
                    done["compiled"].append(name)
        if channels_last:
            self.to(memory_format=torch.channels_last)
            self.channels_last = True
            # set here, not as a method: an overridden hook makes Lightning warn on every run
            self.on_after_batch_transfer = _channels_last_batch
        if fused_optimizer:
            self.optimizer = partial(self.optimizer, fused=True)
        return done

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


def _channels_last_batch(batch, dataloader_idx: int):
    """Lightning's on_after_batch_transfer under channels_last: the images in NHWC memory order."""
    return (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
