"""Editing measured (genzoo/evaluation/editing.py): directions, edits, scores, and the runs that write them."""

import json
import math
from functools import partial

import pytest
import torch
from torch import nn

from genzoo import load_config, run
from genzoo.evaluation.editing import (
    ALPHAS,
    REPORTED_ALPHA,
    decode,
    fit_direction,
    flip_rate,
    labelled_codes,
    measure_editing,
    preservation,
    relative_distance,
)
from genzoo.metrics.harness import Extractor
from genzoo.models.gan import GAN

OPT = partial(torch.optim.Adam, lr=1e-3)


def test_a_boundary_fitted_on_separable_codes_recovers_the_separating_direction():
    torch.manual_seed(0)
    truth = torch.tensor([3.0, -1.0, 2.0, 0, 0, 0, 0, 0])
    truth = truth / truth.norm()
    z = torch.randn(600, 8)
    is_target = z @ truth > 0.3
    boundary = fit_direction(z, is_target)
    assert boundary.normal.shape == (8,) and math.isclose(boundary.normal.norm().item(), 1, rel_tol=1e-5)
    assert boundary.normal @ truth > 0.98  # cos of the angle to the true normal
    gap = z[is_target].mean(0) - z[~is_target].mean(0)
    assert math.isclose(boundary.step, (gap @ boundary.normal).item(), rel_tol=1e-4) and boundary.step > 0
    assert (boundary.is_target(z) == is_target).float().mean() > 0.97
    # the class-mean baseline: alpha = 1 carries the source's mean code exactly onto the target's
    mean = fit_direction(z, is_target, "class_mean")
    assert math.isclose(mean.step, gap.norm().item(), rel_tol=1e-5)
    assert torch.allclose(mean.edit(z[~is_target], 1.0).mean(0), z[is_target].mean(0), atol=1e-5)
    assert torch.equal(mean.edit(z, 0.0), z)


def test_codes_of_any_shape_keep_their_shape():
    torch.manual_seed(0)
    z = torch.randn(40, 2, 3, 3)
    d = fit_direction(z, torch.arange(40) % 2 == 0)
    assert d.normal.shape == (2, 3, 3) and d.edit(z, 0.5).shape == z.shape


def test_bad_directions_say_what_is_wrong():
    z = torch.randn(10, 4)
    with pytest.raises(ValueError, match="unknown edit direction 'svm'"):
        fit_direction(z, torch.arange(10) < 5, "svm")
    with pytest.raises(ValueError, match="at least 2 codes of each class, got 9 source and 1 target"):
        fit_direction(z, torch.arange(10) == 0)


def test_scores_of_a_perfect_editor_and_of_the_identity():
    torch.manual_seed(0)
    logits = torch.zeros(50, 3)
    logits[:, 2] = 1
    assert flip_rate(logits, target=2) == 1.0 and flip_rate(logits, target=0) == 0.0
    f = torch.randn(50, 16)
    assert preservation(f, f) == 1.0 and relative_distance(f, f) == 0.0
    assert preservation(f.roll(1, 0), f) == 0.0  # every edit lands on another image
    assert preservation(f + 5.0, f) == 1.0  # a change shared by all edits (the attribute) keeps every identity
    assert math.isclose(relative_distance(f.roll(1, 0), f), 1.0, rel_tol=0.15)  # as far as another image, on average
    with pytest.raises(ValueError, match="row for row"):
        preservation(f[:3], f)


class ToyModel(nn.Module):
    """A prior family whose 2-d code sits in one of two clusters (z0 = -2 or +2) and decodes to an image that shows it."""

    latent_space, conditional, family = "prior", False, "toy"

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # a device to follow

    @property
    def device(self):
        return self.anchor.device

    def prior_latents(self, n, generator=None):
        side = torch.randint(0, 2, (n,), generator=generator) * 4.0 - 2.0
        return torch.stack([side + 0.1 * torch.randn(n, generator=generator), torch.randn(n, generator=generator)], 1)

    def decode_latents(self, z, labels=None):
        image = torch.zeros(len(z), 1, 8, 8)
        image[:, 0, 0, :2] = z / 8  # in [-1, 1] for |z| < 8
        return image


class ToyClassifier(nn.Module):
    """Features: the code back out of the image (2-d); logits over 10 classes: class 9 when z0 > 0, class 1 when z0 < 0."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # the Extractor reads its device from a parameter

    def forward(self, x):
        z = x[:, 0, 0, :2] * 8
        logits = torch.zeros(len(x), 10)
        logits[:, 9], logits[:, 1] = z[:, 0], -z[:, 0]
        return z, logits


class ToyData:
    name, num_classes, class_names = "toy", 10, [str(c) for c in range(10)]

    def __init__(self, model):
        codes = model.prior_latents(400, torch.Generator().manual_seed(99))
        images = ((model.decode_latents(codes) + 1) * 127.5).round().to(torch.uint8)
        self.test_images, self.test_labels = images, torch.where(codes[:, 0] > 0, 9, 1)


def _toy():
    model = ToyModel()
    return model, Extractor("toy", ToyClassifier(), {"weights_sha256": "toy", "extractor": "toy"}), ToyData(model)


def test_editing_a_toy_prior_family_flips_every_code_at_alpha_one_and_none_at_zero(tmp_path):
    model, extractor, data = _toy()
    result = measure_editing(model, data, extractor, source=1, target=9, n=200, seed=0, batch_size=64, cache_dir=tmp_path, kid_subsets=10)
    m, curve = result.metrics, result.metrics["edit_curve"]
    assert result.skipped is None and m["edit_alpha"] == REPORTED_ALPHA and curve["alphas"] == list(ALPHAS)
    for method in ("boundary", "class_mean"):
        assert curve[method]["flip_rate"][0] == 0.0 and curve[method]["flip_rate"][ALPHAS.index(1.0)] == 1.0
        assert curve[method]["preservation"][0] == 1.0 and curve[method]["distance"][0] == 0.0
    assert m["edit_flip_rate"] == 1.0 and m["edit_flip_rate_class_mean"] == 1.0
    assert m["edit_preservation"] > 0.9  # the second coordinate, untouched, still names the source (chance 1/~50)
    assert m["edit_boundary_accuracy"] == 1.0 and m["edit_sources"] > 20
    assert m["edit_fid_classifier"] < 0.1 and math.isfinite(m["edit_kid_classifier"])  # the edits look like the target's test images
    assert m["edit_fid_floor"] < 0.1
    codes, labels = labelled_codes(model, data, extractor, 200, 0, 64)
    sources = codes[1::2][labels[1::2] == 1]
    assert result.grid.shape == (6 * len(ALPHAS), 1, 8, 8)
    assert torch.equal(result.grid[0], decode(model, sources[:1])[0])  # alpha = 0: the unedited sample


def test_too_few_codes_of_a_class_is_reported_not_raised(tmp_path):
    model, extractor, data = _toy()
    result = measure_editing(model, data, extractor, source=1, target=3, n=100, seed=0, batch_size=64, cache_dir=tmp_path)
    assert result.grid is None and result.metrics["edit_flip_rate"] is None
    assert "0 of class 3" in result.skipped and "budget.edit_samples" in result.skipped
    gan = GAN((1, 28, 28), OPT, latent_dim=8, base_channels=8, conditional=True, num_classes=10)
    with pytest.raises(ValueError, match="unconditional family with a latent code, got gan \\(conditional\\)"):
        measure_editing(gan, data, extractor, 1, 9, 100, 0, 64, tmp_path)


@pytest.mark.parametrize("family, batches, classes", [
    ("vae", 30, "[1,9]"),  # codes of test images: trousers -> ankle boots
    pytest.param("gan", 100, "[8,9]", marks=pytest.mark.slow),  # prior draws: after 100 batches mostly bags, some ankle boots
])
def test_a_run_writes_the_editing_metrics_and_pictures(family, batches, classes, data_root, tmp_path):
    cfg = load_config([f"model={family}", "data=fashion_mnist", f"data.root={data_root}", "hardware=cpu", "budget=smoke",
                       f"budget.limit_train_batches={batches}", "budget.limit_val_batches=1", "budget.n_test=64", "budget.eval_samples=200",
                       "budget.curve_points=0", "budget.edit_samples=1000", f"edit_classes={classes}", "progress_bar=false", "logger=csv",
                       f"output_dir={tmp_path}"])
    run(cfg)
    record = json.loads((tmp_path / "metrics.json").read_text())
    m = record["metrics"]
    assert 0 <= m["edit_flip_rate"] <= 1 and 0 <= m["edit_preservation"] <= 1 and m["edit_fid_classifier"] > 0
    assert m["edit_curve"]["boundary"]["flip_rate"][0] <= 0.2  # unedited sources stay (mostly) in their class
    assert m["edit_flip_rate"] > m["edit_curve"]["boundary"]["flip_rate"][0]
    assert "logistic-regression" in record["protocol"]["metric_cards"]["edit_flip_rate"]["metric"]
    for name in ("edit_grid.png", "edit_curve.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
