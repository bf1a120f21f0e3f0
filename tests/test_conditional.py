"""Class-conditional models: DDPM with classifier-free guidance, the conditional VAE and GAN, the control metrics."""

import json
from functools import partial

import pytest
import torch

from genzoo.diffusion.guidance import Guided
from genzoo.models.ddpm import DDPM
from genzoo.models.gan import GAN
from genzoo.models.vae import VAE


class LinearEps(torch.nn.Module):
    """eps(x, t, y) = x * (y + 1): a stand-in net whose conditional and unconditional outputs differ."""

    num_classes = 3

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x, t, labels):
        return x * (labels.float() + 1).view(-1, 1, 1, 1) * self.scale


def test_guidance_zero_is_the_plain_conditional_prediction_and_w_extrapolates():
    net, x, t = LinearEps(), torch.randn(4, 1, 2, 2), torch.zeros(4, dtype=torch.long)
    labels = torch.tensor([0, 1, 2, 1])
    assert torch.equal(Guided(net, labels, 0.0)(x, t), net(x, t, labels))
    cond, uncond = net(x, t, labels), net(x, t, torch.full_like(labels, 3))
    assert torch.allclose(Guided(net, labels, 2.0)(x, t), 3 * cond - 2 * uncond)
    with pytest.raises(ValueError, match="guidance_scale must be >= 0"):
        Guided(net, labels, -1.0)


def _ddpm(**kw):
    torch.manual_seed(0)
    return DDPM((1, 8, 8), partial(torch.optim.Adam, lr=1e-3), num_steps=20, base_channels=8, channel_mults=(1, 2),
                attention_levels=(), num_res_blocks=1, sample_steps=4, **kw)


def test_conditional_sampling_takes_labels_and_guidance():
    model = _ddpm(conditional=True, num_classes=10)
    x = model.sample(5, generator=torch.Generator().manual_seed(0), labels=torch.tensor([0, 1, 2, 3, 9]), guidance_scale=1.5)
    assert x.shape == (5, 1, 8, 8) and torch.isfinite(x).all()
    again = model.sample(5, generator=torch.Generator().manual_seed(0), labels=torch.tensor([0, 1, 2, 3, 9]), guidance_scale=1.5)
    assert torch.equal(x, again) and model.nfe_per_sample == 8  # 4 DDIM steps, two passes each with guidance
    with pytest.raises(ValueError, match="labels must be"):
        model.sample(2, labels=torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="need a conditional model"):
        _ddpm().sample(2, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_classes >= 2"):
        _ddpm(conditional=True, num_classes=0)


def test_label_dropout_replaces_labels_with_the_no_label_token_at_rate_p_uncond():
    model = _ddpm(conditional=True, num_classes=10, p_uncond=0.3)
    seen = []

    def recorder(x, t, labels):
        seen.append(labels.clone())
        return torch.zeros_like(x)

    labels = torch.randint(0, 10, (4000,))
    torch.manual_seed(0)
    model.loss(torch.zeros(4000, 1, 8, 8), net=recorder, labels=labels, drop=True)
    model.loss(torch.zeros(4000, 1, 8, 8), net=recorder, labels=labels, drop=False)
    dropped, kept = seen
    assert (dropped == 10).float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert torch.equal(dropped[dropped != 10], labels[dropped != 10]) and torch.equal(kept, labels)


@pytest.mark.slow
def test_conditional_ddpm_run_writes_control_metrics_and_the_guidance_plot(cli, tmp_path):
    proc = cli("model=ddpm", "model.conditional=true", "hardware=cpu", "budget=smoke", "budget.limit_train_batches=3",
               "budget.limit_val_batches=1", "budget.n_test=2", "budget.eval_samples=40",
               "budget.guidance_samples=20", "budget.curve_points=0", "model.sample_steps=5", "eval.guidance_scales=[0,1,3]",
               "progress_bar=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (metrics_file,) = tmp_path.rglob("metrics.json")
    payload = json.loads(metrics_file.read_text())
    metrics = payload["metrics"]
    assert 0 <= metrics["control_accuracy"] <= 1 and len(metrics["control_accuracy_per_class"]) == 10
    assert [p["guidance_scale"] for p in metrics["guidance_sweep"]] == [0.0, 1.0, 3.0]
    assert "control_accuracy" in payload["protocol"]["metric_cards"] and "guidance" in payload["protocol"]["family"]["sampler"]
    assert (metrics_file.parent / "guidance_tradeoff.png").is_file()


def test_conditional_vae_feeds_the_label_to_encoder_and_decoder():
    torch.manual_seed(0)
    model = VAE((1, 28, 28), partial(torch.optim.Adam, lr=1e-3), latent_dim=4, conditional=True, num_classes=10)
    x, z = torch.rand(3, 1, 28, 28) * 2 - 1, torch.randn(3, 4)
    a, b = torch.tensor([0, 1, 2]), torch.tensor([5, 5, 5])
    assert not torch.allclose(model.encode(x, a)[0], model.encode(x, b)[0])  # q(z | x, y)
    assert not torch.allclose(model.decode(z, a), model.decode(z, b))  # p(x | z, y)
    assert model.sample(4, labels=torch.tensor([0, 1, 2, 3])).shape == (4, 1, 28, 28)
    rec, kl, _ = model.elbo_terms(x, a)
    assert torch.isfinite(rec).all() and (kl >= 0).all()
    with pytest.raises(ValueError, match="needs labels of shape"):
        model.encode(x)
    with pytest.raises(ValueError, match="labels must be"):
        model.sample(2, labels=torch.tensor([0, 10]))


def test_projection_discriminator_adds_the_inner_product_of_label_embedding_and_features():
    torch.manual_seed(0)
    model = GAN((1, 28, 28), partial(torch.optim.Adam, lr=2e-4), latent_dim=8, base_channels=8, conditional=True, num_classes=10)
    d = model.discriminator.eval()
    x, labels = torch.rand(4, 1, 28, 28) * 2 - 1, torch.tensor([0, 3, 3, 9])
    h = d.features(x)  # (B, channels, side, side)
    phi = h.sum((2, 3))  # global sum pooling
    expected = d.head(h.flatten(1)).squeeze(1) + (d.embed.weight[labels] * phi).sum(1)  # Miyato & Koyama 2018, eq. 3
    assert torch.allclose(d(x, labels), expected, atol=1e-6)
    z = torch.randn(4, 8)
    g = model.generator.eval()
    assert not torch.allclose(g(z, labels), g(z, torch.zeros_like(labels)))  # G reads the label
    images = model.sample(4, generator=torch.Generator().manual_seed(0), labels=labels)
    assert images.shape == (4, 1, 28, 28) and torch.equal(images, model.sample(4, torch.Generator().manual_seed(0), labels))
    with pytest.raises(ValueError, match="needs labels of shape"):
        d(x)
    with pytest.raises(ValueError, match="num_classes >= 2"):
        GAN((1, 28, 28), partial(torch.optim.Adam, lr=2e-4), conditional=True)


@pytest.mark.slow
def test_a_quick_conditional_gan_run_draws_the_requested_class_far_above_chance(cli, tmp_path):
    """100 batches of Fashion-MNIST (about 20 s of training): chance is 0.1 for 10 classes.

    DCGAN's form (a BatchNorm D, the label embedding beside z; with the conditional defaults'
    auxiliary classifier and minibatch std) takes the label within 100 batches (0.365). The
    default conditional BatchNorm G learns it slower, its per-class scales and shifts all
    starting alike: 0.11 after 100 batches, 0.911 after 10 epochs (docs/results/editing-fast).
    """
    proc = cli("model=gan", "model.conditional=true", "model.conditional_bn=false", "model.spectral_norm=false", "hardware=cpu", "budget=smoke", "budget.limit_train_batches=100",
               "budget.limit_val_batches=1", "budget.n_test=64", "budget.eval_samples=200", "budget.curve_points=0", "progress_bar=false",
               "data.batch_size=128", "model.self_modulation=false",  # the form and batch the 0.365 was measured at (the GAN's own default: 64)
               "model.discriminative_classifier=false",  # and AC-GAN's classifier (ADC-GAN's is the default since)
               "model.ema_decay=null")  # and G itself sampling (a conditional GAN's EMA of G is the default since)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (metrics_file,) = tmp_path.rglob("metrics.json")
    metrics = json.loads(metrics_file.read_text())["metrics"]
    assert metrics["control_accuracy"] > 0.3, metrics["control_accuracy_per_class"]  # 200 samples: chance would give 0.10 +- 0.02
