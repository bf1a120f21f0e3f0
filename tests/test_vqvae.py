"""The VQ-VAE: nearest-entry quantisation, the straight-through gradient and the EMA codebook update against
hand-computed values, dead-code restarts, the codebook loss, the fitted prior, and a run end to end."""

import json
from functools import partial

import pytest
import torch

from genzoo.models.vqvae import VQVAE
from genzoo.nets.codebook import VectorQuantizer


def _quantizer(values, **kw):
    """A 1-D codebook with the given entries (K = len(values), D = 1)."""
    q = VectorQuantizer(len(values), 1, **{"dead_threshold": 0.0, **kw})
    with torch.no_grad():
        q.embedding.copy_(torch.tensor(values, dtype=torch.float32).view(-1, 1))
        if q.update == "ema":
            q.ema_sum.copy_(q.embedding)
    return q


def _map(values):
    """Encoder vectors as a (B, 1, 1, 1) map, one per image."""
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1)


def test_each_vector_takes_its_nearest_entry():
    q = _quantizer([0.0, 10.0, -4.0]).eval()
    z_q, codes, _ = q(_map([1.0, 6.0, -3.0, 4.9]))
    assert codes.flatten().tolist() == [0, 1, 2, 0]
    assert z_q.flatten().tolist() == [0.0, 10.0, -4.0, 0.0]


def test_the_straight_through_gradient_passes_the_quantisation_unchanged():
    q = _quantizer([0.0, 10.0]).eval()
    z_e = _map([1.0, 9.0]).requires_grad_(True)
    z_st, _, losses = q(z_e)
    weights = torch.tensor([3.0, -2.0]).view(-1, 1, 1, 1)
    (grad,) = torch.autograd.grad((z_st * weights).sum(), z_e)
    assert torch.equal(z_st.detach().flatten(), torch.tensor([0.0, 10.0]))  # forward: the entries
    assert torch.equal(grad, weights)  # backward: the identity
    (grad,) = torch.autograd.grad(losses["commitment"], z_e)  # beta * mean (z_e - e)^2 -> 2 beta (z_e - e) / N
    assert torch.allclose(grad.flatten(), 2 * 0.25 * torch.tensor([1.0, -1.0]) / 2)


def test_the_ema_update_matches_the_hand_computed_values():
    q = _quantizer([0.0, 10.0], decay=0.5, eps=1e-12).train()
    q(_map([1.0, 2.0, 9.0]))
    # counts n = [2, 1]: ema_count = 0.5 * [1, 1] + 0.5 * [2, 1] = [1.5, 1.0]
    # sums [3, 9]: ema_sum = 0.5 * [0, 10] + 0.5 * [3, 9] = [1.5, 9.5]; entries = sums / counts = [1.0, 9.5]
    assert torch.allclose(q.ema_count, torch.tensor([1.5, 1.0]))
    assert torch.allclose(q.embedding.flatten(), torch.tensor([1.0, 9.5]), atol=1e-6)
    q.eval()
    q(_map([100.0]))
    assert torch.allclose(q.embedding.flatten(), torch.tensor([1.0, 9.5]), atol=1e-6)  # no update in eval mode


def test_a_dead_entry_is_restarted_on_a_batch_vector():
    torch.manual_seed(0)
    q = _quantizer([0.0, 1.0, 50.0], decay=0.5, dead_threshold=0.3).train()
    batch = _map([0.1, 0.2, 0.9, 1.1])
    q(batch)  # entry 2 unused: its count falls 1 -> 0.5
    assert q.restarts.item() == 0 and q.embedding[2].item() == pytest.approx(50.0, rel=1e-4)
    q(batch)  # 0.5 -> 0.25 < 0.3: restarted
    assert q.restarts.item() == 1 and q.embedding[2].item() in batch.flatten().tolist() and q.ema_count[2].item() == 1.0


def test_the_codebook_loss_moves_the_entries_and_the_commitment_the_encoder():
    q = _quantizer([0.0, 10.0], update="loss").train()
    z_e = _map([1.0, 9.0]).requires_grad_(True)
    _, _, losses = q(z_e)
    entry_grad, = torch.autograd.grad(losses["codebook"], q.embedding, retain_graph=True)
    assert torch.allclose(entry_grad.flatten(), torch.tensor([-1.0, 1.0]))  # mean (e - z_e)^2 over 2: d/de = (e - z_e)
    assert torch.autograd.grad(losses["codebook"], z_e, allow_unused=True, retain_graph=True)[0] is None
    assert torch.autograd.grad(losses["commitment"], q.embedding, allow_unused=True)[0] is None


def test_perplexity_counts_the_entries_in_use():
    q = _quantizer([0.0, 1.0, 2.0, 3.0]).eval()
    assert q(_map([0.0, 1.0, 2.0, 3.0]))[2]["perplexity"].item() == pytest.approx(4.0)
    assert q(_map([0.0, 0.1, 0.0, 0.2]))[2]["perplexity"].item() == pytest.approx(1.0)


@pytest.mark.parametrize("kw, match", [({"update": "kmeans"}, "unknown codebook update"), ({"decay": 1.0}, "decay in"), ({"num_codes": 0}, "num_codes")])
def test_the_codebook_refuses_bad_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        VectorQuantizer(**{"num_codes": 4, "code_dim": 2, **kw})


def _vqvae(**kw):
    return VQVAE((1, 28, 28), partial(torch.optim.Adam, lr=2e-3), **{"num_codes": 16, "code_dim": 4, "channels": (8, 16), "res_blocks": 1, **kw})


def test_the_prior_draws_the_fitted_frequencies_and_shapes_are_a_7x7_grid():
    model = _vqvae().eval()
    assert model.grid == (7, 7) and model.encode_codes(torch.zeros(2, 1, 28, 28)).shape == (2, 7, 7)
    model.prior_counts.zero_()
    model.prior_counts[..., 5] = 1e9  # every position token 5, but for the add-one smoothing's 15 / 1e9
    codes = model.sample_codes(3, torch.Generator().manual_seed(0))
    assert codes.shape == (3, 7, 7) and (codes == 5).all()
    assert torch.equal(model.sample(3, torch.Generator().manual_seed(0)), model.decode_codes(codes))
    with pytest.raises(ValueError, match="divisible by 4"):
        VQVAE((1, 30, 30), partial(torch.optim.Adam), channels=(8, 8))


@pytest.mark.parametrize("update", ["ema", "loss"])
def test_the_loss_falls_on_a_fixed_batch(update):
    torch.manual_seed(0)
    model = _vqvae(update=update).train()
    x = -torch.ones(16, 1, 28, 28)  # four patterns: a bright square in one of four places
    for i in range(16):
        row, col = divmod(i % 4, 2)
        x[i, :, 14 * row : 14 * row + 10, 14 * col : 14 * col + 10] = 1.0
    opt = model.configure_optimizers()
    first = None
    for _ in range(40):
        recon, _, losses = model(x)
        loss = torch.nn.functional.mse_loss(recon, x) + losses["commitment"] + losses["codebook"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_vqvae_run_end_to_end(data_root, tmp_path):
    from genzoo import load_config, run

    cfg = load_config([
        "model=vqvae", "model.num_codes=16", "model.code_dim=4", "model.channels=[8,16]", "model.res_blocks=1", f"data.root={data_root}",
        "hardware=cpu", "budget=smoke", "budget.limit_train_batches=5", "budget.limit_val_batches=1", "budget.n_test=64",
        "progress_bar=false", "logger=none", "eval=none", f"output_dir={tmp_path}",
    ])
    payload = run(cfg)
    assert payload == json.loads((tmp_path / "metrics.json").read_text())
    metrics = payload["metrics"]
    assert payload["model"] == "vqvae" and 0 < metrics["test_recon_mse"] < 1
    assert 0 < metrics["codebook_usage"] <= 1 and 1 <= metrics["codebook_perplexity"] <= 16
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "reconstructions.png").is_file()
