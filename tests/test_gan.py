import json
import math
from functools import partial

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from genzoo.models.gan import GAN
from genzoo.models.gan_losses import discriminator_loss, generator_loss, gradient_penalty
from genzoo.nets.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_stages


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
    loader = DataLoader(TensorDataset(images, torch.zeros(len(images))), batch_size=16)
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


@pytest.mark.parametrize("kw, match", [({"loss": "lsgan"}, "unknown GAN loss"), ({"n_critic": 0}, "must be positive"), ({"gp_weight": -1.0}, "gp_weight")])
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
