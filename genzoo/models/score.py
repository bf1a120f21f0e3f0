"""Score-based generative model through SDEs (Song et al. 2021): VP, sub-VP and VE, PC / ODE / Langevin sampling."""

import math

import torch
import torch.nn.functional as F

from genzoo.data.device import to_unit_range
from genzoo.diffusion.guidance import Guided, drop_labels
from genzoo.diffusion.probability_flow import ode_nll_nats, ode_sample
from genzoo.diffusion.sde import SDE, SDES, _bcast, make_sde, max_pairwise_distance, score_from_eps
from genzoo.diffusion.sde_samplers import CORRECTORS, PREDICTORS, annealed_langevin_sample, pc_sample
from genzoo.distributions import bits_per_dim
from genzoo.models.base import GenerativeModel
from genzoo.models.ema import ema_copy, update_ema
from genzoo.nets.denoiser import build_denoiser

SAMPLERS = ("pc", "ode", "langevin")
WEIGHTINGS = ("standard", "likelihood")
TIME_SCALE = 999.0  # the U-Net sees t * 999, DDPM's step range (as Song et al.'s code feeds DDPM++)


class ScoreSDE(GenerativeModel):
    """A U-Net score model s(x, t) = -eps_hat(x, t) / std(t) of the marginals p_t of a forward SDE.

    Training: continuous-time denoising score matching (Song et al. 2021, eq. 7) at
    t ~ U[train_eps, 1]: with the standard weighting lambda(t) = std(t)^2 the loss is the
    mean squared error between eps_hat(x_t, t) and the noise z in x_t = mean(t) x_0 + std(t) z;
    the likelihood weighting lambda(t) = g(t)^2 (Song, Durkan et al. 2021) is the same error
    at t drawn with density proportional to g(t)^2 / std(t)^2 (importance sampling; the
    constant normaliser is dropped). An EMA copy of the net samples and scores.

    Test metric: the exact log-likelihood of the probability-flow ODE (one Hutchinson probe per
    image, an unbiased estimate) at uniformly dequantised 8-bit test images, so `nll_nats`
    bounds -log P of the 8-bit image from above; reported as nll_nats and bits_per_dim.

    Args:
        image_shape: (C, H, W).
        optimizer: partial optimiser.
        sde: "vp", "subvp" or "ve" (genzoo.diffusion.sde).
        num_scales: N, the SDE's discretisation (the reverse-diffusion predictor's step count by default).
        beta_min, beta_max: VP and sub-VP's beta(t) at t = 0 and 1.
        sigma_min, sigma_max: VE's noise range; sigma_max None sets it at the start of training to
            the largest pairwise distance of the first `sigma_max_images` training images
            (Song & Ermon 2020, technique 1); it is kept in the checkpoint.
        weighting: "standard" or "likelihood".
        train_eps: smallest training time.
        base_channels, channel_mults, num_res_blocks, attention_levels, dropout: the U-Net.
        net, patch_size, dit_size: the noise predictor (genzoo/nets/denoiser.py): "unet" (the sizes above) or
            "dit" (Peebles & Xie 2023: p x p patches, a named size "cpu", "S" or "B").
        ema_decay: decay of the weight average that samples and scores, in [0, 1).
        sampler: "pc" (predictor-corrector), "ode" (probability flow, adaptive RK45) or "langevin"
            (annealed Langevin dynamics as NCSN; VE only).
        sample_steps, predictor, corrector, snr, corrector_steps: PC sampling (genzoo.diffusion.sde_samplers).
        sample_eps: where sampling stops; None: 1e-3 for VP and sub-VP, 1e-5 for VE (Song et al.'s settings).
        langevin_levels, langevin_steps, langevin_step_lr: annealed Langevin's noise levels, steps per level, step size.
        ode_rtol, ode_atol: the ODE solver's tolerances, for sampling and the likelihood.
        likelihood_probes: Hutchinson probes per image and evaluation; likelihood_eps: the likelihood's start time.
        conditional: class-conditional with classifier-free guidance (Ho & Salimans 2022), as the DDPM:
            p_uncond in training, guidance_scale w at sampling; num_classes: classes (the runner passes it).
    Raises:
        ValueError: an unknown sde, weighting, sampler, predictor or corrector; the Langevin sampler
            without VE; bad steps, eps, decay or guidance settings.
    """

    family = "score"
    latent_space = "prior"

    def __init__(
        self,
        image_shape,
        optimizer,
        sde: str = "vp",
        num_scales: int = 1000,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        sigma_min: float = 0.01,
        sigma_max: float | None = None,
        sigma_max_images: int = 5000,
        weighting: str = "standard",
        train_eps: float = 1e-5,
        base_channels: int = 32,
        channel_mults=(1, 2, 2),
        num_res_blocks: int = 1,
        attention_levels=(2,),
        dropout: float = 0.1,
        ema_decay: float = 0.995,
        sampler: str = "pc",
        sample_steps: int = 100,
        predictor: str = "reverse_diffusion",
        corrector: str = "langevin",
        snr: float = 0.16,
        corrector_steps: int = 1,
        sample_eps: float | None = None,
        langevin_levels: int = 100,
        langevin_steps: int = 5,
        langevin_step_lr: float = 2e-5,
        ode_rtol: float = 1e-5,
        ode_atol: float = 1e-5,
        likelihood_probes: int = 1,
        likelihood_eps: float = 1e-5,
        conditional: bool = False,
        num_classes: int = 0,
        p_uncond: float = 0.1,
        guidance_scale: float = 2.0,
        net: str = "unet",
        patch_size: int = 2,
        dit_size: str = "cpu",
    ):
        super().__init__(image_shape, optimizer)
        checks = [
            (sde in SDES, f"unknown sde '{sde}': choose one of {', '.join(SDES)}"),
            (weighting in WEIGHTINGS, f"unknown weighting '{weighting}': choose one of {', '.join(WEIGHTINGS)}"),
            (sampler in SAMPLERS, f"unknown sampler '{sampler}': choose one of {', '.join(SAMPLERS)}"),
            (predictor in PREDICTORS, f"unknown predictor '{predictor}': choose one of {', '.join(PREDICTORS)}"),
            (corrector in CORRECTORS, f"unknown corrector '{corrector}': choose one of {', '.join(CORRECTORS)}"),
            (sampler != "langevin" or sde == "ve", "sampler=langevin (annealed Langevin, NCSN) anneals VE noise levels: use model.sde=ve"),
            (0 < train_eps < 1 and 0 < likelihood_eps < 1 and (sample_eps is None or 0 < sample_eps < 1),
             f"train_eps, likelihood_eps and sample_eps must be in (0, 1), got {train_eps}, {likelihood_eps}, {sample_eps}"),
            (sigma_max is None or sigma_max > sigma_min, f"sigma_max must be above sigma_min={sigma_min}, got {sigma_max}"),
            (sigma_max_images >= 2, f"sigma_max_images must be >= 2, got {sigma_max_images}"),
            (0 <= p_uncond < 1 and guidance_scale >= 0, f"p_uncond must be in [0, 1) and guidance_scale >= 0, got {p_uncond} and {guidance_scale}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self.sde_name, self.num_scales, self.weighting, self.train_eps = sde, num_scales, weighting, train_eps
        self.sde_args = {"beta_min": beta_min, "beta_max": beta_max, "sigma_min": sigma_min}
        make_sde(sde, num_scales, sigma_max=sigma_max or sigma_min * 2, **self.sde_args)  # checks the SDE's own ranges now
        self.sigma_max_images = sigma_max_images
        # VE's sigma_max: a buffer, so the value set from the training images travels in the checkpoint (nan: not set yet)
        self.register_buffer("sigma_max", torch.tensor(float("nan") if sigma_max is None else float(sigma_max)))
        self.sampler, self.sample_steps, self.predictor, self.corrector = sampler, sample_steps, predictor, corrector
        self.snr, self.corrector_steps = snr, corrector_steps
        self.sample_eps = sample_eps if sample_eps is not None else (1e-5 if sde == "ve" else 1e-3)
        self.langevin = {"levels": langevin_levels, "steps_per_level": langevin_steps, "step_lr": langevin_step_lr}
        self.ode_tolerances = {"rtol": ode_rtol, "atol": ode_atol}
        self.likelihood_probes, self.likelihood_eps = likelihood_probes, likelihood_eps
        self._set_conditional(conditional, num_classes)
        self.p_uncond, self.guidance_scale = p_uncond, guidance_scale
        self.net = build_denoiser(net, image_shape, self.num_classes, base_channels=base_channels, channel_mults=channel_mults,
                                  num_res_blocks=num_res_blocks, attention_levels=attention_levels, dropout=dropout,
                                  patch_size=patch_size, dit_size=dit_size)
        self.ema = ema_copy(self.net, ema_decay)
        self._importance = None  # (times, cdf) for the likelihood weighting, built on first use
        self._last_nfe = None  # the ODE sampler's NFE per sample in the last `sample` call

    # ---- the SDE and the score ---------------------------------------------------------------

    @property
    def sde(self) -> SDE:
        """The forward SDE. Raises RuntimeError for a VE model whose sigma_max is not set yet."""
        sigma_max = self.sigma_max.item()
        if self.sde_name == "ve" and math.isnan(sigma_max):
            raise RuntimeError("VE sigma_max is not set: train the model (the first fit sets it from the training images) or give model.sigma_max")
        return make_sde(self.sde_name, self.num_scales, sigma_max=sigma_max if self.sde_name == "ve" else 50.0, **self.sde_args)

    def setup(self, stage: str) -> None:
        """At fit, a VE model without sigma_max takes the largest pairwise distance of training images (a checkpoint restores it after)."""
        if stage == "fit" and self.sde_name == "ve" and math.isnan(self.sigma_max.item()):
            images = self.trainer.datamodule.train_set.images[: self.sigma_max_images]
            self.sigma_max.fill_(max_pairwise_distance(to_unit_range(images)))

    def score_fn(self, net, sde: SDE | None = None):
        """The score (x, t) -> -net(x, t * 999) / std(t), x (B, C, H, W), t (B,) in (0, 1]."""
        return score_from_eps(lambda x, t: net(x, t * TIME_SCALE), self.sde if sde is None else sde)

    # ---- training -----------------------------------------------------------------------------

    def trainable_parameters(self):
        return self.net.parameters()

    def train_times(self, n: int) -> torch.Tensor:
        """n training times (n,) on the model's device: uniform on [train_eps, 1], or for the likelihood
        weighting drawn with density proportional to g(t)^2 / std(t)^2 by inverting its CDF on a log grid."""
        u = torch.rand(n, device=self.device)
        if self.weighting == "standard":
            return self.train_eps + (1 - self.train_eps) * u
        if self._importance is None:
            sde = self.sde
            grid = torch.logspace(math.log10(self.train_eps), 0, 4096, dtype=torch.float64)
            _, g = sde.sde(torch.zeros(len(grid), 1, dtype=torch.float64), grid)
            _, std = sde.marginal_prob(torch.zeros(len(grid), 1, dtype=torch.float64), grid)
            w = g**2 / std**2
            cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum((w[1:] + w[:-1]) / 2 * grid.diff(), 0)])
            self._importance = (grid, cdf / cdf[-1])
        grid, cdf = (v.to(self.device) for v in self._importance)
        i = torch.searchsorted(cdf, u.double()).clamp(1, len(grid) - 1)
        frac = (u.double() - cdf[i - 1]) / (cdf[i] - cdf[i - 1]).clamp_min(1e-300)
        return (grid[i - 1] + frac * (grid[i] - grid[i - 1])).float()

    def loss(self, x0: torch.Tensor, net=None, labels: torch.Tensor | None = None, drop: bool = False) -> torch.Tensor:
        """Denoising score matching on x0 (B, C, H, W) in [-1, 1], as the eps-MSE (see the class docstring).

        labels (B,): classes for a conditional model; with `drop`, each becomes the "no label"
        token with probability p_uncond (classifier-free guidance training).
        """
        net = self.net if net is None else net
        if self.conditional and drop:
            labels = drop_labels(labels, self.p_uncond, self.num_classes)
        t = self.train_times(len(x0))
        z = torch.randn_like(x0)
        mean, std = self.sde.marginal_prob(x0, t)
        x_t = mean + _bcast(std, x0) * z
        eps_hat = net(x_t, t * TIME_SCALE, labels) if self.conditional else net(x_t, t * TIME_SCALE)
        return F.mse_loss(eps_hat, z)

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch[0], labels=batch[1], drop=True)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch[0]))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        update_ema(self.ema, self.net)

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.loss(batch[0], net=self.ema.module, labels=batch[1]), prog_bar=True, batch_size=len(batch[0]), sync_dist=True)

    # ---- likelihood ---------------------------------------------------------------------------

    def nll_nats(self, x: torch.Tensor, labels: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """-log P of 8-bit images x (B, C, H, W) in [-1, 1] in nats, (B,), by the probability-flow ODE of the EMA net.

        An upper bound through uniform dequantization, estimated without bias (Hutchinson);
        a conditional model gives -log p(x | y) with the true labels and no guidance.
        Needs autograd: call it outside torch.inference_mode (test_step does).
        """
        net = self.ema.module.eval()
        if self.conditional:
            net = Guided(net, labels, 0.0)
        nll, _ = ode_nll_nats(self.score_fn(net), self.sde, x, generator, self.likelihood_probes, eps=self.likelihood_eps, **self.ode_tolerances)
        return nll.to(x.device, torch.float32)

    def test_step(self, batch, batch_idx):
        generator = torch.Generator().manual_seed(batch_idx)  # dequantization noise and probes: the same for every run
        with torch.inference_mode(False), torch.enable_grad():
            nll = self.nll_nats(batch[0].clone(), batch[1].clone() if self.conditional else None, generator)
        self.log_dict({"nll_nats": nll.mean(), "bits_per_dim": bits_per_dim(nll.mean(), self.num_dims)}, batch_size=len(nll), sync_dist=True)

    # ---- sampling -----------------------------------------------------------------------------

    def _sampling_net(self, labels: torch.Tensor | None, guidance_scale: float | None):
        """The EMA net in eval mode, called as net(x, t_label); Guided with the labels when conditional."""
        if guidance_scale is not None and not self.conditional:
            raise ValueError("guidance_scale needs labels, which need a conditional model: train with model.conditional=true")
        net = self.ema.module.eval()
        return net if labels is None else Guided(net, labels, self.guidance_scale if guidance_scale is None else guidance_scale)

    @torch.no_grad()
    def sample(self, n: int, generator=None, sampler: str | None = None, steps: int | None = None, labels: torch.Tensor | None = None,
               guidance_scale: float | None = None, x_T: torch.Tensor | None = None) -> torch.Tensor:
        """n images (n, C, H, W) in [-1, 1] from the EMA net's score.

        sampler: "pc" (`steps` predictor steps, default sample_steps, each after corrector_steps
        Langevin steps), "ode" (the probability flow, adaptive) or "langevin" (annealed Langevin,
        VE); None takes the config's. labels / guidance_scale: as the DDPM's (conditional models).
        x_T: the starting point (the ODE's latent code); default a prior draw from `generator`.
        Raises ValueError for an unknown sampler, or labels / guidance on an unconditional model.
        """
        sampler = sampler or self.sampler
        net = self._sampling_net(self.sample_labels(n, labels), guidance_scale)
        sde, shape = self.sde, (n, *self.image_shape)
        score = self.score_fn(net, sde)
        common = {"generator": generator, "x_T": x_T, "device": self.device}
        if sampler == "pc":
            x, nfe = pc_sample(score, sde, shape, steps=steps or self.sample_steps, predictor=self.predictor, corrector=self.corrector,
                               snr=self.snr, corrector_steps=self.corrector_steps, eps=self.sample_eps, **common)
        elif sampler == "ode":
            x, nfe = ode_sample(score, sde, shape, eps=self.sample_eps, **self.ode_tolerances, **common)
        elif sampler == "langevin":
            x, nfe = annealed_langevin_sample(score, sde, shape, **self.langevin, **common)
        else:
            raise ValueError(f"unknown sampler '{sampler}': choose one of {', '.join(SAMPLERS)}")
        self._last_nfe = nfe * self._guidance_factor(guidance_scale)
        return x.clamp(-1, 1)

    def sampler_options(self) -> dict[str, dict]:
        """Two PC samplers at the same NFE, the configured `sample_steps` (100 by default): sample_steps / 2
        predictor steps each after one Langevin corrector step, or sample_steps predictor steps with no
        corrector (Song et al. 2021 compare both kinds, table 1). {} unless the configured sampler is "pc"."""
        steps = self.hparams.sample_steps  # the configured count: the options stay the same after one is applied
        if self.hparams.sampler != "pc" or steps < 2:
            return {}
        return {f"pc-{steps // 2} + langevin": {"sample_steps": steps // 2, "corrector": "langevin", "corrector_steps": 1},
                f"pc-{steps}, no corrector": {"sample_steps": steps, "corrector": "none"}}

    def reference_samplers(self) -> dict[str, dict]:
        """The probability-flow ODE (adaptive RK45, its NFE set by the solver): the deterministic sampler of the same net."""
        return {"ode": {"sampler": "ode"}} if self.hparams.sampler != "ode" else {}

    def _guidance_factor(self, guidance_scale: float | None) -> int:
        w = self.guidance_scale if guidance_scale is None else guidance_scale
        return 2 if self.conditional and w > 0 else 1

    def prior_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws x_T ~ p_T (n, C, H, W): the probability-flow ODE's latent code."""
        return self.sde.prior_sampling((n, *self.image_shape), generator).to(self.device)

    @torch.no_grad()
    def decode_latents(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] the probability-flow ODE carries x_T = z to (deterministic)."""
        return self.sample(len(z), sampler="ode", labels=labels, x_T=z)

    @property
    def nfe_per_sample(self) -> int | None:
        """Score evaluations per image of the configured sampler (x2 with guidance); for "ode", the
        last `sample` call's (adaptive), None before one."""
        if self.sampler == "ode":
            return self._last_nfe
        if self.sampler == "pc":
            nfe = self.sample_steps * (1 + (self.corrector_steps if self.corrector == "langevin" else 0))
        else:
            nfe = self.langevin["levels"] * self.langevin["steps_per_level"] + 1
        return nfe * self._guidance_factor(None)

    def protocol(self) -> dict:
        sde = self.sde
        if self.sde_name == "ve":
            sde_text = (f"VE, sigma {sde.sigma_min:g} to {sde.sigma_max:.2f}"
                        + (f" (sigma_max: largest pairwise distance of the first {self.sigma_max_images} training images)"
                           if self.hparams.sigma_max is None else ""))
        else:
            sde_text = f"{self.sde_name.upper() if self.sde_name == 'vp' else 'sub-VP'}, beta {sde.beta_min:g} to {sde.beta_max:g}"
        samplers = {
            "pc": f"PC: {self.predictor} predictor, {self.sample_steps} steps"
            + (f", Langevin corrector x{self.corrector_steps}, snr={self.snr:g}" if self.corrector == "langevin" else ", no corrector"),
            "ode": f"probability-flow ODE, RK45 rtol={self.ode_tolerances['rtol']:g} atol={self.ode_tolerances['atol']:g} (adaptive NFE)",
            "langevin": "annealed Langevin, {levels} levels x {steps_per_level} steps, step_lr={step_lr:g}, Tweedie denoising".format(**self.langevin),
        }
        return {
            "sde": sde_text,
            "weighting": self.weighting + (" (t importance-sampled, density g^2 / std^2)" if self.weighting == "likelihood" else " (lambda = std^2)"),
            "likelihood": f"exact likelihood of the probability-flow ODE from t={self.likelihood_eps:g} (RK45 rtol={self.ode_tolerances['rtol']:g}, "
            f"{self.likelihood_probes} Rademacher Hutchinson probe(s) per image: an unbiased estimate), at uniformly dequantized "
            "8-bit test images (so an upper bound on their -log P), EMA net",
            "bits_per_dim": f"nll_nats / ({self.num_dims} * ln 2)",
            "sampler": samplers[self.sampler] + f", stops at t={self.sample_eps:g}"
            + (f"; class-conditional, balanced labels, classifier-free guidance w={self.guidance_scale}" if self.conditional else ""),
        }
