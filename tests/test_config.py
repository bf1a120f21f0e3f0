import dataclasses
import itertools

import pytest

from genzoo import families, load_config
from genzoo.config import GROUPS, group_options
from genzoo.errors import ConfigError


def test_defaults_compose():
    cfg = load_config()
    assert cfg.model._target_ == "genzoo.models.vae.VAE"
    assert cfg.data.name == "fashion_mnist" and cfg.budget.name == "fast" and cfg.hardware.accelerator == "auto"


def test_every_group_option_composes_and_validates():
    options = {g: group_options(g) for g in GROUPS}
    assert options["model"] == families.names() and options["data"] == ["cifar10", "fashion_mnist", "mnist"]
    assert set(options["hardware"]) >= {"auto", "cpu", "gpu"} and set(options["logger"]) >= {"csv", "none", "wandb"}
    assert options["budget"] == ["equal_time", "fast", "full", "smoke"]
    for model, data, budget in itertools.product(options["model"], options["data"], options["budget"]):
        load_config([f"model={model}", f"data={data}", f"budget={budget}"])
    for group in ("hardware", "logger"):
        for option in options[group]:
            load_config([f"{group}={option}"])


@pytest.mark.parametrize("override,key", [
    ("model=pixelcnnn", f"unknown model option 'pixelcnnn': choose one of {', '.join(families.names())}"),
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


def test_a_family_budget_changes_the_budget_and_a_command_line_key_wins():
    ddpm = families.get("ddpm").budget["fast"]
    cfg = load_config(["model=ddpm", "budget=fast"])
    assert all(cfg.budget[k] == v for k, v in ddpm.items()) and cfg.budget.for_family == "ddpm"
    assert load_config(["model=vae", "budget=fast"]).budget.max_epochs == 10  # the budget file's value
    cfg = load_config(["model=ddpm", "budget=fast", "budget.max_epochs=7"])
    assert cfg.budget.max_epochs == 7 and cfg.budget.n_test == ddpm["n_test"]


def test_a_family_data_default_changes_the_data_config_and_a_command_line_key_wins(monkeypatch):
    assert families.get("gan").data == {"batch_size": 64}
    assert load_config(["model=gan"]).data.batch_size == 64
    assert load_config(["model=gan", "data=cifar10"]).data.batch_size == 64  # any data set
    assert load_config(["model=gan", "data.batch_size=128"]).data.batch_size == 128
    assert load_config(["model=vae"]).data.batch_size == 128  # the data file's value
    gan = families.get("gan")
    for data, error in (({"batch_size": 0}, "data.batch_size=0 is invalid: it must be a positive integer"),
                        ({"batch_sise": 64}, "family.data.batch_sise of model=gan is not a data key: use one of")):
        monkeypatch.setattr(families, "of_target", lambda target, fam=dataclasses.replace(gan, data=data): fam)
        with pytest.raises(ConfigError, match=error):
            load_config(["model=gan"])


def test_prepare_is_applied_once():
    from genzoo.config import prepare

    cfg = load_config(["model=ddpm", "budget=fast", "budget.max_epochs=7"])
    assert prepare(cfg).budget.max_epochs == 7  # a second call does not bring the family's value back


def test_a_family_schema_checks_its_own_keys_only():
    with pytest.raises(ConfigError, match="model.likelihood='softmax' is invalid: it must be one of gaussian, bernoulli"):
        load_config(["model=vae", "model.likelihood=softmax"])
    load_config(["model=pixelcnn", "model.likelihood=softmax"])
    with pytest.raises(ConfigError, match="model.sampler='euler' is invalid: it must be one of ddim, ancestral"):
        load_config(["model=ddpm", "model.sampler=euler"])


def test_a_schema_naming_an_unknown_rule_is_a_one_line_error():
    from genzoo.config import family_rules

    bad = families.Family("toy", "x.Toy", None, "cheap", None, None, schema={"width": "positive_wibble"})
    with pytest.raises(ConfigError, match="family.schema.width='positive_wibble' is not a rule"):
        family_rules(bad)
