"""Energy-based model trained by contrastive divergence with short-run Langevin dynamics (Du & Mordatch 2019)."""

from functools import partial

import torch
import torch.nn.functional as F

from genzoo.distributions import LEVEL_WIDTH, bits_per_dim, dequantize
from genzoo.energy.ais import ais_log_z
from genzoo.energy.langevin import langevin_chain
from genzoo.energy.replay_buffer import ReplayBuffer, uniform_images
from genzoo.models.base import GenerativeModel
from genzoo.nets.energy import EnergyNet

SAMPLERS = ("fresh", "buffer")
BOX_HALF_WIDTH = 1 + LEVEL_WIDTH / 2  # [-1, 1] widened by half an 8-bit level: the union of the dequantisation bins


class EBM(GenerativeModel):
    """An energy net E(x) defining p(x) = exp(-E(x)) / Z on the image box, trained by contrastive divergence.

    Training (Hinton 2002; Du & Mordatch 2019, "IGEBM"): the gradient of -log p(x) is
    ∇E(x) - E_p[∇E(x')], so each step lowers the energy of (slightly noised) data and raises
    that of samples x' drawn by `langevin_steps` steps of Langevin dynamics from the model:

        loss = mean E(x+) - mean E(x-) + energy_l2 * mean(E(x+)^2 + E(x-)^2),

    the last term (IGEBM's) keeping energies near zero. The chains start from a replay buffer
    (persistent chains, `buffer_reinit` of them from fresh uniform noise), or with
    buffer_size 0 always from noise (Nijkamp et al. 2019's non-persistent short-run chains).
    The class-conditional form is JEM (Grathwohl et al. 2020): the net's K outputs are class
    logits f(x), E(x, y) = -f(x)[y], E(x) = -logsumexp_y f(x)[y]; training adds the
    cross-entropy of f(x+) to the contrastive loss on E(x), and conditional samples follow E(x, y).

    Sampling (`sample`): fresh chains of `sample_steps` Langevin steps from uniform noise (the
    honest protocol; NFE = sample_steps energy gradients per image). `sample(sampler="buffer")`
    returns replay-buffer images instead: chains that ran across all of training, which
    papers often score and which flatter FID; the equal-time and fast tiers score them
    beside the fresh chains under their own name (`reference_samplers`).

    Test metric: an estimate of -log P of the 8-bit test images. E is unnormalised; log Z of
    exp(-E) on the box [-a, a]^D, a = 1 + 1/255 (the union of the images' dequantisation
    bins), is estimated by annealed importance sampling (genzoo/energy/ais.py) from the uniform
    density on the box, and nll = E(x + u) + log Z_hat + D log 127.5 with u the uniform
    dequantisation noise (x's level width 1/127.5): an estimate, leaning low (log Z_hat
    underestimates log Z on average), logged as nll_nats and bits_per_dim with ais_log_z and
    the spread of its independent groups (ais_log_z_group_std), ais_ess and ais_acceptance.

    Args:
        image_shape: (C, H, W).
        optimizer: partial optimiser.
        channels, spectral_norm: the energy net (genzoo/nets/energy.py).
        langevin_steps, step_size, noise_scale, langevin_grad_clip: the training chains
            (genzoo.energy.langevin.langevin_chain; grad_clip None: off).
        buffer_size: replay buffer images (0: no buffer, chains from noise); buffer_reinit:
            the share of chains started from fresh noise, in [0, 1].
        energy_l2: weight of the energy-magnitude penalty (>= 0).
        data_noise: std of the Gaussian noise added to data images (>= 0).
        param_grad_clip: clip the parameters' gradient norm to this (None: off).
        max_energy: training has diverged when any |E| of a batch exceeds this (DivergenceMonitor).
        sampler: "fresh" or "buffer", what `sample` draws by default; sample_steps: fresh chains' steps.
        ais_chains, ais_steps, ais_step_size, ais_groups: the log Z estimate (genzoo.energy.ais.ais_log_z).
        conditional: JEM; num_classes: K (the runner passes the data's).
    Raises:
        ValueError: an unknown sampler, sampler "buffer" without a buffer, negative or zero
        steps and sizes, buffer_reinit outside [0, 1], negative energy_l2 or data_noise.
    """

    family = "ebm"
    checkpoint_monitor = None  # no held-out loss: the contrastive loss needs the model's own samples

    def __init__(
        self,
        image_shape,
        optimizer,
        channels=(16, 32, 64, 64),
        spectral_norm: bool = False,
        langevin_steps: int = 60,
        step_size: float = 10.0,
        noise_scale: float = 0.005,
        langevin_grad_clip: float | None = 0.03,
        buffer_size: int = 8192,
        buffer_reinit: float = 0.05,
        energy_l2: float = 0.1,
        data_noise: float = 0.005,
        param_grad_clip: float | None = 0.1,
        max_energy: float = 1000.0,
        sampler: str = "fresh",
        sample_steps: int = 256,
        ais_chains: int = 64,
        ais_steps: int = 500,
        ais_step_size: float = 1e-4,
        ais_groups: int = 4,
        conditional: bool = False,
        num_classes: int = 0,
    ):
        super().__init__(image_shape, optimizer)
        checks = [
            (sampler in SAMPLERS, f"unknown sampler '{sampler}': choose one of {', '.join(SAMPLERS)}"),
            (sampler != "buffer" or buffer_size > 0, "sampler=buffer draws from the replay buffer: set model.buffer_size > 0"),
            (langevin_steps >= 1 and sample_steps >= 1, f"langevin_steps and sample_steps must be >= 1, got {langevin_steps} and {sample_steps}"),
            (step_size > 0 and noise_scale >= 0, f"step_size must be > 0 and noise_scale >= 0, got {step_size} and {noise_scale}"),
            (buffer_size >= 0 and 0 <= buffer_reinit <= 1, f"buffer_size must be >= 0 and buffer_reinit in [0, 1], got {buffer_size} and {buffer_reinit}"),
            (energy_l2 >= 0 and data_noise >= 0, f"energy_l2 and data_noise must be >= 0, got {energy_l2} and {data_noise}"),
            (max_energy > 0, f"max_energy must be > 0, got {max_energy}"),
            (ais_groups >= 2 and ais_chains >= ais_groups and ais_steps >= 1 and ais_step_size > 0,
             f"AIS needs ais_groups >= 2 (their spread is reported), ais_chains >= ais_groups, ais_steps >= 1 and ais_step_size > 0; "
             f"got {ais_groups}, {ais_chains}, {ais_steps}, {ais_step_size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self._set_conditional(conditional, num_classes)
        self.net = EnergyNet(image_shape, self.num_classes or 1, tuple(channels), spectral_norm)
        self.buffer = ReplayBuffer(buffer_size, image_shape, buffer_reinit) if buffer_size else None
        self.chain = {"step_size": step_size, "noise_scale": noise_scale, "grad_clip": langevin_grad_clip}
        self.langevin_steps, self.sampler, self.sample_steps = langevin_steps, sampler, sample_steps
        self.energy_l2, self.data_noise, self.param_grad_clip, self.max_energy = energy_l2, data_noise, param_grad_clip, max_energy
        self.ais = {"chains": ais_chains, "steps": ais_steps, "step_size": ais_step_size, "groups": ais_groups}
        self._energy_abs_max = 0.0  # the last training batch's largest |E|
        self._log_z = None  # the test epoch's AIS estimate

    # ---- the energy ---------------------------------------------------------------------------

    def energy(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """E(x) (B,) in nats of images x (B, C, H, W); E(x, y) = -f(x)[y] for a conditional model given labels (B,)."""
        return self._energy(self.net(x), labels)

    def _energy(self, out: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Energies (B,) from the net's outputs (B, 1 or K), as `energy` reads them."""
        if not self.conditional:
            return out[:, 0]
        if labels is None:
            return -torch.logsumexp(out, 1)
        return -out.gather(1, labels.view(-1, 1))[:, 0]

    def negatives(self, n: int) -> torch.Tensor:
        """n training chains' ends (n, C, H, W): `langevin_steps` steps on E(x) from the buffer (or noise); updates the buffer."""
        if self.buffer is not None:
            x, slots = self.buffer.draw(n)
        else:
            x = uniform_images(n, self.image_shape).to(self.device)
        x, _, _ = langevin_chain(self.energy, x, self.langevin_steps, **self.chain)
        if self.buffer is not None:
            self.buffer.push(slots, x)
        return x

    # ---- training -----------------------------------------------------------------------------

    def loss(self, x_pos: torch.Tensor, x_neg: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """The contrastive-divergence loss of data x_pos and samples x_neg (B, C, H, W); (loss, {name: value} to log).

        labels (B,): x_pos's classes, for JEM's cross-entropy term (conditional models only).
        """
        out_pos = self.net(x_pos)
        e_pos = self._energy(out_pos)
        e_neg = self.energy(x_neg)
        cd = e_pos.mean() - e_neg.mean()
        loss = cd + self.energy_l2 * (e_pos**2 + e_neg**2).mean()
        logs = {"cd": cd.detach(), "energy_data": e_pos.mean().detach(), "energy_samples": e_neg.mean().detach(),
                "energy_abs_max": torch.cat([e_pos, e_neg]).abs().max().detach()}
        if self.conditional:
            ce = F.cross_entropy(out_pos, labels)
            loss = loss + ce
            logs["cross_entropy"] = ce.detach()
        return loss, logs

    def training_step(self, batch, batch_idx):
        x, labels = batch
        x_pos = (x + self.data_noise * torch.randn_like(x)).clamp(-1, 1)
        loss, logs = self.loss(x_pos, self.negatives(len(x)), labels)
        self._energy_abs_max = float(logs["energy_abs_max"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(x))
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, batch_size=len(x))
        return loss

    def divergence(self) -> tuple[str, float] | None:
        """("train/energy_abs_max", value) once a batch's largest |E| exceeds max_energy: energies have exploded."""
        return ("train/energy_abs_max", self._energy_abs_max) if self._energy_abs_max > self.max_energy else None

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        if self.param_grad_clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.param_grad_clip, gradient_clip_algorithm="norm")

    def validation_step(self, batch, batch_idx):
        noise = uniform_images(len(batch[0]), self.image_shape, torch.Generator().manual_seed(batch_idx)).to(self.device)
        e_data, e_noise = self.energy(batch[0]).mean(), self.energy(noise).mean()
        self.log_dict({"val/energy_data": e_data, "val/energy_noise": e_noise, "val/energy_gap": e_noise - e_data},
                      batch_size=len(batch[0]), sync_dist=True)

    # ---- likelihood (an estimate) -------------------------------------------------------------

    def estimate_log_z(self, generator: torch.Generator | None = None) -> dict:
        """log Z of exp(-E(x)) on the box [-a, a]^D by annealed importance sampling: genzoo.energy.ais.ais_log_z's dict."""
        return ais_log_z(self.energy, self.image_shape, half_width=BOX_HALF_WIDTH, generator=generator, device=self.device, **self.ais)

    def nll_nats(self, x: torch.Tensor, log_z: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """The estimate of -log P (B,) in nats of 8-bit images x (B, C, H, W) in [-1, 1] given an estimate of log Z:
        E(x + u) + log Z + D log 127.5, u uniform dequantisation noise within each level (drawn from `generator` on the CPU)."""
        moved, bin_nats = dequantize(x, generator)
        return self.energy(moved) + log_z + bin_nats

    def on_test_epoch_start(self):
        self._log_z = self.estimate_log_z(torch.Generator().manual_seed(0))  # every rank: the same chains, the same estimate

    def test_step(self, batch, batch_idx):
        nll = self.nll_nats(batch[0], self._log_z["log_z"], torch.Generator().manual_seed(batch_idx))
        ais = {f"ais_{k}": float(self._log_z[k]) for k in ("log_z", "log_z_group_std", "ess", "acceptance")}
        self.log_dict({"nll_nats": nll.mean(), "bits_per_dim": bits_per_dim(nll.mean(), self.num_dims), **ais}, batch_size=len(nll), sync_dist=True)

    # ---- sampling -----------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, n: int, generator=None, labels=None, sampler: str | None = None, steps: int | None = None) -> torch.Tensor:
        """n images (n, C, H, W) in [-1, 1].

        sampler "fresh" (default: the config's): chains of `steps` (default sample_steps)
        Langevin steps from uniform noise, on E(x, y) with the labels (balanced by default)
        for a conditional model. "buffer": n replay-buffer images (chosen by `generator`; labels
        play no part: the buffer's chains ran on E(x)).
        Raises ValueError for an unknown sampler, "buffer" without a buffer, or labels given
        to an unconditional model.
        """
        sampler = sampler or self.sampler
        labels = self.sample_labels(n, labels)
        if sampler == "buffer":
            if self.buffer is None:
                raise ValueError("sampler=buffer draws from the replay buffer, and this model has none (model.buffer_size=0)")
            x, _ = self.buffer.draw(n, generator, reinit_prob=0.0)
            return x.clamp(-1, 1)
        if sampler != "fresh":
            raise ValueError(f"unknown sampler '{sampler}': choose one of {', '.join(SAMPLERS)}")
        x = uniform_images(n, self.image_shape, generator).to(self.device)
        x, _, _ = langevin_chain(partial(self.energy, labels=labels), x, steps or self.sample_steps, generator=generator, **self.chain)
        return x

    def reference_samplers(self) -> dict[str, dict]:
        """The replay buffer's images, scored beside the fresh chains (a flattering protocol: see the class docstring)."""
        return {"replay buffer": {"sampler": "buffer"}} if self.buffer is not None and self.sampler != "buffer" else {}

    @property
    def nfe_per_sample(self) -> int | None:
        """Energy-gradient evaluations per image: sample_steps for fresh chains; None for buffer images (their chains' length is not kept)."""
        return self.sample_steps if self.sampler == "fresh" else None

    def protocol(self) -> dict:
        chain = "step size {step_size:g}, noise std {noise_scale:g}, gradient clamped to ±{grad_clip}".format(**self.chain)
        start = (f"a replay buffer of {len(self.buffer)} images, {self.buffer.reinit_prob:g} of chains from fresh uniform noise"
                 if self.buffer is not None else "uniform noise every step (non-persistent short-run chains)")
        return {
            "training": f"contrastive divergence, {self.langevin_steps} Langevin steps per batch ({chain}) from {start}; "
            f"data noise std {self.data_noise:g}, energy L2 weight {self.energy_l2:g}, parameter gradient norm clipped to {self.param_grad_clip}"
            + ("; JEM: cross-entropy of the logits added" if self.conditional else ""),
            "likelihood": f"an estimate: E(x + u) + log Z_hat + D log 127.5 at uniformly dequantized test images; log Z_hat by annealed "
            f"importance sampling from the uniform density on [-{BOX_HALF_WIDTH:.4f}, {BOX_HALF_WIDTH:.4f}]^D, {self.ais['chains']} chains "
            f"in {self.ais['groups']} groups (spread: the groups' std), {self.ais['steps']} linear temperatures, one MALA step each "
            f"(step size {self.ais['step_size']:g}), seed 0; log Z_hat underestimates log Z on average, so the nll leans low",
            "bits_per_dim": f"nll_nats / ({self.num_dims} * ln 2)",
            "temperature": f"the likelihood is that of p ∝ exp(-E), temperature 1, as the model is defined; the chains run at an effective "
            f"temperature noise_scale^2 / (2 step_size) = {self.chain['noise_scale'] ** 2 / (2 * self.chain['step_size']):.3g}, so their samples "
            "follow a far colder density than the one whose likelihood is reported (equal only with noise_scale = sqrt(2 step_size))",
            "sampler": (f"fresh Langevin chains from uniform noise, {self.sample_steps} steps ({chain})" if self.sampler == "fresh"
                        else "replay-buffer images (persistent chains of the whole training run)")
            + ("; class-conditional on E(x, y) = -f(x)[y], balanced labels" if self.conditional else ""),
        }
