"""The speed options of hardware presets (gpu_fast): compile, channels_last, fused optimisers, on a CPU."""

import json
from functools import partial

import pytest
import torch

from genzoo import families, load_config
from genzoo.models.autoencoder import Autoencoder
from genzoo.models.gan import GAN
from genzoo.models.pixelcnn import PixelCNN
from genzoo.models.vae import VAE

OPT = partial(torch.optim.Adam, lr=1e-3)


def test_channels_last_and_fused_adam_apply_to_weights_batches_and_the_optimiser():
    model = VAE((3, 32, 32), OPT, latent_dim=4)
    done = model.speed_up(channels_last=True, fused_optimizer=True)
    assert done == {"compiled": [], "left_eager": {}, "channels_last": True, "fused_optimizer": True}
    conv = model.encoder.features[2].weight  # 32 -> 64 channels
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    x, y = model.on_after_batch_transfer((torch.rand(4, 3, 32, 32) * 2 - 1, torch.arange(4)), 0)
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() and torch.equal(y, torch.arange(4))
    optimiser = model.configure_optimizers()
    assert optimiser.defaults["fused"] is True
    loss = -model.elbo_terms(x)[0].mean()
    loss.backward()
    optimiser.step()  # the fused CPU kernel runs


def test_compile_wraps_the_nets_in_place_keeps_checkpoint_keys_and_names_what_it_leaves_eager():
    model = Autoencoder((1, 28, 28), OPT, latent_dim=4)
    keys = list(model.state_dict())
    done = model.speed_up(compile=True)
    assert done["compiled"] == ["encoder", "decoder"] and done["left_eager"] == {}
    assert list(model.state_dict()) == keys  # nn.Module.compile: no _orig_mod. prefix
    gan = GAN((1, 28, 28), OPT, latent_dim=8, base_channels=8, loss="wgan-gp", ema_decay=0.9)
    done = gan.speed_up(compile=True)
    assert done["compiled"] == ["generator", "ema"] and "double backward" in done["left_eager"]["discriminator"]
    assert PixelCNN((1, 8, 8), OPT, features=8, layers=2).speed_up(compile=True)["left_eager"].keys() == {"net"}


def test_gpu_fast_preset_turns_everything_on_and_keeps_the_likelihood_families_in_float32():
    hardware = load_config(["hardware=gpu_fast"]).hardware
    assert (hardware.compile, hardware.channels_last, hardware.fused_optimizer) == (True, True, True)
    for family in families.names():
        precision = load_config([f"model={family}", "hardware=gpu_fast"]).hardware.precision
        assert precision == ("32-true" if families.get(family).likelihood else "bf16-mixed")


@pytest.mark.slow
def test_a_compiled_channels_last_gan_run_completes_and_records_what_it_compiled(cli, tmp_path):
    proc = cli("model=gan", "model.loss=wgan-gp", "model.ema_decay=0.99", "hardware=cpu", "+hardware.compile=true",
               "+hardware.channels_last=true", "budget=smoke", "budget.limit_train_batches=3", "budget.limit_val_batches=1",
               "budget.n_test=64", "eval=none", "progress_bar=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (metrics_file,) = tmp_path.rglob("metrics.json")
    speed = json.loads(metrics_file.read_text())["protocol"]["hardware"]["speed"]
    assert speed["compiled"] == ["generator", "ema"] and list(speed["left_eager"]) == ["discriminator"]
