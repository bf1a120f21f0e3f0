"""Latent diffusion: the latent scale gives unit variance, the first stage stays frozen, the loss falls on a
fixed batch, samples are the decoder's images of the DDPM's latents, and a run records its first stage's
reconstruction error."""

import json
from functools import partial

import pytest
import torch

from genzoo.models.ddpm import DDPM
from genzoo.models.ldm import LDM

TINY_VQVAE = {"num_codes": 8, "code_dim": 4, "channels": [8, 8], "res_blocks": 1}


def _model(**kw):
    torch.manual_seed(0)
    return LDM((1, 28, 28), partial(torch.optim.Adam, lr=2e-3), first_stage_overrides=TINY_VQVAE, num_steps=20, base_channels=8,
               channel_mults=(1,), num_res_blocks=1, attention_levels=(0,), dropout=0.0, sample_steps=5, **kw)


def _images(n=32, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_the_latent_scale_gives_unit_variance_on_the_images_it_was_measured_on():
    model = _model()
    x = _images()
    with pytest.raises(RuntimeError, match="not measured yet"):
        model.latents(x)
    scale = model.measure_scale(x)
    z = model.latents(x)
    assert z.shape == (32, 4, 7, 7) and model.diffusion_shape == (4, 7, 7)
    assert z.std().item() == pytest.approx(1.0, abs=1e-5)
    assert scale == pytest.approx(1 / model.first_stage.encode(x).std().item(), rel=1e-5)
    uint8 = ((x + 1) * 127.5).round().to(torch.uint8)
    assert model.measure_scale(uint8) == pytest.approx(1 / model.first_stage.encode(uint8.float() / 127.5 - 1).std().item(), rel=1e-5)


def test_training_moves_the_unet_only_and_the_loss_falls_on_a_fixed_batch():
    model = _model(ema_decay=0.0)
    x = _images(16)
    model.measure_scale(x)
    model.train()
    assert not model.first_stage.training and not model.first_stage.model.quantizer.training  # no codebook updates
    frozen = {k: v.clone() for k, v in model.first_stage.state_dict().items()}
    opt = model.configure_optimizers()
    torch.manual_seed(1)
    z = model.latents(x)
    losses = []
    for _ in range(60):
        torch.manual_seed(2)  # the same t and noise each step: a fixed problem
        loss = model.loss(z)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert all(torch.equal(v, model.first_stage.state_dict()[k]) for k, v in frozen.items())
    assert {id(p) for p in model.trainable_parameters()} == {id(p) for p in model.net.parameters()}


def test_samples_are_the_decoded_latents_of_the_ddpm_sampler_clipped_to_the_latent_bound():
    model = _model(clip_x0=1.5).eval()
    model.measure_scale(_images())
    with torch.no_grad():
        latents = DDPM.sample(model, 3, torch.Generator().manual_seed(4))
        images = model.sample(3, torch.Generator().manual_seed(4))
        model.clip_x0 = None
        unclipped = DDPM.sample(model, 3, torch.Generator().manual_seed(4))
    assert latents.shape == (3, 4, 7, 7) and images.shape == (3, 1, 28, 28)
    assert 1 < latents.abs().max() <= 1.5 < unclipped.abs().max()  # its own bound, not the images' [-1, 1]
    assert torch.equal(images, model.first_stage(latents / model.latent_scale))
    assert model.nfe_per_sample == 5 + 1
    assert "x0 unclipped" in model.protocol()["sampler"] and "+-5 (scaled latents" in _model().protocol()["sampler"]
    with pytest.raises(ValueError, match="clip_x0 .* must be positive or null, got 0"):
        _model(clip_x0=0)


def test_only_a_first_stage_with_an_encoder_is_accepted():
    with pytest.raises(ValueError, match="must be one of vqvae, ae, vae, got 'gan'"):
        LDM((1, 28, 28), torch.optim.Adam, first_stage_family="gan")


@pytest.mark.parametrize("family", ["ae", "vae"])
def test_a_vector_first_stage_is_diffused_as_a_one_by_one_map(family):
    torch.manual_seed(0)
    model = LDM((1, 28, 28), partial(torch.optim.Adam, lr=2e-3), first_stage_family=family, first_stage_overrides={"latent_dim": 6},
                num_steps=20, base_channels=8, channel_mults=(1,), num_res_blocks=1, attention_levels=(0,), dropout=0.0, sample_steps=5).eval()
    x = _images()
    model.measure_scale(x)
    z = model.latents(x)
    assert model.diffusion_shape == (6, 1, 1) and z.shape == (32, 6, 1, 1)
    assert torch.allclose(z.std(), torch.tensor(1.0), atol=1e-4)  # the scale gives unit variance here too
    codes = model.first_stage.model.encode_latents(x)  # (32, 6): the same numbers, as a map
    assert torch.equal(z.flatten(1), codes * model.latent_scale)
    assert torch.allclose(model.first_stage(z / model.latent_scale), model.first_stage.model.decode_latents(codes).clamp(-1, 1), atol=1e-5)
    with torch.no_grad():
        loss = model.loss(z)
        images = model.sample(3, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and images.shape == (3, 1, 28, 28) and images.abs().max() <= 1


@pytest.mark.slow  # two runs end to end (a first stage and the second), over a minute on 2 cores
@pytest.mark.usefixtures("domain_classifier")
def test_a_run_trains_its_first_stage_and_records_its_reconstruction_error(data_root, tmp_path):
    from genzoo import load_config, run

    cfg = load_config([
        "model=ldm", f"data.root={data_root}", f"output_dir={tmp_path / 'ldm'}", "hardware=cpu", "budget=smoke",
        "budget.limit_train_batches=3", "budget.limit_val_batches=1", "budget.n_test=32", "budget.eval_samples=32",
        "budget.curve_points=0", "budget.grid_samples=8", "eval.pr_k=3", "eval.kid_subset_size=16", "logger=none", "progress_bar=false",
        "model.num_steps=20", "model.base_channels=8", "model.num_res_blocks=1", "model.sample_steps=5", "model.scale_images=256",
        *(f"+model.first_stage_overrides.{k}=" + (str(v).replace(" ", "") if isinstance(v, list) else str(v)) for k, v in TINY_VQVAE.items()),
    ])
    payload = run(cfg)
    stage = json.loads((tmp_path / "ldm" / "first_stage" / "metrics.json").read_text())
    assert payload["status"] == "completed" and stage["model"] == "vqvae"
    # the same 32 test images through the same frozen first stage: the LDM's record repeats its floor
    assert payload["metrics"]["first_stage_recon_mse"] == pytest.approx(stage["metrics"]["test_recon_mse"], rel=1e-5)
    assert payload["resources"]["nfe_per_sample"] == 6 and "fid_classifier" in payload["metrics"]
    assert "latent_scale" in payload["protocol"]["family"] and "first_stage" in payload["protocol"]["family"]
