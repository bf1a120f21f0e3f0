import itertools

import pytest

from genzoo import load_config
from genzoo.config import GROUPS, for_family, group_options
from genzoo.errors import ConfigError


def test_defaults_compose():
    cfg = load_config()
    assert cfg.model._target_ == "genzoo.models.VAE"
    assert cfg.data.name == "fashion_mnist" and cfg.budget.name == "fast" and cfg.hardware.accelerator == "auto"


def test_every_group_option_composes_and_validates():
    options = {g: group_options(g) for g in GROUPS}
    assert options["model"] == ["ae", "ddpm", "gan", "pixelcnn", "vae"] and options["data"] == ["cifar10", "fashion_mnist", "mnist"]
    assert set(options["hardware"]) >= {"auto", "cpu", "gpu"} and set(options["logger"]) >= {"csv", "none", "wandb"}
    assert options["budget"] == ["fast", "full", "smoke"]
    for model, data, budget in itertools.product(options["model"], options["data"], options["budget"]):
        load_config([f"model={model}", f"data={data}", f"budget={budget}"])
    for group in ("hardware", "logger"):
        for option in options[group]:
            load_config([f"{group}={option}"])


@pytest.mark.parametrize("override,key", [
    ("model=pixelcnnn", "unknown model option 'pixelcnnn': choose one of ae, ddpm, gan, pixelcnn, vae"),
    ("data=svhn", "unknown data option 'svhn': choose one of cifar10, fashion_mnist, mnist"),
    ("hardware=tpu", "unknown hardware option 'tpu'"),
    ("budget=ae,huge", "unknown budget option 'ae'"),
])
def test_unknown_group_option_names_the_allowed_values(override, key):
    with pytest.raises(ConfigError) as err:
        load_config([override])
    assert key in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("override,key", [
    ("model.latent_dim=0", "model.latent_dim=0 is invalid: it must be a positive integer"),
    ("model.latent_dim=-3", "model.latent_dim=-3"),
    ("model.optimizer.lr=0", "model.optimizer.lr=0 is invalid: it must be a positive number"),
    ("model.optimizer.lr=-1e-3", "model.optimizer.lr=-0.001"),
    ("data.batch_size=0", "data.batch_size=0 is invalid"),
    ("data.batch_size=-8", "data.batch_size=-8"),
    ("model.beta=-0.5", "model.beta=-0.5 is invalid: it must be a number >= 0"),
    ("model.likelihood=laplace", "one of gaussian, bernoulli"),
    ("budget.n_test=0", "budget.n_test=0"),
    ("seed=-1", "seed=-1"),
])
def test_invalid_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config([override])
    assert key in str(err.value) and "\n" not in str(err.value)


def test_per_family_budget_overrides():
    cfg = load_config(["budget=smoke", "+budget.families.vae={max_epochs: 3}"])
    assert for_family(cfg.budget, "vae")["max_epochs"] == 3
    assert for_family(cfg.budget, "ae")["max_epochs"] == 1
    assert "families" not in for_family(cfg.budget, "ae")
