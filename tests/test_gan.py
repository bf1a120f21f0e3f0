import json
import math
from functools import partial

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from genzoo.models.gan import GAN
from genzoo.models.gan_losses import (
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    mode_seeking_labels,
    mode_seeking_ratio,
)
from genzoo.nets.dcgan import ConditionalBatchNorm2d, DCGANDiscriminator, DCGANGenerator, MinibatchStd, dcgan_stages


@pytest.mark.parametrize("shape, stages", [((1, 28, 28), (2, 7)), ((3, 32, 32), (3, 4))])
def test_dcgan_nets_shapes(shape, stages):
    assert dcgan_stages(shape) == stages
    g, d = DCGANGenerator(shape, latent_dim=8, base_channels=8), DCGANDiscriminator(shape, base_channels=8)
    x = g(torch.randn(5, 8))
    assert x.shape == (5, *shape) and x.abs().max() <= 1
    assert d(x).shape == (5,)


def test_dcgan_rejects_shapes_it_cannot_build():
    with pytest.raises(ValueError, match="square image with an even side"):
        DCGANGenerator((1, 28, 32))
    with pytest.raises(ValueError, match="got 3x3"):
        DCGANDiscriminator((1, 3, 3))
    with pytest.raises(ValueError, match="unknown norm 'spectral'"):
        DCGANDiscriminator((1, 28, 28), norm="spectral")


def test_losses_against_closed_forms():
    zero = torch.zeros(4)
    # ns at D = 1/2 everywhere: -log(1/2) twice for D, once for G
    assert discriminator_loss("ns", zero, zero).item() == pytest.approx(2 * math.log(2))
    assert generator_loss("ns", zero).item() == pytest.approx(math.log(2))
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-3.0, 0.0])
    assert discriminator_loss("hinge", real, fake).item() == pytest.approx((0 + 0.5) / 2 + (0 + 1) / 2)
    assert discriminator_loss("wgan-gp", real, fake).item() == pytest.approx(-1.5 - 1.25)
    assert generator_loss("hinge", fake).item() == generator_loss("wgan-gp", fake).item() == pytest.approx(1.5)
    with pytest.raises(ValueError, match="unknown GAN loss 'lsgan'"):
        discriminator_loss("lsgan", real, fake)


def test_gradient_penalty_of_a_linear_critic():
    # D(x) = <w, x>: the gradient is w everywhere, so GP = (||w|| - 1)^2 whatever the mix
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 1, bias=False))
    torch.nn.init.constant_(critic[1].weight, 1.5)  # ||w|| = 3
    gp = gradient_penalty(lambda x: critic(x).squeeze(1), torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2))
    assert gp.item() == pytest.approx(4.0)
    gp.backward()  # the penalty's gradient reaches the critic: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    assert torch.allclose(critic[1].weight.grad, torch.full((1, 4), 2 * 2 * 1.5 / 3))


def _gan(**kw):
    return GAN((1, 28, 28), partial(torch.optim.Adam, lr=2e-4), latent_dim=8, base_channels=8, **kw)


def _fit(model, batches: int):
    torch.manual_seed(0)
    images = torch.rand(16 * batches, 1, 28, 28) * 2 - 1
    loader = DataLoader(TensorDataset(images, torch.zeros(len(images), dtype=torch.long)), batch_size=16)
    trainer = L.Trainer(
        max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu",
    )
    trainer.fit(model, loader)
    return trainer


@pytest.mark.parametrize("loss", ["ns", "hinge", "wgan-gp"])
def test_one_gan_step_updates_both_nets_and_stays_finite(loss):
    model = _gan(loss=loss)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = _fit(model, batches=model.n_critic)  # exactly one generator step
    for prefix in ("generator.", "discriminator."):
        changed = [not torch.equal(before[k], v) for k, v in model.state_dict().items() if k.startswith(prefix)]
        assert any(changed), f"{prefix} did not change"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    logged = trainer.callback_metrics
    for key in ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "train/d_grad_norm", "train/g_grad_norm"):
        assert torch.isfinite(logged[key]), key
    assert ("train/gp" in logged) == (loss == "wgan-gp")


def test_wgan_gp_updates_the_generator_every_n_critic_steps():
    model = _gan(loss="wgan-gp", n_critic=3)
    g_before = [p.clone() for p in model.generator.parameters()]
    _fit(model, batches=2)
    assert all(torch.equal(a, b) for a, b in zip(g_before, model.generator.parameters()))
    _fit(model, batches=3)
    assert not all(torch.equal(a, b) for a, b in zip(g_before, model.generator.parameters()))


def test_optimisers_take_the_betas_of_the_loss():
    assert [o.defaults["betas"] for o in _gan(loss="ns").configure_optimizers()] == [(0.5, 0.999)] * 2
    assert [o.defaults["betas"] for o in _gan(loss="wgan-gp").configure_optimizers()] == [(0.0, 0.9)] * 2
    assert _gan(loss="wgan-gp").n_critic == 5 and _gan(loss="ns").n_critic == 1
    assert _gan(loss="hinge", betas=(0.0, 0.99)).configure_optimizers()[1].defaults["betas"] == (0.0, 0.99)


def test_d_lr_sets_the_discriminators_learning_rate_alone():
    assert [o.defaults["lr"] for o in _gan().configure_optimizers()] == [2e-4, 2e-4]
    assert [o.defaults["lr"] for o in _gan(d_lr=8e-4).configure_optimizers()] == [2e-4, 8e-4]  # (G, D): TTUR


def test_sampling_is_seeded_and_uses_the_ema_copy_when_on():
    model = _gan(ema_decay=0.5)
    a = model.sample(4, generator=torch.Generator().manual_seed(3))
    b = model.sample(4, generator=torch.Generator().manual_seed(3))
    assert a.shape == (4, 1, 28, 28) and torch.equal(a, b) and a.abs().max() <= 1
    _fit(model, batches=2)
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(3))
    model.train()
    drawn = model.sample(4, generator=torch.Generator().manual_seed(3))
    assert model.ema.module.training  # sample() draws in eval mode and restores the mode
    model.eval()
    assert torch.equal(drawn, model.ema.module(z))
    assert not torch.equal(model.ema.module(z), model.generator(z))


@pytest.mark.parametrize("kw, match", [({"loss": "lsgan"}, "unknown GAN loss"), ({"n_critic": 0}, "must be positive"), ({"gp_weight": -1.0}, "gp_weight"),
                                       ({"d_lr": 0.0}, "d_lr .* must be positive or null")])
def test_gan_rejects_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        _gan(**kw)


def test_gan_run_end_to_end(data_root, tmp_path):
    from genzoo import load_config, run

    cfg = load_config([
        "model=gan", "model.base_channels=8", f"data.root={data_root}", "hardware=cpu", "budget=smoke",
        "budget.limit_train_batches=3", "budget.limit_val_batches=1", "budget.n_test=32", "progress_bar=false",
        "logger=none", "eval=none", f"output_dir={tmp_path}",
    ])
    payload = run(cfg)
    assert payload == json.loads((tmp_path / "metrics.json").read_text())
    assert payload["model"] == "gan" and set(payload["metrics"]) == {"test_d_real", "test_d_fake"}
    assert 0 < payload["metrics"]["test_d_real"] < 1 and payload["timing"]["sample_images_per_second"] > 0
    assert payload["timing"]["sampler"] == "one generator pass" and payload["timing"]["sample_batch_size"] == 64
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert not list((tmp_path / "checkpoints").glob("best*"))  # no held-out loss to pick a best GAN by


def _largest_singular_value(weight) -> float:
    """sigma_max of a weight, reshaped to (out, in * k * k) as spectral normalisation sees it."""
    return torch.linalg.matrix_norm(weight.detach().flatten(1), ord=2).item()


def test_spectral_normalisation_bounds_every_discriminator_layer():
    torch.manual_seed(0)
    d = DCGANDiscriminator((1, 28, 28), base_channels=16, norm="none", num_classes=10, spectral_norm=True)
    layers = [m for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding))]  # 2 convolutions, head, projection table
    assert len(layers) == 4 and not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)) for m in d.modules())
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    with torch.no_grad():
        for module in layers:
            module.parametrizations.weight.original.mul_(50.0)  # far above 1 before normalisation
        for _ in range(30):  # power iterations run in training-mode forwards
            d(x, y)
    for module in layers:
        assert _largest_singular_value(module.parametrizations.weight.original) > 5
        assert _largest_singular_value(module.weight) == pytest.approx(1.0, abs=0.05)
    plain = DCGANDiscriminator((1, 28, 28), base_channels=16, norm="none", num_classes=10)
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())
    with pytest.raises(ValueError, match="spectrally normalised discriminator takes norm 'none', got 'batch'"):
        DCGANDiscriminator((1, 28, 28), norm="batch", spectral_norm=True)


def test_conditional_batch_norm_scales_and_shifts_by_the_label():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm2d(4, num_classes=3).eval()
    with torch.no_grad():
        cbn.gamma.weight[2] = torch.tensor([2.0, 3.0, 4.0, 5.0])
        cbn.beta.weight[2] = torch.tensor([1.0, -1.0, 0.5, 0.0])
    x = torch.randn(5, 4, 3, 3)
    normed = torch.nn.functional.batch_norm(x, cbn.norm.running_mean, cbn.norm.running_var, training=False, eps=cbn.norm.eps)
    out = cbn(x, torch.tensor([2, 2, 0, 1, 2]))
    assert torch.allclose(out[0], normed[0] * cbn.gamma.weight[2].view(4, 1, 1) + cbn.beta.weight[2].view(4, 1, 1), atol=1e-6)
    assert torch.allclose(out[2], normed[2] * cbn.gamma.weight[0].view(4, 1, 1), atol=1e-6)  # class 0: its own scale, shift 0
    assert not torch.allclose(out[0], cbn(x, torch.tensor([1, 2, 0, 1, 2]))[0])


def test_self_modulation_adds_an_mlp_of_z_to_each_batch_norm_and_lets_the_code_reach_every_layer():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm2d(4, num_classes=3, latent_dim=5).eval()
    x, z, labels = torch.randn(2, 4, 3, 3), torch.randn(2, 5), torch.tensor([2, 0])
    normed = torch.nn.functional.batch_norm(x, cbn.norm.running_mean, cbn.norm.running_var, training=False, eps=cbn.norm.eps)
    first, second = cbn.modulation[0], cbn.modulation[2]
    d_gamma, d_beta = (torch.relu(z @ first.weight.T + first.bias) @ second.weight.T + second.bias).chunk(2, dim=1)
    expected = normed * (cbn.gamma(labels) + d_gamma)[:, :, None, None] + (cbn.beta(labels) + d_beta)[:, :, None, None]
    assert torch.allclose(cbn(x, labels, z), expected, atol=1e-6)
    with pytest.raises(ValueError, match="needs the code z"):
        cbn(x, labels)
    with pytest.raises(ValueError, match="num_classes >= 1"):
        ConditionalBatchNorm2d(4, num_classes=0)

    # with the first layer's weights zeroed, z reaches G's image only through the self-modulated norms
    z = torch.randn(4, 8)
    for num_classes, conditional_bn in [(0, False), (10, True), (10, False)]:
        labels = torch.zeros(4, dtype=torch.long) if num_classes else None
        outputs = {}
        for self_modulation in (False, True):
            torch.manual_seed(0)
            g = DCGANGenerator((1, 28, 28), 8, 8, num_classes, conditional_bn, self_modulation).eval()
            with torch.no_grad():
                g.project[0].weight.zero_()
            outputs[self_modulation] = g(z, labels)
        assert torch.allclose(outputs[False], outputs[False][:1].expand(4, -1, -1, -1)), (num_classes, conditional_bn)
        assert (outputs[True] - outputs[True][:1]).abs().amax() > 1e-4, (num_classes, conditional_bn)
    model = _gan(self_modulation=True, conditional=True, num_classes=10)
    assert "self-modulated" in model.protocol()["generator"] and "self-modulated" not in _gan().protocol()["generator"]
    assert torch.isfinite(model.sample(4)).all()


def test_the_conditional_gan_pairs_conditional_batch_norm_with_a_spectrally_normalised_projection_discriminator():
    cgan = _gan(conditional=True, num_classes=10)
    assert cgan.spectral_norm and cgan.conditional_bn and cgan.generator.embed is None
    assert sum(isinstance(m, ConditionalBatchNorm2d) for m in cgan.generator.modules()) == 2
    assert hasattr(cgan.discriminator.embed, "parametrizations")
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
    cgan.eval()
    with torch.no_grad():
        for m in cgan.generator.modules():
            if isinstance(m, ConditionalBatchNorm2d):
                torch.nn.init.normal_(m.beta.weight)  # make the classes' shifts differ (they start at 0)
        assert not torch.allclose(cgan.generator(z, y), cgan.generator(z, y.flip(0)))
    before = _gan(conditional=True, num_classes=10, spectral_norm=False, conditional_bn=False)
    assert before.generator.embed is not None and not before.spectral_norm
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in before.discriminator.modules())
    gan = _gan()
    assert not gan.spectral_norm and not gan.conditional_bn  # the unconditional DCGAN as before unless asked
    assert _gan(spectral_norm=True).spectral_norm


def _composed(*overrides):
    from omegaconf import OmegaConf

    from genzoo import load_config
    from genzoo.models.build import build_model

    cfg = load_config(["model=gan", "data=fashion_mnist", "model.base_channels=8", "model.latent_dim=8", *overrides])
    saved = OmegaConf.create(OmegaConf.to_yaml(cfg.model, resolve=True))  # what a run's config.yaml records
    return build_model(saved, (1, 28, 28), num_classes=10), saved


def test_the_conditional_default_is_the_measured_form_and_the_unconditional_gan_is_self_modulated_dcgan():
    """model.conditional=true composes the form that met the FID and recall targets (docs/results/editing-fast):
    BatchNorm projection D with an auxiliary discriminative classifier (ADC-GAN, w = 1) and minibatch std in
    groups of 4, self-modulated conditional BatchNorm G; the unconditional GAN gets the self-modulated G
    alone (BatchNorm whose scale and shift follow z), DCGAN's D."""
    cgan, saved = _composed("model.conditional=true")
    assert (saved.spectral_norm, saved.class_loss_weight, saved.minibatch_std_group, saved.self_modulation) == (False, 1.0, 4, True)
    assert saved.discriminative_classifier is None  # the null the family resolves: on here
    d = cgan.discriminator
    assert not cgan.spectral_norm and cgan.conditional_bn and cgan.class_loss_weight == 1.0 and cgan.self_modulation
    assert cgan.discriminative_classifier and d.twin_classifier is not None and "ADC-GAN" in cgan.protocol()["discriminator"]
    # the null stays off where the classifier it would join is off or another form: no extra override needed
    for form in ("model.class_loss_weight=null", "model.twin_classifier=true", "model.generator_class_loss=false"):
        assert not _composed("model.conditional=true", form)[0].discriminative_classifier, form
    assert "TAC-GAN" in _composed("model.conditional=true", "model.twin_classifier=true")[0].protocol()["discriminator"]
    # a run recorded before the option (no key in its config.yaml) builds as it trained: AC-GAN's classifier
    assert not GAN.resolved_args({"conditional": True, "class_loss_weight": 1.0})["discriminative_classifier"]
    assert all(m.modulation is not None for m in cgan.generator.modules() if isinstance(m, ConditionalBatchNorm2d))
    assert d.classifier is not None and d.embed is not None and d.minibatch_std.group_size == 4
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    gan, saved = _composed()
    assert (saved.spectral_norm, saved.class_loss_weight, saved.minibatch_std_group, saved.self_modulation) == (False, None, None, True)
    assert gan.discriminator.classifier is None and gan.discriminator.minibatch_std is None and not gan.spectral_norm
    assert not gan.discriminative_classifier and gan.discriminator.twin_classifier is None
    norms = [m for m in gan.generator.modules() if isinstance(m, ConditionalBatchNorm2d)]
    assert gan.self_modulation and norms and all(m.modulation is not None and m.gamma.num_embeddings == 1 for m in norms)
    dcgan, _ = _composed("model.self_modulation=false")
    assert not any(isinstance(m, ConditionalBatchNorm2d) for m in dcgan.generator.modules())
    paper, _ = _composed("model.conditional=true", "model.spectral_norm=null", "model.class_loss_weight=null", "model.minibatch_std_group=null")
    assert paper.spectral_norm and paper.discriminator.classifier is None and paper.discriminator.minibatch_std is None


@pytest.mark.parametrize("conditional", [False, True])
def test_the_ema_generator_samples_with_batchnorm_statistics_of_its_own(conditional):
    """After training, the EMA copy's running statistics are its own activations' (not the live G's), the same each time."""
    model = _gan(ema_decay=0.9, conditional=conditional, num_classes=10 if conditional else 0)
    _fit(model, batches=3)
    live = [m.running_mean.clone() for m in model.generator.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    first = model.sample(8, generator=torch.Generator().manual_seed(1))
    own = [m.running_mean.clone() for m in model.ema.module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(own) == len(live) > 0 and not all(torch.allclose(a, b) for a, b in zip(own, live))
    assert torch.equal(first, model.sample(8, generator=torch.Generator().manual_seed(1)))
    assert "standing statistics" in model.protocol()["sampler"]


def test_the_auxiliary_classifier_learns_the_classes_and_teaches_the_generator():
    """AC-GAN on a toy set whose two classes are dark and bright images: D's class head separates them and G's class loss falls."""
    torch.manual_seed(0)
    model = GAN((1, 28, 28), partial(torch.optim.Adam, lr=1e-3), latent_dim=8, base_channels=8, conditional=True, num_classes=2,
                spectral_norm=False, class_loss_weight=1.0)
    assert model.discriminator.classifier.out_features == 2 and "auxiliary classifier" in model.protocol()["discriminator"]
    labels = torch.arange(256) % 2
    images = (labels.float() * 1.2 - 0.6).view(-1, 1, 1, 1) + 0.1 * torch.randn(256, 1, 28, 28)  # class 0 near -0.6, class 1 near +0.6
    history = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            history.append({k: v.item() for k, v in trainer.callback_metrics.items() if "class" in k})

    trainer = L.Trainer(max_epochs=5, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", callbacks=[Record()], limit_val_batches=0)
    trainer.fit(model, DataLoader(TensorDataset(images.clamp(-1, 1), labels), batch_size=16, shuffle=True))
    first, last = history[0], history[-1]
    assert set(first) == {"train/d_class_loss", "train/d_class_accuracy", "train/g_class_loss"}
    assert last["train/d_class_accuracy"] == 1.0 and last["train/d_class_loss"] < 0.1 < first["train/d_class_loss"]
    assert last["train/g_class_loss"] < 0.1 * first["train/g_class_loss"]  # from about ln 2
    model.eval()
    with torch.no_grad():  # G draws class-1 images brighter than class-0 ones: the head's verdict reached it
        drawn = model.sample(64, labels=torch.arange(64) % 2, generator=torch.Generator().manual_seed(0))
    assert drawn[1::2].mean() > drawn[0::2].mean() + 0.5


def test_the_twin_classifier_learns_the_generators_classes_and_enters_g_with_a_minus_sign():
    """TAC-GAN: G's loss is the adversarial term + w * (the class head's CE - the twin head's CE) on its images; D's twin head learns from fakes."""
    torch.manual_seed(0)
    w = 0.7
    model = _gan(conditional=True, num_classes=3, spectral_norm=False, class_loss_weight=w, twin_classifier=True)
    assert "TAC-GAN" in model.protocol()["discriminator"]
    z, labels = torch.randn(12, 8), torch.arange(12) % 3
    g_loss, logs = model._generator_loss(z, labels)
    logits, class_logits, twin_logits = model.discriminator(model.generator(z, labels), labels, return_class_logits=True)
    expected = F.softplus(-logits).mean() + w * (F.cross_entropy(class_logits, labels) - F.cross_entropy(twin_logits, labels))
    assert torch.allclose(g_loss, expected, atol=1e-6)
    assert torch.allclose(logs["g_twin_class_loss"], F.cross_entropy(twin_logits, labels))
    # one epoch of training: the twin head is trained (on G's images, the only ones it sees) and its loss is logged
    twin_before = model.discriminator.twin_classifier.weight.clone()
    trainer = _fit(model, batches=4)
    assert not torch.equal(twin_before, model.discriminator.twin_classifier.weight)
    assert torch.isfinite(trainer.callback_metrics["train/d_twin_class_loss"])
    with pytest.raises(ValueError, match="twin_classifier .* needs the auxiliary classifier: set class_loss_weight"):
        _gan(conditional=True, num_classes=3, twin_classifier=True)
    with pytest.raises(ValueError, match="twin class head .* needs the class head"):
        DCGANDiscriminator((1, 28, 28), num_classes=3, twin_head=True)


def test_the_discriminative_classifier_is_one_softmax_over_real_and_generated_classes():
    """ADC-GAN: G's class terms reduce to -w * (real-class logit - generated-class logit) (the log-sum-exp cancels);
    D's class loss names real images k and G's images K + k under one softmax over 2K logits."""
    torch.manual_seed(0)
    w, k = 0.7, 3
    model = _gan(conditional=True, num_classes=k, spectral_norm=False, class_loss_weight=w, discriminative_classifier=True)
    assert "ADC-GAN" in model.protocol()["discriminator"] and model.discriminator.twin_classifier is not None
    z, labels = torch.randn(12, 8), torch.arange(12) % k
    g_loss, logs = model._generator_loss(z, labels)
    logits, class_logits, twin_logits = model.discriminator(model.generator(z, labels), labels, return_class_logits=True)
    picked = lambda head: head.gather(1, labels[:, None]).squeeze(1)  # noqa: E731
    expected = F.softplus(-logits).mean() - w * (picked(class_logits) - picked(twin_logits)).mean()
    assert torch.allclose(g_loss, expected, atol=1e-5)
    joint = torch.cat([class_logits, twin_logits], 1)
    assert torch.allclose(logs["g_twin_class_loss"], -torch.log_softmax(joint, 1).gather(1, (labels + k)[:, None]).mean(), atol=1e-6)
    # D's step: with G's images as its fakes, the class loss is the 2K-way cross-entropy of real labels and generated ones
    real = torch.rand(12, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        _, real_c, real_t = model.discriminator(real, labels, return_class_logits=True)
    d_real = F.cross_entropy(torch.cat([real_c, real_t], 1), labels)
    model.manual_backward = lambda loss: loss.backward()  # outside a Trainer
    d_logs = model._discriminator_step(real, labels, torch.optim.SGD(model.discriminator.parameters(), lr=0.0))
    assert torch.allclose(d_logs["d_class_loss"], d_real, atol=1e-5)
    # one epoch of training: both heads learn (the generated-class head from G's images only) and the terms are logged
    heads_before = [model.discriminator.classifier.weight.clone(), model.discriminator.twin_classifier.weight.clone()]
    trainer = _fit(model, batches=4)
    assert not any(torch.equal(b, h.weight) for b, h in zip(heads_before, (model.discriminator.classifier, model.discriminator.twin_classifier)))
    assert torch.isfinite(trainer.callback_metrics["train/d_twin_class_loss"])
    for kw in ({}, {"class_loss_weight": 1.0, "twin_classifier": True}, {"class_loss_weight": 1.0, "generator_class_loss": False}):
        with pytest.raises(ValueError, match="discriminative_classifier .ADC-GAN. needs class_loss_weight"):
            _gan(conditional=True, num_classes=3, discriminative_classifier=True, **kw)


def test_without_generator_class_loss_the_auxiliary_classifier_trains_the_discriminator_alone():
    """generator_class_loss=false: G's loss is the adversarial term alone (its class term only logged); D's step still trains the class head."""
    torch.manual_seed(0)
    model = _gan(conditional=True, num_classes=3, spectral_norm=False, class_loss_weight=0.7, generator_class_loss=False)
    assert "in D's loss only" in model.protocol()["discriminator"]
    z, labels = torch.randn(12, 8), torch.arange(12) % 3
    g_loss, logs = model._generator_loss(z, labels)
    logits, class_logits, _ = model.discriminator(model.generator(z, labels), labels, return_class_logits=True)
    assert torch.allclose(g_loss, F.softplus(-logits).mean(), atol=1e-6)
    assert torch.allclose(logs["g_class_loss"], F.cross_entropy(class_logits, labels))
    head_before = model.discriminator.classifier.weight.clone()
    real = torch.rand(12, 1, 28, 28) * 2 - 1
    opt_d = torch.optim.SGD(model.discriminator.parameters(), lr=0.1)
    model.manual_backward = lambda loss: loss.backward()  # outside a Trainer
    d_logs = model._discriminator_step(real, labels, opt_d)
    assert "d_class_loss" in d_logs and not torch.equal(head_before, model.discriminator.classifier.weight)
    for kw in ({}, {"class_loss_weight": 1.0, "projection": False}, {"class_loss_weight": 1.0, "twin_classifier": True}):
        with pytest.raises(ValueError, match="generator_class_loss=false trains the auxiliary classifier for D alone"):
            _gan(conditional=True, num_classes=3, generator_class_loss=False, **kw)


def test_the_minibatch_standard_deviation_against_closed_forms():
    """Groups of identical samples give ~0, a group of x - 1 and x + 1 gives 1; a batch the group size does not divide takes a smaller group."""
    x = torch.randn(1, 3, 2, 2)
    h = torch.cat([x, x, x - 1, x + 1])  # groups (0, 1) and (2, 3)
    out = MinibatchStd(2)(h)
    assert out.shape == (4, 4, 2, 2) and torch.equal(out[:, :3], h)
    assert torch.allclose(out[:, 3], torch.tensor([1e-4, 1e-4, 1.0, 1.0]).view(4, 1, 1).expand(4, 2, 2), atol=1e-6)
    six = torch.arange(6.0).view(6, 1, 1, 1)  # group 4 does not divide 6: groups of 3, {0, 1, 2} and {3, 4, 5}
    assert torch.allclose(MinibatchStd(4)(six)[:, 1].flatten(), torch.full((6,), (2 / 3 + 1e-8) ** 0.5))
    with pytest.raises(ValueError, match="groups of at least 2 samples, got group_size=1"):
        MinibatchStd(1)
    # grouped by label: class 0 (x - 1, x + 1), class 1 (x, x), class 2 drawn once; by position, groups of 2 would give 0.5
    by_label = MinibatchStd(2)(torch.cat([x - 1, x, x + 1, x, x]), torch.tensor([0, 1, 0, 1, 2]))
    assert torch.allclose(by_label[:, 3, 0, 0], torch.tensor([1.0, 1e-4, 1.0, 1e-4, 1e-4]), atol=1e-6)
    with pytest.raises(ValueError, match="minibatch_std_by_label groups by the labels of a conditional discriminator"):
        _gan(minibatch_std_group=4, minibatch_std_by_label=True)
    model = _gan(conditional=True, num_classes=3, spectral_norm=False, minibatch_std_group=4)
    assert model.discriminator.head.in_features == (16 + 1) * 7 * 7 and "minibatch standard deviation" in model.protocol()["discriminator"]
    _fit(model, batches=2)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert "each class" in _gan(conditional=True, num_classes=3, minibatch_std_group=4, minibatch_std_by_label=True).protocol()["discriminator"]


def test_without_the_projection_term_the_discriminators_logit_ignores_the_label():
    """AC-GAN's D: the real/fake logit is the same whatever the label; the class head still classifies."""
    model = _gan(conditional=True, num_classes=3, spectral_norm=False, class_loss_weight=1.0, projection=False).eval()
    assert model.discriminator.embed is None and "unconditional D" in model.protocol()["sampler"]
    x = torch.randn(4, 1, 28, 28)
    logits, class_logits, _ = model.discriminator(x, torch.zeros(4, dtype=torch.long), return_class_logits=True)
    assert torch.equal(logits, model.discriminator(x, torch.full((4,), 2))) and class_logits.shape == (4, 3)
    with pytest.raises(ValueError, match="projection=false leaves the discriminator unconditional: set class_loss_weight"):
        _gan(conditional=True, num_classes=3, projection=False)
    with pytest.raises(ValueError, match="without the projection term needs a class head"):
        DCGANDiscriminator((1, 28, 28), num_classes=3, projection=False)


def test_the_auxiliary_classifier_needs_a_conditional_model_and_a_positive_weight():
    with pytest.raises(ValueError, match="class_loss_weight .* needs conditional=true, got 1.0 with conditional=False"):
        _gan(class_loss_weight=1.0)
    with pytest.raises(ValueError, match="must be positive"):
        _gan(conditional=True, num_classes=10, class_loss_weight=0.0)
    with pytest.raises(ValueError, match="no class head"):
        _gan(conditional=True, num_classes=10).discriminator(torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long), return_class_logits=True)
    with pytest.raises(ValueError, match="needs num_classes > 0"):
        DCGANDiscriminator((1, 28, 28), class_head=True)


def test_the_mode_seeking_ratio_against_closed_forms():
    """Images that scale the codes by 3 give ratio 3; a collapsed generator (one image for every code) gives 0."""
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(mode_seeking_ratio(3 * z.view(5, 1, 2, 2), z), torch.tensor(3.0))
    assert mode_seeking_ratio(torch.ones(5, 1, 2, 2), z) == 0
    pairs = (z[:2] - z[3:]).abs().mean()  # odd batch: draws 0, 1 against 3, 4
    images = torch.zeros(5, 1, 2, 2)
    images[0] = 1.0  # only pair (0, 3) differs, by 1 in each of 4 pixels: mean image distance 1/2
    assert torch.allclose(mode_seeking_ratio(images, z), 0.5 / pairs)
    assert mode_seeking_labels(torch.tensor([0, 1, 2, 3, 4])).tolist() == [0, 1, 2, 0, 1]
    assert mode_seeking_labels(torch.tensor([5, 6, 7, 8])).tolist() == [5, 6, 5, 6]
    with pytest.raises(ValueError, match="needs >= 2 images and one code per image, got 1 images"):
        mode_seeking_ratio(torch.zeros(1, 1, 2, 2), z[:1])


def test_the_mode_seeking_term_pairs_codes_under_one_label_and_pushes_their_images_apart():
    model = _gan(conditional=True, num_classes=10, spectral_norm=False, mode_seeking_weight=1.0)
    assert "MSGAN" in model.protocol()["generator_loss"]
    calls = []
    model.generator.register_forward_pre_hook(lambda module, args: calls.append(args[1].clone()))
    torch.manual_seed(0)
    images, labels = torch.rand(16, 1, 28, 28) * 2 - 1, torch.arange(16) % 10
    trainer = L.Trainer(max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, DataLoader(TensorDataset(images, labels), batch_size=16))
    d_labels, g_labels = calls  # D's step draws its fakes for the batch's labels, G's step in pairs
    assert d_labels.tolist() == labels.tolist() and g_labels.tolist() == labels[:8].tolist() * 2
    assert torch.isfinite(trainer.callback_metrics["train/g_mode_seeking_ratio"])
    # one gradient step on the term alone spreads the images of a fixed pair of code batches
    z, y = torch.randn(16, 8, generator=torch.Generator().manual_seed(1)), mode_seeking_labels(labels)
    model.generator.train()
    before = mode_seeking_ratio(model.generator(z, y), z)
    (1.0 / (before + 1e-5)).backward()
    with torch.no_grad():
        for p in model.generator.parameters():
            p -= 1e-2 * p.grad / (p.grad.norm() + 1e-12)
    assert mode_seeking_ratio(model.generator(z, y), z) > before
    with pytest.raises(ValueError, match="mode_seeking_weight must be positive or null, got 0"):
        _gan(mode_seeking_weight=0)


def test_the_conditioning_transition_brings_the_label_in_linearly_over_its_epochs():
    """Shahbazi et al. 2022: lambda = clip((epoch - start) / (end - start), 0, 1) scales D's projection term and G's class term."""
    model = _gan(conditional=True, num_classes=3, spectral_norm=False, class_loss_weight=0.7, conditioning_transition=[1, 3])
    assert [model.conditioning_strength(e) for e in (0.0, 1.0, 1.5, 2.0, 3.0, 9.0)] == [0.0, 0.0, 0.25, 0.5, 1.0, 1.0]
    step = _gan(conditional=True, num_classes=3, conditioning_transition=[2, 2])
    assert [step.conditioning_strength(e) for e in (1.99, 2.0)] == [0.0, 1.0]
    assert _gan(conditional=True, num_classes=3).conditioning_strength(0.0) == 1.0  # off: conditional from the start
    assert "from epoch 1 to 3" in model.protocol()["discriminator"]
    # at lambda 0 D's logit ignores the label (the unconditional game); at 0.5 the projection term counts half
    model.eval()
    x, y0, y2 = torch.randn(4, 1, 28, 28), torch.zeros(4, dtype=torch.long), torch.full((4,), 2)
    d = model.discriminator
    assert torch.equal(d(x, y0, projection_scale=0.0), d(x, y2, projection_scale=0.0))
    half = d(x, y0, projection_scale=0.5)
    assert torch.allclose(half, (d(x, y0, projection_scale=0.0) + d(x, y0)) / 2, atol=1e-6)
    # G's loss at lambda: the adversarial term against D's scaled logit + lambda * w * the class head's cross-entropy
    z, labels = torch.randn(6, 8, generator=torch.Generator().manual_seed(0)), torch.arange(6) % 3
    for strength in (0.0, 0.5):
        g_loss, _ = model._generator_loss(z, labels, strength)
        logits, class_logits, _ = d(model.generator(z, labels), labels, return_class_logits=True, projection_scale=strength)
        expected = F.softplus(-logits).mean() + strength * 0.7 * F.cross_entropy(class_logits, labels)
        assert torch.allclose(g_loss, expected, atol=1e-6)
    # the held-out d_real / d_fake read D as training left it: lambda 0.5 at the end of epoch 1 of [1, 3]
    logged = {}
    model.log_dict = lambda values, **kw: logged.update(values)
    model.trainer = None  # the bare step needs no trainer
    torch.manual_seed(1)
    model._held_out_step((x, labels[:4]), "val/", 2.0)
    torch.manual_seed(1)
    fake = model.generator(torch.randn(4, 8), labels[:4])
    assert torch.allclose(logged["val/d_real"], torch.sigmoid(d(x, labels[:4], projection_scale=0.5)).mean(), atol=1e-6)
    assert torch.allclose(logged["val/d_fake"], torch.sigmoid(d(fake, labels[:4], projection_scale=0.5)).mean(), atol=1e-6)
    # in training the strength follows the epoch: 4 batches of epoch 0 with a transition over [0, 1]
    ramp = _gan(conditional=True, num_classes=3, spectral_norm=False, conditioning_transition=[0, 1])
    seen = []
    ramp.conditioning_strength = lambda epoch, f=ramp.conditioning_strength: seen.append(epoch) or f(epoch)
    _fit(ramp, batches=4)
    assert seen == [0.0, 0.25, 0.5, 0.75]
    for bad in ([3, 1], [-1, 2], [1]):
        with pytest.raises(ValueError, match=r"conditioning_transition must be \[start, end\] in epochs with 0 <= start <= end"):
            _gan(conditional=True, num_classes=3, conditioning_transition=bad)
    with pytest.raises(ValueError, match="on a conditional model, got \\[0, 1\\] with conditional=False"):
        _gan(conditioning_transition=[0, 1])


def test_lr_decay_takes_both_learning_rates_linearly_to_zero_over_the_training_batches():
    """lr_t = lr * (1 - t / T) at batch t of T (Miyato & Koyama 2018), D's own lr (TTUR) decayed alike."""
    model = _gan(lr_decay=True, d_lr=4e-4)
    seen = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen.append([opt.param_groups[0]["lr"] for opt in module.optimizers()])

    images = torch.rand(16 * 4, 1, 28, 28) * 2 - 1
    loader = DataLoader(TensorDataset(images, torch.zeros(len(images), dtype=torch.long)), batch_size=16)
    trainer = L.Trainer(max_epochs=2, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", callbacks=[Record()])
    trainer.fit(model, loader)  # T = 2 epochs x 4 batches
    assert [lr for pair in seen for lr in pair] == pytest.approx([lr * (1 - t / 8) for t in range(8) for lr in (2e-4, 4e-4)])
    assert [opt.param_groups[0]["lr"] for opt in model.optimizers()] == [0.0, 0.0]  # after the last batch
    assert "linear decay" in model.protocol()["lr_schedule"] and _gan().protocol()["lr_schedule"] == "constant"
    clocked = L.Trainer(max_epochs=-1, max_steps=-1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    with pytest.raises(ValueError, match="lr_decay=true decays the learning rates over a known number of training batches"):
        clocked.fit(_gan(lr_decay=True), loader)
