"""The pixel transformer: causality of the net, the key/value cache against full recomputation, the exact
likelihood against closed forms, a loss that falls, and a run end to end."""

import json
import math
from functools import partial

import pytest
import torch

from genzoo.models.pixel_transformer import PixelTransformer
from genzoo.nets.transformer import CausalTransformer


def _model(shape=(1, 4, 4), **kw):
    return PixelTransformer(shape, partial(torch.optim.AdamW, lr=3e-3), **{"d_model": 16, "n_layers": 2, "n_heads": 2, **kw})


def test_the_prediction_at_each_position_depends_on_no_later_input():
    torch.manual_seed(0)
    net = CausalTransformer(vocab_size=10, out_features=5, max_len=12, d_model=16, n_layers=2, n_heads=2).eval()
    h = net.embed(torch.randint(0, 10, (2, 12))).detach().requires_grad_(True)
    out = net.logits_from_embeddings(h)
    for i in range(12):
        (grad,) = torch.autograd.grad(out[:, i].sum(), h, retain_graph=True)
        seen = grad.abs().sum((0, 2))  # (12,): how much each input position moved output i
        assert (seen[i + 1 :] == 0).all(), f"position {i} saw a later input"
        assert (seen[: i + 1] > 0).all()


def test_a_pixel_is_predicted_from_the_pixels_before_it_in_raster_order():
    torch.manual_seed(0)
    model = _model((1, 3, 3)).eval()
    x = torch.randint(0, 256, (1, 1, 3, 3)).float() / 127.5 - 1
    base = model.logits(x)  # (1, 256, 1, 3, 3)
    for j in range(9):
        changed = x.clone().flatten()
        changed[j] = -changed[j] if changed[j] != 0 else 1.0
        diff = (model.logits(changed.view_as(x)) - base).abs().amax(1).flatten()  # (9,): per pixel
        assert (diff[: j + 1] == 0).all() and (diff[j + 1 :] > 0).all()  # pixel j's own prediction ignores pixel j


def test_the_cached_sampler_draws_what_recomputing_the_whole_prefix_draws():
    torch.manual_seed(0)
    model = _model((2, 3, 3)).eval()  # two channels: the raster order runs over pixels, then channels
    cached = model.sample(5, generator=torch.Generator().manual_seed(7), kv_cache=True)
    full = model.sample(5, generator=torch.Generator().manual_seed(7), kv_cache=False)
    assert cached.shape == (5, 2, 3, 3) and torch.equal(cached, full)
    levels = (cached + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-4)  # on the 256-level grid


def test_the_cache_gives_the_logits_of_the_full_pass():
    torch.manual_seed(0)
    net = CausalTransformer(vocab_size=10, out_features=5, max_len=8, d_model=16, n_layers=2, n_heads=2).eval()
    tokens = torch.randint(0, 10, (3, 8))
    full = net(tokens)
    cache = net.new_cache()
    pieces = [net(tokens[:, :3], cache), net(tokens[:, 3:4], cache), net(tokens[:, 4:], cache)]  # a block, one, a block
    assert torch.allclose(torch.cat(pieces, 1), full, atol=1e-5)
    with pytest.raises(ValueError, match="exceed the transformer's max_len 8"):
        net(tokens[:, :1], cache)


def test_uniform_logits_give_exactly_8_bits_per_dim():
    model = _model((1, 4, 4))
    torch.nn.init.zeros_(model.net.head.weight)
    torch.nn.init.zeros_(model.net.head.bias)
    x = torch.randint(0, 256, (3, 1, 4, 4)).float() / 127.5 - 1
    nll = -model.log_prob(x)
    assert torch.allclose(nll, torch.full((3,), 16 * math.log(256)))
    assert (nll / (16 * math.log(2))).tolist() == pytest.approx([8.0] * 3)


def test_the_loss_falls_on_a_fixed_batch_and_the_class_token_conditions():
    torch.manual_seed(0)
    model = _model((1, 4, 4), conditional=True, num_classes=3)
    x = torch.randint(0, 256, (6, 1, 4, 4)).float() / 127.5 - 1
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    opt = model.configure_optimizers()
    first = -model.log_prob(x, labels).mean()
    for _ in range(60):
        opt.zero_grad()
        (-model.log_prob(x, labels).mean()).backward()
        opt.step()
    assert -model.log_prob(x, labels).mean() < first - 5  # nats per image
    model.eval()
    assert not torch.equal(model.logits(x[:1], torch.tensor([0])), model.logits(x[:1], torch.tensor([1])))


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="divisible by n_heads"):
        _model(d_model=10, n_heads=4)


def test_pixel_transformer_run_end_to_end(data_root, tmp_path):
    from genzoo import load_config, run

    cfg = load_config([
        "model=pixel_transformer", "model.d_model=16", "model.n_layers=1", "model.n_heads=2", f"data.root={data_root}", "hardware=cpu",
        "budget=smoke", "budget.limit_train_batches=3", "budget.limit_val_batches=1", "budget.n_test=32", "budget.grid_samples=8",
        "progress_bar=false", "logger=none", "eval=none", f"output_dir={tmp_path}",
    ])
    payload = run(cfg)
    assert payload == json.loads((tmp_path / "metrics.json").read_text())
    assert payload["model"] == "pixel_transformer" and 0 < payload["metrics"]["bits_per_dim"] <= 9  # ~8 after 3 batches
    assert payload["resources"]["nfe_per_sample"] == 784 and (tmp_path / "samples.png").is_file()
