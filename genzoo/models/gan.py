"""Generative adversarial network (Goodfellow et al. 2014) with DCGAN nets (Radford et al. 2016)."""

import math
from functools import partial

import torch
import torch.nn.functional as F

from genzoo.models.base import GenerativeModel
from genzoo.models.ema import ema_copy, standing_statistics, update_ema
from genzoo.models.gan_losses import (
    GAN_LOSSES,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    mode_seeking_labels,
    mode_seeking_ratio,
)
from genzoo.nets.dcgan import DCGANDiscriminator, DCGANGenerator

# Adam betas and discriminator steps per generator step that each loss's paper trains with:
# DCGAN (Radford et al. 2016) for ns and hinge, Gulrajani et al. 2017 for wgan-gp.
DEFAULT_BETAS = {"ns": (0.5, 0.999), "hinge": (0.5, 0.999), "wgan-gp": (0.0, 0.9)}
DEFAULT_N_CRITIC = {"ns": 1, "hinge": 1, "wgan-gp": 5}
MODE_SEEKING_EPS = 1e-5  # Mao et al.'s eps in 1 / (ratio + eps)
EMA_STAT_BATCHES, EMA_STAT_BATCH = 16, 128  # draws that give the EMA generator its BatchNorm statistics (~0.3 s on a CPU)


class GAN(GenerativeModel):
    """GAN: a DCGAN generator G(z), z ~ N(0, I), against a discriminator (critic) D.

    Manual optimisation: each training step updates D once on the batch, and G once every
    `n_critic` steps, with separate Adam optimisers. The critic of wgan-gp uses per-sample
    (layer) normalisation, since the gradient penalty is per image; ns and hinge use
    BatchNorm as DCGAN. With `ema_decay` set, an EMA copy of G draws the samples, with
    BatchNorm statistics re-estimated on its own activations before it samples (standing
    statistics, Brock et al. 2019; the live G's would describe another net).

    Logged per step: train/d_loss, train/g_loss, train/d_real and train/d_fake (mean
    D(x) and D(G(z)): probabilities for ns, raw critic values otherwise), train/gp
    (wgan-gp), and the global L2 gradient norms train/d_grad_norm, train/g_grad_norm; with
    the auxiliary classifier, train/d_class_loss and train/d_class_accuracy (D's class head
    on the real batch) and train/g_class_loss (the head on G's images, against their labels);
    with the twin classifier, train/d_twin_class_loss (its loss on G's images) and
    train/g_twin_class_loss; with the discriminative classifier, the same keys over its 2K
    classes (class: named as real class y; twin: G's images named as generated class y);
    with the mode-seeking term, train/g_mode_seeking_ratio.
    A GAN has no likelihood: validation and test log d_real and d_fake on held-out real
    images against as many samples (a large gap means D has overfit).

    The arguments' defaults here are the forms from before each option existed (DCGAN's G,
    no auxiliary classifier, ...), so a run's config.yaml written before an option was added
    builds the model it trained (`genzoo.load_run`); today's defaults are those of
    genzoo/conf/model/gan.yaml, which a run always writes out in full.

    Args:
        image_shape: (C, H, W), square, side 28 or 32 (any even side above 4).
        optimizer: partial optimiser that takes `betas` (Adam, AdamW); one per net.
        latent_dim: size of z, > 0.
        loss: "ns" (non-saturating), "hinge" or "wgan-gp".
        base_channels: width of the DCGAN nets.
        n_critic: discriminator steps per generator step; None takes the loss's default.
        gp_weight: lambda of the gradient penalty (wgan-gp only), >= 0.
        betas: Adam betas of both optimisers; None takes the loss's default.
        ema_decay: None (off) or the decay in [0, 1) of the generator's EMA.
        d_lr: the discriminator's learning rate, > 0, or None for the optimiser's own (both
            nets alike). A D faster than G is the two time-scale update rule (TTUR, Heusel
            et al. 2017), as SAGAN (Zhang et al. 2019) trains a spectrally normalised
            projection D against a conditional-BatchNorm G: D 4e-4, G 1e-4.
        conditional: a class-conditional GAN: G(z, y) reads the label (conditional_bn), D is
            a projection discriminator (Miyato & Koyama 2018); fakes in training take the real
            batch's labels, so both see the data's class frequencies. num_classes: K (the
            runner passes the data's).
        spectral_norm: spectral normalisation of every discriminator layer, which then has
            no BatchNorm/LayerNorm (Miyato et al. 2018); None: on for a conditional GAN (as
            Miyato & Koyama pair it with the projection discriminator), off otherwise.
        conditional_bn: a conditional generator's label enters through per-class BatchNorm
            scales and shifts (Miyato & Koyama 2018) rather than an embedding concatenated to
            z (Mirza & Osindero 2014); None: on for a conditional GAN.
        class_loss_weight: None (off) or w > 0: the auxiliary classifier of AC-GAN (Odena et
            al. 2017). D gets a class head and adds w * cross-entropy of the real images'
            labels to its loss; G adds w * cross-entropy of its images' labels under that
            head. D's head learns from real images only, so it judges a fake's class as the real
            data's classes look (Odena et al. train it on G's images too, a term that can
            reward fakes that are merely easy to classify: Gong et al. 2019, TAC-GAN). Needs a
            conditional model.
        generator_class_loss: with class_loss_weight, G's loss adds the auxiliary classifier's
            term (AC-GAN; default). False: the class head trains D alone, a class-separating
            objective for the features that D's projection term also reads, and G meets the
            label only through the projection term, without the push towards images easy to
            classify (low conditional entropy H(y | G(z, y)), Gong et al. 2019) that the term in
            G's loss brings. Needs class_loss_weight and projection, and no twin_classifier.
        projection: a conditional D's projection term (default true); false leaves D's
            real/fake logit unconditional, as AC-GAN's D (Odena et al. 2017), so the
            adversarial game is the unconditional GAN's and the class reaches G through the
            auxiliary classifier alone. Needs class_loss_weight when false.
        twin_classifier: TAC-GAN's twin auxiliary classifier (Gong et al. 2019), with
            class_loss_weight w: a second class head on D learns the labels of G's images
            (D adds w * its cross-entropy on them) and G subtracts w * that cross-entropy from
            its loss. AC-GAN's G minimises the conditional entropy H(y | G(z, y)) beside the
            adversarial loss, which drives it towards images easy to classify and away from
            the classes' overlaps; the twin term cancels that bias, so the class-conditionals
            G learns can match the data's. Needs class_loss_weight.
        discriminative_classifier: ADC-GAN's auxiliary discriminative classifier (Hou et al.
            2022), with class_loss_weight w: the class head and a second head for G's images
            share one softmax over 2K classes (real image of class k, generated image of class
            k). D adds w * (its cross-entropy naming real images' labels + naming G's images'
            labels as generated); G adds w * (cross-entropy of its images as real class y -
            that as generated class y), which is -w * (real-class logit - generated-class
            logit): the log-ratio of data to model joint densities at the optimal classifier.
            Unlike AC-GAN's term it has no pull to images easy to classify, and unlike TAC's
            twin the two heads are told apart on every image. Needs class_loss_weight, and
            not twin_classifier (it uses the same second head). None: on for a conditional
            GAN whose auxiliary classifier is in G's loss without a twin (the conditional
            default since it met the recall target, docs/guide/gan.md); the constructor's
            default is off, which is how a run recorded before the option loads.
        minibatch_std_group: None (off) or a group size >= 2: D's logit head also reads the
            minibatch standard deviation of its last features over groups of that many
            images (Karras et al. 2018, who use 4), so a batch of look-alike fakes is told
            from a batch of real images: a penalty on collapse that needs no extra loss.
        minibatch_std_by_label: a conditional D groups that statistic by label instead (each
            group the batch's images of one class; fakes take the real batch's labels, so
            both batches have the same groups): the spread within classes, where a
            conditional G collapses. Needs conditional and minibatch_std_group.
        mode_seeking_weight: None (off) or w > 0: MSGAN's mode-seeking term (Mao et al. 2019).
            G's batch is drawn in pairs (the same label, two codes) and G adds
            w / (mean |G(z_a) - G(z_b)| / mean |z_a - z_b| + 1e-5) to its loss, so two codes
            drawing one image cost most: a remedy for the within-class collapse of
            conditional GANs (it works unconditionally too).
        self_modulation: every BatchNorm of G takes scales and shifts that also depend on its
            input code through a one-hidden-layer MLP of 32 units (Chen et al. 2019, "On self
            modulation for generative adversarial networks"; with conditional BatchNorm, the
            per-class table plus that z-dependent part, as BigGAN feeds z to every block,
            Brock et al. 2019). In the DCGAN G the code enters only the first layer; here it
            reaches every layer, which gives the code more say in what a class's image looks
            like. Conditional or not; None is off.
        conditioning_transition: None (off) or [start, end], epochs of training (0 <= start
            <= end; fractions count batches): the transition from unconditional to conditional
            training of Shahbazi et al. 2022 ("Collapse by conditioning"), against the
            within-class collapse a conditional GAN meets where each class has little data or
            training is short. The conditioning that reaches G is scaled by
            lambda = clip((epoch - start) / (end - start), 0, 1) (a step at start when
            start == end): D's projection term and G's auxiliary-classifier (and twin) terms,
            so the game is the unconditional GAN's before start and the conditional one's
            after end. D's class head keeps learning the real images' labels throughout, and
            G's conditional BatchNorm is kept (its per-class scales see the unconditional game
            first; the paper scales StyleGAN2's class embedding instead). Sampling is
            unaffected. Needs conditional.
        lr_decay: both nets' learning rates decay linearly from their initial values to 0
            over the training batches (lr_t = lr * (1 - t / T), T =
            trainer.estimated_stepping_batches), as Miyato & Koyama 2018 train the
            projection discriminator against a conditional-BatchNorm G: the last
            updates take small steps, an annealing of G's late oscillation that an EMA of G
            gets by averaging instead. Needs a training length known in batches
            (budget.max_epochs or budget.max_steps); budget=equal_time stops on the clock.
    Raises:
        ValueError: an unknown loss, latent_dim or n_critic < 1, gp_weight < 0, a bad decay,
        d_lr <= 0, class_loss_weight <= 0 or without conditional, twin_classifier or projection=false without
        class_loss_weight, generator_class_loss=false without class_loss_weight or projection or with twin_classifier,
        discriminative_classifier without class_loss_weight or with twin_classifier or generator_class_loss=false,
        mode_seeking_weight <= 0, minibatch_std_group < 2, a conditioning_transition that is not
        [start, end] with 0 <= start <= end or without conditional, an image shape the nets
        cannot take, or a conditional model with num_classes < 2; when training starts,
        lr_decay without a finite number of training batches.
    """

    family = "gan"
    ddp_find_unused_parameters = True  # the discriminator's update leaves the generator without gradients
    latent_space = "prior"
    checkpoint_monitor = None  # no held-out loss tells a better generator; keep the last weights

    def __init__(
        self,
        image_shape,
        optimizer,
        latent_dim: int = 64,
        loss: str = "ns",
        base_channels: int = 64,
        n_critic: int | None = None,
        gp_weight: float = 10.0,
        betas=None,
        ema_decay: float | None = None,
        conditional: bool = False,
        num_classes: int = 0,
        spectral_norm: bool | None = None,
        conditional_bn: bool | None = None,
        d_lr: float | None = None,
        class_loss_weight: float | None = None,
        mode_seeking_weight: float | None = None,
        twin_classifier: bool = False,
        minibatch_std_group: int | None = None,
        projection: bool = True,
        minibatch_std_by_label: bool = False,
        conditioning_transition: list[float] | None = None,
        self_modulation: bool | None = False,
        generator_class_loss: bool = True,
        discriminative_classifier: bool | None = False,
        lr_decay: bool = False,
    ):
        super().__init__(image_shape, optimizer)
        if loss not in GAN_LOSSES:
            raise ValueError(f"unknown GAN loss '{loss}': choose one of {', '.join(GAN_LOSSES)}")
        resolved = self.resolved_args({"loss": loss, "n_critic": n_critic, "betas": betas, "conditional": conditional,
                                       "spectral_norm": spectral_norm, "conditional_bn": conditional_bn, "self_modulation": self_modulation,
                                       "class_loss_weight": class_loss_weight, "twin_classifier": twin_classifier,
                                       "generator_class_loss": generator_class_loss, "discriminative_classifier": discriminative_classifier})
        discriminative_classifier = resolved["discriminative_classifier"]
        n_critic = resolved["n_critic"]
        if latent_dim < 1 or n_critic < 1:
            raise ValueError(f"latent_dim and n_critic must be positive, got {latent_dim} and {n_critic}")
        if gp_weight < 0:
            raise ValueError(f"gp_weight must be >= 0, got {gp_weight}")
        if d_lr is not None and not d_lr > 0:
            raise ValueError(f"d_lr (the discriminator's learning rate) must be positive or null, got {d_lr}")
        if class_loss_weight is not None and not (class_loss_weight > 0 and conditional):
            raise ValueError(f"class_loss_weight (the auxiliary classifier's) must be positive and needs conditional=true, "
                             f"got {class_loss_weight} with conditional={conditional}")
        if conditional and not projection and class_loss_weight is None:
            raise ValueError("projection=false leaves the discriminator unconditional: set class_loss_weight (AC-GAN) so the label reaches G")
        if twin_classifier and class_loss_weight is None:
            raise ValueError("twin_classifier (TAC-GAN) needs the auxiliary classifier: set class_loss_weight too")
        if not generator_class_loss and (class_loss_weight is None or not projection or twin_classifier):
            raise ValueError("generator_class_loss=false trains the auxiliary classifier for D alone: it needs class_loss_weight and "
                             "projection=true (the label's only way to G), and no twin_classifier (a term of G's loss)")
        if discriminative_classifier and not _discriminative_classifier_fits(class_loss_weight, generator_class_loss, twin_classifier):
            raise ValueError("discriminative_classifier (ADC-GAN) needs class_loss_weight and generator_class_loss=true, and no "
                             "twin_classifier (both use D's second class head): set one of the two")
        if mode_seeking_weight is not None and not mode_seeking_weight > 0:
            raise ValueError(f"mode_seeking_weight must be positive or null, got {mode_seeking_weight}")
        if conditioning_transition is not None:
            span = list(conditioning_transition)
            if not (conditional and len(span) == 2 and 0 <= span[0] <= span[1]):
                raise ValueError(f"conditioning_transition must be [start, end] in epochs with 0 <= start <= end, on a conditional "
                                 f"model, got {conditioning_transition} with conditional={conditional}: e.g. [0, 5]")
            conditioning_transition = [float(v) for v in span]
        self.conditioning_transition, self.lr_decay = conditioning_transition, bool(lr_decay)
        self.save_hyperparameters(ignore=["optimizer"], logger=False)  # the optimiser is in config.yaml
        self.automatic_optimization = False
        self.latent_dim, self.loss_name, self.n_critic, self.gp_weight = latent_dim, loss, n_critic, gp_weight
        self.betas = tuple(resolved["betas"])
        self.d_lr, self.class_loss_weight, self.mode_seeking_weight = d_lr, class_loss_weight, mode_seeking_weight
        self.generator_class_loss, self.discriminative_classifier = generator_class_loss, discriminative_classifier
        self._set_conditional(conditional, num_classes)
        self.spectral_norm, self.conditional_bn, self.self_modulation = (resolved[k] for k in ("spectral_norm", "conditional_bn", "self_modulation"))
        self.generator = DCGANGenerator(image_shape, latent_dim, base_channels, self.num_classes, self.conditional_bn, self.self_modulation)
        norm = "none" if self.spectral_norm else "layer" if loss == "wgan-gp" else "batch"
        self.discriminator = DCGANDiscriminator(image_shape, base_channels, norm, self.num_classes, self.spectral_norm,
                                                class_head=class_loss_weight is not None,
                                                twin_head=bool(twin_classifier or discriminative_classifier),
                                                minibatch_std_group=minibatch_std_group, projection=projection,
                                                minibatch_std_by_label=minibatch_std_by_label)
        self.ema = None if ema_decay is None else ema_copy(self.generator, ema_decay)
        self._ema_statistics_stale = True  # the EMA copy's BatchNorm statistics are re-estimated before it next samples

    @classmethod
    def resolved_args(cls, args: dict) -> dict:
        """`args` with the GAN's nulls spelled out: n_critic and betas by the loss (DEFAULT_N_CRITIC,
        DEFAULT_BETAS; betas as a list), spectral_norm (None: on when conditional), conditional_bn
        (None: on when conditional; always off unconditional), self_modulation (None: off),
        discriminative_classifier (None: on when conditional with class_loss_weight, G's class term
        and no twin_classifier). Missing keys take the constructor's defaults first (ns loss,
        unconditional, no auxiliary classifier)."""
        out = dict(args)
        loss, conditional = out.get("loss", "ns"), bool(out.get("conditional", False))
        if loss in DEFAULT_N_CRITIC:  # an unknown loss is the constructor's error to raise
            out["n_critic"] = DEFAULT_N_CRITIC[loss] if out.get("n_critic") is None else out["n_critic"]
            out["betas"] = list(DEFAULT_BETAS[loss] if out.get("betas") is None else out["betas"])
        out["spectral_norm"] = conditional if out.get("spectral_norm") is None else bool(out["spectral_norm"])
        out["conditional_bn"] = conditional and (out.get("conditional_bn") is None or bool(out["conditional_bn"]))
        out["self_modulation"] = bool(out.get("self_modulation"))
        adc = out.get("discriminative_classifier", False)
        out["discriminative_classifier"] = (bool(adc) if adc is not None else conditional and _discriminative_classifier_fits(
            out.get("class_loss_weight"), out.get("generator_class_loss", True), out.get("twin_classifier")))
        return out

    def configure_optimizers(self):
        optimizers = [
            self.optimizer(self.generator.parameters(), betas=self.betas),
            self.optimizer(self.discriminator.parameters(), betas=self.betas, **({} if self.d_lr is None else {"lr": self.d_lr})),
        ]
        if not self.lr_decay:
            return optimizers
        total = self.trainer.estimated_stepping_batches
        if math.isinf(total) or total < 1:
            raise ValueError("model.lr_decay=true decays the learning rates over a known number of training batches: set "
                             "budget.max_epochs or budget.max_steps (budget=equal_time stops on the clock), or lr_decay=false")
        return optimizers, [torch.optim.lr_scheduler.LambdaLR(opt, linear_decay(int(total))) for opt in optimizers]

    def uncompiled_nets(self) -> dict[str, str]:
        if self.loss_name == "wgan-gp":
            return {"discriminator": "the gradient penalty differentiates D's gradient (double backward), which torch.compile does not support"}
        return {}

    def trainable_parameters(self):
        yield from self.generator.parameters()
        yield from self.discriminator.parameters()

    def training_step(self, batch, batch_idx):
        real, labels = batch[0], self._labels(batch)
        opt_g, opt_d = self.optimizers()
        strength = self.conditioning_strength(self.current_epoch + batch_idx / max(self.trainer.num_training_batches, 1))
        logs = self._discriminator_step(real, labels, opt_d, strength)
        if batch_idx % self.n_critic == self.n_critic - 1:
            logs.update(self._generator_step(len(real), labels, opt_g, strength))
        if self.conditioning_transition is not None:
            logs["conditioning_strength"] = torch.tensor(strength)
        if self.lr_decay:  # manual optimisation: Lightning leaves the schedulers to the step
            for scheduler in self.lr_schedulers():
                scheduler.step()
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, batch_size=len(real))

    def conditioning_strength(self, epoch: float) -> float:
        """lambda in [0, 1] at `epoch` (epochs of training so far, fractional): 1 without a conditioning_transition."""
        if self.conditioning_transition is None:
            return 1.0
        start, end = self.conditioning_transition
        if end == start:
            return float(epoch >= start)
        return min(max((epoch - start) / (end - start), 0.0), 1.0)

    def _labels(self, batch) -> torch.Tensor | None:
        """The batch's labels for a conditional model (the fakes are drawn for them), else None."""
        return batch[1] if self.conditional else None

    def _discriminator_step(self, real, labels, opt_d, strength: float = 1.0) -> dict:
        with torch.no_grad():
            fake = self.generator(self._noise(len(real)), labels)
        real_logits, *real_heads = self._discriminate(real, labels, strength)
        fake_logits, *fake_heads = self._discriminate(fake, labels, strength)
        d_loss = discriminator_loss(self.loss_name, real_logits, fake_logits)
        logs = {"d_loss": d_loss.detach(), **self._d_outputs(real_logits, fake_logits)}
        if real_heads[0] is not None:  # the class head learns the real images' labels
            class_loss, named = self._class_loss(*real_heads, labels, generated=False)
            d_loss = d_loss + self.class_loss_weight * class_loss
            logs.update(d_class_loss=class_loss.detach(), d_class_accuracy=(named == labels).float().mean())
        if fake_heads[1] is not None:  # the twin (or ADC's generated-class) head learns the classes of G's images
            twin_loss, _ = self._class_loss(*fake_heads, labels, generated=True)
            d_loss = d_loss + self.class_loss_weight * twin_loss
            logs["d_twin_class_loss"] = twin_loss.detach()
        if self.loss_name == "wgan-gp":
            gp = gradient_penalty(lambda x: self.discriminator(x, labels, projection_scale=strength), real, fake)
            d_loss = d_loss + self.gp_weight * gp
            logs["gp"] = gp.detach()
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        logs["d_grad_norm"] = _grad_norm(self.discriminator)
        opt_d.step()
        return logs

    def _generator_step(self, n: int, labels, opt_g, strength: float = 1.0) -> dict:
        self.toggle_optimizer(opt_g)  # D's weights get no gradient from G's loss
        if self.mode_seeking_weight is not None and labels is not None:
            labels = mode_seeking_labels(labels)  # draws i and n - n // 2 + i share a label
        g_loss, logs = self._generator_loss(self._noise(n), labels, strength)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        g_grad_norm = _grad_norm(self.generator)
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        if self.ema is not None:
            update_ema(self.ema, self.generator)
            self._ema_statistics_stale = True
        return {"g_loss": g_loss.detach(), "g_grad_norm": g_grad_norm, **logs}

    def _generator_loss(self, z, labels, strength: float = 1.0) -> tuple[torch.Tensor, dict]:
        """G's loss on G(z, labels): a scalar with its graph, and the logs of its extra terms (detached).

        strength: the conditioning's lambda in [0, 1] (conditioning_strength), scaling D's
        projection term and G's class terms.
        """
        fake = self.generator(z, labels)
        fake_logits, class_logits, twin_logits = self._discriminate(fake, labels, strength)
        g_loss, logs = generator_loss(self.loss_name, fake_logits), {}
        if self.mode_seeking_weight is not None:
            ratio = mode_seeking_ratio(fake, z)
            g_loss = g_loss + self.mode_seeking_weight / (ratio + MODE_SEEKING_EPS)
            logs["g_mode_seeking_ratio"] = ratio.detach()
        if class_logits is not None:  # logged without generator_class_loss too: how well D's head names G's images
            class_loss, _ = self._class_loss(class_logits, twin_logits, labels, generated=False)
            if self.generator_class_loss:
                g_loss = g_loss + strength * self.class_loss_weight * class_loss
            logs["g_class_loss"] = class_loss.detach()
        if twin_logits is not None:  # G raises the twin head's loss: no reward for images merely easy to classify
            twin_loss, _ = self._class_loss(class_logits, twin_logits, labels, generated=True)
            g_loss = g_loss - strength * self.class_loss_weight * twin_loss
            logs["g_twin_class_loss"] = twin_loss.detach()
        return g_loss, logs

    def _class_loss(self, class_logits, twin_logits, labels, generated: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of D's class heads naming `labels` (B,) as real images' classes (generated=False) or as G's images'
        (True), and the (B,) classes D names (0..K-1 real; with the discriminative classifier, K..2K-1 generated).

        AC-GAN and TAC-GAN: the class head's (B, K) logits, or the twin head's for generated. The discriminative
        classifier (ADC-GAN): one softmax over both heads' 2K logits, label y or K + y.
        """
        if self.discriminative_classifier:
            joint = torch.cat([class_logits, twin_logits], dim=1)
            return F.cross_entropy(joint, labels + self.num_classes if generated else labels), joint.argmax(1)
        logits = twin_logits if generated else class_logits
        return F.cross_entropy(logits, labels), logits.argmax(1)

    def _discriminate(self, x, labels, strength: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """D's (B,) logits on x (projection term scaled by strength), its auxiliary classifier's (B, num_classes) logits
        and its twin's (each None without one)."""
        if self.class_loss_weight is None:
            return self.discriminator(x, labels, projection_scale=strength), None, None
        return self.discriminator(x, labels, return_class_logits=True, projection_scale=strength)

    def _noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=self.device)

    def _d_outputs(self, real_logits, fake_logits) -> dict:
        to_output = torch.sigmoid if self.loss_name == "ns" else (lambda v: v)
        return {"d_real": to_output(real_logits).mean().detach(), "d_fake": to_output(fake_logits).mean().detach()}

    def _held_out_step(self, batch, prefix: str, epochs_trained: float):
        """Log D's mean output on held-out real images and as many samples, with the conditioning as strong as training left it."""
        real, labels = batch[0], self._labels(batch)
        fake = self._sampling_net()(self._noise(len(real)), labels)
        scale = self.conditioning_strength(epochs_trained)
        d = partial(self.discriminator, labels=labels, projection_scale=scale)
        outputs = self._d_outputs(d(real), d(fake))
        self.log_dict({f"{prefix}{k}": v for k, v in outputs.items()}, batch_size=len(real), sync_dist=True)

    def validation_step(self, batch, batch_idx):
        self._held_out_step(batch, "val/", self.current_epoch + 1)  # at the end of the epoch being trained

    def test_step(self, batch, batch_idx):
        self._held_out_step(batch, "test_", self.current_epoch)  # after fit: the epochs it ran

    def _sampling_net(self):
        """G, or its EMA copy with BatchNorm statistics of its own (standing_statistics over EMA_STAT_BATCHES fixed draws)."""
        if self.ema is None:
            return self.generator
        if self._ema_statistics_stale:
            rng = torch.Generator(device=self.device).manual_seed(0)  # fixed draws: sampling stays a function of the weights alone
            k = max(self.num_classes, 1)

            def draw(i):
                z = torch.randn(EMA_STAT_BATCH, self.latent_dim, generator=rng, device=self.device)
                labels = torch.arange(EMA_STAT_BATCH, device=self.device) % k if self.conditional else None
                return z, labels

            standing_statistics(self.ema.module, draw, EMA_STAT_BATCHES)
            self._ema_statistics_stale = False
        return self.ema.module

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        """n images (n, C, H, W) in [-1, 1] from G in eval mode (the EMA copy when on).

        A conditional model draws image i of class labels[i] (default i mod num_classes).
        Raises ValueError for labels of the wrong shape or range, or given to an unconditional model.
        """
        return self.decode_latents(self.prior_latents(n, generator), self.sample_labels(n, labels))

    def prior_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws z ~ N(0, I), (n, latent_dim)."""
        return self.randn(n, self.latent_dim, generator=generator)

    @torch.no_grad()
    def decode_latents(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """G(z) (G(z, y) if conditional), (B, C, H, W) in [-1, 1], in eval mode (the EMA copy when on)."""
        net = self._sampling_net()
        was_training = net.training
        net.eval()  # BatchNorm uses its running statistics, so a sample does not depend on its batch
        images = net(z, labels)
        net.train(was_training)
        return images

    def protocol(self) -> dict:
        return {
            "loss": self.loss_name,
            "n_critic": self.n_critic,
            "betas": list(self.betas),
            "d_lr": "the optimiser's (as G's)" if self.d_lr is None else f"{self.d_lr:g} (TTUR, Heusel et al. 2017)",
            "lr_schedule": "linear decay to 0 over the training batches (Miyato & Koyama 2018)" if self.lr_decay else "constant",
            "sampler": "one generator pass" + (f" (EMA weights, BatchNorm statistics re-estimated on {EMA_STAT_BATCHES} x {EMA_STAT_BATCH} "
                                                "fixed draws: standing statistics, Brock et al. 2019)" if self.ema is not None else "")
            + (f"; class-conditional ({'conditional BatchNorm' if self.conditional_bn else 'label embedding'} in G, "
               f"{'projection' if self.discriminator.embed is not None else 'unconditional'} D), balanced labels" if self.conditional else ""),
            "generator": "DCGAN (Radford et al. 2016)"
            + ("; every BatchNorm self-modulated by z (Chen et al. 2019)" if self.self_modulation else ""),
            "discriminator": ("spectral normalisation (Miyato et al. 2018)" if self.spectral_norm
                              else "LayerNorm (per sample, for the gradient penalty)" if self.loss_name == "wgan-gp" else "BatchNorm (DCGAN)")
            + ("" if self.class_loss_weight is None else
               f"; auxiliary discriminative classifier, one softmax over real and generated classes (2K), weight {self.class_loss_weight:g}, "
               "its generated-class term subtracted in G's loss (ADC-GAN, Hou et al. 2022)" if self.discriminative_classifier else
               f"; auxiliary classifier on real images, weight {self.class_loss_weight:g} (AC-GAN, Odena et al. 2017)"
               + ("" if self.generator_class_loss else ", in D's loss only (none in G's)")
               + ("" if self.discriminator.twin_classifier is None else
                  "; twin classifier on generated images, subtracted in G's loss (TAC-GAN, Gong et al. 2019)"))
            + ("" if self.discriminator.minibatch_std is None else
               "; minibatch standard deviation (Karras et al. 2018) over "
               + ("the batch's images of each class" if self.discriminator.minibatch_std_by_label
                  else f"groups of {self.discriminator.minibatch_std.group_size}"))
            + ("" if self.conditioning_transition is None else
               "; conditioning brought in linearly from epoch {:g} to {:g} (Shahbazi et al. 2022)".format(*self.conditioning_transition)),
            "generator_loss": self.loss_name + ("" if self.mode_seeking_weight is None else
                                                f" + {self.mode_seeking_weight:g} / (mode-seeking ratio + {MODE_SEEKING_EPS:g}), pairs of "
                                                "codes under one label (MSGAN, Mao et al. 2019)"),
            "test_d_real/test_d_fake": "mean D output on the n_test test images and as many samples "
            + ("(probabilities)" if self.loss_name == "ns" else "(raw critic values)"),
        }


def linear_decay(total: int):
    """LambdaLR's factor for a linear decay to 0 over `total` steps (> 0): step t -> max(0, 1 - t / total)."""
    return lambda step: max(0.0, 1.0 - step / total)


def _discriminative_classifier_fits(class_loss_weight, generator_class_loss, twin_classifier) -> bool:
    """Whether ADC-GAN's classifier can join these options: it needs the auxiliary classifier in G's loss, and D's second
    head free of a twin (its null is on exactly where it fits; an explicit true where it does not is an error)."""
    return class_loss_weight is not None and bool(generator_class_loss) and not twin_classifier


def _grad_norm(net) -> torch.Tensor:
    """Global L2 norm of the gradients of `net`'s parameters (0 when none have one)."""
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads).detach() if grads else torch.zeros(())
