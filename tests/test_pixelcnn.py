"""PixelCNN: causality of the gated stacks, exact likelihoods, sampling, an end-to-end run."""

import json
import math
from functools import partial

import pytest
import torch

from genzoo.distributions import (
    categorical_pixel_log_likelihood,
    discretized_logistic_mixture_log_likelihood,
    sample_logistic_mixture,
)
from genzoo.models.pixelcnn import PixelCNN
from genzoo.nets.pixelcnn import GatedPixelCNN

LEVELS = torch.arange(256).float() / 127.5 - 1  # the 256 values of an 8-bit pixel in [-1, 1]


def _model(likelihood="softmax", **kw):
    torch.manual_seed(0)
    return PixelCNN((1, 8, 8), partial(torch.optim.Adam, lr=3e-3), likelihood=likelihood, features=16, layers=4, kernel=3, **kw)


@pytest.mark.parametrize("kernel,layers", [(3, 4), (5, 3)])
def test_output_pixel_depends_on_every_earlier_pixel_and_no_later_one(kernel, layers):
    torch.manual_seed(0)
    net = GatedPixelCNN(256, channels=8, layers=layers, kernel=kernel)
    size = 6
    for i in range(size):
        for j in range(size):
            x = torch.randn(1, 1, size, size, requires_grad=True)
            net(x)[0, :, i, j].sum().backward()
            grad = x.grad[0, 0].flatten()
            k = i * size + j
            assert grad[k:].abs().sum() == 0, f"pixel ({i}, {j}) sees itself or a later pixel"
            # no blind spot: the left neighbour and the row above, up to two columns right (the region the
            # original PixelCNN's masked 3x3 stacks could never see), all reach the output
            near = [(i, j - 1)] + [(i - 1, c) for c in range(j - 2, j + 3)]
            reach = [r * size + c for r, c in near if 0 <= r and 0 <= c < size]
            assert (grad[reach] != 0).all(), f"pixel ({i}, {j}) has a blind spot"


def test_a_pass_on_the_receptive_rows_equals_the_full_pass():
    torch.manual_seed(1)
    net = GatedPixelCNN(256, channels=8, layers=3, kernel=3).eval()
    x = torch.randn(2, 1, 12, 7)
    full = net(x)
    for i in range(12):
        top = max(0, i - net.receptive_rows)
        assert torch.allclose(net(x[:, :, top : i + 1])[:, :, -1], full[:, :, i], atol=1e-6)  # float rounding only


def test_pixel_distributions_sum_to_one_over_the_256_levels():
    x = LEVELS.reshape(256, 1, 1, 1)
    params = torch.randn(1, 15, 1, 1).expand(256, 15, 1, 1)  # a 5-logistic mixture
    assert discretized_logistic_mixture_log_likelihood(x, params).exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    sharp = params.clone()
    sharp[:, 10:] = -7.0  # tiny scales: the mass sits in single bins, the pdf fallback must not break it
    assert discretized_logistic_mixture_log_likelihood(x, sharp).exp().sum().item() == pytest.approx(1.0, abs=1e-4)
    logits = torch.randn(1, 256, 1, 1).expand(256, 256, 1, 1)
    assert categorical_pixel_log_likelihood(x, logits).exp().sum().item() == pytest.approx(1.0, abs=1e-5)


def test_uniform_logits_give_exactly_8_bits_per_dim():
    model = _model()
    torch.nn.init.zeros_(model.net.head[-1].weight)
    torch.nn.init.zeros_(model.net.head[-1].bias)
    x = LEVELS[torch.randint(0, 256, (4, 1, 8, 8))]
    assert (-model.log_prob(x) / (64 * math.log(2))).tolist() == pytest.approx([8.0] * 4, abs=1e-5)


@pytest.mark.parametrize("likelihood", ["softmax", "logistic_mixture"])
def test_bits_per_dim_is_finite_and_falls_on_a_fixed_batch(likelihood):
    model = _model(likelihood)
    x = LEVELS[(torch.rand(16, 1, 8, 8) * 255).round().long()].clamp(-1, 1)
    x[:, :, :4] = -1.0  # a learnable structure: the top half is black
    opt = model.configure_optimizers()
    first = last = None
    for _ in range(60):
        loss = -model.log_prob(x).mean() / model.num_dims
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
        last = loss.item()
    assert math.isfinite(last) and last < 0.8 * first


@pytest.mark.parametrize("likelihood", ["softmax", "logistic_mixture"])
def test_samples_are_8_bit_images_and_repeat_under_a_seed(likelihood):
    model = _model(likelihood)
    a = model.sample(3, generator=torch.Generator().manual_seed(0))
    b = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert a.shape == (3, 1, 8, 8) and torch.equal(a, b)
    assert torch.equal(torch.round((a + 1) * 127.5) / 127.5 - 1, a) and a.min() >= -1 and a.max() <= 1
    assert model.nfe_per_sample == 64 and model.training  # sample() restores the mode


def test_logistic_mixture_draws_follow_the_component_means():
    params = torch.zeros(20000, 3, 1, 1)  # one component, mean 0.5, scale e^-5
    params[:, 1], params[:, 2] = 0.5, -5.0
    draws = sample_logistic_mixture(params, torch.Generator().manual_seed(0))
    assert draws.mean().item() == pytest.approx(0.5, abs=0.01)


def test_bad_arguments():
    with pytest.raises(ValueError, match="single-channel"):
        PixelCNN((3, 32, 32), None)
    with pytest.raises(ValueError, match="unknown likelihood"):
        PixelCNN((1, 28, 28), None, likelihood="gaussian")
    with pytest.raises(ValueError, match="odd kernel"):
        GatedPixelCNN(256, kernel=4)


@pytest.mark.slow
def test_cli_smoke_run_reports_exact_bits_per_dim(cli, tmp_path):
    proc = cli("model=pixelcnn", "hardware=cpu", "budget=smoke", "budget.limit_train_batches=3", "budget.limit_val_batches=1",
               "budget.n_test=32", "budget.grid_samples=2", "budget.eval_samples=20",
               "budget.curve_points=0", "progress_bar=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (metrics_file,) = tmp_path.rglob("metrics.json")
    payload = json.loads(metrics_file.read_text())
    metrics = payload["metrics"]
    assert payload["model"] == "pixelcnn" and 0 < metrics["bits_per_dim"] < 8.5
    assert metrics["bits_per_dim"] == pytest.approx(metrics["nll_nats"] / (784 * math.log(2)), rel=1e-5)
    assert payload["resources"]["nfe_per_sample"] == 784 and "fid_classifier" in metrics
    assert (metrics_file.parent / "nearest_neighbours.png").is_file()  # 20 samples: two whole rows of 8 shown


def test_conditional_pixelcnn_depends_on_the_label_and_samples_the_requested_classes():
    model = _model(conditional=True, num_classes=10)
    torch.nn.init.normal_(model.net.layers[0].embed.weight)
    x = LEVELS[torch.randint(0, 256, (2, 1, 8, 8))]
    a, b = model.log_prob(x, torch.tensor([0, 0])), model.log_prob(x, torch.tensor([3, 3]))
    assert not torch.allclose(a, b)  # the class changes p(x | y)
    images = model.sample(4, generator=torch.Generator().manual_seed(0), labels=torch.tensor([0, 1, 2, 3]))
    assert images.shape == (4, 1, 8, 8)
    with pytest.raises(ValueError, match="labels must be"):
        model.sample(2, labels=torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="need a conditional model"):
        _model().sample(2, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_classes >= 2"):
        _model(conditional=True)
