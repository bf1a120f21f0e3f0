from functools import partial

import pytest
import torch

from genzoo.models.ddpm import DDPM
from genzoo.models.ema import ema_copy
from genzoo.nets.unet import UNet

SMALL = dict(base_channels=16, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,), dropout=0.0)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_unet_output_shape(shape):
    net = UNet(shape, base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,))
    x, t = torch.randn(2, *shape), torch.tensor([0, 999])
    assert net(x, t).shape == (2, *shape)


def test_unet_rejects_a_side_it_cannot_halve():
    with pytest.raises(ValueError, match="divisible by 8, got 28x28"):
        UNet((1, 28, 28), channel_mults=(1, 2, 2, 2))


def _model(**kw):
    return DDPM((1, 28, 28), partial(torch.optim.Adam, lr=2e-3), num_steps=100, **{**SMALL, **kw})


@pytest.fixture()
def batch(data_root):
    from genzoo.data import ImageDataModule

    dm = ImageDataModule("fashion_mnist", root=str(data_root), n_test=32)
    dm.setup()
    return dm.test_set.__getitems__(list(range(32)))[0]


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_ddpm_loss_falls_on_a_fixed_batch(batch, prediction):
    torch.manual_seed(0)
    model = _model(prediction=prediction)
    opt = model.configure_optimizers()
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-8:]) / 8 < 0.6 * sum(losses[:8]) / 8


def test_optimizer_and_param_count_leave_out_the_ema_copy():
    model = _model()
    assert {id(p) for p in model.trainable_parameters()} == {id(p) for p in model.net.parameters()}
    assert all(not p.requires_grad for p in model.ema.parameters())


def test_ema_warms_up_then_averages():
    net = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(net.weight)
    ema = ema_copy(net, decay=0.9)
    net.weight.data.fill_(1.0)
    ema.update_parameters(net)  # the first update copies the net
    assert ema.module.weight.item() == pytest.approx(1.0)
    net.weight.data.fill_(2.0)
    ema.update_parameters(net)  # n = 1: decay min(0.9, 2/11)
    assert ema.module.weight.item() == pytest.approx(1.0 + (1 - 2 / 11) * 1.0)
    with pytest.raises(ValueError, match="decay must be in"):
        ema_copy(net, 1.0)


def test_vlb_terms_are_non_negative_and_sum_to_bits_per_dim(batch):
    torch.manual_seed(0)
    model = _model()
    terms = model.vlb_terms(batch[:4])
    assert terms.shape == (4, 101)
    assert torch.all(terms >= -1e-4)  # KLs and a discrete NLL
    assert torch.isfinite(terms).all()


def test_sample_shape_range_determinism_and_samplers():
    torch.manual_seed(0)
    model = _model()
    a = model.sample(3, generator=torch.Generator().manual_seed(1), steps=10)
    b = model.sample(3, generator=torch.Generator().manual_seed(1), steps=10)
    c = model.sample(3, generator=torch.Generator().manual_seed(1), sampler="ancestral")
    assert a.shape == c.shape == (3, 1, 28, 28) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1 and c.min() >= -1 and c.max() <= 1
    with pytest.raises(ValueError, match="sample_steps must be in"):
        _model(sample_steps=101)


def test_sample_eta_overrides_the_configured_eta():
    torch.manual_seed(0)
    model = _model(eta=0.0)

    def draw(**kw):
        return model.sample(2, generator=torch.Generator().manual_seed(1), steps=10, **kw)

    assert torch.equal(draw(), draw(eta=0.0))  # None takes the config's eta
    stochastic = draw(eta=1.0)
    assert not torch.equal(draw(), stochastic) and model.eta == 0.0  # the call does not change the model
    model.eta = 1.0
    assert torch.equal(draw(), stochastic)


def test_ddpm_run_end_to_end(data_root, tmp_path):
    import json
    import math

    from genzoo import load_config, run

    cfg = load_config([
        "model=ddpm", "model.num_steps=50", "model.sample_steps=10", "model.base_channels=16", "model.channel_mults=[1,2]",
        "model.attention_levels=[1]", f"data.root={data_root}", "hardware=cpu", "budget=smoke", "budget.limit_train_batches=3",
        "budget.limit_val_batches=1", "budget.n_test=8", "progress_bar=false", "logger=none", "eval=none", f"output_dir={tmp_path}",
    ])
    payload = run(cfg)
    assert payload == json.loads((tmp_path / "metrics.json").read_text())
    assert payload["model"] == "ddpm" and payload["protocol"]["n_test"] == 8
    m = payload["metrics"]
    assert math.isfinite(m["bits_per_dim"]) and m["bits_per_dim"] == pytest.approx(-m["elbo_nats"] / (784 * math.log(2)), rel=1e-5)
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "reconstructions.png").exists()
    assert payload["resources"]["nfe_per_sample"] == 10  # DDIM with sample_steps=10


def test_equal_time_scoring_chooses_eta_on_validation_images_and_scores_the_ancestral_reference(data_root, domain_classifier):
    from genzoo import load_config
    from genzoo.data import ImageDataModule
    from genzoo.evaluation import comparison
    from genzoo.metrics.harness import generate

    data = ImageDataModule("fashion_mnist", root=str(data_root))
    data.setup()
    eval_cfg = load_config(["budget=equal_time"]).eval
    torch.manual_seed(0)
    model = _model(sample_steps=5).eval()
    assert set(model.sampler_options()) == {"ddim-5 eta=0", "ddim-5 eta=1"}
    choice = comparison.choose_sampler(model, data, eval_cfg, n=64, seed=0)
    scores = choice["scores"]
    assert choice["chosen"] == min(scores, key=lambda k: scores[k]["fid_classifier"])
    assert model.eta == model.sampler_options()[choice["chosen"]]["eta"] and choice["split"].endswith("validation, first 64 images")
    fake = generate(model.sample, 64, 64, 1)
    rows = comparison.reference_rows(model, data, eval_cfg, 16, fake, seed=0)
    assert list(rows) == ["ancestral-100"] and rows["ancestral-100"]["n"] == 16
    assert rows["ancestral-100"]["main_sampler_same_n"]["fid_classifier"] > 0
    floor = comparison.floor(data, eval_cfg, 64, seed=0)
    assert floor == comparison.floor(data, eval_cfg, 64, seed=0)  # seeded: the same training images
    assert floor["fid_classifier"] < min(s["fid_classifier"] for s in scores.values()) / 5  # real images beat an untrained net
    with pytest.raises(AttributeError, match="no sampler setting"):
        model.use_sampler({"temperature": 0.5})
