"""The family contract: the same checks for every family in the registry (genzoo/families.py).

A new family joins these tests by its config file alone. Each family is built from its
config with its `family.tiny` changes, trained for two steps on real Fashion-MNIST, and
checked for what the runner, the harness, the latent tools and the report rely on:
samples (shape, dtype, range, determinism), its NFE against the net calls it makes, a
checkpoint round trip, the latent methods its trait promises, a finite test likelihood
when it reports one, the precision every hardware preset gives it, and its conditional form.
"""

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from genzoo import families, load_config
from genzoo.config import group_options
from genzoo.data import ImageDataModule
from genzoo.errors import ConfigError
from genzoo.models.build import build_model, load_trained

REPO = Path(__file__).resolve().parent.parent
NAMES = families.names()


def tiny_config(name: str, *extra: str):
    """The family's config with its `tiny` changes (and any extra overrides)."""
    return load_config([f"model={name}", "hardware=cpu", *families.get(name).tiny_overrides(), *extra])


def tiny_data(data_root) -> ImageDataModule:
    data = ImageDataModule("fashion_mnist", root=str(data_root), batch_size=16, n_test=16)
    data.setup("fit")
    return data


def train_two_steps(model, data, tmp_path: Path) -> Path:
    """Fit two batches on the CPU and save a Lightning checkpoint; returns its path."""
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=2, limit_train_batches=2, limit_val_batches=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(ckpt)
    return ckpt


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    """{family: (cfg, model after two steps in eval mode, checkpoint path, data)}, built on first use."""
    cache = {}

    def get(name):
        if name not in cache:
            L.seed_everything(0, verbose=False)
            cfg = tiny_config(name, f"data.root={data_root}")
            data = tiny_data(data_root)
            model = build_model(cfg.model, data.image_shape, data.num_classes)
            ckpt = train_two_steps(model, data, tmp_path_factory.mktemp(f"contract-{name}"))
            cache[name] = (cfg, model.eval(), ckpt, data)
        return cache[name]

    return get


def _nets(model) -> list:
    """The model's child nets with parameters (an EMA copy's inner net in its place)."""
    return [child.module if isinstance(child, AveragedModel) else child for child in model.children() if any(True for _ in child.parameters())]


def _sample_recording(model, n=4, seed=0, **kw):
    """(the samples, every tensor its nets output while drawing them, in call order)."""
    outputs = []
    hooks = [net.register_forward_hook(lambda m, args, out: outputs.append(out.detach().clone()) if torch.is_tensor(out) else None)
             for net in _nets(model)]
    try:
        return _sample(model, n, seed, **kw), outputs
    finally:
        for h in hooks:
            h.remove()


def _sample(model, n=4, seed=0, **kw):
    with torch.no_grad():
        return model.sample(n, generator=torch.Generator().manual_seed(seed), **kw)


@pytest.mark.parametrize("name", NAMES)
def test_the_config_names_the_family_and_its_schema_covers_its_keys(name):
    fam = families.get(name)
    cfg = load_config([f"model={name}"])
    assert fam.model_class().family == name  # metrics.json's "model" is the registry name
    assert set(fam.schema) <= set(cfg.model), "a schema key the config does not have"
    assert (REPO / "docs" / "guide" / f"{name}.md").is_file(), "every family has a guide page"
    assert (REPO / "tests" / f"test_{name}.py").is_file(), "every family has a test file of its own"
    assert name in group_options("model")


@pytest.mark.parametrize("name", NAMES)
def test_samples_have_the_data_shape_range_and_repeat_under_a_seed(name, trained):
    _, model, _, data = trained(name)
    x = _sample(model, 4, seed=0)
    assert x.shape == (4, *data.image_shape) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and torch.isfinite(x).all()
    assert torch.equal(x, _sample(model, 4, seed=0))
    assert not torch.equal(x, _sample(model, 4, seed=1))


@pytest.mark.parametrize("name", NAMES)
def test_nfe_per_sample_counts_the_net_evaluations_of_one_sample(name, trained):
    _, model, _, _ = trained(name)
    n, images = 3, []
    hooks = [net.register_forward_hook(lambda m, args, out: images.append(args[0].shape[0])) for net in _nets(model)]
    try:
        _sample(model, n)
    finally:
        for h in hooks:
            h.remove()
    assert sum(images) / n == model.nfe_per_sample  # images through a net per image drawn


@pytest.mark.parametrize("name", NAMES)
def test_a_checkpoint_round_trip_gives_the_same_samples(name, trained):
    cfg, model, ckpt, _ = trained(name)
    _, loaded, _ = load_trained(cfg, ckpt, device="cpu")
    assert torch.equal(_sample(model, 4, seed=3), _sample(loaded, 4, seed=3))


@pytest.mark.parametrize("name", NAMES)
def test_latent_methods_exist_exactly_as_the_trait_says(name, trained):
    _, model, _, data = trained(name)
    trait = families.get(name).latent
    assert model.latent_space == trait
    x = data.test_images[:2].float() / 127.5 - 1
    if trait is None:
        with pytest.raises(NotImplementedError):
            model.prior_latents(2)
    else:
        with torch.no_grad():
            z = model.prior_latents(2, torch.Generator().manual_seed(0))
            assert model.decode_latents(z).shape == (2, *data.image_shape)
    if trait == "encoder":
        with torch.no_grad():
            assert model.encode_latents(x).shape == z.shape
    else:
        with pytest.raises(NotImplementedError):
            model.encode_latents(x)


@pytest.mark.parametrize("name", NAMES)
def test_truncation_moves_prior_codes_towards_the_mode_the_prior_draws_centre_on(name, trained):
    """m + psi * (z - m) with m where the prior's draws centre (a symmetric prior's mean is its mode); refused without a mode."""
    _, model, _, _ = trained(name)
    mode = model.prior_mode()
    if mode is None:
        with pytest.raises(ValueError, match="has no mode to move codes towards"):
            model.truncate_latents(torch.zeros(2, 3), 0.5)
        return
    z = model.prior_latents(4000, torch.Generator().manual_seed(0))
    centre = z.mean(0)
    assert (centre - mode).abs().max() <= 0.15 * z.std()  # 4,000 draws: the mean's error is z.std() / 63 per coordinate
    assert torch.equal(model.truncate_latents(z, 1.0), z)
    torch.testing.assert_close(model.truncate_latents(z, 0.5) - mode, 0.5 * (z - mode))
    assert (model.truncate_latents(z, 0.5) - mode).norm() < (z - mode).norm() < (model.truncate_latents(z, 1.5) - mode).norm()
    with pytest.raises(ValueError, match="psi must be above 0"):
        model.truncate_latents(z, 0.0)


@pytest.mark.parametrize("name", [n for n in NAMES if families.get(n).likelihood])
def test_a_likelihood_family_reports_a_finite_test_likelihood(name, trained):
    _, model, _, data = trained(name)
    trainer = L.Trainer(accelerator="cpu", devices=1, limit_test_batches=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = trainer.test(model, datamodule=data, verbose=False)[0]
    assert math.isfinite(metrics["bits_per_dim"]) and metrics["bits_per_dim"] > 0  # untrained tiny nets: far above 8


@pytest.mark.parametrize("preset", group_options("hardware"))
@pytest.mark.parametrize("name", NAMES)
def test_every_hardware_preset_keeps_a_likelihood_family_in_float32(name, preset):
    # the PixelCNN scored its exact bits/dim in bf16 under gpu, ddp and slurm before one rule decided it
    preset_precision = _composed([f"hardware={preset}"]).hardware.precision  # the preset's own value, before the rule
    precision = load_config([f"model={name}", f"hardware={preset}"]).hardware.precision
    if families.get(name).likelihood:
        assert precision in ("32-true", "64-true")
    else:
        assert precision == preset_precision


def _composed(overrides):
    from hydra import compose, initialize_config_dir

    from genzoo.paths import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.parametrize("name", [n for n in NAMES if families.get(n).conditional])
def test_the_conditional_form_draws_the_labels_asked_for(name, data_root, tmp_path):
    L.seed_everything(0, verbose=False)
    cfg = tiny_config(name, "model.conditional=true")
    data = tiny_data(data_root)
    model = build_model(cfg.model, data.image_shape, num_classes=data.num_classes)
    train_two_steps(model, data, tmp_path)  # two steps: nets whose last layer starts at zero (the U-Net's) start to read the label
    model.eval()
    assert model.conditional and model.num_classes == 10
    assert model.sample_labels(4, [3, 3, 7, 7]).tolist() == [3, 3, 7, 7]
    assert model.sample_labels(4).tolist() == [0, 1, 2, 3]  # balanced by default
    _sample(model, labels=[0] * 4)  # a first draw may prepare the sampler (the GAN's EMA of G estimates its BatchNorm statistics)
    (shoes, shoe_outputs), (shirts, shirt_outputs) = _sample_recording(model, labels=[7] * 4), _sample_recording(model, labels=[6] * 4)
    assert shoes.shape == shirts.shape == (4, 1, 28, 28)
    # the label enters the net: some net computes something else for it. (Not the images: a family that draws
    # discrete tokens or decodes through a codebook maps a net two steps old to the same images for either label.)
    assert any(a.shape == b.shape and not torch.equal(a, b) for a, b in zip(shoe_outputs, shirt_outputs))
    with pytest.raises(ValueError, match="classes in 0..9"):
        model.sample_labels(2, [0, 10])


@pytest.mark.parametrize("name", [n for n in NAMES if not families.get(n).conditional])
def test_a_family_without_a_conditional_form_refuses_one(name):
    cfg = tiny_config(name, "+model.conditional=true")
    with pytest.raises(ConfigError, match="rejected the config"):
        build_model(cfg.model, (1, 28, 28), num_classes=10)


class _MeanBrightness(torch.nn.Module):
    """A stand-in domain classifier: features the 4x4-pooled image; class 9 when the image is brighter than `cut`, else 1."""

    def __init__(self, cut: float):
        super().__init__()
        self.cut = torch.nn.Parameter(torch.tensor(cut), requires_grad=False)

    def forward(self, x):
        s = x.mean((1, 2, 3)) - self.cut
        logits = torch.zeros(len(x), 10)
        logits[:, 9], logits[:, 1] = s, -s
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1), logits


@pytest.mark.parametrize("name", [n if families.get(n).sampler == "cheap" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in NAMES if families.get(n).latent])  # an iterative decoder (DDIM, an ODE) takes minutes here
def test_editing_measures_every_family_with_a_latent_code_and_alpha_zero_is_the_unedited_decode(name, trained, tmp_path):
    from genzoo.evaluation.editing import ALPHAS, decode, labelled_codes, measure_editing
    from genzoo.metrics.harness import Extractor

    _, model, _, data = trained(name)
    big = ImageDataModule("fashion_mnist", root=data.root, batch_size=16, n_test=200)  # test images of classes 1 and 9 in both halves
    big.setup("fit")
    with torch.no_grad():  # cut the prior draws' brightness at its median: half of them each class
        brightness = decode(model, model.prior_latents(60, torch.Generator().manual_seed(0))).mean((1, 2, 3))
    extractor = Extractor("mean-brightness", _MeanBrightness(brightness.median().item()), {"weights_sha256": name, "extractor": "toy"})
    result = measure_editing(model, big, extractor, source=1, target=9, n=60, seed=0, batch_size=128, cache_dir=tmp_path, grid_rows=2)
    assert result.skipped is None, result.skipped
    assert result.grid.shape == (2 * len(ALPHAS), *data.image_shape) and result.grid.abs().max() <= 1
    codes, labels = labelled_codes(model, big, extractor, 60, 0, 128)
    sources = codes[1::2][labels[1::2] == 1][:2]
    assert torch.allclose(result.grid[0], decode(model, sources[:1])[0], atol=1e-4)  # the reconstruction, or the unedited sample
    assert result.metrics["edit_curve"]["boundary"]["distance"][0] == 0.0
