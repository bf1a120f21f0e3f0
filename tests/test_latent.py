"""Latent tools: interpolation paths, DDIM's latent code, the 2-D latent map, attribute editing."""

import json
from functools import partial

import pytest
import torch

from genzoo import load_config, run
from genzoo.data.datamodule import to_unit_range
from genzoo.errors import ConfigError
from genzoo.evaluation.latent import interpolation_grid, latent_map, lerp, slerp
from genzoo.latent import main
from genzoo.models.ddpm import DDPM
from genzoo.models.gan import GAN
from genzoo.models.pixelcnn import PixelCNN
from genzoo.models.vae import VAE

OPT = partial(torch.optim.Adam, lr=1e-3)


def test_slerp_keeps_the_norm_and_moves_at_constant_angular_speed():
    torch.manual_seed(0)
    a, b = torch.randn(64), torch.randn(64)
    b = b / b.norm() * a.norm()
    t = torch.linspace(0, 1, 5)
    path = slerp(a, b, t)
    assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)
    assert torch.allclose(path.norm(dim=1), a.norm().expand(5), rtol=1e-5)  # lerp's midpoint would have norm |a| cos(w/2)
    omega = torch.arccos(torch.dot(a, b) / a.norm() ** 2)
    angles = torch.arccos((path @ a / a.norm() ** 2).clamp(-1, 1))
    assert torch.allclose(angles, t * omega, atol=2e-3)  # arccos near 1 magnifies float32 rounding
    assert torch.allclose(lerp(a, b, t)[2], (a + b) / 2) and torch.allclose(slerp(a, a, t), a.expand(5, -1))


def test_ddim_decodes_its_latent_code_deterministically_and_sample_is_that_decode():
    torch.manual_seed(0)
    model = DDPM((1, 8, 8), OPT, num_steps=20, base_channels=8, channel_mults=(1, 2), attention_levels=(), sample_steps=4)
    z = model.prior_latents(3, torch.Generator().manual_seed(5))
    assert torch.equal(model.decode_latents(z), model.decode_latents(z))
    assert torch.allclose(model.decode_latents(z), model.sample(3, torch.Generator().manual_seed(5)))  # eta = 0


def _data(n_per_class=4, side=28):
    torch.manual_seed(0)
    labels = torch.arange(10).repeat_interleave(n_per_class)
    return torch.randint(0, 256, (len(labels), 1, side, side), dtype=torch.uint8), labels


def test_interpolation_rows_end_at_the_real_images_for_an_encoder_and_keep_one_class_when_conditional():
    images, labels = _data()
    vae = VAE((1, 28, 28), OPT, latent_dim=4).eval()
    grid, per_row = interpolation_grid(vae, images, labels, rows=3, steps=5)
    assert per_row == 7 and grid.shape == (21, 1, 28, 28)
    assert torch.equal(grid[0], to_unit_range(images[0])) and torch.equal(grid[6], to_unit_range(images[4]))  # classes 0 -> 1
    codes = vae.encode_latents(to_unit_range(images[[0, 4]]))
    assert torch.allclose(grid[1], vae.decode_latents(codes[:1])[0], atol=1e-6)  # t = 0: the first image's code

    gan = GAN((1, 28, 28), OPT, latent_dim=8, base_channels=8, conditional=True, num_classes=10)
    grid, per_row = interpolation_grid(gan, images, labels, rows=2, steps=4, seed=1)
    z = gan.prior_latents(4, torch.Generator().manual_seed(1))
    assert per_row == 4 and torch.allclose(grid[4], gan.decode_latents(z[2:3], torch.tensor([1]))[0], atol=1e-6)  # row 1: class 1
    with pytest.raises(NotImplementedError, match="no latent code"):
        interpolation_grid(PixelCNN((1, 8, 8), OPT, features=8, layers=2), images, labels)


def test_latent_map_needs_a_two_dimensional_code():
    images, labels = _data()
    fig = latent_map(VAE((1, 28, 28), OPT, latent_dim=2).eval(), images, labels, [str(k) for k in range(10)], side=4)
    assert len(fig.axes) == 2 and len(fig.axes[0].get_legend().get_texts()) == 10
    with pytest.raises(ValueError, match="model.latent_dim=2"):
        latent_map(VAE((1, 28, 28), OPT, latent_dim=3).eval(), images, labels, [])


def test_a_two_dimensional_vae_run_writes_the_latent_map_and_bad_edit_classes_stop_before_training(data_root, tmp_path):
    base = ["model=vae", "data=fashion_mnist", f"data.root={data_root}", "hardware=cpu", "budget=smoke", "budget.limit_train_batches=5",
            "budget.limit_val_batches=1", "budget.n_test=64", "progress_bar=false", "eval=none", "logger=csv"]
    run(load_config([*base, "model.latent_dim=2", f"output_dir={tmp_path}"]))
    for name in ("latent_map.png", "interpolation.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
    assert not (tmp_path / "edit_grid.png").exists()  # eval=none: editing needs the classifier
    before = (tmp_path / "interpolation.png").read_bytes()
    main([str(tmp_path), "--edit", "1", "9", "--samples", "300"])  # python -m genzoo.latent <run dir>: from the checkpoint, into <run dir>/latent
    assert (tmp_path / "latent" / "latent_map.png").is_file() and (tmp_path / "interpolation.png").read_bytes() == before
    edited = json.loads((tmp_path / "latent" / "editing.json").read_text())
    assert 0 <= edited["metrics"]["edit_flip_rate"] <= 1 and edited["metrics"]["edit_sources"] > 5  # trousers among 150 test images
    assert (tmp_path / "latent" / "edit_grid.png").stat().st_size > 1000 and (tmp_path / "latent" / "edit_curve.png").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--samples", "2"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--edit", "0", "10"])
    assert exit_info.value.code == 2
    with pytest.raises(ConfigError, match=r"edit_classes=\[3, 3\] is invalid"):
        run(load_config([*base, "edit_classes=[3,3]", f"output_dir={tmp_path / 'bad'}"]))
    assert not (tmp_path / "bad" / "checkpoints").exists()
