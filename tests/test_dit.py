"""The diffusion transformer: patchify/unpatchify invert each other, a fresh adaLN-Zero block is the identity,
outputs keep the input's shape (28x28 padded for patches of 4, 32x32, latents), labels enter, a DDPM with
model.net=dit learns a fixed batch, the config checks the named sizes, and the "cpu" size has about the
parameters of the DDPM's U-Net."""

from functools import partial

import pytest
import torch

from genzoo import load_config
from genzoo.errors import ConfigError
from genzoo.models.build import build_model
from genzoo.models.ddpm import DDPM
from genzoo.nets.denoiser import build_denoiser
from genzoo.nets.dit import DiT, DiTBlock, patchify, sincos_position_embedding, unpatchify


@pytest.mark.parametrize("p, shape", [(2, (3, 2, 8, 12)), (4, (2, 1, 32, 32)), (1, (1, 16, 7, 7))])
def test_unpatchify_inverts_patchify(p, shape):
    x = torch.randn(shape)
    tokens = patchify(x, p)
    b, c, h, w = shape
    assert tokens.shape == (b, (h // p) * (w // p), p * p * c)
    assert torch.equal(unpatchify(tokens, p, c, h, w), x)
    assert torch.equal(tokens[0, 1], x[0, :, :p, p : 2 * p].permute(1, 2, 0).flatten())  # token 1: the second patch of the first row


def test_a_fresh_adaln_zero_block_is_the_identity_and_the_gates_open_with_training():
    torch.manual_seed(0)
    block = DiTBlock(32, 4)
    x, c = torch.randn(2, 10, 32), torch.randn(2, 32)
    assert torch.equal(block(x, c), x)
    torch.nn.init.normal_(block.adaLN[-1].weight, std=0.1)  # what training does to the modulation
    assert not torch.allclose(block(x, c), x)


def test_the_position_embedding_gives_each_patch_its_own_code():
    emb = sincos_position_embedding(64, 7, 7)
    assert emb.shape == (49, 64) and torch.cdist(emb, emb).fill_diagonal_(1.0).min() > 0.1


@pytest.mark.parametrize("shape, p", [((1, 28, 28), 2), ((1, 28, 28), 4), ((3, 32, 32), 4), ((16, 7, 7), 1)])
def test_the_output_has_the_input_shape_and_starts_at_zero(shape, p):
    torch.manual_seed(0)
    net = DiT(shape, patch_size=p, hidden_size=32, depth=2, num_heads=4, num_classes=10)
    x = torch.randn(2, *shape)
    out = net(x, torch.tensor([1, 900]), torch.tensor([3, 10]))
    assert out.shape == x.shape and torch.equal(out, torch.zeros_like(x))  # zero-initialised output layer, as the U-Net's
    assert net.padded == tuple(-(-s // p) * p for s in shape[1:])


def test_the_label_and_the_time_enter_the_prediction():
    torch.manual_seed(0)
    net = DiT((1, 8, 8), patch_size=2, hidden_size=32, depth=2, num_heads=4, num_classes=3)
    for module in net.modules():  # past the zero initialisation, as after some training
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.1)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5, 5])
    base = net(x, t, torch.tensor([0, 0]))
    assert not torch.allclose(base, net(x, t, torch.tensor([1, 1])))
    assert not torch.allclose(base, net(x, torch.tensor([600, 600]), torch.tensor([0, 0])))
    assert torch.equal(net(x, t), net(x, t, torch.tensor([3, 3])))  # no label: the "no label" row


def test_bad_sizes_and_names_are_refused():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        DiT((1, 28, 28), hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="unknown dit_size 'XL'"):
        build_denoiser("dit", (1, 28, 28), dit_size="XL")
    with pytest.raises(ValueError, match="unknown net 'resnet'"):
        build_denoiser("resnet", (1, 28, 28))


def test_a_ddpm_with_a_dit_learns_a_fixed_batch():
    torch.manual_seed(0)
    model = DDPM((1, 8, 8), partial(torch.optim.Adam, lr=2e-3), num_steps=50, net="dit", patch_size=2, dit_size="cpu", ema_decay=0.0)
    assert isinstance(model.net, DiT)
    x0 = torch.rand(8, 1, 8, 8) * 2 - 1
    opt = model.configure_optimizers()
    losses = []
    for _ in range(40):
        torch.manual_seed(1)  # the same t and noise each step: a fixed problem
        loss = model.loss(x0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_the_config_chooses_the_net_for_every_diffusion_family():
    for family in ("ddpm", "score", "ldm"):
        cfg = load_config([f"model={family}", "model.net=dit", "model.dit_size=S", "model.patch_size=4"])
        model = build_model(cfg.model, (1, 28, 28))
        assert isinstance(model.net, DiT) and model.net.hidden_size == 384 and len(model.net.blocks) == 12
    for family in ("ddpm", "score", "ldm"):  # the schema reads the sizes from the net's own table (SIZES)
        with pytest.raises(ConfigError, match="model.dit_size='XL' is invalid: it must be one of cpu, S, B"):
            load_config([f"model={family}", "model.net=dit", "model.dit_size=XL"])


def test_the_cpu_size_has_about_the_parameters_of_the_ddpm_unet():
    """model.net=unet against model.net=dit compares backbones of about equal size (1.11 M and 1.07 M)."""
    counts = {}
    for net in ("unet", "dit"):
        model = build_model(load_config(["model=ddpm", f"model.net={net}"]).model, (1, 28, 28))
        counts[net] = sum(p.numel() for p in model.net.parameters())
    assert 1.0e6 < counts["unet"] < 1.2e6
    assert abs(counts["dit"] / counts["unet"] - 1) < 0.1, counts
