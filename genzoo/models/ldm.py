"""Latent diffusion (Rombach et al. 2022): the DDPM's objective and samplers on a trained first stage's latents."""

import torch
import torch.nn.functional as F

from genzoo.data.device import to_unit_range
from genzoo.models import first_stage as stages
from genzoo.models.ddpm import DDPM

FIRST_STAGES = ("vqvae", "ae", "vae")  # first stages with an encoder; the AE's and VAE's vector codes are diffused as D x 1 x 1 maps


class LDM(DDPM):
    """A DDPM (genzoo/models/ddpm.py: L_simple, EMA, DDIM or ancestral sampling, classifier-free
    guidance when conditional) that diffuses z = scale * E(x), a frozen first stage's latent map,
    and decodes its samples with the first stage's decoder: x = D(z / scale).

    First stage: a VQ-VAE's encoder output before quantisation, (16, 7, 7) for 28x28 images
    by default; its decoder snaps each vector to the codebook first (Rombach et al.'s VQ-reg
    models quantise inside the decoder likewise). Or, by `first_stage_family`, the AE's code or
    the VAE's posterior mean (Rombach et al.'s KL-regularised first stage), a D-vector diffused
    as a D x 1 x 1 map (the U-Net's 3x3 convolutions then act on one position). `scale` makes the latents unit-variance as
    Rombach et al. do: 1 / std of the latents of the first `scale_images` training images,
    measured when fit starts (before the sanity check) and kept in checkpoints (the buffer `latent_scale`). The
    samplers clip x0 predictions to [-clip_x0, clip_x0] in scaled (unit-variance) units, the
    latent analogue of the pixel DDPM's clip to [-1, 1]: unclipped, an under-trained eps
    net's x0 = (z_t - sqrt(1 - a) eps) / sqrt(a) blows up at high noise (1 / sqrt(a_T) ~ 160)
    and the samples leave the latents' range (docs/guide/ldm.md measures it).

    Test metrics: `first_stage_recon_mse` (the first stage's reconstruction error of the test
    images, per element on [-1, 1]: its decoder is a floor on what the LDM can draw) and
    `latent_loss` (L_simple on the test latents, EMA net). No likelihood: a bound on the
    latents' likelihood says nothing of the images'.

    Args:
        image_shape: (C, H, W) of the data.
        optimizer: partial optimiser (it updates the U-Net only).
        first_stage: a finished run directory of `first_stage_family` (the runner sets it, see
            `prepare_run`); None builds an untrained one of `first_stage_overrides` (tests only).
        first_stage_family: the first stage's family, one of FIRST_STAGES.
        first_stage_overrides: {model key: value} of the first stage trained when first_stage is null.
        scale_images: training images whose latents' std sets the scale.
        clip_x0: the bound on |x0| in scaled latent units (> 0), or None for no clipping.
        **ddpm: the DDPM's arguments (num_steps, schedule, prediction, the U-Net, ema_decay,
            sampler, sample_steps, eta, conditional, num_classes, p_uncond, guidance_scale).
    Raises:
        ValueError: an unknown first-stage family, a U-Net that cannot take the latent map, or
            the DDPM's own errors; ConfigError: a first_stage that is not a finished run of that family.
    """

    family = "ldm"

    def __init__(self, image_shape, optimizer, first_stage: str | None = None, first_stage_family: str = "vqvae",
                 first_stage_overrides: dict | None = None, scale_images: int = 5000, clip_x0: float | None = 5.0, **ddpm):
        if first_stage_family not in FIRST_STAGES:
            raise ValueError(f"latent diffusion's first stage must be one of {', '.join(FIRST_STAGES)}, got {first_stage_family!r}")
        model, record = stages.obtain(first_stage, first_stage_family, image_shape, first_stage_overrides)
        with torch.no_grad():
            latent_shape = tuple(model.eval().encode_latents(torch.zeros(1, *image_shape)).shape[1:])
        as_map = len(latent_shape) == 1  # a vector code (AE, VAE): a D x 1 x 1 map for the U-Net
        latent_shape = (*latent_shape, 1, 1) if as_map else latent_shape
        if clip_x0 is not None and not clip_x0 > 0:
            raise ValueError(f"clip_x0 (the bound on the latent x0, in units of the latents' std) must be positive or null, got {clip_x0}")
        super().__init__(image_shape, optimizer, ode_likelihood=False, diffusion_shape=latent_shape, **ddpm)
        self.clip_x0 = clip_x0  # the DDPM's samplers read it (theirs is True: [-1, 1])
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self.first_stage = stages.FrozenFirstStage(model, as_map=as_map)
        self.first_stage_record = record
        self.scale_images = scale_images
        self.register_buffer("latent_scale", torch.zeros(()))  # 0: not measured yet

    @classmethod
    def prepare_run(cls, cfg, run_dir) -> dict:
        """The run's first stage: model.first_stage if given, else one trained (or reused) in <run dir>/first_stage/; returns its training, which the run counts as its own."""
        return stages.prepare(cfg, run_dir, cfg.model.first_stage_family, cfg.model.get("first_stage_overrides"))

    def trainable_parameters(self):
        return self.net.parameters()

    @torch.no_grad()
    def measure_scale(self, images: torch.Tensor, batch_size: int = 500) -> float:
        """Set latent_scale to 1 / std of the latents of images (N, C, H, W) uint8 or in [-1, 1]; returns it."""
        if images.dtype == torch.uint8:
            images = to_unit_range(images)
        z = torch.cat([self.first_stage.encode(images[i : i + batch_size].to(self.device)) for i in range(0, len(images), batch_size)])
        self.latent_scale.fill_(1 / z.float().std().item())
        return self.latent_scale.item()

    def on_fit_start(self):
        if self.latent_scale.item() == 0:  # a resumed run keeps the scale it trained with (restored before this hook)
            self.measure_scale(self.trainer.datamodule.train_set.images[: self.scale_images])

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """The scaled latents scale * E(x), (B, *diffusion_shape), of images x (B, C, H, W) in [-1, 1].

        Raises RuntimeError before the scale is measured (training sets it; or call measure_scale).
        """
        if self.latent_scale.item() == 0:
            raise RuntimeError("the latent scale is not measured yet: train the model, or call measure_scale(training images)")
        return self.first_stage.encode(x) * self.latent_scale

    def training_step(self, batch, batch_idx):
        loss = self.loss(self.latents(batch[0]), labels=batch[1], drop=True)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss = self.loss(self.latents(batch[0]), net=self.ema.module, labels=batch[1])
        self.log("val/loss", loss, prog_bar=True, batch_size=len(batch[0]), sync_dist=True)

    def test_step(self, batch, batch_idx):
        x = batch[0]
        recon = self.first_stage(self.first_stage.encode(x))
        generator_state = torch.get_rng_state()
        torch.manual_seed(batch_idx)  # the test's t and noise: the same for every run
        latent_loss = self.loss(self.latents(x), net=self.ema.module, labels=batch[1])
        torch.set_rng_state(generator_state)
        self.log_dict({"first_stage_recon_mse": F.mse_loss(recon, x), "latent_loss": latent_loss}, batch_size=len(x), sync_dist=True)

    @torch.no_grad()
    def sample(self, n: int, generator=None, **kw) -> torch.Tensor:
        """n images (n, C, H, W) in [-1, 1]: latents drawn by the DDPM's sampler (see DDPM.sample for the
        arguments), divided by the scale and decoded by the first stage."""
        return self.first_stage(super().sample(n, generator, **kw) / self.latent_scale)

    @torch.no_grad()
    def decode_latents(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] of x_T = z (B, *diffusion_shape): deterministic DDIM in latent space, then the decoder."""
        return self.first_stage(super().decode_latents(z, labels) / self.latent_scale)

    @property
    def nfe_per_sample(self) -> int:
        """The latent sampler's U-Net evaluations (as the DDPM's) plus one decoder pass."""
        return super().nfe_per_sample + 1

    def protocol(self) -> dict:
        base = {k: v for k, v in super().protocol().items() if k in ("sampler", "conditional")}
        return {
            **base,
            "sampler": base["sampler"] + f" in the {'x'.join(map(str, self.diffusion_shape))} latent space, "
            + ("x0 unclipped" if self.clip_x0 is None else f"x0 clipped to +-{self.clip_x0:g} (scaled latents, unit variance)")
            + ", then one decoder pass",
            "first_stage": stages.describe(self.hparams.first_stage, self.hparams.first_stage_family, self.first_stage_record),
            "latent_scale": f"{self.latent_scale.item():.4g} = 1 / std of the latents of the first {self.scale_images} training images",
            "first_stage_recon_mse": "the first stage's reconstruction error of the test images, per element on [-1, 1]",
            "latent_loss": "L_simple on the scaled test latents, EMA net, t and noise seeded by batch",
        }
