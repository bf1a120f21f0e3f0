"""DCGAN generator and discriminator (Radford et al. 2016) for 28x28 and 32x32 images.

The generator projects z to a small square map (7x7 for side 28, 4x4 for side 32) and
doubles it with 4x4 stride-2 transposed convolutions, BatchNorm and ReLU, ending in tanh.
The discriminator mirrors it with strided convolutions and LeakyReLU(0.2) and returns one
logit per image. With num_classes > 0 both are class-conditional: the generator reads a
learned label embedding beside z, or (conditional_bn) takes per-class scales and shifts in
each BatchNorm; with self_modulation every BatchNorm's scale and shift also follow z (Chen
et al. 2019). The discriminator adds the projection term <embed(y), phi(x)> (Miyato &
Koyama 2018); with class_head it also classifies the image (the auxiliary classifier of
Odena et al. 2017, AC-GAN), and with twin_head a second class head for the generator's
images (Gong et al. 2019, TAC-GAN; or, under one softmax with the first, the generated
classes of ADC-GAN, Hou et al. 2022). spectral_norm divides every discriminator weight by its
largest singular value (Miyato et al. 2018, SNGAN). minibatch_std_group appends the
minibatch standard deviation to the discriminator's last feature map (Karras et al. 2018).
Imports only torch.
"""

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

NORMS = ("batch", "layer", "none")
SELF_MODULATION_HIDDEN = 32  # hidden units of the self-modulation MLP (Chen et al. 2019)


def dcgan_stages(image_shape) -> tuple[int, int]:
    """(number of stride-2 stages, side of the smallest map) for a square image.

    The side is halved while it is even and above 4: 28 -> 7 (2 stages), 32 -> 4 (3), 64 -> 4 (4).
    Raises ValueError for a non-square image or one that cannot be halved at least once.
    """
    _, h, w = image_shape
    side, stages = h, 0
    while side % 2 == 0 and side > 4:
        side, stages = side // 2, stages + 1
    if h != w or stages == 0:
        raise ValueError(f"the DCGAN nets need a square image with an even side above 4 (28 or 32), got {h}x{w}")
    return stages, side


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # per-sample, as the WGAN-GP critic needs (Gulrajani et al. 2017)
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}': choose one of {', '.join(NORMS)}")


def _labels_needed(labels, num_classes: int, n: int) -> None:
    if num_classes and (labels is None or labels.shape != (n,)):
        raise ValueError(f"a class-conditional net needs labels of shape ({n},), got {None if labels is None else tuple(labels.shape)}")


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm2d whose scale and shift are looked up per class (de Vries et al. 2017; Miyato & Koyama 2018, sec. 4), and can follow z.

    (B, C, H, W) features and (B,) integer labels in [0, num_classes) -> (B, C, H, W):
    gamma[y] * (x - mean) / sqrt(var + eps) + beta[y], the statistics shared by all classes
    (running ones in eval mode), gamma and beta K x C tables initialised as a BatchNorm's
    affine (near 1 and 0). num_classes=1 (an unconditional net) takes labels=None: one row.

    latent_dim > 0 adds self-modulation (Chen et al. 2019, "On self modulation for generative
    adversarial networks"): forward(x, labels, z) with z (B, latent_dim) adds
    [d_gamma, d_beta] = MLP(z) (one hidden layer of `hidden` ReLU units, the paper's 32) to
    the scale and shift, so the code shapes every layer and not only the first. With classes
    this is the table plus a z-dependent part (BigGAN's skip-z reads z at every block in the
    same way, Brock et al. 2019). The MLP's layers start N(0, 0.02): near the plain norm.
    Raises ValueError for num_classes < 1 or missing z.
    """

    def __init__(self, channels: int, num_classes: int, latent_dim: int = 0, hidden: int = SELF_MODULATION_HIDDEN):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"a conditional BatchNorm needs num_classes >= 1 (1: unconditional), got {num_classes}")
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gamma = nn.Embedding(num_classes, channels)
        self.beta = nn.Embedding(num_classes, channels)
        self.modulation = None
        if latent_dim:
            self.modulation = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.gamma.weight, 1.0, 0.02)  # DCGAN's norm-scale init (Radford et al. 2016)
        nn.init.zeros_(self.beta.weight)
        for layer in [] if self.modulation is None else [m for m in self.modulation if isinstance(m, nn.Linear)]:
            nn.init.normal_(layer.weight, 0.0, 0.02)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, z: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:
            labels = torch.zeros(len(x), dtype=torch.long, device=x.device)
        gamma, beta = self.gamma(labels).to(x.dtype), self.beta(labels).to(x.dtype)
        if self.modulation is not None:
            if z is None:
                raise ValueError("a self-modulated BatchNorm needs the code z: call forward(x, labels, z)")
            d_gamma, d_beta = self.modulation(z).to(x.dtype).chunk(2, dim=1)
            gamma, beta = gamma + d_gamma, beta + d_beta
        return self.norm(x) * gamma[:, :, None, None] + beta[:, :, None, None]


class MinibatchStd(nn.Module):
    """Append one channel holding the minibatch standard deviation (Karras et al. 2018, sec. 3).

    (B, C, H, W) -> (B, C + 1, H, W). The batch is split into groups of `group_size`
    consecutive samples (the largest divisor of B not above it); within a group, the standard
    deviation of each feature at each position over the group's samples (sqrt(var + 1e-8),
    population variance) is averaged over C, H and W, and that one number fills the new
    channel of each sample of the group. A discriminator that sees it can tell a batch of
    look-alike fakes from real images, so a generator that collapses is penalised.

    forward(h, labels) with (B,) labels groups by label instead: each group is the batch's
    samples of one class (a class drawn once gets ~1e-4), so the channel measures the
    spread within classes, where a conditional generator collapses, rather than between them.
    Raises ValueError for group_size < 2.
    """

    def __init__(self, group_size: int = 4):
        super().__init__()
        if group_size < 2:
            raise ValueError(f"the minibatch standard deviation needs groups of at least 2 samples, got group_size={group_size}")
        self.group_size = group_size

    def forward(self, h: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        b, c, height, width = h.shape
        x = h.float().flatten(1)  # (B, C * H * W)
        if labels is None:
            g = min(self.group_size, b)
            while b % g:
                g -= 1
            groups = torch.arange(b, device=h.device) // g  # sample j of group i is row i * g + j
        else:
            groups = labels
        members = torch.nn.functional.one_hot(groups).float()  # (B, groups)
        members = members / members.sum(0).clamp(min=1)  # columns average their group's rows
        mean = members.T @ x  # (groups, C * H * W)
        var = members.T @ (x - mean[groups]).square()  # population variance, two-pass
        std = (var + 1e-8).sqrt().mean(dim=1)  # (groups,)
        channel = std[groups].to(h.dtype).view(b, 1, 1, 1).expand(b, 1, height, width)
        return torch.cat([h, channel], dim=1)


def _forward(layers: nn.Sequential, h: torch.Tensor, labels, z=None) -> torch.Tensor:
    """Run `layers` in order, handing the labels (and z) to the conditional BatchNorms among them."""
    for layer in layers:
        h = layer(h, labels, z) if isinstance(layer, ConditionalBatchNorm2d) else layer(h)
    return h


class DCGANGenerator(nn.Module):
    """(B, latent_dim) noise (and (B,) labels if conditional) -> (B, C, H, W) image in [-1, 1].

    Args:
        image_shape: (C, H, W), square with an even side (28, 32, 64, ...).
        latent_dim: size of z.
        base_channels: channels of the last hidden map; each earlier stage doubles them.
        num_classes: 0 (unconditional) or K: a K x latent_dim label embedding, N(0, 1) at
            initialisation like z, is concatenated to z (Mirza & Osindero 2014), or, with
            conditional_bn, every BatchNorm is a ConditionalBatchNorm2d and z goes in alone.
        conditional_bn: condition through per-class BatchNorm scales and shifts (the
            generator of Miyato & Koyama 2018) instead of the concatenated embedding.
        self_modulation: every BatchNorm's scale and shift also follow G's input (z, or z
            with the label embedding beside it) through a small MLP (Chen et al. 2019; see
            ConditionalBatchNorm2d), conditional or not.
    Raises:
        ValueError: an image shape the stages cannot build; in forward, missing labels.
    """

    def __init__(self, image_shape, latent_dim: int = 64, base_channels: int = 64, num_classes: int = 0, conditional_bn: bool = False,
                 self_modulation: bool = False):
        super().__init__()
        stages, side = dcgan_stages(image_shape)
        widths = [base_channels * 2**i for i in reversed(range(stages))]  # e.g. [256, 128, 64]
        self.num_classes = num_classes
        cbn = bool(num_classes and conditional_bn)
        concat = bool(num_classes and not cbn)
        modulated_by = latent_dim * (2 if concat else 1) if self_modulation else 0

        def norm(channels):
            if cbn or self_modulation:
                return ConditionalBatchNorm2d(channels, num_classes if cbn else 1, modulated_by)
            return nn.BatchNorm2d(channels)

        self.project = nn.Sequential(
            nn.Linear(latent_dim * (2 if concat else 1), widths[0] * side * side, bias=False),
            nn.Unflatten(1, (widths[0], side, side)),
            norm(widths[0]),
            nn.ReLU(),
        )
        layers = []
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False), norm(c_out), nn.ReLU()]
        layers += [nn.ConvTranspose2d(widths[-1], image_shape[0], 4, stride=2, padding=1), nn.Tanh()]
        self.upsample = nn.Sequential(*layers)
        self.apply(_dcgan_init)
        self.embed = nn.Embedding(num_classes, latent_dim) if concat else None  # default init N(0, 1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _labels_needed(labels, self.num_classes, len(z))
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels).to(z.dtype)], dim=1)
        cbn_labels = labels if self.embed is None else None  # a concatenating net's BatchNorms have one row
        return _forward(self.upsample, _forward(self.project, z, cbn_labels, z), cbn_labels, z)


class DCGANDiscriminator(nn.Module):
    """(B, C, H, W) image in [-1, 1] (and (B,) labels if conditional) -> (B,) logit (real > fake); a critic for WGAN-GP.

    Args:
        image_shape: (C, H, W), square with an even side (28, 32, 64, ...).
        base_channels: channels of the first stage; each later stage doubles them.
        norm: "batch" (DCGAN), "layer" (per-sample; needed by the gradient penalty) or "none".
        num_classes: 0 (unconditional) or K: the projection discriminator of Miyato & Koyama
            2018, D(x, y) = psi(h(x)) + <embed(y), phi(x)>, with h(x) the last feature map,
            psi the linear head on it, phi(x) = h(x) summed over positions (their global sum
            pooling; one value per channel) and embed a K x channels table initialised
            N(0, 0.02) as the other weights.
        projection: with num_classes, add the projection term (default); False leaves D's
            logit unconditional, as AC-GAN's (Odena et al. 2017), and then needs class_head
            (else nothing in D reads the label).
        spectral_norm: every convolution, the head and the projection table divided by its
            largest singular value, estimated by one power iteration per training forward
            (Miyato et al. 2018): each layer 1-Lipschitz. Needs norm "none" (SNGAN's
            discriminator has no other normalisation).
        class_head: a linear head from the last feature map to num_classes class logits
            (Odena et al. 2017's auxiliary classifier), returned by forward with
            return_class_logits=True; needs num_classes > 0.
        twin_head: a second such head (TAC-GAN's twin auxiliary classifier, Gong et al. 2019),
            meant to learn the classes of the generator's images (or, its logits beside the
            class head's under one softmax, ADC-GAN's generated classes, Hou et al. 2022);
            needs class_head.
        minibatch_std_group: None (off) or the group size (>= 2; Karras et al. use 4) of a
            MinibatchStd channel appended to the last feature map, which the logit's linear
            head reads (the projection term and the class heads read the features alone).
        minibatch_std_by_label: group that channel by label (a conditional D's labels)
            rather than by position in the batch: the spread within each class.
    Raises:
        ValueError: an image shape the stages cannot take, an unknown norm, spectral_norm
        with a norm other than "none", class_head without classes, twin_head without
        class_head, or classes with neither projection nor class_head; in forward, missing labels.
    """

    def __init__(self, image_shape, base_channels: int = 64, norm: str = "batch", num_classes: int = 0, spectral_norm: bool = False,
                 class_head: bool = False, twin_head: bool = False, minibatch_std_group: int | None = None, projection: bool = True,
                 minibatch_std_by_label: bool = False):
        super().__init__()
        if spectral_norm and norm != "none":
            raise ValueError(f"a spectrally normalised discriminator takes norm 'none', got '{norm}'")
        if class_head and not num_classes:
            raise ValueError("a class head (auxiliary classifier) needs num_classes > 0: make the model conditional")
        if num_classes and not (projection or class_head):
            raise ValueError("a conditional discriminator without the projection term needs a class head, or nothing reads the label")
        if twin_head and not class_head:
            raise ValueError("a twin class head (TAC-GAN) needs the class head: build it with class_head=True")
        stages, side = dcgan_stages(image_shape)
        widths = [base_channels * 2**i for i in range(stages)]  # e.g. [64, 128, 256]
        layers = [nn.Conv2d(image_shape[0], widths[0], 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=norm == "none"), _norm(norm, c_out), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)  # (B, widths[-1], side, side)
        if minibatch_std_by_label and not (num_classes and minibatch_std_group):
            raise ValueError("minibatch_std_by_label groups by the labels of a conditional discriminator with a minibatch_std_group")
        self.minibatch_std = None if minibatch_std_group is None else MinibatchStd(minibatch_std_group)
        self.minibatch_std_by_label = minibatch_std_by_label
        self.head = nn.Linear((widths[-1] + (self.minibatch_std is not None)) * side * side, 1)
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, widths[-1]) if num_classes and projection else None
        self.classifier = nn.Linear(widths[-1] * side * side, num_classes) if class_head else None
        self.twin_classifier = nn.Linear(widths[-1] * side * side, num_classes) if twin_head else None
        self.apply(_dcgan_init)
        if spectral_norm:  # after the init: the parametrisation divides the initialised weights
            for module in [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]:
                _spectral_norm(module)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, return_class_logits: bool = False,
                projection_scale: float = 1.0):
        """(B,) logits; with return_class_logits, (logits, the class head's (B, num_classes) logits, the twin head's or None).

        projection_scale (in [0, 1]) multiplies the projection term: 0 gives the unconditional
        logit psi(h(x)), 1 the projection discriminator's (a transition between them: GAN's
        conditioning_transition).
        """
        _labels_needed(labels, self.num_classes, len(x))
        h = self.features(x)
        flat = h.flatten(1)
        head_input = flat if self.minibatch_std is None else self.minibatch_std(h, labels if self.minibatch_std_by_label else None).flatten(1)
        logit = self.head(head_input).squeeze(1)
        if self.embed is not None:
            logit = logit + projection_scale * (self.embed(labels).to(h.dtype) * h.sum((2, 3))).sum(1)
        if not return_class_logits:
            return logit
        if self.classifier is None:
            raise ValueError("this discriminator has no class head: build it with class_head=True")
        twin = None if self.twin_classifier is None else self.twin_classifier(flat)
        return logit, self.classifier(flat), twin


def _dcgan_init(module: nn.Module) -> None:
    """Weights (and embedding tables) N(0, 0.02), norm scales N(1, 0.02), as Radford et al. 2016."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, ConditionalBatchNorm2d):  # after its tables (apply visits children first)
        module.reset_parameters()
