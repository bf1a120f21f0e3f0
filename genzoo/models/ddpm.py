"""Denoising diffusion probabilistic model (Ho et al. 2020) with DDIM sampling (Song et al. 2021)."""

import math

import torch
import torch.nn.functional as F

from genzoo.diffusion import (
    ancestral_sample,
    ddim_sample,
    extract,
    make_schedule,
    posterior_mean,
    predict_x0_eps,
    q_sample,
)
from genzoo.diffusion.guidance import Guided, drop_labels
from genzoo.diffusion.probability_flow import ode_nll_nats
from genzoo.diffusion.samplers import PREDICTIONS
from genzoo.diffusion.sde import VPSDE, _bcast, score_from_eps
from genzoo.distributions import bits_per_dim, discretized_gaussian_log_likelihood, normal_kl
from genzoo.models.base import GenerativeModel
from genzoo.models.ema import ema_copy, update_ema
from genzoo.nets.denoiser import build_denoiser

SAMPLERS = ("ddim", "ancestral")


class DDPM(GenerativeModel):
    """DDPM: a U-Net trained to predict eps (or v) from x_t ~ q(x_t | x_0), t uniform.

    Loss: mean squared error to the target (Ho et al.'s L_simple). An EMA copy of the net
    samples and scores. The test metric is the variational bound on 8-bit test images:
    L_T + sum_{t>0} KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) + L_0, all T terms, with the
    reverse variance fixed to the posterior variance (clipped at t = 0) and a discretised
    Gaussian decoder L_0 (Ho et al. 2020, sec. 3.3); reported as elbo_nats and bits_per_dim.

    Args:
        image_shape: (C, H, W).
        optimizer: partial optimiser.
        num_steps: T, the diffusion steps, >= 1.
        schedule: "linear" or "cosine".
        prediction: "eps" or "v".
        base_channels, channel_mults, num_res_blocks, attention_levels, dropout: the U-Net.
        net, patch_size, dit_size: the noise predictor (genzoo/nets/denoiser.py): "unet" (the sizes above) or
            "dit" (Peebles & Xie 2023: p x p patches, a named size "cpu", "S" or "B").
        ema_decay: decay of the weight average used to sample and score, in [0, 1).
        sampler, sample_steps, eta: how `sample` draws by default.
        ode_likelihood: also score the test images by the exact likelihood of the probability-flow
            ODE of the DDPM's VP-SDE view (Song et al. 2021, sec. 4.3: 3.28 bits/dim against the
            bound's 3.70 on CIFAR-10), as ode_nll_nats and ode_bits_per_dim; linear schedule only.
        conditional: class-conditional with classifier-free guidance (Ho & Salimans 2022): the
            label is fed to the U-Net and dropped with probability `p_uncond` in training;
            `sample` steers with `guidance_scale` w (0: the plain conditional model).
        num_classes: classes of the data (the runner passes it when conditional).
        diffusion_shape: (C, H, W) the diffusion runs on, when not the images' (latent diffusion's
            latents); None: image_shape.
    Raises:
        ValueError: a bad schedule, prediction, sampler, step count, decay or image shape.
    """

    family = "ddpm"
    latent_space = "prior"
    clip_x0 = True  # the samplers clip their x0 predictions to the images' [-1, 1] (latent diffusion: to a bound of its own)

    def __init__(
        self,
        image_shape,
        optimizer,
        num_steps: int = 1000,
        schedule: str = "linear",
        prediction: str = "eps",
        base_channels: int = 64,
        channel_mults=(1, 2, 2),
        num_res_blocks: int = 2,
        attention_levels=(2,),
        dropout: float = 0.1,
        ema_decay: float = 0.9999,
        sampler: str = "ddim",
        sample_steps: int = 50,
        eta: float = 0.0,
        ode_likelihood: bool = True,
        conditional: bool = False,
        num_classes: int = 0,
        p_uncond: float = 0.1,
        guidance_scale: float = 2.0,
        net: str = "unet",
        patch_size: int = 2,
        dit_size: str = "cpu",
        diffusion_shape=None,
    ):
        super().__init__(image_shape, optimizer)
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction '{prediction}': choose one of {', '.join(PREDICTIONS)}")
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler '{sampler}': choose one of {', '.join(SAMPLERS)}")
        if sampler == "ddim" and not 1 <= sample_steps <= num_steps:
            raise ValueError(f"sample_steps must be in [1, num_steps={num_steps}], got {sample_steps}")
        if not 0 <= p_uncond < 1 or guidance_scale < 0:
            raise ValueError(f"p_uncond must be in [0, 1) and guidance_scale >= 0, got {p_uncond} and {guidance_scale}")
        self.save_hyperparameters(ignore=["optimizer"], logger=False)  # the optimiser is in config.yaml
        self.schedule = make_schedule(schedule, num_steps)
        self.prediction, self.sampler, self.sample_steps, self.eta = prediction, sampler, sample_steps, eta
        self.ode_likelihood = ode_likelihood and schedule == "linear"  # the cosine schedule has no linear-beta VP SDE here
        self._set_conditional(conditional, num_classes)
        self.p_uncond, self.guidance_scale = p_uncond, guidance_scale
        # what the diffusion runs on: the images, or a first stage's latents (latent diffusion, genzoo/models/ldm.py)
        self.diffusion_shape = tuple(diffusion_shape or image_shape)
        self.net = build_denoiser(net, self.diffusion_shape, self.num_classes, base_channels=base_channels, channel_mults=channel_mults,
                                  num_res_blocks=num_res_blocks, attention_levels=attention_levels, dropout=dropout,
                                  patch_size=patch_size, dit_size=dit_size)
        self.ema = ema_copy(self.net, ema_decay)

    def trainable_parameters(self):
        return self.net.parameters()

    def loss(self, x0: torch.Tensor, net=None, labels: torch.Tensor | None = None, drop: bool = False) -> torch.Tensor:
        """L_simple on a batch x0 (B, C, H, W) in [-1, 1]: MSE to eps or v at uniform t.

        labels (B,): the classes, for a conditional model; with `drop`, each is replaced by the
        "no label" token with probability p_uncond (classifier-free guidance training).
        """
        net = self.net if net is None else net
        if self.conditional and drop:
            labels = drop_labels(labels, self.p_uncond, self.num_classes)
        t = torch.randint(0, self.schedule.num_steps, (len(x0),), device=x0.device)
        eps = torch.randn_like(x0)
        x_t = q_sample(self.schedule, x0, t, eps)
        if self.prediction == "eps":
            target = eps
        else:  # v = sqrt(a) eps - sqrt(1 - a) x0 (Salimans & Ho 2022)
            sched = self.schedule
            target = extract(sched.sqrt_alphas_cumprod, t, x0.ndim) * eps - extract(sched.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * x0
        return F.mse_loss(self._eps_net(net, labels)(x_t, t), target)

    def _eps_net(self, net, labels):
        """net as the samplers call it, net(x_t, t), with the labels bound for a conditional model."""
        return (lambda x, t: net(x, t, labels)) if self.conditional else net

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch[0], labels=batch[1], drop=True)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch[0]))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        update_ema(self.ema, self.net)

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.loss(batch[0], net=self.ema.module, labels=batch[1]), prog_bar=True, batch_size=len(batch[0]), sync_dist=True)

    @torch.no_grad()
    def vlb_terms(self, x0: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The T + 1 terms of the variational bound per image, in nats: (B, T + 1).

        Column 0 is L_0 (decoder NLL), column t is L_t for t = 1..T-1, the last is L_T.
        Uses the EMA net and one draw of x_t per term; a conditional model bounds
        -log p(x | y) with the true labels and no guidance.
        """
        s, net, n = self.schedule, self._eps_net(self.ema.module, labels), len(x0)
        terms = []
        for step in range(s.num_steps):
            t = torch.full((n,), step, device=x0.device, dtype=torch.long)
            x_t = q_sample(s, x0, t, torch.randn_like(x0))
            x0_hat, _ = predict_x0_eps(net(x_t, t), x_t, t, s, self.prediction, clip_x0=False)
            mean = posterior_mean(s, x0_hat, x_t, t)
            logvar = extract(s.posterior_log_variance_clipped, t, x0.ndim)
            if step == 0:
                term = -discretized_gaussian_log_likelihood(x0, mean, 0.5 * logvar)
            else:
                true_mean = posterior_mean(s, x0, x_t, t)
                true_logvar = extract(s.posterior_variance, t, x0.ndim).log()
                term = normal_kl(true_mean, true_logvar, mean, logvar)
            terms.append(term.flatten(1).sum(1))
        a_T = s.alphas_cumprod[-1].item()
        zeros = torch.zeros_like(x0)
        prior = normal_kl(x0 * math.sqrt(a_T), zeros + math.log(1 - a_T), zeros, zeros)
        terms.append(prior.flatten(1).sum(1))
        return torch.stack(terms, dim=1)

    def vp_sde(self) -> VPSDE:
        """The VP SDE whose N-step discretisation is this DDPM's linear schedule: beta_min = T beta_1, beta_max = T beta_T.

        Raises ValueError for the cosine schedule (its betas are not linear in t).
        """
        if self.hparams.schedule != "linear":
            raise ValueError("the DDPM's VP-SDE view needs schedule=linear (the cosine schedule's betas are not linear in t)")
        betas, n = self.schedule.betas, self.schedule.num_steps
        return VPSDE(betas[0].item() * n, betas[-1].item() * n, n)

    def vp_score_fn(self, net, sde: VPSDE):
        """The score of the VP-SDE view at continuous t in (0, 1]: -eps(x, t (T - 1)) / std(t), the net called as
        Song et al.'s code calls a DDPM (continuous step labels t (T - 1)); a v-prediction is turned into eps first."""

        def eps(x, t):
            out = net(x, t * (sde.N - 1))
            if self.prediction == "eps":
                return out
            mean_coeff, std = (_bcast(v, x) for v in (sde.log_mean_coeff(t).exp(), sde.marginal_prob(x, t)[1]))
            return mean_coeff * out + std * x  # eps = sqrt(a) v + sqrt(1 - a) x_t

        return score_from_eps(eps, sde)

    def ode_nll_nats(self, x0: torch.Tensor, labels: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """-log P of 8-bit images x0 (B, C, H, W) in [-1, 1] in nats, (B,), by the probability-flow ODE of the VP-SDE view.

        Uniform dequantization, one Hutchinson probe, RK45 at rtol = atol = 1e-5 from t = 1e-5
        (genzoo.diffusion.probability_flow.ode_nll_nats): an unbiased estimate of an upper bound on
        -log P. EMA net; a conditional model with the true labels and no guidance. Needs autograd
        (call it outside torch.inference_mode). Raises ValueError for the cosine schedule.
        """
        sde, net = self.vp_sde(), self.ema.module.eval()
        if self.conditional:
            net = Guided(net, labels, 0.0)
        nll, _ = ode_nll_nats(self.vp_score_fn(net, sde), sde, x0, generator, probes=1, eps=1e-5, rtol=1e-5, atol=1e-5)
        return nll.to(x0.device, torch.float32)

    def test_step(self, batch, batch_idx):
        x0 = batch[0]
        nll = self.vlb_terms(x0, batch[1]).sum(1)
        logs = {"elbo_nats": -nll.mean(), "bits_per_dim": bits_per_dim(nll.mean(), self.num_dims)}
        if self.ode_likelihood:
            generator = torch.Generator().manual_seed(batch_idx)  # dequantization noise and probes: the same for every run
            with torch.inference_mode(False), torch.enable_grad():
                ode = self.ode_nll_nats(x0.clone(), batch[1].clone() if self.conditional else None, generator)
            logs |= {"ode_nll_nats": ode.mean(), "ode_bits_per_dim": bits_per_dim(ode.mean(), self.num_dims)}
        self.log_dict(logs, batch_size=len(x0), sync_dist=True)

    @torch.no_grad()
    def sample(self, n: int, generator=None, sampler: str | None = None, steps: int | None = None,
               labels: torch.Tensor | None = None, guidance_scale: float | None = None, eta: float | None = None) -> torch.Tensor:
        """n images (n, C, H, W) in [-1, 1] from the EMA net.

        sampler: "ddim" (default, `steps` net evaluations with noise scale `eta`; None takes
        the config's steps and eta) or "ancestral" (all T steps); None takes the config's
        choice. A conditional model draws image i of class labels[i] (default: i mod
        num_classes, balanced) with classifier-free guidance scale `guidance_scale`
        (default: the config's; 0 = no guidance).
        Raises ValueError for labels on an unconditional model, or of the wrong shape or range.
        """
        sampler = sampler or self.sampler
        net, shape = self._sampling_net(self.sample_labels(n, labels), guidance_scale), (n, *self.diffusion_shape)
        if sampler == "ancestral":
            return ancestral_sample(net, self.schedule, shape, generator, self.prediction, self.clip_x0)
        if sampler == "ddim":
            return ddim_sample(net, self.schedule, shape, steps or self.sample_steps, self.eta if eta is None else eta, generator, self.prediction,
                               self.clip_x0)
        raise ValueError(f"unknown sampler '{sampler}': choose one of {', '.join(SAMPLERS)}")

    def _sampling_net(self, labels: torch.Tensor | None, guidance_scale: float | None):
        """The EMA net in eval mode as the samplers call it; Guided with the labels when conditional."""
        if guidance_scale is not None and not self.conditional:
            raise ValueError("guidance_scale needs labels, which need a conditional model: train with model.conditional=true")
        net = self.ema.module.eval()
        return net if labels is None else Guided(net, labels, self.guidance_scale if guidance_scale is None else guidance_scale)

    def prior_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws x_T ~ N(0, I), (n, C, H, W): DDIM's latent code (Song et al. 2021, sec. 5.3)."""
        return self.randn(n, *self.diffusion_shape, generator=generator)

    @torch.no_grad()
    def decode_latents(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic DDIM (eta = 0, the configured sample_steps) from x_T = z (B, C, H, W): images in [-1, 1].

        A conditional model decodes for labels (B,) with the configured guidance scale.
        """
        net = self._sampling_net(self.sample_labels(len(z), labels), None)
        return ddim_sample(net, self.schedule, tuple(z.shape), self.sample_steps, 0.0, None, self.prediction, self.clip_x0, x_T=z)

    def sampler_options(self) -> dict[str, dict]:
        """DDIM at the configured steps with eta 0 (deterministic, Song et al. 2021) or 1 (ancestral-like noise): same NFE."""
        if self.sampler != "ddim":
            return {}
        return {f"ddim-{self.sample_steps} eta=0": {"eta": 0.0}, f"ddim-{self.sample_steps} eta=1": {"eta": 1.0}}

    def reference_samplers(self) -> dict[str, dict]:
        """Ancestral sampling over all T steps (Ho et al. 2020), the sampler the training objective is the bound of."""
        return {f"ancestral-{self.schedule.num_steps}": {"sampler": "ancestral"}}

    @property
    def nfe_per_sample(self) -> int:
        """U-Net evaluations per image with the configured sampler: DDIM steps, or T for ancestral (x2 with guidance)."""
        steps = self.sample_steps if self.sampler == "ddim" else self.schedule.num_steps
        return steps * (2 if self.conditional and self.guidance_scale > 0 else 1)

    def protocol(self) -> dict:
        return {
            "elbo": f"variational bound with all T={self.schedule.num_steps} terms per test image (n_test images), "
            "EMA net, reverse variance = posterior variance, discretised Gaussian L_0, one x_t draw per term",
            "bits_per_dim": f"-elbo_nats / ({self.num_dims} * ln 2)",
            "sampler": f"{self.sampler}" + (f", {self.sample_steps} steps, eta={self.eta}" if self.sampler == "ddim" else f", {self.schedule.num_steps} steps")
            + (f"; class-conditional, balanced labels, classifier-free guidance w={self.guidance_scale}" if self.conditional else ""),
            **({"ode_likelihood": "exact likelihood of the probability-flow ODE of the VP-SDE view (beta 0.1 to 20 for the linear schedule), "
                "RK45 rtol=atol=1e-5 from t=1e-5, one Rademacher Hutchinson probe per image (unbiased estimate), uniformly dequantized "
                "8-bit test images (an upper bound on -log P), EMA net; ode_bits_per_dim = ode_nll_nats / (D ln 2)"} if self.ode_likelihood else {}),
            **({"conditional": f"label dropped with p={self.p_uncond} in training; the bound is -log p(x | y) with true labels, w=0"}
               if self.conditional else {}),
        }
